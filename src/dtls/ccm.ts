import { Buffer } from 'node:buffer';
import { type Cipher, createCipheriv } from 'node:crypto';
import { readSeq, writeSeq } from './record';

const BLOCK = 16;
/** DTLS 1.2 AEAD nonces are 12 bytes (RFC 6655 §3), so CCM's length field is L = 15 - 12 = 3 bytes. */
const NONCE = 12;
/** Length of a DTLS 1.2 record's additional data without a connection ID (RFC 6347 §4.1.2.1, RFC 5246 §6.2.3.3). */
const DTLS_AAD = 13;
const ZERO_IV = Buffer.alloc(BLOCK);
const NO_BYTES = Buffer.alloc(0);
/** Where the nonce's 48-bit DTLS sequence number starts (after the 4-byte IV and the 2-byte epoch). */
const SEQ_AT = 6;
const MAX_SEQ = 2 ** 48 - 1;
/**
 * Records whose key stream one AES call makes: a context's first batch, and the most a batch grows to (it doubles
 * each time the previous one was used up by the records that followed it; see keyStream). And the blocks kept for
 * each record (S_0 and 64 bytes of payload).
 */
const BATCH_MIN = 4;
const BATCH_MAX = 16;
const BATCH_BLOCKS = 5;

/**
 * Finalises a whole-block cipher without padding (nothing is pending, so nothing comes out), which frees its OpenSSL
 * context.
 */
function finish(c: Cipher): void {
  try {
    c.final();
  } catch {
    // already finalised: its OpenSSL context is gone
  }
}

/**
 * AES-128-CCM (NIST SP 800-38C, RFC 3610) for DTLS 1.2 records, over two long-lived OpenSSL AES contexts of one key:
 * an AES-CBC context computes the CBC-MAC and an AES-ECB context the CTR key stream, both in one call per record.
 * Node's `aes-128-ccm` cipher takes its nonce at creation, so it costs a new OpenSSL context (key schedule included)
 * per record; this does the same arithmetic with the block cipher in OpenSSL (AES-NI, constant time) and only XORs
 * and byte layout in JavaScript. It is checked byte for byte against Node's `aes-128-ccm` (test/dtls-ccm.test.ts).
 *
 * The CBC context is never re-keyed: its chaining value is the last block it returned, so each record's first block
 * is XORed with that value before it goes in, which makes the chain start from zero as CBC-MAC requires.
 * Plaintext of at most 2^24 - 1 bytes and additional data under 0xff00 bytes (DTLS records are far below both).
 */
export class CcmContext {
  private readonly cbc: Cipher;
  private readonly ecb: Cipher;
  /**
   * The CBC context's current chaining value (its last output block), copied out of AES's output buffer: that buffer
   * then dies young, where kept until the context's next record (a session's next read) it would outlive scavenges.
   */
  private readonly chain = Buffer.alloc(BLOCK);
  /** The chain value as four big-endian words. */
  private readonly chainWords = new DataView(this.chain.buffer, this.chain.byteOffset, BLOCK);
  /** The MAC input of the record being sealed or opened (the scratch's, for its size). */
  private macIn: Buffer = NO_BYTES;
  /** Counter blocks, then key stream, of a batch of records (see keyStream; made on first use). */
  private batch: Buffer | undefined;
  /** Where keyStream put the current key stream: the batch, or one longer record's own. */
  private ks: Buffer = NO_BYTES;
  /** The nonce prefix (fixed IV, epoch) of the batch's records, then the first sequence number and the count. */
  private ksIv = 0;
  private ksEpoch = 0;
  private ksFirst = -1;
  private ksCount = 0;
  /** The fixed IV of a DTLS nonce (its first 4 bytes), as a number. */
  private readonly fixedIv: number;
  /** Set on each use; the owner's idle sweep clears it (see CipherContexts). */
  used = true;

  /**
   * `scratch`: buffers for the MAC input, nonce and additional data, shared by the contexts of one owner (default: a
   * set of its own). `fixedIv`: the 4-byte implicit part of the DTLS nonces this context is used with (see nonce).
   */
  constructor(key: Uint8Array, private readonly tagLength: number, private readonly scratch: CcmScratch = new CcmScratch(),
      fixedIv?: Uint8Array) {
    this.cbc = createCipheriv('aes-128-cbc', key, ZERO_IV);
    this.cbc.setAutoPadding(false);
    this.ecb = createCipheriv('aes-128-ecb', key, null);
    this.ecb.setAutoPadding(false);
    this.fixedIv = fixedIv ? ivOf(fixedIv) : 0;
  }

  /**
   * The DTLS 1.2 AEAD nonce fixed IV ‖ epoch ‖ sequence number (RFC 6655 §3) in the scratch's nonce buffer: valid until
   * the next record of any context sharing the scratch.
   */
  nonce(epoch: number, seq: number): Buffer {
    const n = this.scratch.nonce;
    const iv = this.fixedIv;
    n[0] = iv >>> 24;
    n[1] = iv >>> 16;
    n[2] = iv >>> 8;
    n[3] = iv;
    writeSeq(n, 4, epoch, seq);
    return n;
  }

  /** The scratch's 13-byte buffer for a record's additional data (same lifetime as nonce's). */
  get aadScratch(): Buffer {
    return this.scratch.aad;
  }

  /** ciphertext ‖ tag of `plaintext`, written into `out` at `offset` (which must have room for both). */
  seal(nonce: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): void {
    this.used = true;
    const n = plaintext.length;
    const s0 = this.keyStream(nonce, n);
    const at = s0 + BLOCK;
    const ks = this.ks;
    const p0 = this.macLayout(nonce, aad, n);
    const b = this.macIn;
    // one pass: the plaintext into the MAC input, the ciphertext out (four bytes a turn, see macLayout)
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const p1 = plaintext[i];
      const p2 = plaintext[i + 1];
      const p3 = plaintext[i + 2];
      const p4 = plaintext[i + 3];
      b[p0 + i] = p1;
      b[p0 + i + 1] = p2;
      b[p0 + i + 2] = p3;
      b[p0 + i + 3] = p4;
      out[offset + i] = p1 ^ ks[at + i];
      out[offset + i + 1] = p2 ^ ks[at + i + 1];
      out[offset + i + 2] = p3 ^ ks[at + i + 2];
      out[offset + i + 3] = p4 ^ ks[at + i + 3];
    }
    for (; i < n; i++) {
      const p = plaintext[i];
      b[p0 + i] = p;
      out[offset + i] = p ^ ks[at + i];
    }
    const mac = this.macRun();
    for (let i = 0; i < this.tagLength; i++) out[offset + n + i] = mac[i] ^ ks[s0 + i];
  }

  /** The plaintext of `ciphertext`, or undefined when `tag` does not authenticate it (compared in constant time). */
  open(nonce: Buffer, aad: Buffer, ciphertext: Buffer, tag: Buffer): Buffer | undefined {
    if (tag.length !== this.tagLength) return undefined;
    const n = ciphertext.length;
    const joined = Buffer.allocUnsafe(n + tag.length);
    ciphertext.copy(joined, 0);
    tag.copy(joined, n);
    return this.openIn(nonce, aad, joined, 0, joined.length);
  }

  /**
   * open() over `data[start, end)` holding ciphertext ‖ tag (no views made of it); the plaintext is a new buffer.
   * Undefined when it does not authenticate or is shorter than the tag.
   */
  openIn(nonce: Buffer, aad: Buffer, data: Buffer, start: number, end: number): Buffer | undefined {
    this.used = true;
    const tagLength = this.tagLength;
    const n = end - start - tagLength;
    if (n < 0) return undefined;
    const s0 = this.keyStream(nonce, n);
    const at = s0 + BLOCK;
    const ks = this.ks;
    const p0 = this.macLayout(nonce, aad, n);
    const b = this.macIn;
    const plaintext = Buffer.allocUnsafe(n);
    // one pass: the plaintext out and into the MAC input (four bytes a turn, see macLayout)
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const p1 = data[start + i] ^ ks[at + i];
      const p2 = data[start + i + 1] ^ ks[at + i + 1];
      const p3 = data[start + i + 2] ^ ks[at + i + 2];
      const p4 = data[start + i + 3] ^ ks[at + i + 3];
      plaintext[i] = p1;
      plaintext[i + 1] = p2;
      plaintext[i + 2] = p3;
      plaintext[i + 3] = p4;
      b[p0 + i] = p1;
      b[p0 + i + 1] = p2;
      b[p0 + i + 2] = p3;
      b[p0 + i + 3] = p4;
    }
    for (; i < n; i++) {
      const p = data[start + i] ^ ks[at + i];
      plaintext[i] = p;
      b[p0 + i] = p;
    }
    const mac = this.macRun();
    let diff = 0;
    // every tag byte compared, no early exit
    for (let i = 0; i < tagLength; i++) diff |= mac[i] ^ ks[s0 + i] ^ data[start + n + i];
    if (diff !== 0) {
      plaintext.fill(0);
      return undefined;
    }
    return plaintext;
  }

  /**
   * Puts S_0 ‖ S_1 ‖ … (AES of the counter blocks A_i = flags(L - 1) ‖ nonce ‖ i, for i = 0 … ceil(n / 16)) into
   * `this.ks` and returns where S_0 starts. The counter blocks depend on the nonce only, and a DTLS nonce is
   * IV ‖ epoch ‖ sequence number with the sequence number counting up, so one AES call makes the key stream of the
   * next records of up to BATCH_BLOCKS blocks each; a record whose nonce is in that batch takes its own slice,
   * anything else (a longer record, a nonce out of the batch) is computed on its own or starts a new batch. A batch
   * starts with BATCH_MIN records and doubles up to BATCH_MAX while each one is used up and the next record follows
   * it: a busy session makes one AES call per 16 records, one that sends a record now and then wastes little.
   */
  private keyStream(nonce: Buffer, n: number): number {
    if (nonce.length !== NONCE) throw new RangeError('CCM nonce must be 12 bytes');
    const need = 1 + Math.ceil(n / BLOCK);
    const seq = readSeq(nonce, SEQ_AT);
    const first = this.ksFirst;
    if (need <= BATCH_BLOCKS && seq >= first && seq < first + this.ksCount && this.ksPrefixIs(nonce)) {
      return ((seq - first) * BATCH_BLOCKS * BLOCK) | 0; // small: | 0 keeps the callers' offsets int32
    }
    if (need > BATCH_BLOCKS) {
      const a = Buffer.alloc(need * BLOCK);
      counterBlocks(a, nonce, seq, 1, need);
      this.ks = this.encryptBlocks(a); // the batch (if any) is gone: ksCount below
      this.ksCount = 0;
      return 0;
    }
    // a new batch, computed in the context's own buffer and copied back into it (the AES output dies young)
    const follows = this.ksCount > 0 && seq === first + this.ksCount && this.ksPrefixIs(nonce);
    const size = follows ? Math.min(BATCH_MAX, this.ksCount * 2) : BATCH_MIN;
    const bytes = size * BATCH_BLOCKS * BLOCK;
    let store = this.batch;
    if (store === undefined || store.length < bytes) store = this.batch = Buffer.alloc(bytes);
    if (store.length > bytes) store = store.subarray(0, bytes);
    const count = Math.min(size, MAX_SEQ - seq + 1);
    counterBlocks(store, nonce, seq, count, BATCH_BLOCKS);
    store.set(this.encryptBlocks(store));
    this.ks = store;
    this.ksIv = ivOf(nonce);
    this.ksEpoch = epochOf(nonce);
    this.ksFirst = seq;
    this.ksCount = count;
    return 0;
  }

  /** AES of each 16-byte block of `a` (ECB). */
  private encryptBlocks(a: Buffer): Buffer {
    const out = this.ecb.update(a);
    if (out.length !== a.length) throw new Error('AES-ECB returned a partial key stream');
    return out;
  }

  private ksPrefixIs(nonce: Buffer): boolean {
    return ivOf(nonce) === this.ksIv && epochOf(nonce) === this.ksEpoch;
  }

  /**
   * Zeroes what the context keeps of key stream and MAC state and frees both OpenSSL contexts now (Node frees a
   * cipher's OpenSSL context when it is finalised; OpenSSL wipes the expanded key as it frees it). Its owner drops
   * it next; it cannot be used again. Left to the garbage collector, the OpenSSL contexts would be freed by the
   * finalisers of whichever major collection comes next: for the thousands a sweep releases at once, tens of
   * milliseconds inside that collection's pause.
   */
  wipe(): void {
    this.batch?.fill(0);
    this.ks.fill(0);
    this.ksCount = 0;
    this.chain.fill(0);
    this.macIn = NO_BYTES;
    finish(this.cbc);
    finish(this.ecb);
  }

  /**
   * Lays out the CBC-MAC input B_0 ‖ encoded AAD ‖ plaintext in `macIn` for `n` bytes of plaintext, each part
   * zero-padded to whole blocks, with B_0 already XORed with the chain value (see the class comment); the caller puts
   * the plaintext in at the returned offset, then calls macRun.
   */
  private macLayout(nonce: Buffer, aad: Buffer, n: number): number {
    const aLen = aad.length;
    if (n > 0xffffff || aLen >= 0xff00) throw new RangeError('CCM input too long');
    const aadBlocks = aLen === 0 ? 0 : Math.ceil((aLen + 2) / BLOCK);
    const p0 = (1 + aadBlocks) * BLOCK;
    const size = p0 + Math.ceil(n / BLOCK) * BLOCK;
    const b = (this.macIn = this.scratch.mac(size));
    const w = this.scratch.macWords(b);
    const c = this.chainWords;
    // B_0 = flags ‖ nonce ‖ 24-bit length, XORed with the chain value, as four big-endian words: optimised code
    // checks a buffer once per statement sequence, where a byte loop checks every buffer on every byte.
    const flags = (aLen > 0 ? 0x40 : 0) | (((this.tagLength - 2) / 2) << 3) | 2;
    w.setInt32(0, ((flags << 24) | (nonce[0] << 16) | (nonce[1] << 8) | nonce[2]) ^ c.getInt32(0));
    w.setInt32(4, ((nonce[3] << 24) | (nonce[4] << 16) | (nonce[5] << 8) | nonce[6]) ^ c.getInt32(4));
    w.setInt32(8, ((nonce[7] << 24) | (nonce[8] << 16) | (nonce[9] << 8) | nonce[10]) ^ c.getInt32(8));
    w.setInt32(12, ((nonce[11] << 24) | n) ^ c.getInt32(12));
    if (aLen === DTLS_AAD) {
      // a DTLS 1.2 record's additional data (no connection ID): its length, the 13 bytes, one byte of padding
      w.setInt32(16, (DTLS_AAD << 16) | (aad[0] << 8) | aad[1]);
      w.setInt32(20, (aad[2] << 24) | (aad[3] << 16) | (aad[4] << 8) | aad[5]);
      w.setInt32(24, (aad[6] << 24) | (aad[7] << 16) | (aad[8] << 8) | aad[9]);
      w.setInt32(28, (aad[10] << 24) | (aad[11] << 16) | (aad[12] << 8));
    } else if (aadBlocks > 0) {
      b[16] = aLen >>> 8;
      b[17] = aLen & 0xff;
      for (let j = 0; j < aLen; j++) b[18 + j] = aad[j];
      for (let j = 18 + aLen; j < p0; j++) b[j] = 0;
    }
    // the plaintext's last block zeroed whole (the caller writes the plaintext over its start): its padding
    for (let k = p0 < size ? size - BLOCK : size; k < size; k += 4) w.setInt32(k, 0);
    return p0;
  }

  /**
   * The CBC-MAC T (first tagLength bytes are used) of the input macLayout prepared; it is also the new chain value,
   * copied word by word (see macLayout).
   */
  private macRun(): Buffer {
    const b = this.macIn;
    const size = b.length;
    const c = this.cbc.update(b);
    if (c.length !== size) throw new Error('AES-CBC returned a partial block');
    const o = size - BLOCK;
    const words = this.chainWords;
    for (let k = 0; k < BLOCK; k += 4) {
      words.setInt32(k, (c[o + k] << 24) | (c[o + k + 1] << 16) | (c[o + k + 2] << 8) | c[o + k + 3]);
    }
    return this.chain;
  }
}

/** The first 4 bytes of a nonce (the fixed IV) as a number. */
function ivOf(nonce: Uint8Array): number {
  return ((nonce[0] << 24) | (nonce[1] << 16) | (nonce[2] << 8) | nonce[3]) >>> 0;
}

/** The epoch in a nonce (the 2 bytes before the sequence number). */
function epochOf(nonce: Uint8Array): number {
  return (nonce[SEQ_AT - 2] << 8) | nonce[SEQ_AT - 1];
}

/**
 * Buffers a CcmContext needs only during one call: the MAC input (one per size, every byte written on each use), the
 * nonce and the additional data of the record at hand. A record is sealed or opened in one synchronous call, so the
 * contexts of one owner (a DTLS server's CipherContexts) share one set: nothing per context, and warm in the cache.
 */
export class CcmScratch {
  readonly nonce = Buffer.alloc(NONCE);
  readonly aad = Buffer.alloc(13);
  private readonly macBySize: Buffer[] = [];
  private readonly wordsBySize: DataView[] = [];

  /** The MAC input buffer of `size` bytes (a multiple of 16). */
  mac(size: number): Buffer {
    const blocks = size / BLOCK;
    if (blocks > MAX_SHARED_MAC_BLOCKS) return Buffer.alloc(size);
    return (this.macBySize[blocks] ??= Buffer.alloc(size));
  }

  /** A DataView over `mac`, a buffer mac() returned (kept with it when it is the shared one). */
  macWords(mac: Buffer): DataView {
    const blocks = mac.length / BLOCK;
    if (this.macBySize[blocks] !== mac) return new DataView(mac.buffer, mac.byteOffset, mac.length);
    return (this.wordsBySize[blocks] ??= new DataView(mac.buffer, mac.byteOffset, mac.length));
  }

  /** Zeroes what the last records left here. */
  wipe(): void {
    this.nonce.fill(0);
    this.aad.fill(0);
    for (const b of this.macBySize) b?.fill(0);
  }
}

/** MAC inputs up to this many blocks (a record of ~1 KB) come from the shared scratch; longer ones are made per record. */
const MAX_SHARED_MAC_BLOCKS = 66;

/**
 * Writes the counter blocks of `count` records from sequence number `seq` on (`blocks` each) into `a`: per block
 * flags (L - 1 = 2) ‖ fixed IV ‖ epoch ‖ sequence number ‖ 24-bit block counter, as four big-endian 32-bit words.
 */
function counterBlocks(a: Buffer, nonce: Buffer, seq: number, count: number, blocks: number): void {
  const v = new DataView(a.buffer, a.byteOffset, a.length);
  const iv = ivOf(nonce);
  const w0 = (2 << 24) | (iv >>> 8);
  const ivLow = (iv & 0xff) << 24;
  const epoch = epochOf(nonce);
  for (let r = 0, o = 0; r < count; r++) {
    const s = seq + r;
    const hi = Math.floor(s / 0x100000000); // the top 16 of the 48 bits
    const lo = s >>> 0;
    const w1 = ivLow | (epoch << 8) | (hi >>> 8);
    const w2 = ((hi & 0xff) << 24) | (lo >>> 8);
    const w3 = (lo & 0xff) << 24;
    for (let i = 0; i < blocks; i++, o += BLOCK) {
      v.setInt32(o, w0);
      v.setInt32(o + 4, w1);
      v.setInt32(o + 8, w2);
      v.setInt32(o + 12, w3 | i);
    }
  }
}

/** The default period of CipherContexts' idle sweep (DtlsServer's cipherContextIdleMs). */
export const DEFAULT_CONTEXT_IDLE_MS = 60_000;

/** Idle contexts a sweep releases per turn of the event loop (see CipherContexts.sweep). */
const RELEASE_SLICE = 512;

/** Anything holding CcmContexts that a sweep may take away when unused. */
export interface ContextHolder {
  /** The holder's live context, if any. */
  readonly context: CcmContext | undefined;
  /** Drops the context (it is made again on the next use). */
  releaseContext(): void;
}

/**
 * The record ciphers of one DTLS server that hold a CcmContext (~3.3 KB of RSS each, nearly all OpenSSL's: two
 * contexts; a busy one's key-stream batch grows from 320 B to 1.3 KB). A cipher makes its context only once its
 * session is in use beyond the handshake and Register exchange; at most `max` ciphers hold one (DtlsServer's
 * maxCipherContexts), the others stay on the one-shot path; the sweep takes contexts back from ciphers unused for one
 * to two `idleMs` periods, so an idle fleet holds none. One per server instance.
 */
export class CipherContexts {
  private readonly live = new Set<ContextHolder>();
  /** Holders a sweep found idle, released RELEASE_SLICE per turn of the event loop. */
  private pending: ContextHolder[] = [];
  private releasing?: NodeJS.Immediate;
  private timer?: NodeJS.Timeout;
  /** The scratch buffers every context of this owner shares. */
  readonly scratch = new CcmScratch();

  constructor(private readonly idleMs = DEFAULT_CONTEXT_IDLE_MS, private readonly max = 32768) {}

  get size(): number {
    return this.live.size;
  }

  /**
   * Whether another holder may make a context (beyond `max`, ciphers stay on the one-shot path until a sweep); the
   * contexts a sweep is still releasing count until they are released.
   */
  get hasRoom(): boolean {
    return this.live.size + this.pending.length < this.max;
  }

  track(holder: ContextHolder): void {
    this.live.add(holder);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), this.idleMs);
      this.timer.unref();
    }
  }

  forget(holder: ContextHolder): void {
    this.live.delete(holder);
  }

  /**
   * Releases the contexts not used since the previous sweep: RELEASE_SLICE of them per turn of the event loop (each
   * frees two OpenSSL contexts, ~1.3 µs), so a fleet going quiet all at once does not stop the server for the whole
   * of it. A holder used again before its turn keeps its context and is tracked again.
   */
  sweep(): void {
    for (const h of this.live) {
      const ctx = h.context;
      if (ctx?.used) {
        ctx.used = false;
      } else {
        this.live.delete(h);
        this.pending.push(h);
      }
    }
    if (this.pending.length > 0 && !this.releasing) this.releasing = setImmediate(this.releaseSome);
    if (this.live.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Holders a sweep has taken out of the live set whose contexts are not released yet. */
  get releasePending(): number {
    return this.pending.length;
  }

  private readonly releaseSome = (): void => {
    this.releasing = undefined;
    const pending = this.pending;
    for (let n = 0; n < RELEASE_SLICE && pending.length > 0; n++) {
      const h = pending.pop() as ContextHolder;
      if (h.context?.used) this.track(h);
      else h.releaseContext();
    }
    if (pending.length > 0) this.releasing = setImmediate(this.releaseSome);
  };

  /** Releases every context and stops the sweep. */
  close(): void {
    for (const h of this.live) h.releaseContext();
    for (const h of this.pending) h.releaseContext();
    this.live.clear();
    this.pending = [];
    if (this.releasing) clearImmediate(this.releasing);
    this.releasing = undefined;
    this.scratch.wipe();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
