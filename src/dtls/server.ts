import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { RandomBlock } from './random-block';
import { EventEmitter } from 'node:events';
import type { LogFn } from '../channel';
import { type CachedSession, type ResumptionState, SessionCache } from './cache';
import { type CertificateOptions, loadServerCredentials, loadTrustedCAs } from './certs';
import { CookieJar } from './cookie';
import { KeyStore } from './keystore';
import { CipherContexts, DEFAULT_CONTEXT_IDLE_MS } from './ccm';
import {
  DecodeError, type HandshakeFragment, HandshakeType, decodeClientHello, encodeHandshake, encodeHelloVerifyRequest,
  isComplete, MessageAssembler, parseHandshakeFragments,
} from './handshake';
import { ContentType, DTLS_1_0, type DtlsRecord, encodeRecord, parseDatagram, recordAt, recordEnd } from './record';
import {
  type HandshakeCallbacks, type HandshakeFailure, type HandshakeOptions, type HandshakeResult, ServerHandshake,
} from './server-handshake';
import { ReplayWindow } from './replay';
import { type DtlsSessionState, DtlsSession, type MigrationInfo } from './session';
import { SessionTable } from './session-table';
import {
  type CipherSuiteInfo, type CipherSuiteName, DEFAULT_CERT_SUITES, DEFAULT_PSK_SUITES, keyBlockLength, keyMaterialOf,
  serverCiphers, suiteByName,
} from './suites';
import { type PeerTransport, RecordWriter } from './transport';

export interface DtlsServerOptions {
  /** Writes a datagram to the UDP socket owned by the caller. */
  send: (data: Buffer, port: number, address: string) => void;
  /** PSK identity (utf8) -> key; undefined = unknown_psk_identity. Without it no PSK suite is negotiated. */
  pskLookup?: (identity: string) => Buffer | undefined;
  /**
   * Server preference order. Default: the PSK suites (CCM_8, CCM, GCM, CBC) when pskLookup is set, then the
   * ECDHE_ECDSA suites (CCM_8, GCM) when a certificate is configured.
   */
  cipherSuites?: CipherSuiteName[];
  /**
   * Session-id resumption (abbreviated handshakes): the server issues a session id and caches master secret, suite
   * and identity. Default { maxEntries: 10000, ttlMs: 86400000 }; false = no session ids.
   */
  resumption?: { maxEntries?: number; ttlMs?: number } | false;
  /**
   * Connection ID (RFC 9146): offered to clients that ask for it. `length` of the CIDs this server issues (1..32),
   * default 6. false = the extension is ignored.
   */
  connectionId?: { length?: number } | false;
  /**
   * Server key and certificate chain (PEM, EC P-256) for TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 / _GCM_SHA256. With
   * `rpk` (default true) the key is also offered as a raw public key (RFC 7250). Clients must authenticate with a
   * raw public key (rpkLookup) or an X.509 chain (trustedCAs).
   */
  certificate?: CertificateOptions;
  /** PEM CA certificates that client X.509 chains must lead to; session.identity is the leaf's subject CN. */
  trustedCAs?: string[];
  /** Client raw public key (SubjectPublicKeyInfo, DER) -> identity; undefined = unknown key (certificate_unknown). */
  rpkLookup?: (spki: Buffer) => { identity: string } | undefined;
  /** A handshake not finished by then is dropped. Default 30000. */
  handshakeTimeoutMs?: number;
  /** Initial retransmission timer (RFC 6347 §4.2.4), default 1000, doubling up to retransmitMaxMs (default 60000). */
  retransmitInitialMs?: number;
  retransmitMaxMs?: number;
  /** Handshakes in flight (after a valid cookie); beyond that ClientHellos are dropped and counted. Default 1000. */
  maxHandshakes?: number;
  /** Established sessions. Default 100000. */
  maxSessions?: number;
  /**
   * Record ciphers (two per session) that may keep long-lived AES-CCM contexts (~3.3 KB each, see CipherContexts);
   * the others use a one-shot OpenSSL context per record. Default 32768 (the busiest 16,384 sessions, ~108 MB at most).
   */
  maxCipherContexts?: number;
  /**
   * A record cipher's long-lived AES-CCM contexts are released after one to two such periods without traffic (the
   * sweep runs once per period). Default 60000: a device with traffic at least once a minute (observations,
   * periodic reads) keeps its contexts instead of making them again each time, and a fleet that goes quiet for less
   * than that does not leave tens of thousands of cipher objects for the next full garbage collection to finalise
   * (~1 µs each, inside its pause).
   */
  cipherContextIdleMs?: number;
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
  /** Completed abbreviated handshakes (session resumption). */
  resumptions: number;
  /** Sessions moved to a new address by an authenticated connection-ID record. */
  migrations: number;
  /** Sessions recreated by importSessions. */
  restored: number;
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
 * Events: 'session' (DtlsSession) when a full or abbreviated handshake completes (session.resumed tells which);
 *         'restored' (DtlsSession) for each session recreated by importSessions();
 *         'migrated' (DtlsSession, MigrationInfo) when a connection-ID session moved to a new address;
 *         'handshakeFailed' (HandshakeFailedInfo) for each failed handshake.
 */
export class DtlsServer extends EventEmitter {
  /** Record ciphers holding a long-lived AES-CCM context (see maxCipherContexts), those being released included. */
  get cipherContextCount(): number {
    return this.cipherContexts.size + this.cipherContexts.releasePending;
  }

  readonly stats: DtlsServerStats = {
    handshakes: 0, handshakesFailed: 0, recordsDropped: 0, cookiesSent: 0, alertsSent: 0, resumptions: 0,
    migrations: 0, restored: 0,
  };
  private readonly _sessions = new SessionTable<DtlsSession>();
  private readonly sessionsByCid = new Map<string, DtlsSession>();
  private readonly cache: SessionCache | undefined;
  private readonly cidLength: number;
  private readonly handshakes = new Map<string, ServerHandshake>();
  private readonly cookies: CookieJar;
  private readonly hsOptions: HandshakeOptions;
  private readonly maxHandshakes: number;
  private readonly maxSessions: number;
  private readonly log: LogFn;
  private readonly transport: PeerTransport;
  private readonly callbacks: HandshakeCallbacks;
  /** Key blocks of the established sessions. */
  private readonly keyStore = new KeyStore();
  /** The CCM contexts of sessions in use (taken back when they go idle). */
  private readonly cipherContexts: CipherContexts;
  private closed = false;

  constructor(opts: DtlsServerOptions) {
    super();
    const names = opts.cipherSuites ??
      [...(opts.pskLookup ? DEFAULT_PSK_SUITES : []), ...(opts.certificate ? DEFAULT_CERT_SUITES : [])];
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
    const contextIdleMs = opts.cipherContextIdleMs ?? DEFAULT_CONTEXT_IDLE_MS;
    // a timer's longest delay is 2^31 - 1 ms: Node runs a longer one after 1 ms
    if (!(contextIdleMs >= 1 && contextIdleMs <= 2 ** 31 - 1)) {
      throw new RangeError('cipherContextIdleMs must be between 1 and 2147483647 milliseconds');
    }
    this.cipherContexts = new CipherContexts(contextIdleMs, opts.maxCipherContexts ?? 32768);
    this.cookies = new CookieJar(opts.cookieRotateMs ?? 60_000);
    if (opts.resumption !== false) {
      this.cache = new SessionCache(opts.resumption?.maxEntries ?? 10_000, opts.resumption?.ttlMs ?? 86_400_000);
    }
    const cidLength = opts.connectionId === false ? 0 : (opts.connectionId?.length ?? 6);
    if (!Number.isInteger(cidLength) || cidLength < 0 || cidLength > 32) throw new TypeError('connectionId.length must be 1..32');
    this.cidLength = cidLength;
    this.hsOptions = {
      pskLookup: opts.pskLookup,
      suites,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 30_000,
      retransmitInitialMs: opts.retransmitInitialMs ?? 1000,
      retransmitMaxMs: opts.retransmitMaxMs ?? 60_000,
      cache: this.cache,
      allocateCid: cidLength > 0 ? () => this.allocateCid() : undefined,
      credentials: opts.certificate ? loadServerCredentials(opts.certificate) : undefined,
      trustedCAs: opts.trustedCAs ? loadTrustedCAs(opts.trustedCAs) : undefined,
      rpkLookup: opts.rpkLookup,
      random: new RandomBlock(),
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
      releaseKeys: (buffer, offset, length) => this.keyStore.release(buffer, offset, length),
    };
    this.callbacks = {
      complete: (h, result) => this.onHandshakeComplete(h, result),
      failed: (failure, h) => this.onHandshakeFailed(failure, h),
    };
  }

  /** Established sessions keyed by `${address}:${port}`. */
  get sessions(): ReadonlyMap<string, DtlsSession> {
    return this._sessions.byKey;
  }

  /** Established sessions that negotiated a connection ID, keyed by our CID (hex). */
  get sessionsByConnectionId(): ReadonlyMap<string, DtlsSession> {
    return this.sessionsByCid;
  }

  /** Entries in the resumption cache. */
  get resumptionCacheSize(): number {
    return this.cache?.size ?? 0;
  }

  private allocateCid(): Buffer {
    for (;;) {
      const cid = randomBytes(this.cidLength);
      if (!this.sessionsByCid.has(cid.toString('hex'))) return cid;
    }
  }

  /** Handshakes in progress (state exists only after a valid cookie). */
  get pendingHandshakes(): number {
    return this.handshakes.size;
  }

  getSession(address: string, port: number): DtlsSession | undefined {
    return this._sessions.get(address, port);
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
      // the common case, a datagram holding one record that is not a ClientHello, goes without the list
      const only = recordAt(data, 0, this.cidLength);
      if (only && recordEnd(data, only) === data.length && (only.epoch !== 0 || only.type !== ContentType.handshake)) {
        this.routeRecord(only, address, port);
        return;
      }
      const { records, malformed } = parseDatagram(data, this.cidLength);
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
    // no key string is built for a record of an established session while no handshake is in progress
    const hs = this.handshakes.size > 0 ? this.handshakes.get(`${address}:${port}`) : undefined;
    if (rec.type === ContentType.tls12_cid) {
      // RFC 9146 §6: the CID, not the address, selects the session.
      const byCid = rec.cid ? this.sessionsByCid.get(rec.cid.toString('hex')) : undefined;
      if (byCid) {
        byCid.handleRecord(rec, address, port);
        return;
      }
      if (hs && hs.readCid && rec.cid && hs.readCid.equals(rec.cid)) {
        hs.handleRecord(rec);
        return;
      }
      this.transport.dropped(address, port, 'record with an unknown connection ID');
      return;
    }
    const session = this._sessions.get(address, port);
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
        session.handleRecord(rec, address, port);
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
    const session = this._sessions.get(address, port);
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
    const old = this._sessions.get(result.address, result.port);
    if (!old && this._sessions.size >= this.maxSessions) {
      this.onHandshakeFailed({ address: result.address, port: result.port, identity: result.identity,
        alert: 'internal_error', reason: 'session limit reached' });
      return;
    }
    if (result.cacheEntry) this.cache?.set(result.sessionId, result.cacheEntry);
    // The session's keys move into the key store (the handshake's copy is zeroed) and its ciphers read them there.
    const keys = keyMaterialOf(result.suite, this.keyStore.copy(result.keys.block));
    result.keys.block.fill(0);
    const ciphers = serverCiphers(result.suite, keys, this.cipherContexts);
    result.writer.cipher = ciphers.write;
    const session = new DtlsSession({
      address: result.address,
      port: result.port,
      identity: result.identity,
      authType: result.authType,
      cipherSuite: result.suite.name,
      keys,
      ciphers,
      writer: result.writer,
      replay: result.replay,
      finalFlight: result.finalFlight,
      clientFinishedSeq: result.clientFinishedSeq,
      clientRandom: result.clientRandom,
      resumed: result.resumed,
      sessionId: result.sessionId,
      readCid: result.readCid,
      writeCid: result.writeCid,
      transport: this.transport,
      onClose: this.onSessionClose,
      onMigrate: this.onSessionMigrate,
    });
    this.register(session);
    if (result.resumed) this.stats.resumptions++;
    else this.stats.handshakes++;
    // §4.2.8: the old session of a rebooted peer is replaced only now that the new one is complete.
    if (old) old.terminate('replaced', false);
    this.emit('session', session);
  }

  private register(session: DtlsSession): void {
    this._sessions.set(session.address, session.port, session);
    if (session.readCid) this.sessionsByCid.set(session.readCid.toString('hex'), session);
  }

  /** Shared by every session (not one pair of closures per session). */
  private readonly onSessionClose = (s: DtlsSession): void => this.forget(s);
  private readonly onSessionMigrate = (s: DtlsSession, info: MigrationInfo): void => this.onMigrate(s, info);

  private forget(s: DtlsSession): void {
    this._sessions.delete(s.address, s.port, s);
    if (s.readCid) {
      const cid = s.readCid.toString('hex');
      if (this.sessionsByCid.get(cid) === s) this.sessionsByCid.delete(cid);
    }
  }

  /** A CID session moved: it now answers at its new address; whatever held that address before is stale. */
  private onMigrate(s: DtlsSession, info: MigrationInfo): void {
    this._sessions.delete(info.oldAddress, info.oldPort, s);
    const previous = this._sessions.set(info.address, info.port, s);
    this.stats.migrations++;
    if (previous && previous !== s) previous.terminate('replaced', false);
    this.emit('migrated', s, info);
  }

  /**
   * State of every live session, JSON-serialisable (contains keys: treat as a secret). `seqGap` (default 16, at most 32)
   * is added to each write sequence number, and this instance may send at most that many more records per session.
   * After exporting, stop this server with detach() (or close({ notify: false })).
   */
  exportSessions(opts: { seqGap?: number } = {}): DtlsSessionState[] {
    const out: DtlsSessionState[] = [];
    for (const s of new Set(this._sessions.values())) {
      const st = s.exportState(opts.seqGap ?? 16);
      if (st) out.push(st);
    }
    return out;
  }

  /**
   * Recreates sessions exported by another instance; emits 'restored' (not 'session') for each, and returns them.
   * Malformed or unusable entries are skipped and logged. A session already present at the same address is replaced.
   */
  importSessions(states: readonly DtlsSessionState[]): DtlsSession[] {
    const out: DtlsSession[] = [];
    if (this.closed || !Array.isArray(states)) return out;
    for (const st of states) {
      let session: DtlsSession;
      try {
        session = this.restoreSession(st);
      } catch (e) {
        this.log('warn', `DTLS: session state not imported: ${(e as Error).message}`);
        continue;
      }
      const previous = this._sessions.get(session.address, session.port);
      if (!previous && this._sessions.size >= this.maxSessions) {
        this.log('warn', 'DTLS: session state not imported: session limit reached');
        session.terminate('closed', false); // gives its key block back
        continue;
      }
      if (session.readCid && this.sessionsByCid.has(session.readCid.toString('hex'))) {
        this.log('warn', 'DTLS: session state not imported: connection ID already in use');
        session.terminate('closed', false);
        continue;
      }
      if (previous) previous.terminate('replaced', false);
      this.register(session);
      this.stats.restored++;
      out.push(session);
      this.emit('restored', session);
    }
    return out;
  }

  private restoreSession(st: DtlsSessionState): DtlsSession {
    if (!st || st.version !== 1 || st.epoch !== 1) throw new TypeError('unsupported state version');
    const suite = suiteByName(st.cipherSuite);
    if (!suite) throw new TypeError(`unknown cipher suite ${String(st.cipherSuite)}`);
    if (typeof st.address !== 'string' || !Number.isInteger(st.port) || st.port < 1 || st.port > 65535) {
      throw new TypeError('bad address');
    }
    if (!Number.isSafeInteger(st.writeSeq) || st.writeSeq < 0) throw new TypeError('bad write sequence number');
    const b64 = (v: unknown, len: number, what: string): Buffer => {
      if (typeof v !== 'string') throw new TypeError(`missing ${what}`);
      const b = Buffer.from(v, 'base64');
      if (b.length !== len) throw new TypeError(`bad ${what}`);
      return b;
    };
    const hex = (v: unknown, what: string): Buffer | undefined => {
      if (v === undefined || v === '') return undefined;
      if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/i.test(v)) throw new TypeError(`bad ${what}`);
      return Buffer.from(v, 'hex');
    };
    const k = st.keys ?? ({} as DtlsSessionState['keys']);
    // One key block in its own memory, laid out as keyMaterialOf expects (the session and its ciphers keep only it).
    const parts = [
      b64(k.clientKey, suite.encKeyLength, 'key'), b64(k.serverKey, suite.encKeyLength, 'key'),
      b64(k.clientIv, suite.fixedIvLength, 'iv'), b64(k.serverIv, suite.fixedIvLength, 'iv'),
      b64(k.clientMacKey, suite.macKeyLength, 'MAC key'), b64(k.serverMacKey, suite.macKeyLength, 'MAC key'),
    ];
    const readCid = hex(st.readCid, 'connection ID');
    if (readCid && readCid.length !== this.cidLength) throw new TypeError('connection ID length differs from this server\'s');
    const writeCid = hex(st.writeCid, 'connection ID');
    const replay = ReplayWindow.restore(st.replay);
    const clientRandom = hex(st.clientRandom, 'client random') ?? Buffer.alloc(32);
    const sessionId = hex(st.sessionId, 'session id') ?? Buffer.alloc(0);
    // Nothing below throws: the key block taken from the store goes to the session, which gives it back on close.
    const block = this.keyStore.alloc(keyBlockLength(suite));
    let off = 0;
    for (const i of [4, 5, 0, 1, 2, 3]) {
      off += parts[i].copy(block, off);
      parts[i].fill(0);
    }
    const keys = keyMaterialOf(suite, block);
    const ciphers = serverCiphers(suite, keys, this.cipherContexts);
    const writer = new RecordWriter(0);
    writer.epoch1Seq = st.writeSeq;
    writer.cipher = ciphers.write;
    writer.writeCid = readCid ? writeCid : undefined;
    return new DtlsSession({
      address: st.address,
      port: st.port,
      identity: String(st.identity ?? ''),
      authType: st.authType === 'rpk' || st.authType === 'x509' ? st.authType : 'psk',
      cipherSuite: suite.name,
      keys,
      ciphers,
      writer,
      replay,
      finalFlight: [],
      clientFinishedSeq: -1,
      clientRandom,
      resumed: !!st.resumed,
      sessionId,
      readCid,
      writeCid: readCid ? (writeCid ?? Buffer.alloc(0)) : undefined,
      key: typeof st.key === 'string' ? st.key : undefined,
      createdAt: Number.isFinite(st.createdAt) ? st.createdAt : undefined,
      lastActivity: Number.isFinite(st.lastActivity) ? st.lastActivity : undefined,
      meta: st.meta,
      transport: this.transport,
      onClose: this.onSessionClose,
      onMigrate: this.onSessionMigrate,
    });
  }

  /** The resumption cache, JSON-serialisable (contains master secrets: treat as a secret). */
  exportResumptionCache(): ResumptionState[] {
    return this.cache?.export() ?? [];
  }

  /** Adds exported cache entries (expired or malformed ones are skipped); returns how many were taken. */
  importResumptionCache(states: readonly ResumptionState[]): number {
    if (!this.cache || !Array.isArray(states)) return 0;
    let n = 0;
    for (const st of states) {
      try {
        const id = Buffer.from(String(st.sessionId), 'hex');
        const master = Buffer.from(String(st.master), 'base64');
        if (id.length < 1 || id.length > 32 || master.length !== 48 || !suiteByName(st.suite) ||
            !Number.isFinite(st.createdAt) || Date.now() - st.createdAt >= this.cache.ttlMs) continue;
        const entry: CachedSession = {
          master, suite: st.suite, identity: String(st.identity), authType: st.authType === 'rpk' || st.authType === 'x509' ? st.authType : 'psk',
          extendedMasterSecret: !!st.extendedMasterSecret, createdAt: st.createdAt,
        };
        if (st.peerSpki) entry.peerSpki = Buffer.from(st.peerSpki, 'base64');
        if (st.peerNotAfter !== undefined) entry.peerNotAfter = st.peerNotAfter;
        this.cache.set(id, entry);
        n++;
      } catch {
        // skipped
      }
    }
    return n;
  }

  private onHandshakeFailed(failure: HandshakeFailure, h?: ServerHandshake): void {
    if (h && this.handshakes.get(h.key) === h) this.handshakes.delete(h.key);
    this.stats.handshakesFailed++;
    const info: HandshakeFailedInfo = { ...failure };
    this.emit('handshakeFailed', info);
  }

  /**
   * Stops every handshake and timer and ends every session, emitting 'close' on each. By default each peer gets a
   * close_notify (reason 'server_closed'); with { notify: false } nothing is sent (reason 'detached'), so the peers'
   * sessions stay usable by an instance that imports an export taken just before.
   */
  close(opts: { notify?: boolean } = {}): void {
    if (this.closed) return;
    this.closed = true;
    const notify = opts.notify !== false;
    for (const h of this.handshakes.values()) h.dispose();
    this.handshakes.clear();
    for (const s of [...new Set(this._sessions.values())]) s.terminate(notify ? 'server_closed' : 'detached', notify);
    this._sessions.clear();
    this.sessionsByCid.clear();
    this.cache?.clear();
    this.keyStore.clear();
    this.cipherContexts.close();
  }

  /** close({ notify: false }): hand-over to another instance after exportSessions(). */
  detach(): void {
    this.close({ notify: false });
  }
}
