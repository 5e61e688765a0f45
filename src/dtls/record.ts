/** DTLS 1.2 record layer framing (RFC 6347 §4.1). */

export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
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
 */
export function parseDatagram(data: Buffer): ParsedDatagram {
  const records: DtlsRecord[] = [];
  let malformed = 0;
  let off = 0;
  while (off < data.length) {
    if (data.length - off < RECORD_HEADER_LENGTH) {
      malformed++;
      break;
    }
    const type = data[off];
    const version = data.readUInt16BE(off + 1);
    const epoch = data.readUInt16BE(off + 3);
    const seq = data.readUIntBE(off + 5, 6);
    const length = data.readUInt16BE(off + 11);
    const start = off + RECORD_HEADER_LENGTH;
    if (!knownType(type) || (version !== DTLS_1_2 && version !== DTLS_1_0) || length > MAX_CIPHERTEXT ||
        start + length > data.length) {
      malformed++;
      break;
    }
    records.push({ type, version, epoch, seq, fragment: data.subarray(start, start + length) });
    off = start + length;
  }
  return { records, malformed };
}

export function writeSeq(buf: Buffer, offset: number, epoch: number, seq: number): void {
  buf.writeUInt16BE(epoch, offset);
  buf.writeUIntBE(seq, offset + 2, 6);
}

export function encodeRecord(type: number, version: number, epoch: number, seq: number, fragment: Buffer): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + fragment.length);
  out[0] = type;
  out.writeUInt16BE(version, 1);
  writeSeq(out, 3, epoch, seq);
  out.writeUInt16BE(fragment.length, 11);
  fragment.copy(out, RECORD_HEADER_LENGTH);
  return out;
}
