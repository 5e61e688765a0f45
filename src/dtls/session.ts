import { EventEmitter } from 'node:events';
import type { Channel } from '../channel';
import { AlertDescription, AlertLevel, alertName, encodeAlert } from './alerts';
import { HandshakeType, parseHandshakeFragments } from './handshake';
import { ContentType, type DtlsRecord, MAX_PLAINTEXT } from './record';
import { ReplayWindow } from './replay';
import type { CipherPair, CipherSuiteName } from './suites';
import { type FlightMessage, type PeerTransport, RecordWriter } from './transport';

export type SessionCloseReason = 'close_notify' | 'closed' | 'replaced' | 'server_closed' | 'fatal_alert';

/** Everything a completed handshake hands to the established session. */
export interface SessionInit {
  address: string;
  port: number;
  identity: string;
  cipherSuite: CipherSuiteName;
  ciphers: CipherPair;
  writer: RecordWriter;
  /** Epoch 1 replay window, already holding the client Finished record. */
  replay: ReplayWindow;
  /** Our ChangeCipherSpec + Finished, re-sent if the client retransmits its Finished (RFC 6347 §4.2.4). */
  finalFlight: FlightMessage[];
  clientFinishedSeq: number;
  /** ClientHello random of the handshake that created the session (to ignore its late retransmissions). */
  clientRandom: Buffer;
  transport: PeerTransport;
  onClose: (session: DtlsSession, reason: SessionCloseReason) => void;
}

/**
 * An established DTLS 1.2 session with one peer (epoch 1). Also usable as a CoAP datagram channel.
 * Events: 'data' (payload: Buffer), 'close' (reason: SessionCloseReason).
 */
export class DtlsSession extends EventEmitter implements Channel {
  readonly key: string;
  readonly secure = true;
  readonly address: string;
  readonly port: number;
  readonly identity: string;
  readonly cipherSuite: CipherSuiteName;
  readonly createdAt: number;
  lastActivity: number;
  bytesIn = 0;
  bytesOut = 0;

  private _closed = false;
  private readonly ciphers: CipherPair;
  private readonly writer: RecordWriter;
  private readonly replay: ReplayWindow;
  private finalFlight: FlightMessage[] | undefined;
  private readonly clientFinishedSeq: number;
  /** ClientHello random of the handshake that created this session. */
  readonly clientRandom: Buffer;
  private readonly transport: PeerTransport;
  private readonly onClose: SessionInit['onClose'];

  /** Created by DtlsServer when a handshake completes. */
  constructor(init: SessionInit) {
    super();
    this.address = init.address;
    this.port = init.port;
    this.key = `dtls:${init.address}:${init.port}`;
    this.identity = init.identity;
    this.cipherSuite = init.cipherSuite;
    this.ciphers = init.ciphers;
    this.writer = init.writer;
    this.replay = init.replay;
    this.finalFlight = init.finalFlight;
    this.clientFinishedSeq = init.clientFinishedSeq;
    this.clientRandom = init.clientRandom;
    this.transport = init.transport;
    this.onClose = init.onClose;
    this.createdAt = Date.now();
    this.lastActivity = this.createdAt;
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Sends one application_data record in one datagram. No-op after close; never throws. */
  send(data: Buffer): void {
    if (this._closed) return;
    if (data.length > MAX_PLAINTEXT) {
      this.transport.log('warn', `DTLS ${this.address}:${this.port}: payload of ${data.length} bytes exceeds the record limit, not sent`);
      return;
    }
    const rec = this.writer.record(ContentType.application_data, 1, data);
    if (!rec) {
      // Sequence numbers exhausted (RFC 6347 §4.1): the session cannot continue.
      this.terminate('closed', false);
      return;
    }
    this.bytesOut += data.length;
    this.transport.send(rec, this.port, this.address);
  }

  /** Sends close_notify and emits 'close' once. */
  close(): void {
    this.terminate('closed', true);
  }

  /** Ends the session: optional close_notify, then 'close' (once). Used by the server too. */
  terminate(reason: SessionCloseReason, sendCloseNotify: boolean): void {
    if (this._closed) return;
    if (sendCloseNotify) this.sendAlert(AlertLevel.warning, AlertDescription.close_notify);
    this._closed = true;
    this.finalFlight = undefined;
    this.transport.log('debug', `DTLS session ${this.address}:${this.port} (identity ${this.identity}) closed: ${reason}`);
    this.onClose(this, reason);
    this.emit('close', reason);
  }

  private sendAlert(level: number, description: number): void {
    const rec = this.writer.record(ContentType.alert, 1, encodeAlert(level, description));
    if (!rec) return;
    this.transport.alertSent();
    this.transport.send(rec, this.port, this.address);
  }

  private drop(reason: string): void {
    this.transport.dropped(this.address, this.port, reason);
  }

  /** Handles one record from this peer. Never throws on bad input. */
  handleRecord(rec: DtlsRecord): void {
    if (this._closed) return;
    if (rec.epoch !== 1) {
      this.drop(`unexpected epoch ${rec.epoch}`);
      return;
    }
    if (!this.replay.check(rec.seq)) {
      this.drop(`replayed or stale record seq ${rec.seq}`);
      return;
    }
    const plain = this.ciphers.read.decrypt(rec.type, rec.version, rec.epoch, rec.seq, rec.fragment);
    if (!plain) {
      // RFC 6347 §4.1.2.7: invalid records are silently discarded, the session stays up.
      this.drop('record failed authentication');
      return;
    }
    if (plain.length > MAX_PLAINTEXT) {
      this.drop('record_overflow');
      return;
    }
    this.replay.update(rec.seq);
    this.lastActivity = Date.now();
    this.transport.log('trace', `DTLS ${this.address}:${this.port} <- type ${rec.type} seq ${rec.seq} (${plain.length} bytes)`);
    switch (rec.type) {
      case ContentType.application_data:
        this.finalFlight = undefined; // the peer has our Finished
        this.bytesIn += plain.length;
        this.emit('data', plain);
        return;
      case ContentType.alert:
        this.onAlert(plain);
        return;
      case ContentType.handshake:
        this.onHandshake(plain);
        return;
      default:
        this.drop(`unexpected content type ${rec.type}`);
    }
  }

  private onAlert(plain: Buffer): void {
    if (plain.length !== 2) {
      this.drop('malformed alert');
      return;
    }
    const [level, description] = [plain[0], plain[1]];
    this.transport.log('debug', `DTLS ${this.address}:${this.port} received alert ${alertName(description)} (level ${level})`);
    if (description === AlertDescription.close_notify) {
      // RFC 5246 §7.2.1: answer with our own close_notify.
      this.terminate('close_notify', true);
    } else if (level === AlertLevel.fatal) {
      this.terminate('fatal_alert', false);
    }
  }

  private onHandshake(plain: Buffer): void {
    const frags = parseHandshakeFragments(plain);
    if (!frags || frags.length === 0) {
      this.drop('malformed handshake record');
      return;
    }
    const f = frags[0];
    if (f.msgType === HandshakeType.finished && f.messageSeq === this.clientFinishedSeq) {
      // The client did not get our last flight and retransmitted its own.
      if (this.finalFlight) {
        this.transport.log('debug', `DTLS ${this.address}:${this.port}: client retransmitted Finished, re-sending ours`);
        this.transport.send(this.writer.flight(this.finalFlight), this.port, this.address);
      }
      return;
    }
    if (f.msgType === HandshakeType.client_hello) {
      // Renegotiation is not supported (RFC 5746 §4.4): decline with a warning, keep the session.
      this.sendAlert(AlertLevel.warning, AlertDescription.no_renegotiation);
      return;
    }
    this.drop(`unexpected handshake message ${f.msgType}`);
  }
}
