import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { prf } from './prf';
import { writeSeq } from './record';

export type CipherSuiteName = 'TLS_PSK_WITH_AES_128_CCM_8' | 'TLS_PSK_WITH_AES_128_CBC_SHA256';

export interface CipherSuiteInfo {
  id: number;
  name: CipherSuiteName;
  kind: 'ccm8' | 'cbc-sha256';
  macKeyLength: number;
  encKeyLength: number;
  fixedIvLength: number;
}

/** RFC 6655 §4 (CCM_8) and RFC 5487 §3.2 (CBC_SHA256); both use the SHA-256 PRF. */
export const CIPHER_SUITES: Readonly<Record<CipherSuiteName, CipherSuiteInfo>> = {
  TLS_PSK_WITH_AES_128_CCM_8: {
    id: 0xc0a8, name: 'TLS_PSK_WITH_AES_128_CCM_8', kind: 'ccm8', macKeyLength: 0, encKeyLength: 16, fixedIvLength: 4,
  },
  TLS_PSK_WITH_AES_128_CBC_SHA256: {
    id: 0x00ae, name: 'TLS_PSK_WITH_AES_128_CBC_SHA256', kind: 'cbc-sha256', macKeyLength: 32, encKeyLength: 16,
    fixedIvLength: 0,
  },
};

export const DEFAULT_SUITES: CipherSuiteName[] = ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_CBC_SHA256'];

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
}

/** key_block = PRF(master_secret, "key expansion", server_random + client_random) (RFC 5246 §6.3). */
export function deriveKeys(suite: CipherSuiteInfo, master: Buffer, clientRandom: Buffer, serverRandom: Buffer): KeyMaterial {
  const m = suite.macKeyLength;
  const k = suite.encKeyLength;
  const v = suite.fixedIvLength;
  const block = prf(master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), 2 * (m + k + v));
  let off = 0;
  const take = (n: number): Buffer => {
    const b = Buffer.from(block.subarray(off, off + n));
    off += n;
    return b;
  };
  const clientMacKey = take(m);
  const serverMacKey = take(m);
  const clientKey = take(k);
  const serverKey = take(k);
  const clientIv = take(v);
  const serverIv = take(v);
  block.fill(0);
  return { clientMacKey, serverMacKey, clientKey, serverKey, clientIv, serverIv };
}

/** One direction of record protection. */
export interface RecordCipher {
  encrypt(type: number, version: number, epoch: number, seq: number, plaintext: Buffer): Buffer;
  /** Returns the plaintext, or undefined when the record does not authenticate. Never throws. */
  decrypt(type: number, version: number, epoch: number, seq: number, fragment: Buffer): Buffer | undefined;
}

/** seq_num(8) ‖ type ‖ version ‖ length: the AEAD additional data and the CBC MAC header (RFC 5246 §6.2.3). */
function recordHeader(type: number, version: number, epoch: number, seq: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(13);
  writeSeq(h, 0, epoch, seq);
  h[8] = type;
  h.writeUInt16BE(version, 9);
  h.writeUInt16BE(length, 11);
  return h;
}

const CCM8_TAG = 8;
const EXPLICIT_NONCE = 8;

/**
 * Node skips the cipher update for a zero-length buffer without backing storage, after which CCM computes no tag
 * (encryption fails, and decryption would not check the tag). Always hand it a view into real memory.
 */
function ccmInput(b: Buffer): Buffer {
  return b.length === 0 ? Buffer.alloc(1).subarray(0, 0) : b;
}

/** AES-128-CCM-8 (RFC 6655 §3, RFC 5246 §6.2.3.3): nonce = fixed IV (4) ‖ explicit nonce (8). */
class Ccm8Cipher implements RecordCipher {
  constructor(private readonly key: Buffer, private readonly fixedIv: Buffer) {}

  encrypt(type: number, version: number, epoch: number, seq: number, plaintext: Buffer): Buffer {
    const explicit = Buffer.allocUnsafe(EXPLICIT_NONCE);
    writeSeq(explicit, 0, epoch, seq);
    const nonce = Buffer.concat([this.fixedIv, explicit]);
    const c = createCipheriv('aes-128-ccm', this.key, nonce, { authTagLength: CCM8_TAG });
    c.setAAD(recordHeader(type, version, epoch, seq, plaintext.length), { plaintextLength: plaintext.length });
    const ct = Buffer.concat([c.update(ccmInput(plaintext)), c.final()]);
    return Buffer.concat([explicit, ct, c.getAuthTag()]);
  }

  decrypt(type: number, version: number, epoch: number, seq: number, fragment: Buffer): Buffer | undefined {
    if (fragment.length < EXPLICIT_NONCE + CCM8_TAG) return undefined;
    const nonce = Buffer.concat([this.fixedIv, fragment.subarray(0, EXPLICIT_NONCE)]);
    const ct = fragment.subarray(EXPLICIT_NONCE, fragment.length - CCM8_TAG);
    const tag = fragment.subarray(fragment.length - CCM8_TAG);
    try {
      const d = createDecipheriv('aes-128-ccm', this.key, nonce, { authTagLength: CCM8_TAG });
      d.setAuthTag(tag);
      d.setAAD(recordHeader(type, version, epoch, seq, ct.length), { plaintextLength: ct.length });
      // OpenSSL compares the CCM tag in constant time; a mismatch makes update/final throw.
      const pt = d.update(ccmInput(ct));
      d.final();
      return pt;
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
  constructor(private readonly key: Buffer, private readonly macKey: Buffer) {}

  private mac(type: number, version: number, epoch: number, seq: number, content: Buffer): Buffer {
    return createHmac('sha256', this.macKey)
      .update(recordHeader(type, version, epoch, seq, content.length))
      .update(content)
      .digest();
  }

  encrypt(type: number, version: number, epoch: number, seq: number, plaintext: Buffer): Buffer {
    const mac = this.mac(type, version, epoch, seq, plaintext);
    const padLen = (BLOCK - ((plaintext.length + MAC_LEN + 1) % BLOCK)) % BLOCK;
    const padding = Buffer.alloc(padLen + 1, padLen);
    const iv = randomBytes(BLOCK);
    const c = createCipheriv('aes-128-cbc', this.key, iv);
    c.setAutoPadding(false);
    return Buffer.concat([iv, c.update(Buffer.concat([plaintext, mac, padding])), c.final()]);
  }

  decrypt(type: number, version: number, epoch: number, seq: number, fragment: Buffer): Buffer | undefined {
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
    const expected = this.mac(type, version, epoch, seq, p.subarray(0, contentLen));
    // Hash the bytes the padding removed too, so the MAC work does not depend on the padding length.
    createHmac('sha256', this.macKey).update(p.subarray(0, pl)).digest();
    const macOk = timingSafeEqual(expected, p.subarray(contentLen, contentLen + MAC_LEN)) ? 1 : 0;
    if ((macOk & (1 - bad)) !== 1) return undefined;
    return Buffer.from(p.subarray(0, contentLen));
  }
}

export interface CipherPair { read: RecordCipher; write: RecordCipher }

/** Server side: read with the client write keys, write with the server write keys. */
export function serverCiphers(suite: CipherSuiteInfo, keys: KeyMaterial): CipherPair {
  if (suite.kind === 'ccm8') {
    return { read: new Ccm8Cipher(keys.clientKey, keys.clientIv), write: new Ccm8Cipher(keys.serverKey, keys.serverIv) };
  }
  return {
    read: new CbcSha256Cipher(keys.clientKey, keys.clientMacKey),
    write: new CbcSha256Cipher(keys.serverKey, keys.serverMacKey),
  };
}

/** Client side, used by tests and by anything dialling out with these suites. */
export function clientCiphers(suite: CipherSuiteInfo, keys: KeyMaterial): CipherPair {
  if (suite.kind === 'ccm8') {
    return { read: new Ccm8Cipher(keys.serverKey, keys.serverIv), write: new Ccm8Cipher(keys.clientKey, keys.clientIv) };
  }
  return {
    read: new CbcSha256Cipher(keys.serverKey, keys.serverMacKey),
    write: new CbcSha256Cipher(keys.clientKey, keys.clientMacKey),
  };
}
