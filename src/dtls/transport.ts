import type { LogFn } from '../channel';
import { ContentType, DTLS_1_2, MAX_SEQUENCE, encodeRecord } from './record';
import type { RecordCipher } from './suites';

/** What the per-peer state machines need from the server that owns them. */
export interface PeerTransport {
  /** Writes one datagram; never throws. */
  send(data: Buffer, port: number, address: string): void;
  log: LogFn;
  /** A record was dropped (malformed, unauthenticated, replayed, unexpected). */
  dropped(address: string, port: number, reason: string): void;
  alertSent(): void;
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

  constructor(initialEpoch0Seq = 0) {
    this.epoch0Seq = initialEpoch0Seq;
  }

  /** Encodes one record; returns undefined when the epoch has no key or its sequence space is exhausted. */
  record(type: number, epoch: 0 | 1, payload: Buffer): Buffer | undefined {
    if (epoch === 0) {
      if (this.epoch0Seq > MAX_SEQUENCE) return undefined;
      return encodeRecord(type, DTLS_1_2, 0, this.epoch0Seq++, payload);
    }
    if (!this.cipher || this.epoch1Seq > MAX_SEQUENCE) return undefined;
    const seq = this.epoch1Seq++;
    return encodeRecord(type, DTLS_1_2, 1, seq, this.cipher.encrypt(type, DTLS_1_2, 1, seq, payload));
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
