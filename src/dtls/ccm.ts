import { type Cipher, createCipheriv } from 'node:crypto';

const BLOCK = 16;
/** DTLS 1.2 AEAD nonces are 12 bytes (RFC 6655 §3), so CCM's length field is L = 15 - 12 = 3 bytes. */
const NONCE = 12;
const ZERO_IV = Buffer.alloc(BLOCK);

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
  /** The CBC context's current chaining value (its last output block). */
  private readonly chain = Buffer.alloc(BLOCK);
  /** Scratch for the counter blocks and the MAC input of a record (grown on need; only the AES outputs are new). */
  private ctr: Buffer = Buffer.alloc(0);
  private macIn: Buffer = Buffer.alloc(0);
  private readonly expected: Buffer;
  /** Scratch the record layer builds a record's nonce and additional data in (used synchronously, one record at a time). */
  readonly nonceScratch = Buffer.alloc(NONCE);
  readonly aadScratch = Buffer.alloc(13);
  /** Set on each use; the owner's idle sweep clears it (see CipherContexts). */
  used = true;

  constructor(key: Uint8Array, private readonly tagLength: number) {
    this.cbc = createCipheriv('aes-128-cbc', key, ZERO_IV);
    this.cbc.setAutoPadding(false);
    this.ecb = createCipheriv('aes-128-ecb', key, null);
    this.ecb.setAutoPadding(false);
    this.expected = Buffer.alloc(tagLength);
  }

  /** ciphertext ‖ tag of `plaintext`, written into `out` at `offset` (which must have room for both). */
  seal(nonce: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer, offset: number): void {
    this.used = true;
    const n = plaintext.length;
    const ks = this.keyStream(nonce, n);
    for (let i = 0; i < n; i++) out[offset + i] = plaintext[i] ^ ks[BLOCK + i];
    const mac = this.mac(nonce, aad, plaintext, 0, n);
    for (let i = 0; i < this.tagLength; i++) out[offset + n + i] = mac[i] ^ ks[i];
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
    const ks = this.keyStream(nonce, n);
    const plaintext = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) plaintext[i] = data[start + i] ^ ks[BLOCK + i];
    const mac = this.mac(nonce, aad, plaintext, 0, n);
    const expected = this.expected;
    let diff = 0;
    for (let i = 0; i < tagLength; i++) {
      expected[i] = mac[i] ^ ks[i];
      diff |= expected[i] ^ data[start + n + i]; // every byte compared, no early exit
    }
    if (diff !== 0) {
      plaintext.fill(0);
      return undefined;
    }
    return plaintext;
  }

  /** S_0 ‖ S_1 ‖ … : AES of the counter blocks A_i = flags(L - 1) ‖ nonce ‖ i, for i = 0 … ceil(n / 16). */
  private keyStream(nonce: Buffer, n: number): Buffer {
    if (nonce.length !== NONCE) throw new RangeError('CCM nonce must be 12 bytes');
    const blocks = 1 + Math.ceil(n / BLOCK);
    const a = this.ctr.length === blocks * BLOCK ? this.ctr : (this.ctr = Buffer.alloc(blocks * BLOCK));
    for (let i = 0, o = 0; i < blocks; i++, o += BLOCK) {
      a[o] = 2; // L - 1
      for (let j = 0; j < NONCE; j++) a[o + 1 + j] = nonce[j];
      a[o + 13] = i >>> 16;
      a[o + 14] = (i >>> 8) & 0xff;
      a[o + 15] = i & 0xff;
    }
    const ks = this.ecb.update(a);
    if (ks.length !== a.length) throw new Error('AES-ECB returned a partial key stream');
    return ks;
  }

  /** The CBC-MAC T (first tagLength bytes are used) over B_0 ‖ encoded AAD ‖ plaintext[from, to), each zero-padded. */
  private mac(nonce: Buffer, aad: Buffer, plaintext: Buffer, from: number, to: number): Buffer {
    const n = to - from;
    if (n > 0xffffff || aad.length >= 0xff00) throw new RangeError('CCM input too long');
    const aadBlocks = aad.length === 0 ? 0 : Math.ceil((aad.length + 2) / BLOCK);
    const pBlocks = Math.ceil(n / BLOCK);
    const size = (1 + aadBlocks + pBlocks) * BLOCK;
    const b = this.macIn.length === size ? this.macIn.fill(0) : (this.macIn = Buffer.alloc(size)); // zero padding
    b[0] = (aad.length > 0 ? 0x40 : 0) | (((this.tagLength - 2) / 2) << 3) | 2;
    for (let j = 0; j < NONCE; j++) b[1 + j] = nonce[j];
    b[13] = n >>> 16;
    b[14] = (n >>> 8) & 0xff;
    b[15] = n & 0xff;
    if (aadBlocks > 0) {
      b[16] = aad.length >>> 8;
      b[17] = aad.length & 0xff;
      for (let j = 0; j < aad.length; j++) b[18 + j] = aad[j];
    }
    const p0 = (1 + aadBlocks) * BLOCK;
    for (let j = 0; j < n; j++) b[p0 + j] = plaintext[from + j];
    const chain = this.chain;
    for (let i = 0; i < BLOCK; i++) b[i] ^= chain[i];
    const c = this.cbc.update(b);
    if (c.length !== size) throw new Error('AES-CBC returned a partial block');
    for (let i = 0, o = size - BLOCK; i < BLOCK; i++) chain[i] = c[o + i];
    return chain;
  }
}

/** Anything holding CcmContexts that a sweep may take away when unused. */
export interface ContextHolder {
  /** The holder's live context, if any. */
  readonly context: CcmContext | undefined;
  /** Drops the context (it is made again on the next use). */
  releaseContext(): void;
}

/**
 * The record ciphers of one DTLS server that hold a CcmContext (~3.3 KB of RSS each, nearly all OpenSSL's: two
 * contexts). A cipher makes its context only once its session is in use beyond the handshake and Register exchange;
 * at most `max` ciphers hold one (DtlsServer's maxCipherContexts), the others stay on the one-shot path; the sweep
 * takes contexts back from ciphers unused for one to two `idleMs` periods, so an idle fleet holds none. One per
 * server instance.
 */
export class CipherContexts {
  private readonly live = new Set<ContextHolder>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly idleMs = 10_000, private readonly max = 32768) {}

  get size(): number {
    return this.live.size;
  }

  /** Whether another holder may make a context (beyond `max`, ciphers stay on the one-shot path until a sweep). */
  get hasRoom(): boolean {
    return this.live.size < this.max;
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

  /** Releases the contexts not used since the previous sweep. */
  sweep(): void {
    for (const h of this.live) {
      const ctx = h.context;
      if (ctx?.used) {
        ctx.used = false;
      } else {
        h.releaseContext();
        this.live.delete(h);
      }
    }
    if (this.live.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Releases every context and stops the sweep. */
  close(): void {
    for (const h of this.live) h.releaseContext();
    this.live.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
