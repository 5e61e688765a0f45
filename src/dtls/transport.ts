import { Buffer } from 'node:buffer';
import type { LogFn } from '../channel';
import { ContentType, DTLS_1_2, type DtlsRecord, MAX_SEQUENCE, decodeInnerPlaintext, encodeInnerPlaintext, encodeRecord } from './record';
import type { RecordCipher } from './suites';

/** What the per-peer state machines need from the server that owns them. */
export interface PeerTransport {
  /** Writes one datagram; never throws. */
  send(data: Buffer, port: number, address: string): void;
  log: LogFn;
  /** A record was dropped (malformed, unauthenticated, replayed, unexpected). */
  dropped(address: string, port: number, reason: string): void;
  alertSent(): void;
  /** Takes back the key block of a session that ended (zeroes it); without it the session only zeroes the block. */
  releaseKeys?(buffer: ArrayBuffer, offset: number, length: number): void;
}

/** A message of a flight, kept in plaintext so it can be re-sent with fresh record sequence numbers (RFC 6347 §4.2.4). */
export interface FlightMessage {
  type: number;
  epoch: 0 | 1;
  payload: Buffer;
}

/** Outgoing record state: per-epoch sequence numbers (restarting at 0 in each epoch) and the epoch 1 cipher. */
export class RecordWriter {
  epoch0Seq: number;
  epoch1Seq = 0;
  cipher: RecordCipher | undefined;
  /**
   * Epoch 1 records are refused from this sequence number on (set when the state was exported); undefined = only the
   * sequence space limits them (no number boxed per writer).
   */
  epoch1Limit: number | undefined = undefined;
  /** The peer's connection ID (RFC 9146): when non-empty, epoch 1 records go out as tls12_cid carrying it. */
  writeCid: Buffer | undefined;

  constructor(initialEpoch0Seq = 0) {
    this.epoch0Seq = initialEpoch0Seq;
  }

  /** Encodes one record; returns undefined when the epoch has no key or its sequence space is exhausted. */
  record(type: number, epoch: 0 | 1, payload: Buffer): Buffer | undefined {
    if (epoch === 0) {
      if (this.epoch0Seq > MAX_SEQUENCE) return undefined;
      return encodeRecord(type, DTLS_1_2, 0, this.epoch0Seq++, payload);
    }
    if (!this.cipher || this.epoch1Seq > MAX_SEQUENCE ||
        (this.epoch1Limit !== undefined && this.epoch1Seq >= this.epoch1Limit)) return undefined;
    const seq = this.epoch1Seq++;
    const cid = this.writeCid;
    if (cid && cid.length > 0) {
      const inner = encodeInnerPlaintext(type, payload);
      return encodeRecord(ContentType.tls12_cid, DTLS_1_2, 1, seq,
        this.cipher.encrypt(ContentType.tls12_cid, DTLS_1_2, 1, seq, inner, cid), cid);
    }
    return this.cipher.sealRecord?.(type, DTLS_1_2, 1, seq, payload) ??
      encodeRecord(type, DTLS_1_2, 1, seq, this.cipher.encrypt(type, DTLS_1_2, 1, seq, payload));
  }

  /** All messages of a flight, each in its own record, in one datagram. */
  flight(messages: readonly FlightMessage[]): Buffer {
    const out: Buffer[] = [];
    for (const m of messages) {
      const r = this.record(m.type, m.epoch, m.payload);
      if (r) out.push(r);
    }
    return Buffer.concat(out);
  }
}

export { ContentType };

/**
 * Removes the protection of one epoch 1 record. With a read connection ID negotiated, only tls12_cid records carrying
 * exactly that CID are accepted (RFC 9146 §3) and the real content type comes out of the DTLSInnerPlaintext;
 * without one, tls12_cid records are refused. Returns undefined when the record does not authenticate.
 */
export function openRecord(cipher: RecordCipher, rec: DtlsRecord, readCid: Buffer | undefined):
    { type: number; plain: Buffer } | undefined {
  const cidMode = !!readCid && readCid.length > 0;
  if (rec.type === ContentType.tls12_cid) {
    if (!cidMode || !rec.cid || !rec.cid.equals(readCid)) return undefined;
    const inner = cipher.decrypt(rec.type, rec.version, rec.epoch, rec.seq, rec.fragment, rec.cid);
    if (!inner) return undefined;
    const decoded = decodeInnerPlaintext(inner);
    if (!decoded || decoded.type === ContentType.tls12_cid) return undefined;
    return { type: decoded.type, plain: decoded.content };
  }
  if (cidMode) return undefined;
  const plain = cipher.decrypt(rec.type, rec.version, rec.epoch, rec.seq, rec.fragment);
  return plain ? { type: rec.type, plain } : undefined;
}
