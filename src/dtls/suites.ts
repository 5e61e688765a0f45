import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { CcmContext, type CipherContexts, type ContextHolder } from './ccm';
import { prf } from './prf';
import { writeSeq } from './record';

export type CipherSuiteName =
  | 'TLS_PSK_WITH_AES_128_CCM_8'
  | 'TLS_PSK_WITH_AES_128_CCM'
  | 'TLS_PSK_WITH_AES_128_GCM_SHA256'
  | 'TLS_PSK_WITH_AES_128_CBC_SHA256'
  | 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'
  | 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256';

export type CipherKind = 'ccm8' | 'ccm' | 'gcm' | 'cbc-sha256';
export type KeyExchange = 'psk' | 'ecdhe_ecdsa';

export interface CipherSuiteInfo {
  id: number;
  name: CipherSuiteName;
  kind: CipherKind;
  keyExchange: KeyExchange;
  macKeyLength: number;
  encKeyLength: number;
  fixedIvLength: number;
}

function suite(id: number, name: CipherSuiteName, kind: CipherKind, keyExchange: KeyExchange): CipherSuiteInfo {
  const cbc = kind === 'cbc-sha256';
  return { id, name, kind, keyExchange, macKeyLength: cbc ? 32 : 0, encKeyLength: 16, fixedIvLength: cbc ? 0 : 4 };
}

/**
 * RFC 6655 §4 (CCM, CCM_8), RFC 5487 §3 (GCM_SHA256, CBC_SHA256), RFC 7251 §2 and RFC 5289 §3.2 (ECDHE_ECDSA).
 * All use the SHA-256 PRF.
 */
export const CIPHER_SUITES: Readonly<Record<CipherSuiteName, CipherSuiteInfo>> = {
  TLS_PSK_WITH_AES_128_CCM_8: suite(0xc0a8, 'TLS_PSK_WITH_AES_128_CCM_8', 'ccm8', 'psk'),
  TLS_PSK_WITH_AES_128_CCM: suite(0xc0a4, 'TLS_PSK_WITH_AES_128_CCM', 'ccm', 'psk'),
  TLS_PSK_WITH_AES_128_GCM_SHA256: suite(0x00a8, 'TLS_PSK_WITH_AES_128_GCM_SHA256', 'gcm', 'psk'),
  TLS_PSK_WITH_AES_128_CBC_SHA256: suite(0x00ae, 'TLS_PSK_WITH_AES_128_CBC_SHA256', 'cbc-sha256', 'psk'),
  TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: suite(0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', 'ccm8', 'ecdhe_ecdsa'),
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: suite(0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'gcm', 'ecdhe_ecdsa'),
};

/** Default PSK suites, in server preference order (CCM_8 first: the LwM2M mandatory suite). */
export const DEFAULT_PSK_SUITES: CipherSuiteName[] = [
  'TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_CCM', 'TLS_PSK_WITH_AES_128_GCM_SHA256',
  'TLS_PSK_WITH_AES_128_CBC_SHA256',
];
/** Default certificate suites, used when a server key is configured. */
export const DEFAULT_CERT_SUITES: CipherSuiteName[] = [
  'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
];
export const DEFAULT_SUITES: CipherSuiteName[] = [...DEFAULT_PSK_SUITES];

export function suiteByName(name: string): CipherSuiteInfo | undefined {
  return Object.prototype.hasOwnProperty.call(CIPHER_SUITES, name)
    ? CIPHER_SUITES[name as CipherSuiteName]
    : undefined;
}

export interface KeyMaterial {
  clientMacKey: Buffer;
  serverMacKey: Buffer;
  clientKey: Buffer;
  serverKey: Buffer;
  clientIv: Buffer;
  serverIv: Buffer;
  /**
   * The whole key block (never a slice of Node's shared Buffer pool), laid out as client MAC key ‖ server MAC key ‖
   * client key ‖ server key ‖ client IV ‖ server IV; the fields above are views into it. Record ciphers and established
   * sessions keep only its ArrayBuffer and offsets, so zeroing the block wipes every key.
   */
  block: Buffer;
}

/** Length of a suite's key block (RFC 5246 §6.3). */
export function keyBlockLength(suite: CipherSuiteInfo): number {
  return 2 * (suite.macKeyLength + suite.encKeyLength + suite.fixedIvLength);
}

/** Views of the key material over a key block of keyBlockLength(suite) bytes. */
export function keyMaterialOf(suite: CipherSuiteInfo, block: Buffer): KeyMaterial {
  if (block.length !== keyBlockLength(suite) || !(block.buffer instanceof ArrayBuffer)) {
    throw new TypeError('key block of the wrong length');
  }
  const m = suite.macKeyLength;
  const k = suite.encKeyLength;
  const v = suite.fixedIvLength;
  let off = 0;
  const take = (n: number): Buffer => {
    const b = block.subarray(off, off + n);
    off += n;
    return b;
  };
  const clientMacKey = take(m);
  const serverMacKey = take(m);
  const clientKey = take(k);
  const serverKey = take(k);
  const clientIv = take(v);
  const serverIv = take(v);
  return { clientMacKey, serverMacKey, clientKey, serverKey, clientIv, serverIv, block };
}

/**
 * key_block = PRF(master_secret, "key expansion", server_random + client_random) (RFC 5246 §6.3).
 * The keys are views into the one key block the PRF allocated for them (its own memory, outside Node's shared
 * Buffer pool). DtlsServer moves the block of an established session into its key store (zeroing this one); the
 * store zeroes it when the session ends.
 */
export function deriveKeys(suite: CipherSuiteInfo, master: Buffer, clientRandom: Buffer, serverRandom: Buffer): KeyMaterial {
  const block = prf(master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), keyBlockLength(suite));
  return keyMaterialOf(suite, block);
}

/** One direction of record protection. */
export interface RecordCipher {
  /**
   * Protects one record. With `cid` (RFC 9146) `type` must be tls12_cid (25), `plaintext` is the
   * DTLSInnerPlaintext and the additional data follows RFC 9146 §5.
   */
  encrypt(type: number, version: number, epoch: number, seq: number, plaintext: Buffer, cid?: Buffer): Buffer;
  /** Returns the plaintext, or undefined when the record does not authenticate. Never throws. */
  decrypt(type: number, version: number, epoch: number, seq: number, fragment: Buffer, cid?: Buffer): Buffer | undefined;
  /** Lets go of anything held beyond the key block (the session ended). */
  dispose?(): void;
  /** Optional fast path: the whole record without a CID (header included), or undefined to use encrypt. */
  sealRecord?(type: number, version: number, epoch: number, seq: number, plaintext: Buffer): Buffer | undefined;
}

const TLS12_CID = 25;

/**
 * The AEAD additional data and the CBC MAC header:
 *   without CID (RFC 5246 §6.2.3): seq_num(8) ‖ type ‖ version ‖ length
 *   with CID (RFC 9146 §5): 8 × 0xff ‖ tls12_cid ‖ cid_length ‖ tls12_cid ‖ version ‖ epoch ‖ seq ‖ cid ‖ length
 */
export function additionalData(type: number, version: number, epoch: number, seq: number, length: number,
    cid?: Buffer): Buffer {
  if (!cid) return writeAdditionalData(Buffer.allocUnsafe(13), type, version, epoch, seq, length);
  const h = Buffer.allocUnsafe(23 + cid.length);
  h.fill(0xff, 0, 8);
  h[8] = TLS12_CID;
  h[9] = cid.length;
  h[10] = TLS12_CID;
  h.writeUInt16BE(version, 11);
  writeSeq(h, 13, epoch, seq);
  cid.copy(h, 21);
  h.writeUInt16BE(length, 21 + cid.length);
  return h;
}

/** The 13-byte additional data of a record without a connection ID, written into `h`. */
function writeAdditionalData(h: Buffer, type: number, version: number, epoch: number, seq: number, length: number): Buffer {
  writeSeq(h, 0, epoch, seq);
  h[8] = type;
  h[9] = version >>> 8;
  h[10] = version;
  h[11] = length >>> 8;
  h[12] = length;
  return h;
}

/** A record's additional data for the context path: in the context's scratch, or (with a CID, rare) a new buffer. */
function contextAad(ctx: CcmContext, type: number, version: number, epoch: number, seq: number, length: number,
    cid?: Buffer): Buffer {
  return cid ? additionalData(type, version, epoch, seq, length, cid) :
    writeAdditionalData(ctx.aadScratch, type, version, epoch, seq, length);
}

const EXPLICIT_NONCE = 8;
const RECORD_HEADER = 13;
const FIXED_IV = 4;
const AES_KEY = 16;

/**
 * Node skips the cipher update for a zero-length buffer without backing storage, after which CCM computes no tag
 * (encryption fails, and decryption would not check the tag). Always hand it a view into real memory.
 */
function aeadInput(b: Buffer): Buffer {
  return b.length === 0 ? Buffer.alloc(1).subarray(0, 0) : b;
}

/** Algorithm and tag length of an AEAD suite, shared by every cipher of that kind. */
interface AeadMode {
  readonly algorithm: 'aes-128-ccm' | 'aes-128-gcm';
  readonly tagLength: number;
}
const CCM_8: AeadMode = Object.freeze({ algorithm: 'aes-128-ccm', tagLength: 8 });
const CCM: AeadMode = Object.freeze({ algorithm: 'aes-128-ccm', tagLength: 16 });
const GCM: AeadMode = Object.freeze({ algorithm: 'aes-128-gcm', tagLength: 16 });

/** Records a CCM cipher protects on the one-shot path before it makes long-lived contexts (the handshake's Finished
 * and the Register exchange stay there, so a registered but idle device holds none). */
const ONE_SHOT_RECORDS = 2;

/**
 * AES-128-CCM (RFC 6655 §3, tag 16 or 8) and AES-128-GCM (RFC 5288 §3, tag 16), RFC 5246 §6.2.3.3:
 * nonce = fixed IV (4) ‖ explicit nonce (8); the explicit nonce is the record's epoch and sequence number.
 * Holds only the key block's ArrayBuffer and offsets (no Buffer views kept per session); a record takes short-lived
 * views of its key and IV. CCM records of a session in use go through a CcmContext (two long-lived AES contexts)
 * instead of a new OpenSSL CCM context per record; `contexts` takes it back when the session goes idle.
 */
class AeadCipher implements RecordCipher, ContextHolder {
  /** CCM: the number of records done on the one-shot path, then the live context. */
  private ccm: number | CcmContext = 0;

  constructor(private readonly mode: AeadMode, private readonly block: ArrayBuffer, private readonly keyOffset: number,
      private readonly ivOffset: number, private readonly contexts?: CipherContexts) {}

  get context(): CcmContext | undefined {
    return typeof this.ccm === 'number' ? undefined : this.ccm;
  }

  releaseContext(): void {
    if (typeof this.ccm !== 'number') {
      this.ccm.wipe();
      this.ccm = ONE_SHOT_RECORDS;
    }
  }

  dispose(): void {
    this.releaseContext();
    this.contexts?.forget(this);
  }

  /** The CCM context to use for this record, made on first need; undefined while still on the one-shot path. */
  private ccmContext(): CcmContext | undefined {
    const c = this.ccm;
    if (typeof c !== 'number') return c;
    if (c < ONE_SHOT_RECORDS) {
      this.ccm = c + 1;
      return undefined;
    }
    if (this.contexts && !this.contexts.hasRoom) return undefined;
    const ctx = new CcmContext(this.key(), this.mode.tagLength, this.contexts?.scratch,
      new Uint8Array(this.block, this.ivOffset, FIXED_IV));
    this.ccm = ctx;
    this.contexts?.track(this);
    return ctx;
  }

  /**
   * The whole record (header ‖ explicit nonce ‖ ciphertext ‖ tag) in one buffer, when this is a CCM cipher with a live
   * context; undefined otherwise (the caller then uses encrypt and frames the result).
   */
  sealRecord(type: number, version: number, epoch: number, seq: number, plaintext: Buffer): Buffer | undefined {
    const ctx = this.context;
    if (!ctx) return undefined;
    const fragmentLength = EXPLICIT_NONCE + plaintext.length + this.mode.tagLength;
    const out = Buffer.allocUnsafe(RECORD_HEADER + fragmentLength);
    out[0] = type;
    out[1] = version >>> 8;
    out[2] = version;
    writeSeq(out, 3, epoch, seq);
    out[11] = fragmentLength >>> 8;
    out[12] = fragmentLength;
    this.sealFragment(ctx, type, version, epoch, seq, plaintext, out, RECORD_HEADER);
    return out;
  }

  /** Writes explicit nonce ‖ ciphertext ‖ tag into `out` at `at` through the live context. */
  private sealFragment(ctx: CcmContext, type: number, version: number, epoch: number, seq: number, plaintext: Buffer,
      out: Buffer, at: number, cid?: Buffer): void {
    const nonce = ctx.nonce(epoch, seq);
    for (let i = 0; i < EXPLICIT_NONCE; i++) out[at + i] = nonce[FIXED_IV + i];
    ctx.seal(nonce, contextAad(ctx, type, version, epoch, seq, plaintext.length, cid), plaintext, out, at + EXPLICIT_NONCE);
  }

  private key(): Uint8Array {
    return new Uint8Array(this.block, this.keyOffset, AES_KEY);
  }

  private nonce(): Buffer {
    const nonce = Buffer.allocUnsafe(FIXED_IV + EXPLICIT_NONCE);
    nonce.set(new Uint8Array(this.block, this.ivOffset, FIXED_IV), 0);
    return nonce;
  }

  encrypt(type: number, version: number, epoch: number, seq: number, plaintext: Buffer, cid?: Buffer): Buffer {
    const { algorithm, tagLength } = this.mode;
    const ctx = algorithm === 'aes-128-ccm' ? this.ccmContext() : undefined;
    if (ctx) {
      const out = Buffer.allocUnsafe(EXPLICIT_NONCE + plaintext.length + tagLength);
      this.sealFragment(ctx, type, version, epoch, seq, plaintext, out, 0, cid);
      return out;
    }
    const nonce = this.nonce();
    writeSeq(nonce, FIXED_IV, epoch, seq);
    const aad = additionalData(type, version, epoch, seq, plaintext.length, cid);
    const key = this.key();
    let ct: Buffer;
    let tag: Buffer;
    if (algorithm === 'aes-128-ccm') {
      const c = createCipheriv('aes-128-ccm', key, nonce, { authTagLength: tagLength });
      c.setAAD(aad, { plaintextLength: plaintext.length });
      ct = Buffer.concat([c.update(aeadInput(plaintext)), c.final()]);
      tag = c.getAuthTag();
    } else {
      const c = createCipheriv('aes-128-gcm', key, nonce, { authTagLength: tagLength });
      c.setAAD(aad);
      ct = Buffer.concat([c.update(plaintext), c.final()]);
      tag = c.getAuthTag();
    }
    return Buffer.concat([nonce.subarray(FIXED_IV), ct, tag]);
  }

  decrypt(type: number, version: number, epoch: number, seq: number, fragment: Buffer, cid?: Buffer): Buffer | undefined {
    const { algorithm, tagLength } = this.mode;
    if (fragment.length < EXPLICIT_NONCE + tagLength) return undefined;
    if (algorithm === 'aes-128-ccm') {
      const ctx = this.ccmContext();
      if (ctx) {
        // nonce and additional data in the context's scratch, ciphertext and tag read in place
        const nonce = ctx.nonce(epoch, seq);
        for (let i = 0; i < EXPLICIT_NONCE; i++) nonce[FIXED_IV + i] = fragment[i];
        const aad = contextAad(ctx, type, version, epoch, seq, fragment.length - EXPLICIT_NONCE - tagLength, cid);
        return ctx.openIn(nonce, aad, fragment, EXPLICIT_NONCE, fragment.length);
      }
    }
    const nonce = this.nonce();
    fragment.copy(nonce, FIXED_IV, 0, EXPLICIT_NONCE);
    const ct = fragment.subarray(EXPLICIT_NONCE, fragment.length - tagLength);
    const tag = fragment.subarray(fragment.length - tagLength);
    const aad = additionalData(type, version, epoch, seq, ct.length, cid);
    try {
      // OpenSSL compares the tag in constant time; a mismatch makes final (CCM: update) throw. (CcmContext compares
      // every tag byte without an early exit.)
      if (algorithm === 'aes-128-ccm') {
        const key = this.key();
        const d = createDecipheriv('aes-128-ccm', key, nonce, { authTagLength: tagLength });
        d.setAuthTag(tag);
        d.setAAD(aad, { plaintextLength: ct.length });
        const pt = d.update(aeadInput(ct));
        d.final();
        return pt;
      }
      const key = this.key();
      const d = createDecipheriv('aes-128-gcm', key, nonce, { authTagLength: tagLength });
      d.setAuthTag(tag);
      d.setAAD(aad);
      return Buffer.concat([d.update(ct), d.final()]);
    } catch {
      return undefined;
    }
  }
}

const BLOCK = 16;
const MAC_LEN = 32;

/**
 * AES-128-CBC with HMAC-SHA256, MAC-then-encrypt (RFC 5246 §6.2.3.2), explicit per-record IV.
 * Decryption checks padding and MAC without early exit and returns the same result for every failure
 * (Lucky Thirteen countermeasure: the MAC is always computed over the same total number of bytes).
 */
class CbcSha256Cipher implements RecordCipher {
  constructor(private readonly block: ArrayBuffer, private readonly keyOffset: number,
      private readonly macKeyOffset: number) {}

  private get key(): Uint8Array {
    return new Uint8Array(this.block, this.keyOffset, AES_KEY);
  }

  private get macKey(): Uint8Array {
    return new Uint8Array(this.block, this.macKeyOffset, MAC_LEN);
  }

  private mac(type: number, version: number, epoch: number, seq: number, content: Buffer, cid?: Buffer): Buffer {
    return createHmac('sha256', this.macKey)
      .update(additionalData(type, version, epoch, seq, content.length, cid))
      .update(content)
      .digest();
  }

  encrypt(type: number, version: number, epoch: number, seq: number, plaintext: Buffer, cid?: Buffer): Buffer {
    const mac = this.mac(type, version, epoch, seq, plaintext, cid);
    const padLen = (BLOCK - ((plaintext.length + MAC_LEN + 1) % BLOCK)) % BLOCK;
    const padding = Buffer.alloc(padLen + 1, padLen);
    const iv = randomBytes(BLOCK);
    const c = createCipheriv('aes-128-cbc', this.key, iv);
    c.setAutoPadding(false);
    return Buffer.concat([iv, c.update(Buffer.concat([plaintext, mac, padding])), c.final()]);
  }

  decrypt(type: number, version: number, epoch: number, seq: number, fragment: Buffer, cid?: Buffer): Buffer | undefined {
    // Length checks use public information only.
    if (fragment.length < BLOCK + 3 * BLOCK || fragment.length % BLOCK !== 0) return undefined;
    let p: Buffer;
    try {
      const d = createDecipheriv('aes-128-cbc', this.key, fragment.subarray(0, BLOCK));
      d.setAutoPadding(false);
      p = Buffer.concat([d.update(fragment.subarray(BLOCK)), d.final()]);
    } catch {
      return undefined;
    }
    const n = p.length;
    const padLen = p[n - 1];
    const maxPad = Math.min(255, n - MAC_LEN - 1);
    // bad = 1 if padLen > maxPad
    let bad = ((maxPad - padLen) >>> 31) & 1;
    for (let i = 1; i <= maxPad; i++) {
      const inPad = ((i - padLen - 1) >>> 31) & 1; // 1 when i <= padLen
      const diff = p[n - 1 - i] ^ padLen;
      bad |= inPad & (((diff | -diff) >>> 31) & 1);
    }
    const goodMask = bad - 1; // 0 when bad, all ones when good
    const pl = padLen & goodMask; // treat bad padding as zero-length padding (RFC 5246 §6.2.3.2)
    const contentLen = n - MAC_LEN - 1 - pl;
    const expected = this.mac(type, version, epoch, seq, p.subarray(0, contentLen), cid);
    // Hash the bytes the padding removed too, so the MAC work does not depend on the padding length.
    createHmac('sha256', this.macKey).update(p.subarray(0, pl)).digest();
    const macOk = timingSafeEqual(expected, p.subarray(contentLen, contentLen + MAC_LEN)) ? 1 : 0;
    if ((macOk & (1 - bad)) !== 1) return undefined;
    return Buffer.from(p.subarray(0, contentLen));
  }
}

export interface CipherPair { read: RecordCipher; write: RecordCipher }

/** A cipher over one direction's key, IV and MAC key (views into keys.block, whose ArrayBuffer it keeps). */
function makeCipher(suite: CipherSuiteInfo, keys: KeyMaterial, key: Buffer, iv: Buffer, macKey: Buffer,
    contexts?: CipherContexts): RecordCipher {
  const block = keys.block.buffer;
  if (!(block instanceof ArrayBuffer) || key.buffer !== block || iv.buffer !== block || macKey.buffer !== block ||
      key.length !== AES_KEY) {
    throw new TypeError('key material must be views into its key block');
  }
  switch (suite.kind) {
    case 'ccm8': return new AeadCipher(CCM_8, block, key.byteOffset, iv.byteOffset, contexts);
    case 'ccm': return new AeadCipher(CCM, block, key.byteOffset, iv.byteOffset, contexts);
    case 'gcm': return new AeadCipher(GCM, block, key.byteOffset, iv.byteOffset);
    default: return new CbcSha256Cipher(block, key.byteOffset, macKey.byteOffset);
  }
}

/**
 * Server side: read with the client write keys, write with the server write keys. With `contexts`, CCM ciphers of a
 * session in use keep long-lived AES contexts that `contexts` takes back when the session goes idle.
 */
export function serverCiphers(suite: CipherSuiteInfo, keys: KeyMaterial, contexts?: CipherContexts): CipherPair {
  return {
    read: makeCipher(suite, keys, keys.clientKey, keys.clientIv, keys.clientMacKey, contexts),
    write: makeCipher(suite, keys, keys.serverKey, keys.serverIv, keys.serverMacKey, contexts),
  };
}

/** Client side, used by tests and by anything dialling out with these suites. */
export function clientCiphers(suite: CipherSuiteInfo, keys: KeyMaterial): CipherPair {
  return {
    read: makeCipher(suite, keys, keys.serverKey, keys.serverIv, keys.serverMacKey),
    write: makeCipher(suite, keys, keys.clientKey, keys.clientIv, keys.clientMacKey),
  };
}
