/** DTLS 1.2 record layer framing (RFC 6347 §4.1). */

import { Buffer } from 'node:buffer';

export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
  /** RFC 9146 §4: a protected record carrying a connection ID; the real type is inside the encrypted payload. */
  tls12_cid: 25,
} as const;

export const DTLS_1_0 = 0xfeff;
export const DTLS_1_2 = 0xfefd;

export const RECORD_HEADER_LENGTH = 13;
/** Plaintext limit 2^14 (RFC 5246 §6.2.1) plus the 2048 bytes of expansion allowed for protected records. */
export const MAX_PLAINTEXT = 16384;
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048;
/** Sequence numbers are 48-bit (RFC 6347 §4.1); 2^48 fits exactly in a JavaScript number. */
export const MAX_SEQUENCE = 2 ** 48 - 1;

export interface DtlsRecord {
  type: number;
  version: number;
  epoch: number;
  seq: number;
  /** Connection ID of a tls12_cid record (RFC 9146). */
  cid?: Buffer;
  /** Protected (or, in epoch 0, plain) payload: a view into the datagram. */
  fragment: Buffer;
}

export interface ParsedDatagram {
  records: DtlsRecord[];
  /** Number of records (or trailing garbage) that could not be framed. */
  malformed: number;
}

function knownType(t: number): boolean {
  return t >= ContentType.change_cipher_spec && t <= ContentType.application_data;
}

/**
 * Splits a datagram into records (§4.1.1: several records may share a datagram, none may span two).
 * A malformed header or a length running past the datagram ends parsing; whatever was framed before is kept.
 * `cidLength` is the length of the connection IDs this side issues (RFC 9146: the receiver knows it); 0 = tls12_cid
 * records are not accepted.
 */
export function parseDatagram(data: Buffer, cidLength = 0): ParsedDatagram {
  const records: DtlsRecord[] = [];
  let malformed = 0;
  let off = 0;
  while (off < data.length) {
    const rec = recordAt(data, off, cidLength);
    if (!rec) {
      malformed++;
      break;
    }
    records.push(rec);
    off = recordEnd(data, rec);
  }
  return { records, malformed };
}

/**
 * The record whose header starts at `off` in `data` (see parseDatagram), or undefined when the header is malformed,
 * cut short, or its length runs past the datagram.
 */
export function recordAt(data: Buffer, off: number, cidLength: number): DtlsRecord | undefined {
  const total = data.length;
  // header fields read byte by byte: Buffer's read methods are looked up on a prototype per call
  if (total - off < RECORD_HEADER_LENGTH) return undefined;
  const type = data[off];
  const isCid = type === ContentType.tls12_cid && cidLength > 0;
  const version = (data[off + 1] << 8) | data[off + 2];
  const cidLen = isCid ? cidLength : 0;
  if (total - off < RECORD_HEADER_LENGTH + cidLen) return undefined;
  const length = (data[off + 11 + cidLen] << 8) | data[off + 12 + cidLen];
  const start = off + RECORD_HEADER_LENGTH + cidLen;
  if ((!knownType(type) && !isCid) || (version !== DTLS_1_2 && version !== DTLS_1_0) || length > MAX_CIPHERTEXT ||
      start + length > total) {
    return undefined;
  }
  // every field in the literal: one object shape for records with and without a connection ID
  return {
    type, version, epoch: (data[off + 3] << 8) | data[off + 4], seq: readSeq(data, off + 5),
    cid: isCid ? data.subarray(off + 11, off + 11 + cidLen) : undefined, fragment: data.subarray(start, start + length),
  };
}

/** Where the record `rec` (framed by recordAt from `data`) ends in `data`. */
export function recordEnd(data: Buffer, rec: DtlsRecord): number {
  return rec.fragment.byteOffset - data.byteOffset + rec.fragment.length;
}

/** The 48-bit big-endian sequence number at `offset`. */
export function readSeq(buf: Uint8Array, offset: number): number {
  const lo = ((buf[offset + 2] << 24) | (buf[offset + 3] << 16) | (buf[offset + 4] << 8) | buf[offset + 5]) >>> 0;
  return ((buf[offset] << 8) | buf[offset + 1]) * 0x100000000 + lo;
}

/** Writes the 16-bit epoch and 48-bit sequence number (8 bytes, big-endian) at `offset`. */
export function writeSeq(buf: Uint8Array, offset: number, epoch: number, seq: number): void {
  const hi = Math.floor(seq / 0x100000000);
  const lo = seq >>> 0;
  buf[offset] = epoch >>> 8;
  buf[offset + 1] = epoch;
  buf[offset + 2] = hi >>> 8;
  buf[offset + 3] = hi;
  buf[offset + 4] = lo >>> 24;
  buf[offset + 5] = lo >>> 16;
  buf[offset + 6] = lo >>> 8;
  buf[offset + 7] = lo;
}

export function encodeRecord(type: number, version: number, epoch: number, seq: number, fragment: Buffer,
    cid?: Buffer): Buffer {
  const cidLen = cid ? cid.length : 0;
  const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + cidLen + fragment.length);
  out[0] = type;
  out.writeUInt16BE(version, 1);
  writeSeq(out, 3, epoch, seq);
  if (cid) cid.copy(out, 11);
  out.writeUInt16BE(fragment.length, 11 + cidLen);
  fragment.copy(out, RECORD_HEADER_LENGTH + cidLen);
  return out;
}

/** DTLSInnerPlaintext (RFC 9146 §4): content ‖ real type ‖ zero padding. */
export function encodeInnerPlaintext(type: number, content: Buffer): Buffer {
  const out = Buffer.allocUnsafe(content.length + 1);
  content.copy(out, 0);
  out[content.length] = type;
  return out;
}

/** Splits a DTLSInnerPlaintext; undefined when it holds no non-zero type byte. */
export function decodeInnerPlaintext(inner: Buffer): { type: number; content: Buffer } | undefined {
  let i = inner.length - 1;
  while (i >= 0 && inner[i] === 0) i--;
  if (i < 0) return undefined;
  return { type: inner[i], content: inner.subarray(0, i) };
}
