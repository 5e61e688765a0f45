import { EventEmitter } from 'node:events';
import type { LogFn } from '../channel';
import { CookieJar } from './cookie';
import {
  DecodeError, type HandshakeFragment, HandshakeType, decodeClientHello, encodeHandshake, encodeHelloVerifyRequest,
  isComplete, MessageAssembler, parseHandshakeFragments,
} from './handshake';
import { ContentType, DTLS_1_0, type DtlsRecord, encodeRecord, parseDatagram } from './record';
import {
  type HandshakeCallbacks, type HandshakeFailure, type HandshakeOptions, type HandshakeResult, ServerHandshake,
} from './server-handshake';
import { DtlsSession } from './session';
import { type CipherSuiteInfo, type CipherSuiteName, DEFAULT_SUITES, suiteByName } from './suites';
import type { PeerTransport } from './transport';

export interface DtlsServerOptions {
  /** Writes a datagram to the UDP socket owned by the caller. */
  send: (data: Buffer, port: number, address: string) => void;
  /** PSK identity (utf8) -> key; undefined = unknown_psk_identity. */
  pskLookup: (identity: string) => Buffer | undefined;
  /** Server preference order; default both, CCM_8 first. */
  cipherSuites?: CipherSuiteName[];
  /** A handshake not finished by then is dropped. Default 30000. */
  handshakeTimeoutMs?: number;
  /** Initial retransmission timer (RFC 6347 §4.2.4), default 1000, doubling up to retransmitMaxMs (default 60000). */
  retransmitInitialMs?: number;
  retransmitMaxMs?: number;
  /** Handshakes in flight (after a valid cookie); beyond that ClientHellos are dropped and counted. Default 1000. */
  maxHandshakes?: number;
  /** Established sessions. Default 100000. */
  maxSessions?: number;
  /** Cookie secret rotation period; cookies from the current and the previous secret are accepted. Default 60000. */
  cookieRotateMs?: number;
  /** 'debug' for handshakes, 'trace' for records. Keys and PSKs are never logged. */
  log?: LogFn;
}

export interface DtlsServerStats {
  /** Completed full handshakes. */
  handshakes: number;
  handshakesFailed: number;
  /** Records or datagrams dropped: malformed, unauthenticated, replayed, unexpected, over limits. */
  recordsDropped: number;
  cookiesSent: number;
  alertsSent: number;
}

export interface HandshakeFailedInfo {
  address: string;
  port: number;
  identity?: string;
  /** Alert name (sent or received), or 'timeout'. */
  alert: string;
  reason: string;
}

const noLog: LogFn = () => undefined;

/**
 * DTLS 1.2 server (RFC 6347) with PSK key exchange (RFC 4279). Owns no socket: the caller feeds received datagrams
 * to handleDatagram() and provides send().
 *
 * Events: 'session' (DtlsSession) when a full handshake completes;
 *         'handshakeFailed' (HandshakeFailedInfo) for each failed handshake.
 */
export class DtlsServer extends EventEmitter {
  readonly stats: DtlsServerStats = { handshakes: 0, handshakesFailed: 0, recordsDropped: 0, cookiesSent: 0, alertsSent: 0 };
  private readonly _sessions = new Map<string, DtlsSession>();
  private readonly handshakes = new Map<string, ServerHandshake>();
  private readonly cookies: CookieJar;
  private readonly hsOptions: HandshakeOptions;
  private readonly maxHandshakes: number;
  private readonly maxSessions: number;
  private readonly log: LogFn;
  private readonly transport: PeerTransport;
  private readonly callbacks: HandshakeCallbacks;
  private closed = false;

  constructor(opts: DtlsServerOptions) {
    super();
    const names = opts.cipherSuites ?? DEFAULT_SUITES;
    const suites: CipherSuiteInfo[] = [];
    for (const n of names) {
      const s = suiteByName(n);
      if (!s) throw new TypeError(`unsupported cipher suite ${String(n)}`);
      suites.push(s);
    }
    if (suites.length === 0) throw new TypeError('no cipher suite configured');
    this.log = opts.log ?? noLog;
    this.maxHandshakes = opts.maxHandshakes ?? 1000;
    this.maxSessions = opts.maxSessions ?? 100000;
    this.cookies = new CookieJar(opts.cookieRotateMs ?? 60_000);
    this.hsOptions = {
      pskLookup: opts.pskLookup,
      suites,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 30_000,
      retransmitInitialMs: opts.retransmitInitialMs ?? 1000,
      retransmitMaxMs: opts.retransmitMaxMs ?? 60_000,
    };
    const userSend = opts.send;
    const log = this.log;
    this.transport = {
      send: (data, port, address) => {
        try {
          userSend(data, port, address);
        } catch (e) {
          log('warn', `DTLS send to ${address}:${port} failed: ${(e as Error).message}`);
        }
      },
      log,
      dropped: (address, port, reason) => {
        this.stats.recordsDropped++;
        log('trace', `DTLS ${address}:${port}: dropped: ${reason}`);
      },
      alertSent: () => {
        this.stats.alertsSent++;
      },
    };
    this.callbacks = {
      complete: (h, result) => this.onHandshakeComplete(h, result),
      failed: (failure, h) => this.onHandshakeFailed(failure, h),
    };
  }

  /** Established sessions keyed by `${address}:${port}`. */
  get sessions(): ReadonlyMap<string, DtlsSession> {
    return this._sessions;
  }

  /** Handshakes in progress (state exists only after a valid cookie). */
  get pendingHandshakes(): number {
    return this.handshakes.size;
  }

  getSession(address: string, port: number): DtlsSession | undefined {
    return this._sessions.get(`${address}:${port}`);
  }

  /** Starts a new cookie secret; cookies made with the previous one stay valid until the next rotation. */
  rotateCookieSecret(): void {
    this.cookies.rotate();
  }

  /** Feeds one received UDP datagram. Never throws: bad input is dropped and counted. */
  handleDatagram(data: Buffer, rinfo: { address: string; port: number }): void {
    try {
      if (this.closed || !Buffer.isBuffer(data) || !rinfo || typeof rinfo.address !== 'string' ||
          typeof rinfo.port !== 'number') {
        this.stats.recordsDropped++;
        return;
      }
      const { address, port } = rinfo;
      const { records, malformed } = parseDatagram(data);
      if (malformed > 0 || records.length === 0) this.transport.dropped(address, port, 'malformed record framing');
      for (let i = 0; i < records.length; i++) {
        if (this.closed) return;
        const rec = records[i];
        if (rec.epoch === 0 && rec.type === ContentType.handshake) {
          const frags = parseHandshakeFragments(rec.fragment);
          if (frags && frags.length > 0 && frags[0].msgType === HandshakeType.client_hello) {
            const used = this.onClientHelloRecords(records, i, frags[0], address, port);
            i += used - 1;
            continue;
          }
        }
        this.routeRecord(rec, address, port);
      }
    } catch (e) {
      // A defect or a throwing event listener; never let it escape into the socket handler.
      this.stats.recordsDropped++;
      this.log('error', `DTLS: error while handling a datagram from ${rinfo?.address}:${rinfo?.port}: ${(e as Error)?.message}`);
    }
  }

  /**
   * A ClientHello must be handled without per-peer state, so it is only accepted whole, or split into fragments that
   * all arrive in this one datagram. Returns how many records were consumed.
   */
  private onClientHelloRecords(records: DtlsRecord[], index: number, first: HandshakeFragment, address: string,
      port: number): number {
    const rec = records[index];
    if (isComplete(first)) {
      this.onClientHello(first, rec, address, port, `${address}:${port}`);
      return 1;
    }
    const asm = new MessageAssembler(HandshakeType.client_hello, first.length, first.messageSeq);
    let used = 0;
    let consistent = true;
    for (let j = index; j < records.length && consistent; j++) {
      const r = records[j];
      if (r.epoch !== 0 || r.type !== ContentType.handshake) break;
      const frags = parseHandshakeFragments(r.fragment);
      if (!frags || frags.some((f) => f.msgType !== HandshakeType.client_hello)) break;
      for (const f of frags) consistent = asm.add(f) && consistent;
      used++;
    }
    if (!consistent || !asm.complete) {
      this.transport.dropped(address, port, 'fragmented ClientHello not complete within one datagram');
      return Math.max(used, 1);
    }
    const whole: HandshakeFragment = {
      msgType: HandshakeType.client_hello, length: first.length, messageSeq: first.messageSeq, fragmentOffset: 0,
      body: asm.body,
    };
    this.onClientHello(whole, rec, address, port, `${address}:${port}`);
    return used;
  }

  private routeRecord(rec: DtlsRecord, address: string, port: number): void {
    const key = `${address}:${port}`;
    const hs = this.handshakes.get(key);
    const session = this._sessions.get(key);
    if (rec.epoch === 0) {
      if (hs) hs.handleRecord(rec);
      else this.transport.dropped(address, port, 'epoch 0 record outside a handshake');
      return;
    }
    if (rec.epoch === 1) {
      // With both a session and a new handshake (rebooted peer), only encrypted handshake records of the new
      // handshake go to it; everything else still belongs to the old session until the new one completes.
      if (hs && (!session || (rec.type === ContentType.handshake && hs.hasKeys))) {
        hs.handleRecord(rec);
        return;
      }
      if (session) {
        session.handleRecord(rec);
        return;
      }
    }
    this.transport.dropped(address, port, `record for unknown epoch ${rec.epoch}`);
  }

  private onClientHello(f: HandshakeFragment, rec: DtlsRecord, address: string, port: number, key: string): void {
    let hello;
    try {
      hello = decodeClientHello(f.body);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.transport.dropped(address, port, `malformed ClientHello: ${e.message}`);
      return;
    }
    const existing = this.handshakes.get(key);
    if (existing && existing.isSameHello(hello.random, f.messageSeq)) {
      existing.onRetransmittedHello();
      return;
    }
    const session = this._sessions.get(key);
    if (session && session.clientRandom.equals(hello.random)) {
      // A late copy of the ClientHello that created the current session.
      this.transport.dropped(address, port, 'stale ClientHello');
      return;
    }
    if (!this.cookies.verify(address, port, hello)) {
      // RFC 6347 §4.2.1: stateless HelloVerifyRequest, server_version 0xfeff, record sequence number echoed.
      const cookie = this.cookies.make(address, port, hello);
      const hvr = encodeHandshake(HandshakeType.hello_verify_request, f.messageSeq,
        encodeHelloVerifyRequest(DTLS_1_0, cookie));
      this.stats.cookiesSent++;
      this.log('trace', `DTLS ${key}: HelloVerifyRequest`);
      this.transport.send(encodeRecord(ContentType.handshake, DTLS_1_0, 0, rec.seq, hvr), port, address);
      return;
    }
    if (!existing && this.handshakes.size >= this.maxHandshakes) {
      this.transport.dropped(address, port, 'too many handshakes in progress');
      return;
    }
    if (!session && this._sessions.size >= this.maxSessions) {
      this.transport.dropped(address, port, 'session limit reached');
      return;
    }
    if (existing) {
      // The peer restarted its handshake with a new ClientHello.
      existing.dispose();
      this.handshakes.delete(key);
    }
    this.log('debug', `DTLS ${key}: ClientHello with valid cookie${session ? ' (peer already has a session)' : ''}`);
    const helloMessage = encodeHandshake(HandshakeType.client_hello, f.messageSeq, f.body);
    const h = ServerHandshake.start(address, port, hello, helloMessage, f.messageSeq, rec.seq, this.hsOptions,
      this.transport, this.callbacks);
    if (h) this.handshakes.set(key, h);
  }

  private onHandshakeComplete(h: ServerHandshake, result: HandshakeResult): void {
    const key = h.key;
    if (this.handshakes.get(key) === h) this.handshakes.delete(key);
    const old = this._sessions.get(key);
    if (!old && this._sessions.size >= this.maxSessions) {
      this.onHandshakeFailed({ address: result.address, port: result.port, identity: result.identity,
        alert: 'internal_error', reason: 'session limit reached' });
      return;
    }
    const session = new DtlsSession({
      address: result.address,
      port: result.port,
      identity: result.identity,
      cipherSuite: result.suite.name,
      ciphers: result.ciphers,
      writer: result.writer,
      replay: result.replay,
      finalFlight: result.finalFlight,
      clientFinishedSeq: result.clientFinishedSeq,
      clientRandom: result.clientRandom,
      transport: this.transport,
      onClose: (s) => {
        if (this._sessions.get(key) === s) this._sessions.delete(key);
      },
    });
    this._sessions.set(key, session);
    this.stats.handshakes++;
    // §4.2.8: the old session of a rebooted peer is replaced only now that the new one is complete.
    if (old) old.terminate('replaced', false);
    this.emit('session', session);
  }

  private onHandshakeFailed(failure: HandshakeFailure, h?: ServerHandshake): void {
    if (h && this.handshakes.get(h.key) === h) this.handshakes.delete(h.key);
    this.stats.handshakesFailed++;
    const info: HandshakeFailedInfo = { ...failure };
    this.emit('handshakeFailed', info);
  }

  /** Sends close_notify to every session, stops every handshake and timer, emits 'close' on each session. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.handshakes.values()) h.dispose();
    this.handshakes.clear();
    for (const s of [...this._sessions.values()]) s.terminate('server_closed', true);
    this._sessions.clear();
  }
}
