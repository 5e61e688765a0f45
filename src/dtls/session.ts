import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { flatString } from '../flat-string';
import { type Channel, tracing } from '../channel';
import { AlertDescription, AlertLevel, alertName, encodeAlert } from './alerts';
import type { AuthType } from './cache';
import { HandshakeType, parseHandshakeFragments } from './handshake';
import { ContentType, type DtlsRecord, MAX_PLAINTEXT } from './record';
import { ReplayWindow } from './replay';
import { type CipherPair, type CipherSuiteName, type KeyMaterial, type RecordCipher, keyBlockLength, keyMaterialOf, suiteByName } from './suites';
import { type FlightMessage, type PeerTransport, RecordWriter, openRecord } from './transport';

export type SessionCloseReason = 'close_notify' | 'closed' | 'replaced' | 'server_closed' | 'fatal_alert' | 'detached';

/** Payload of the 'migrated' event (RFC 9146 address change). */
export interface MigrationInfo {
  oldAddress: string;
  oldPort: number;
  address: string;
  port: number;
}

/**
 * JSON-serialisable state of a live session (DtlsServer.exportSessions / importSessions).
 * It contains the session keys: store and transport it as a secret.
 */
export interface DtlsSessionState {
  version: 1;
  /** The session's channel key (kept across export/import). */
  key: string;
  address: string;
  port: number;
  identity: string;
  authType: AuthType;
  cipherSuite: CipherSuiteName;
  /** Key block (base64). */
  keys: { clientKey: string; serverKey: string; clientIv: string; serverIv: string; clientMacKey: string; serverMacKey: string };
  /** Always 1: renegotiation is not supported. */
  epoch: 1;
  /** Next sequence number to write (the export adds a safety gap over the last one used). */
  writeSeq: number;
  /** Replay window of received records. */
  replay: { highest: number; bitmap: string };
  /** Connection IDs (hex): ours (in the client's records) and the client's (in ours). */
  readCid?: string;
  writeCid?: string;
  /** ClientHello random of the handshake (hex). */
  clientRandom: string;
  /** Session id for resumption (hex), '' when none. */
  sessionId: string;
  resumed: boolean;
  createdAt: number;
  lastActivity: number;
  /** Opaque, JSON-serialisable data of upper layers (e.g. the bound endpoint name). */
  meta?: unknown;
}

/** Everything a completed handshake (or an import) hands to the established session. */
export interface SessionInit {
  address: string;
  port: number;
  identity: string;
  authType?: AuthType;
  cipherSuite: CipherSuiteName;
  keys?: KeyMaterial;
  ciphers: CipherPair;
  writer: RecordWriter;
  /** Epoch 1 replay window, already holding the client Finished record. */
  replay: ReplayWindow;
  /** Our ChangeCipherSpec + Finished, re-sent if the client retransmits its Finished (RFC 6347 §4.2.4). */
  finalFlight: FlightMessage[];
  clientFinishedSeq: number;
  /** ClientHello random of the handshake that created the session (to ignore its late retransmissions). */
  clientRandom: Buffer;
  resumed?: boolean;
  sessionId?: Buffer;
  readCid?: Buffer;
  writeCid?: Buffer;
  /** Restored sessions keep their key and timestamps. */
  key?: string;
  createdAt?: number;
  lastActivity?: number;
  meta?: unknown;
  transport: PeerTransport;
  onClose: (session: DtlsSession, reason: SessionCloseReason) => void;
  /** An authenticated CID record moved the session to a new address; the owner re-keys its maps. */
  onMigrate?: (session: DtlsSession, info: MigrationInfo) => void;
}

/**
 * One object that receives a session's data, close and migration (see DtlsSession.owner): an owner holding many
 * sessions needs no listener closures per session. The events are emitted as well.
 */
export interface DtlsSessionOwner {
  onSessionData(data: Buffer): void;
  onSessionClose(reason: SessionCloseReason): void;
  onSessionMigrated(info: MigrationInfo): void;
}

/**
 * EventEmitter's prototype without its constructor. EventEmitter's methods create the listener table on the first
 * listener (as for any emitter whose constructor did not run), so a session nobody listens to (the server uses
 * DtlsSession.owner) carries no listener state; the table is a dictionary-mode object even when empty.
 */
const LazyEventEmitter = function LazyEventEmitter(): void {
  // No per-instance state until a listener is added.
} as unknown as typeof EventEmitter;
LazyEventEmitter.prototype = EventEmitter.prototype;

/**
 * An established DTLS 1.2 session with one peer (epoch 1). Also usable as a CoAP datagram channel.
 * Events: 'data' (payload: Buffer), 'close' (reason: SessionCloseReason),
 *         'migrated' (MigrationInfo) when an authenticated connection-ID record moved the peer to a new address.
 */
export class DtlsSession extends LazyEventEmitter implements Channel {
  /** Stable for the life of the session (also across an address change and export/import). */
  readonly key: string;
  readonly identity: string;
  /** How the peer authenticated: PSK identity, raw public key, or X.509 certificate (identity = subject CN). */
  readonly authType: AuthType;
  readonly cipherSuite: CipherSuiteName;
  readonly createdAt: number;
  /** True when the session came from an abbreviated handshake (session resumption). */
  readonly resumed: boolean;
  /** Connection IDs (RFC 9146): ours, carried in the peer's records, and the peer's; undefined = not negotiated. */
  readonly readCid: Buffer | undefined;
  readonly writeCid: Buffer | undefined;
  /**
   * Written on every record received. Declared, not defined as a class field: a defined field starts out undefined,
   * V8 then keeps it as a pointer, and each new time value became a heap number that outlived the young generation
   * (10 s of pooled reads over 10,000 devices promoted 4.0 MB allocated here, 1.1 MB once declared); assigned a number
   * first, it is updated in place.
   */
  declare lastActivity: number;
  bytesIn = 0;
  bytesOut = 0;
  /** Opaque data for upper layers, carried through exportState/importSessions. Must be JSON-serialisable. */
  meta: unknown;
  /** Called before the 'data', 'close' and 'migrated' events (an alternative to listening for them). */
  owner: DtlsSessionOwner | undefined;

  private _address: string;
  private _port: number;
  private _closed = false;
  /**
   * Where the key block is (the record ciphers read their keys from it; the DtlsServer keeps the blocks of its sessions
   * in a few shared chunks); undefined when not kept, and after close (the block is zeroed then).
   */
  private keyBlock: ArrayBuffer | undefined;
  private readonly keyOffset: number;
  private readonly readCipher: RecordCipher;
  private readonly writer: RecordWriter;
  private readonly replay: ReplayWindow;
  private finalFlight: FlightMessage[] | undefined;
  private readonly clientFinishedSeq: number;
  /** Kept as latin1 strings (one character per byte): smaller than a Buffer or a hex string per session, and no
   * slice of the shared Buffer pool held for the session's lifetime. */
  private readonly clientRandomBytes: string;
  private readonly sessionIdBytes: string;
  private readonly transport: PeerTransport;
  private readonly onClose: SessionInit['onClose'];
  private readonly onMigrate: SessionInit['onMigrate'];

  /** Created by DtlsServer when a handshake completes or a session is imported. */
  constructor(init: SessionInit) {
    super();
    this._address = init.address;
    this._port = init.port;
    this.readCid = init.readCid && init.readCid.length > 0 ? init.readCid : undefined;
    this.writeCid = init.readCid ? init.writeCid : undefined;
    this.key = init.key ?? flatString(this.readCid ? `dtls:cid:${this.readCid.toString('hex')}` : `dtls:${init.address}:${init.port}`);
    this.identity = init.identity;
    this.authType = init.authType ?? 'psk';
    this.cipherSuite = init.cipherSuite;
    this.keyBlock = init.keys ? keyBlockOf(init.keys) : undefined;
    this.keyOffset = init.keys ? init.keys.block.byteOffset : 0;
    this.readCipher = init.ciphers.read;
    this.writer = init.writer;
    this.replay = init.replay;
    this.finalFlight = init.finalFlight.length > 0 ? init.finalFlight : undefined;
    this.clientFinishedSeq = init.clientFinishedSeq;
    this.clientRandomBytes = init.clientRandom.toString('latin1');
    this.resumed = init.resumed ?? false;
    this.sessionIdBytes = init.sessionId && init.sessionId.length > 0 ? init.sessionId.toString('latin1') : '';
    this.transport = init.transport;
    this.onClose = init.onClose;
    this.onMigrate = init.onMigrate;
    this.createdAt = init.createdAt ?? Date.now();
    this.lastActivity = init.lastActivity ?? Date.now();
    this.meta = init.meta;
    this.owner = undefined;
  }

  get secure(): true {
    return true;
  }

  /** ClientHello random of the handshake that created this session. */
  get clientRandom(): Buffer {
    return Buffer.from(this.clientRandomBytes, 'latin1');
  }

  /** Session id for resumption (empty when none was issued). */
  get sessionId(): Buffer {
    return Buffer.from(this.sessionIdBytes, 'latin1');
  }

  /** The peer's current address; changes only through an authenticated connection-ID record (RFC 9146). */
  get address(): string {
    return this._address;
  }

  get port(): number {
    return this._port;
  }

  get closed(): boolean {
    return this._closed;
  }

  /**
   * Serialisable state (see DtlsSessionState). `seqGap` is added to the write sequence number; this instance may send
   * at most that many more records (then the session closes), so the importer never repeats a sequence number (and
   * nonce). Keep it small: some clients (node-dtls-client) drop records more than 64 numbers ahead of the last one.
   * Undefined for a closed session or one without its key block.
   */
  exportState(seqGap = 16): DtlsSessionState | undefined {
    const suite = suiteByName(this.cipherSuite);
    if (this._closed || !this.keyBlock || !suite) return undefined;
    const k = keyMaterialOf(suite, Buffer.from(this.keyBlock, this.keyOffset, keyBlockLength(suite)));
    const writeSeq = this.writer.epoch1Seq + Math.max(0, Math.min(32, Math.floor(seqGap)));
    this.writer.epoch1Limit = Math.min(this.writer.epoch1Limit ?? writeSeq, writeSeq);
    const state: DtlsSessionState = {
      version: 1,
      key: this.key,
      address: this._address,
      port: this._port,
      identity: this.identity,
      authType: this.authType,
      cipherSuite: this.cipherSuite,
      keys: {
        clientKey: k.clientKey.toString('base64'), serverKey: k.serverKey.toString('base64'),
        clientIv: k.clientIv.toString('base64'), serverIv: k.serverIv.toString('base64'),
        clientMacKey: k.clientMacKey.toString('base64'), serverMacKey: k.serverMacKey.toString('base64'),
      },
      epoch: 1,
      writeSeq,
      replay: this.replay.snapshot(),
      clientRandom: Buffer.from(this.clientRandomBytes, 'latin1').toString('hex'),
      sessionId: Buffer.from(this.sessionIdBytes, 'latin1').toString('hex'),
      resumed: this.resumed,
      createdAt: this.createdAt,
      lastActivity: this.lastActivity,
    };
    if (this.readCid) state.readCid = this.readCid.toString('hex');
    if (this.writeCid) state.writeCid = this.writeCid.toString('hex');
    if (this.meta !== undefined) state.meta = this.meta;
    return state;
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
    this.writer.cipher?.dispose?.();
    this.writer.cipher = undefined;
    this.readCipher.dispose?.();
    const suite = suiteByName(this.cipherSuite);
    if (this.keyBlock && suite) {
      // An ended session forgets its keys (the ciphers read them from this block); with 'detached' the state lives on
      // in an export. The block goes back to the server's key store (zeroed there) and may then hold another key.
      const block = this.keyBlock;
      this.keyBlock = undefined;
      const length = keyBlockLength(suite);
      if (this.transport.releaseKeys) this.transport.releaseKeys(block, this.keyOffset, length);
      else new Uint8Array(block, this.keyOffset, length).fill(0);
    }
    this.transport.log('debug', `DTLS session ${this.address}:${this.port} (identity ${this.identity}) closed: ${reason}`);
    this.onClose(this, reason);
    this.owner?.onSessionClose(reason);
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

  /**
   * Handles one record from this peer. `fromAddress` and `fromPort` are the datagram's source: with a connection ID,
   * an authenticated record newer than any seen so far from another address moves the session there (RFC 9146 §6).
   * Never throws on bad input.
   */
  handleRecord(rec: DtlsRecord, fromAddress?: string, fromPort?: number): void {
    if (this._closed) return;
    if (rec.epoch !== 1) {
      this.drop(`unexpected epoch ${rec.epoch}`);
      return;
    }
    if (!this.replay.check(rec.seq)) {
      this.drop(`replayed or stale record seq ${rec.seq}`);
      return;
    }
    const opened = openRecord(this.readCipher, rec, this.readCid);
    if (!opened) {
      // RFC 6347 §4.1.2.7: invalid records are silently discarded, the session stays up.
      this.drop('record failed authentication');
      return;
    }
    const plain = opened.plain;
    if (plain.length > MAX_PLAINTEXT) {
      this.drop('record_overflow');
      return;
    }
    const newest = rec.seq > this.replay.highest;
    this.replay.update(rec.seq);
    this.lastActivity = Date.now();
    if (fromAddress !== undefined && fromPort !== undefined && this.readCid && newest &&
        (fromAddress !== this._address || fromPort !== this._port)) {
      const info: MigrationInfo = { oldAddress: this._address, oldPort: this._port, address: fromAddress, port: fromPort };
      this._address = fromAddress;
      this._port = fromPort;
      this.transport.log('debug', `DTLS session ${info.oldAddress}:${info.oldPort} (identity ${this.identity}) moved to ${fromAddress}:${fromPort}`);
      this.onMigrate?.(this, info);
      this.owner?.onSessionMigrated(info);
      this.emit('migrated', info);
      if (this._closed) return;
    }
    if (tracing(this.transport.log)) this.transport.log('trace', `DTLS ${this.address}:${this.port} <- type ${opened.type} seq ${rec.seq} (${plain.length} bytes)`);
    switch (opened.type) {
      case ContentType.application_data:
        this.finalFlight = undefined; // the peer has our Finished
        this.bytesIn += plain.length;
        this.owner?.onSessionData(plain);
        this.emit('data', plain);
        return;
      case ContentType.alert:
        this.onAlert(plain);
        return;
      case ContentType.handshake:
        this.onHandshake(plain);
        return;
      default:
        this.drop(`unexpected content type ${opened.type}`);
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

/** The ArrayBuffer of a key block (what the record ciphers made from it read their keys from). */
function keyBlockOf(keys: KeyMaterial): ArrayBuffer {
  const b = keys.block.buffer;
  if (!(b instanceof ArrayBuffer)) throw new TypeError('key block not in an ArrayBuffer');
  return b;
}
