/** DTLS 1.2 handshake messages (RFC 6347 §4.2.2, §4.3.2; RFC 5246 §7.4; RFC 4279 §2). */

import { Buffer } from 'node:buffer';

export const HandshakeType = {
  hello_request: 0,
  client_hello: 1,
  server_hello: 2,
  hello_verify_request: 3,
  certificate: 11,
  server_key_exchange: 12,
  certificate_request: 13,
  server_hello_done: 14,
  certificate_verify: 15,
  client_key_exchange: 16,
  finished: 20,
} as const;

export const ExtensionType = {
  supported_groups: 10,
  ec_point_formats: 11,
  signature_algorithms: 13,
  client_certificate_type: 19,
  server_certificate_type: 20,
  encrypt_then_mac: 22,
  extended_master_secret: 23,
  session_ticket: 35,
  connection_id: 54,
  renegotiation_info: 0xff01,
} as const;

/** TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3). */
export const EMPTY_RENEGOTIATION_INFO_SCSV = 0x00ff;

export const HANDSHAKE_HEADER_LENGTH = 12;
/** Upper bound for any handshake message we are willing to reassemble. */
export const MAX_HANDSHAKE_MESSAGE = 16384;

export interface HandshakeFragment {
  msgType: number;
  length: number;
  messageSeq: number;
  fragmentOffset: number;
  body: Buffer;
}

export class DecodeError extends Error {}

/** Splits a handshake record into fragments. Returns undefined when the framing is invalid. */
export function parseHandshakeFragments(data: Buffer): HandshakeFragment[] | undefined {
  const out: HandshakeFragment[] = [];
  let off = 0;
  while (off < data.length) {
    if (data.length - off < HANDSHAKE_HEADER_LENGTH) return undefined;
    const msgType = data[off];
    const length = data.readUIntBE(off + 1, 3);
    const messageSeq = data.readUInt16BE(off + 4);
    const fragmentOffset = data.readUIntBE(off + 6, 3);
    const fragmentLength = data.readUIntBE(off + 9, 3);
    const start = off + HANDSHAKE_HEADER_LENGTH;
    if (start + fragmentLength > data.length) return undefined;
    if (fragmentOffset + fragmentLength > length || length > MAX_HANDSHAKE_MESSAGE) return undefined;
    out.push({ msgType, length, messageSeq, fragmentOffset, body: data.subarray(start, start + fragmentLength) });
    off = start + fragmentLength;
  }
  return out;
}

export function isComplete(f: HandshakeFragment): boolean {
  return f.fragmentOffset === 0 && f.body.length === f.length;
}

/** A whole handshake message with its 12-byte header, as covered by the handshake hash (§4.2.6). */
export function encodeHandshake(msgType: number, messageSeq: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HANDSHAKE_HEADER_LENGTH + body.length);
  out[0] = msgType;
  out.writeUIntBE(body.length, 1, 3);
  out.writeUInt16BE(messageSeq, 4);
  out.writeUIntBE(0, 6, 3);
  out.writeUIntBE(body.length, 9, 3);
  body.copy(out, HANDSHAKE_HEADER_LENGTH);
  return out;
}

/** Bounds-checked reader; every overrun throws DecodeError, caught by the caller. */
class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  get remaining(): number { return this.buf.length - this.off; }
  u8(): number { this.need(1); return this.buf[this.off++]; }
  u16(): number { this.need(2); const v = this.buf.readUInt16BE(this.off); this.off += 2; return v; }
  bytes(n: number): Buffer { this.need(n); const v = this.buf.subarray(this.off, this.off + n); this.off += n; return v; }
  vec8(): Buffer { return this.bytes(this.u8()); }
  vec16(): Buffer { return this.bytes(this.u16()); }
  private need(n: number): void { if (this.off + n > this.buf.length) throw new DecodeError('truncated'); }
}

export interface Extension { type: number; data: Buffer }

export interface ClientHello {
  clientVersion: number;
  random: Buffer;
  sessionId: Buffer;
  cookie: Buffer;
  cipherSuites: number[];
  /** Raw cipher_suites vector body, used in the cookie MAC. */
  cipherSuitesRaw: Buffer;
  compressionMethods: Buffer;
  extensions: Extension[];
}

/** ClientHello (RFC 6347 §4.2.1 adds the cookie after session_id). Throws DecodeError. */
export function decodeClientHello(body: Buffer): ClientHello {
  const r = new Reader(body);
  const clientVersion = r.u16();
  const random = r.bytes(32);
  const sessionId = r.vec8();
  if (sessionId.length > 32) throw new DecodeError('session_id too long');
  const cookie = r.vec8();
  const cipherSuitesRaw = r.vec16();
  if (cipherSuitesRaw.length < 2 || cipherSuitesRaw.length % 2 !== 0) throw new DecodeError('bad cipher_suites');
  const cipherSuites: number[] = [];
  for (let i = 0; i < cipherSuitesRaw.length; i += 2) cipherSuites.push(cipherSuitesRaw.readUInt16BE(i));
  const compressionMethods = r.vec8();
  if (compressionMethods.length < 1) throw new DecodeError('no compression methods');
  const extensions: Extension[] = [];
  if (r.remaining > 0) {
    const ext = new Reader(r.vec16());
    const seen = new Set<number>();
    while (ext.remaining > 0) {
      const type = ext.u16();
      const data = ext.vec16();
      if (seen.has(type)) throw new DecodeError('duplicate extension');
      seen.add(type);
      extensions.push({ type, data });
    }
    if (r.remaining !== 0) throw new DecodeError('trailing bytes');
  }
  return { clientVersion, random, sessionId, cookie, cipherSuites, cipherSuitesRaw, compressionMethods, extensions };
}

export function encodeHelloVerifyRequest(serverVersion: number, cookie: Buffer): Buffer {
  const out = Buffer.allocUnsafe(3 + cookie.length);
  out.writeUInt16BE(serverVersion, 0);
  out[2] = cookie.length;
  cookie.copy(out, 3);
  return out;
}

export interface ServerHello {
  serverVersion: number;
  random: Buffer;
  sessionId: Buffer;
  cipherSuite: number;
  extensions: Extension[];
}

export function encodeServerHello(h: ServerHello): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.allocUnsafe(2);
  head.writeUInt16BE(h.serverVersion, 0);
  parts.push(head, h.random, Buffer.from([h.sessionId.length]), h.sessionId);
  const tail = Buffer.allocUnsafe(3);
  tail.writeUInt16BE(h.cipherSuite, 0);
  tail[2] = 0; // compression: null
  parts.push(tail);
  if (h.extensions.length > 0) {
    const exts: Buffer[] = [];
    for (const e of h.extensions) {
      const eh = Buffer.allocUnsafe(4);
      eh.writeUInt16BE(e.type, 0);
      eh.writeUInt16BE(e.data.length, 2);
      exts.push(eh, e.data);
    }
    const body = Buffer.concat(exts);
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(body.length, 0);
    parts.push(len, body);
  }
  return Buffer.concat(parts);
}

/** connection_id extension body (RFC 9146 §3): opaque cid<0..2^8-1>. Throws DecodeError. */
export function decodeConnectionIdExtension(data: Buffer): Buffer {
  const r = new Reader(data);
  const cid = r.vec8();
  if (r.remaining !== 0) throw new DecodeError('trailing bytes in connection_id');
  return cid;
}

/** PSK ClientKeyExchange (RFC 4279 §2): opaque psk_identity<0..2^16-1>. Throws DecodeError. */
export function decodePskClientKeyExchange(body: Buffer): Buffer {
  const r = new Reader(body);
  const identity = r.vec16();
  if (r.remaining !== 0) throw new DecodeError('trailing bytes');
  return identity;
}

/**
 * Reassembles one handshake message from fragments that may overlap, repeat or arrive out of order
 * (RFC 6347 §4.2.3). Memory is bounded by MAX_HANDSHAKE_MESSAGE.
 */
export class MessageAssembler {
  readonly body: Buffer;
  private readonly filled: Uint8Array;
  private missing: number;

  constructor(readonly msgType: number, readonly length: number, readonly messageSeq: number) {
    this.body = Buffer.alloc(length);
    this.filled = new Uint8Array(length);
    this.missing = length;
  }

  /** Returns false when the fragment contradicts the message header. */
  add(f: HandshakeFragment): boolean {
    if (f.msgType !== this.msgType || f.length !== this.length || f.messageSeq !== this.messageSeq) return false;
    const end = f.fragmentOffset + f.body.length;
    for (let i = f.fragmentOffset; i < end; i++) {
      if (this.filled[i] === 0) {
        this.filled[i] = 1;
        this.missing--;
      }
    }
    f.body.copy(this.body, f.fragmentOffset);
    return true;
  }

  get complete(): boolean {
    return this.missing === 0;
  }
}
