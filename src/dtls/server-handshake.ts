import { createHash, type Hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AlertDescription, AlertLevel, type AlertName, alertName, encodeAlert } from './alerts';
import { type AuthType, type CachedSession, type SessionCache } from './cache';
import {
  type ClientHello, DecodeError, EMPTY_RENEGOTIATION_INFO_SCSV, type Extension, ExtensionType, type HandshakeFragment,
  HandshakeType, MessageAssembler, decodeConnectionIdExtension, decodePskClientKeyExchange, encodeHandshake,
  encodeServerHello, parseHandshakeFragments,
} from './handshake';
import { prf } from './prf';
import { ContentType, DTLS_1_2, type DtlsRecord } from './record';
import { ReplayWindow } from './replay';
import { type CipherPair, type CipherSuiteInfo, type KeyMaterial, deriveKeys, serverCiphers, suiteByName } from './suites';
import { type FlightMessage, type PeerTransport, RecordWriter, openRecord } from './transport';

export interface HandshakeOptions {
  pskLookup?: (identity: string) => Buffer | undefined;
  suites: readonly CipherSuiteInfo[];
  handshakeTimeoutMs: number;
  retransmitInitialMs: number;
  retransmitMaxMs: number;
  /** Session-id resumption cache; undefined = no session ids issued. */
  cache?: SessionCache;
  /** Returns a fresh, unused connection ID; undefined = connection IDs are not offered. */
  allocateCid?: () => Buffer;
}

export interface HandshakeResult {
  address: string;
  port: number;
  identity: string;
  authType: AuthType;
  suite: CipherSuiteInfo;
  keys: KeyMaterial;
  ciphers: CipherPair;
  writer: RecordWriter;
  replay: ReplayWindow;
  finalFlight: FlightMessage[];
  clientFinishedSeq: number;
  clientRandom: Buffer;
  /** True for an abbreviated handshake (session resumption). */
  resumed: boolean;
  /** Session id given to the client ('' = none), and the entry to cache under it after a full handshake. */
  sessionId: Buffer;
  cacheEntry?: CachedSession;
  /** Connection IDs (RFC 9146): ours (the client puts it in its records) and the client's; undefined = not negotiated. */
  readCid?: Buffer;
  writeCid?: Buffer;
}

export interface HandshakeFailure {
  address: string;
  port: number;
  identity?: string;
  alert: string;
  reason: string;
}

export interface HandshakeCallbacks {
  complete(h: ServerHandshake, result: HandshakeResult): void;
  failed(failure: HandshakeFailure, h?: ServerHandshake): void;
}

type State = 'wait_cke' | 'wait_ccs' | 'wait_finished' | 'done';

/** Everything decided from the ClientHello. */
interface Negotiated {
  suite: CipherSuiteInfo;
  secureRenegotiation: boolean;
  extendedMasterSecret: boolean;
  resume?: { sessionId: Buffer; entry: CachedSession };
  readCid?: Buffer;
  writeCid?: Buffer;
}

/** Messages further ahead than this are not buffered. */
const MAX_AHEAD = 4;
/** Epoch 1 records arriving before the ChangeCipherSpec are kept (reordering), up to this many. */
const MAX_EARLY_RECORDS = 8;
const VERIFY_DATA_LENGTH = 12;

/**
 * Server side of one full PSK handshake, created only once the ClientHello carried a valid cookie.
 *
 *   ClientHello (cookie)  -->
 *                         <--  ServerHello, ServerHelloDone          (flight 4, retransmitted on timer)
 *   ClientKeyExchange, [ChangeCipherSpec], Finished  -->
 *                         <--  [ChangeCipherSpec], Finished           (flight 6, re-sent by the session)
 *
 * Abbreviated (session resumption, RFC 5246 §7.3):
 *   ClientHello (cookie, session_id)  -->
 *                         <--  ServerHello, [ChangeCipherSpec], Finished (retransmitted on timer)
 *   [ChangeCipherSpec], Finished  -->
 */
export class ServerHandshake {
  readonly startedAt = Date.now();
  readonly clientRandom: Buffer;
  private state: State = 'wait_cke';
  private readonly serverRandom = randomBytes(32);
  private readonly suite: CipherSuiteInfo;
  private readonly extendedMasterSecret: boolean;
  private readonly transcript: Hash = createHash('sha256');
  private readonly writer: RecordWriter;
  private readonly helloSeq: number;
  private nextReceiveSeq: number;
  private nextSendSeq: number;
  private readonly assemblers = new Map<number, { asm: MessageAssembler; epoch: number }>();
  private flight: FlightMessage[] = [];
  private retransmitTimer: NodeJS.Timeout | undefined;
  private retransmitMs: number;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private identity: string | undefined;
  private master: Buffer | undefined;
  private ciphers: CipherPair | undefined;
  private readonly replay1 = new ReplayWindow();
  private early: DtlsRecord[] = [];
  private finished = false;
  private authType: AuthType = 'psk';
  private keys: KeyMaterial | undefined;
  private readonly resume: Negotiated['resume'];
  private readonly sessionId: Buffer;
  readonly readCid: Buffer | undefined;
  private readonly writeCid: Buffer | undefined;
  /** True while our last flight is unanswered: it is retransmitted on timer and on a repeated ClientHello. */
  private awaitingPeer = true;

  private constructor(
    readonly address: string,
    readonly port: number,
    hello: ClientHello,
    helloMessage: Buffer,
    helloSeq: number,
    helloRecordSeq: number,
    n: Negotiated,
    private readonly opts: HandshakeOptions,
    private readonly transport: PeerTransport,
    private readonly callbacks: HandshakeCallbacks,
  ) {
    this.clientRandom = Buffer.from(hello.random);
    this.suite = n.suite;
    this.helloSeq = helloSeq;
    this.nextReceiveSeq = helloSeq + 1;
    this.nextSendSeq = helloSeq;
    // Continue the epoch 0 record sequence above the one the HelloVerifyRequest echoed.
    this.writer = new RecordWriter(helloRecordSeq);
    this.extendedMasterSecret = n.extendedMasterSecret;
    this.resume = n.resume;
    this.readCid = n.readCid;
    this.writeCid = n.writeCid;
    this.sessionId = n.resume ? n.resume.sessionId : (opts.cache ? randomBytes(32) : Buffer.alloc(0));
    this.retransmitMs = opts.retransmitInitialMs;
    this.transcript.update(helloMessage);
  }

  /**
   * Validates a cookie-verified ClientHello and, if acceptable, starts the handshake by sending
   * ServerHello + ServerHelloDone. Returns undefined when the hello was refused (the failure was reported).
   */
  static start(
    address: string, port: number, hello: ClientHello, helloMessage: Buffer, helloSeq: number, helloRecordSeq: number,
    opts: HandshakeOptions, transport: PeerTransport, callbacks: HandshakeCallbacks,
  ): ServerHandshake | undefined {
    const refuse = (alert: AlertName, reason: string): undefined => {
      const w = new RecordWriter(helloRecordSeq);
      const rec = w.record(ContentType.alert, 0, encodeAlert(AlertLevel.fatal, AlertDescription[alert]));
      if (rec) {
        transport.alertSent();
        transport.send(rec, port, address);
      }
      transport.log('debug', `DTLS handshake with ${address}:${port} refused: ${reason}`);
      callbacks.failed({ address, port, alert, reason });
      return undefined;
    };
    // DTLS version numbers count down: 1.2 = 0xfefd < 1.0 = 0xfeff.
    if (hello.clientVersion > DTLS_1_2) return refuse('protocol_version', 'client does not offer DTLS 1.2');
    if (!hello.compressionMethods.includes(0)) return refuse('handshake_failure', 'client does not offer null compression');
    const reneg = hello.extensions.find((e) => e.type === ExtensionType.renegotiation_info);
    // RFC 5746 §3.6: on an initial handshake renegotiated_connection must be empty.
    if (reneg && !(reneg.data.length === 1 && reneg.data[0] === 0)) {
      return refuse('handshake_failure', 'non-empty renegotiation_info on an initial handshake');
    }
    const secureRenegotiation = !!reneg || hello.cipherSuites.includes(EMPTY_RENEGOTIATION_INFO_SCSV);
    const extendedMasterSecret = hello.extensions.some((e) => e.type === ExtensionType.extended_master_secret);
    let readCid: Buffer | undefined;
    let writeCid: Buffer | undefined;
    const cidExt = hello.extensions.find((e) => e.type === ExtensionType.connection_id);
    if (cidExt && opts.allocateCid) {
      try {
        writeCid = Buffer.from(decodeConnectionIdExtension(cidExt.data));
      } catch {
        return refuse('decode_error', 'malformed connection_id extension');
      }
      readCid = opts.allocateCid();
    }
    const resume = ServerHandshake.findResumable(hello, extendedMasterSecret, opts);
    if (resume === 'abort') {
      // RFC 7627 §5.3: the original session used the extended master secret, this hello does not offer it.
      return refuse('handshake_failure', 'resumption without extended_master_secret of a session that used it');
    }
    let suite: CipherSuiteInfo | undefined;
    if (resume) suite = suiteByName(resume.entry.suite);
    else suite = opts.suites.find((s) => hello.cipherSuites.includes(s.id) && ServerHandshake.usable(s, opts));
    if (!suite) return refuse('handshake_failure', 'no cipher suite in common');
    const h = new ServerHandshake(address, port, hello, helloMessage, helloSeq, helloRecordSeq,
      { suite, secureRenegotiation, extendedMasterSecret, resume, readCid, writeCid }, opts, transport, callbacks);
    h.begin(secureRenegotiation);
    return h;
  }

  /** Whether a suite can be negotiated with what the server is configured with. */
  private static usable(s: CipherSuiteInfo, opts: HandshakeOptions): boolean {
    return s.keyExchange === 'psk' ? !!opts.pskLookup : false;
  }

  /**
   * A cached session the ClientHello asks to resume, if it may be: not expired, its suite still enabled and offered,
   * its credentials still valid. 'abort' when the extended master secret rule forbids both resumption and a fallback.
   */
  private static findResumable(hello: ClientHello, ems: boolean, opts: HandshakeOptions):
      { sessionId: Buffer; entry: CachedSession } | 'abort' | undefined {
    const entry = opts.cache?.get(hello.sessionId);
    if (!entry) return undefined;
    if (entry.extendedMasterSecret && !ems) return 'abort';
    // RFC 7627 §5.3: a session without it is not resumed by a client that now offers it: full handshake.
    if (!entry.extendedMasterSecret && ems) return undefined;
    const suite = suiteByName(entry.suite);
    if (!suite || !opts.suites.includes(suite) || !hello.cipherSuites.includes(suite.id)) return undefined;
    if (entry.authType === 'psk') {
      let psk: Buffer | undefined;
      try {
        psk = opts.pskLookup?.(entry.identity);
      } catch {
        psk = undefined;
      }
      if (!psk || psk.length === 0) return undefined;
    }
    return { sessionId: Buffer.from(hello.sessionId), entry };
  }

  get key(): string {
    return `${this.address}:${this.port}`;
  }

  get suiteName(): string {
    return this.suite.name;
  }

  /** True once the ClientKeyExchange was processed (epoch 1 keys exist). */
  get hasKeys(): boolean {
    return this.state === 'wait_ccs' || this.state === 'wait_finished';
  }

  private begin(secureRenegotiation: boolean): void {
    const extensions: Extension[] = [];
    if (secureRenegotiation) extensions.push({ type: ExtensionType.renegotiation_info, data: Buffer.from([0]) });
    if (this.extendedMasterSecret) extensions.push({ type: ExtensionType.extended_master_secret, data: Buffer.alloc(0) });
    if (this.readCid) {
      extensions.push({ type: ExtensionType.connection_id, data: Buffer.concat([Buffer.from([this.readCid.length]), this.readCid]) });
    }
    // encrypt_then_mac and session tickets are not echoed.
    const serverHello = encodeHandshake(HandshakeType.server_hello, this.nextSendSeq++, encodeServerHello({
      serverVersion: DTLS_1_2, random: this.serverRandom, sessionId: this.sessionId, cipherSuite: this.suite.id,
      extensions,
    }));
    this.transcript.update(serverHello);
    this.flight = [{ type: ContentType.handshake, epoch: 0, payload: serverHello }];
    if (this.resume) {
      this.beginAbbreviated(this.resume.entry);
    } else {
      // RFC 4279 §2: no ServerKeyExchange without an identity hint.
      const done = encodeHandshake(HandshakeType.server_hello_done, this.nextSendSeq++, Buffer.alloc(0));
      this.transcript.update(done);
      this.flight.push({ type: ContentType.handshake, epoch: 0, payload: done });
    }
    this.transport.log('debug', `DTLS handshake with ${this.key}: ServerHello ${this.suite.name}` +
      `${this.extendedMasterSecret ? ', extended master secret' : ''}${this.resume ? ', resuming session' : ''}` +
      `${this.readCid ? ', connection ID' : ''}`);
    this.sendFlight();
    this.armRetransmit();
    this.timeoutTimer = setTimeout(() => {
      this.timeoutTimer = undefined;
      this.fail('timeout', `handshake not completed within ${this.opts.handshakeTimeoutMs} ms`, false);
    }, this.opts.handshakeTimeoutMs);
  }

  /** Abbreviated handshake: keys from the cached master secret, our ChangeCipherSpec and Finished go first. */
  private beginAbbreviated(entry: CachedSession): void {
    this.master = Buffer.from(entry.master);
    this.identity = entry.identity;
    this.authType = entry.authType;
    this.installKeys(this.master);
    const verify = prf(this.master, 'server finished', this.transcript.copy().digest(), VERIFY_DATA_LENGTH);
    const finished = encodeHandshake(HandshakeType.finished, this.nextSendSeq++, verify);
    this.transcript.update(finished);
    this.flight.push(
      { type: ContentType.change_cipher_spec, epoch: 0, payload: Buffer.from([1]) },
      { type: ContentType.handshake, epoch: 1, payload: finished },
    );
    this.state = 'wait_ccs';
  }

  private installKeys(master: Buffer): void {
    this.keys = deriveKeys(this.suite, master, this.clientRandom, this.serverRandom);
    this.ciphers = serverCiphers(this.suite, this.keys);
    this.writer.cipher = this.ciphers.write;
    this.writer.writeCid = this.writeCid;
  }

  private sendFlight(): void {
    this.transport.send(this.writer.flight(this.flight), this.port, this.address);
  }

  /** RFC 6347 §4.2.4.1: timer starts at retransmitInitialMs and doubles up to retransmitMaxMs. */
  private armRetransmit(): void {
    this.clearRetransmit();
    this.retransmitTimer = setTimeout(() => {
      this.retransmitTimer = undefined;
      if (!this.awaitingPeer) return;
      this.transport.log('debug', `DTLS handshake with ${this.key}: retransmitting flight after ${this.retransmitMs} ms`);
      this.sendFlight();
      this.retransmitMs = Math.min(this.retransmitMs * 2, this.opts.retransmitMaxMs);
      this.armRetransmit();
    }, this.retransmitMs);
  }

  private clearRetransmit(): void {
    if (this.retransmitTimer) clearTimeout(this.retransmitTimer);
    this.retransmitTimer = undefined;
  }

  /** Stops all timers; the handshake is finished or abandoned. */
  dispose(): void {
    this.clearRetransmit();
    if (this.timeoutTimer) clearTimeout(this.timeoutTimer);
    this.timeoutTimer = undefined;
    this.finished = true;
    this.state = 'done';
    this.assemblers.clear();
    this.early = [];
    if (this.master) this.master.fill(0);
  }

  /** The client sent its cookie ClientHello again: our flight was lost, send it again (RFC 6347 §4.2.4). */
  onRetransmittedHello(): void {
    if (this.awaitingPeer && !this.finished) {
      this.sendFlight();
      this.armRetransmit();
    }
  }

  /** Tells whether a ClientHello is the one this handshake started from. */
  isSameHello(random: Buffer, messageSeq: number): boolean {
    return messageSeq === this.helloSeq && random.equals(this.clientRandom);
  }

  private drop(reason: string): void {
    this.transport.dropped(this.address, this.port, reason);
  }

  private fail(alert: AlertName | 'timeout' | 'peer_alert', reason: string, send: boolean, peerAlert?: string): void {
    if (this.finished) return;
    if (send && alert !== 'timeout' && alert !== 'peer_alert') {
      // Before our ChangeCipherSpec every alert goes out in epoch 0.
      const rec = this.writer.record(ContentType.alert, 0, encodeAlert(AlertLevel.fatal, AlertDescription[alert]));
      if (rec) {
        this.transport.alertSent();
        this.transport.send(rec, this.port, this.address);
      }
    }
    const name = alert === 'peer_alert' ? (peerAlert ?? 'unknown') : alert;
    this.transport.log('debug', `DTLS handshake with ${this.key}${this.identity !== undefined ? ` (identity ${this.identity})` : ''} failed: ${name}: ${reason}`);
    this.dispose();
    this.callbacks.failed({ address: this.address, port: this.port, identity: this.identity, alert: name, reason }, this);
  }

  /** Handles one record from this peer (epoch 0 or 1). Never throws on bad input. */
  handleRecord(rec: DtlsRecord): void {
    if (this.finished) return;
    if (rec.epoch === 0) this.handleEpoch0(rec);
    else if (rec.epoch === 1) this.handleEpoch1(rec);
    else this.drop(`unexpected epoch ${rec.epoch}`);
  }

  private handleEpoch0(rec: DtlsRecord): void {
    switch (rec.type) {
      case ContentType.handshake: {
        const frags = parseHandshakeFragments(rec.fragment);
        if (!frags) {
          this.drop('malformed handshake record');
          return;
        }
        for (const f of frags) {
          if (this.finished) return;
          this.onFragment(f, 0);
        }
        return;
      }
      case ContentType.change_cipher_spec:
        if (rec.fragment.length !== 1 || rec.fragment[0] !== 1) {
          this.drop('malformed ChangeCipherSpec');
          return;
        }
        if (this.state !== 'wait_ccs') {
          // Early (ClientKeyExchange lost or reordered) or duplicate: the client retransmits its flight.
          this.drop('unexpected ChangeCipherSpec');
          return;
        }
        this.awaitingPeer = false;
        this.clearRetransmit();
        this.state = 'wait_finished';
        this.drainEarly();
        return;
      case ContentType.alert:
        this.onPeerAlert(rec.fragment);
        return;
      default:
        this.drop(`unexpected content type ${rec.type} in epoch 0`);
    }
  }

  private handleEpoch1(rec: DtlsRecord): void {
    if (this.state !== 'wait_finished') {
      if (this.early.length >= MAX_EARLY_RECORDS) {
        this.drop('too many epoch 1 records before ChangeCipherSpec');
        return;
      }
      this.early.push({ ...rec, fragment: Buffer.from(rec.fragment), cid: rec.cid ? Buffer.from(rec.cid) : undefined });
      return;
    }
    if (!this.replay1.check(rec.seq)) {
      this.drop(`replayed record seq ${rec.seq}`);
      return;
    }
    const opened = this.ciphers ? openRecord(this.ciphers.read, rec, this.readCid) : undefined;
    if (!opened) {
      if (rec.type === ContentType.handshake || rec.type === ContentType.tls12_cid) {
        // The client's Finished does not decrypt: almost always a wrong key.
        this.fail('bad_record_mac', 'client Finished record failed authentication (wrong key?)', true);
      } else {
        this.drop('record failed authentication');
      }
      return;
    }
    this.replay1.update(rec.seq);
    const plain = opened.plain;
    if (opened.type === ContentType.handshake) {
      const frags = parseHandshakeFragments(plain);
      if (!frags) {
        this.fail('decode_error', 'malformed encrypted handshake record', true);
        return;
      }
      for (const f of frags) {
        if (this.finished) return;
        this.onFragment(f, 1);
      }
    } else if (opened.type === ContentType.alert) {
      this.onPeerAlert(plain);
    } else {
      this.drop(`unexpected content type ${opened.type} before handshake completion`);
    }
  }

  private drainEarly(): void {
    const early = this.early;
    this.early = [];
    for (const r of early) {
      if (this.finished) return;
      this.handleEpoch1(r);
    }
  }

  private onPeerAlert(plain: Buffer): void {
    if (plain.length !== 2) {
      this.drop('malformed alert');
      return;
    }
    const level = plain[0];
    const desc = plain[1];
    if (level === AlertLevel.fatal || desc === AlertDescription.close_notify) {
      this.fail('peer_alert', `peer sent alert ${alertName(desc)}`, false, alertName(desc));
    }
  }

  private onFragment(f: HandshakeFragment, epoch: number): void {
    if (f.messageSeq < this.nextReceiveSeq) {
      // Part of a message already processed: a retransmission.
      if (f.messageSeq === this.helloSeq && f.msgType === HandshakeType.client_hello) this.onRetransmittedHello();
      return;
    }
    if (f.messageSeq >= this.nextReceiveSeq + MAX_AHEAD) {
      this.drop(`handshake message_seq ${f.messageSeq} too far ahead`);
      return;
    }
    let entry = this.assemblers.get(f.messageSeq);
    if (!entry) {
      entry = { asm: new MessageAssembler(f.msgType, f.length, f.messageSeq), epoch };
      this.assemblers.set(f.messageSeq, entry);
    }
    if (entry.epoch !== epoch || !entry.asm.add(f)) {
      this.fail('illegal_parameter', 'inconsistent handshake fragments', true);
      return;
    }
    // Process every complete message in order.
    for (;;) {
      const next = this.assemblers.get(this.nextReceiveSeq);
      if (!next || !next.asm.complete) return;
      this.assemblers.delete(this.nextReceiveSeq);
      this.nextReceiveSeq++;
      this.onMessage(next.asm.msgType, next.asm.body, next.asm.messageSeq, next.epoch);
      if (this.finished) return;
    }
  }

  private onMessage(msgType: number, body: Buffer, messageSeq: number, epoch: number): void {
    const full = encodeHandshake(msgType, messageSeq, body);
    if (this.state === 'wait_cke' && msgType === HandshakeType.client_key_exchange && epoch === 0) {
      this.onClientKeyExchange(body, full);
      return;
    }
    if (this.state === 'wait_finished' && msgType === HandshakeType.finished && epoch === 1) {
      this.onFinished(body, full, messageSeq);
      return;
    }
    this.fail('unexpected_message', `unexpected handshake message ${msgType} in state ${this.state}`, true);
  }

  private onClientKeyExchange(body: Buffer, full: Buffer): void {
    this.awaitingPeer = false;
    this.clearRetransmit();
    let identityBytes: Buffer;
    try {
      identityBytes = decodePskClientKeyExchange(body);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.fail('decode_error', 'malformed ClientKeyExchange', true);
      return;
    }
    const identity = identityBytes.toString('utf8');
    this.identity = identity;
    let psk: Buffer | undefined;
    try {
      psk = this.opts.pskLookup?.(identity);
    } catch (e) {
      this.fail('internal_error', `PSK lookup failed: ${(e as Error).message}`, true);
      return;
    }
    if (!psk || psk.length === 0 || psk.length > 0xffff) {
      this.fail('unknown_psk_identity', 'unknown PSK identity', true);
      return;
    }
    this.transcript.update(full);
    // RFC 4279 §2: premaster = uint16(N) ‖ N zero bytes ‖ uint16(N) ‖ PSK.
    const n = psk.length;
    const premaster = Buffer.alloc(4 + 2 * n);
    premaster.writeUInt16BE(n, 0);
    premaster.writeUInt16BE(n, 2 + n);
    psk.copy(premaster, 4 + n);
    if (this.extendedMasterSecret) {
      // RFC 7627 §4: session_hash covers the messages up to and including ClientKeyExchange.
      const sessionHash = this.transcript.copy().digest();
      this.master = prf(premaster, 'extended master secret', sessionHash, 48);
    } else {
      this.master = prf(premaster, 'master secret', Buffer.concat([this.clientRandom, this.serverRandom]), 48);
    }
    premaster.fill(0);
    this.installKeys(this.master);
    this.state = 'wait_ccs';
    this.transport.log('debug', `DTLS handshake with ${this.key}: ClientKeyExchange for identity ${identity}`);
  }

  private onFinished(body: Buffer, full: Buffer, messageSeq: number): void {
    const master = this.master;
    if (!master || !this.ciphers || !this.keys) {
      this.fail('internal_error', 'no keys', true);
      return;
    }
    const expected = prf(master, 'client finished', this.transcript.copy().digest(), VERIFY_DATA_LENGTH);
    if (body.length !== VERIFY_DATA_LENGTH || !timingSafeEqual(body, expected)) {
      this.fail('decrypt_error', 'client Finished does not verify', true);
      return;
    }
    let finalFlight: FlightMessage[] = [];
    if (!this.resume) {
      this.transcript.update(full);
      const serverVerify = prf(master, 'server finished', this.transcript.copy().digest(), VERIFY_DATA_LENGTH);
      const finished = encodeHandshake(HandshakeType.finished, this.nextSendSeq++, serverVerify);
      finalFlight = [
        { type: ContentType.change_cipher_spec, epoch: 0, payload: Buffer.from([1]) },
        { type: ContentType.handshake, epoch: 1, payload: finished },
      ];
      this.transport.send(this.writer.flight(finalFlight), this.port, this.address);
    }
    const identity = this.identity ?? '';
    const result: HandshakeResult = {
      address: this.address,
      port: this.port,
      identity,
      authType: this.authType,
      suite: this.suite,
      keys: this.keys,
      ciphers: this.ciphers,
      writer: this.writer,
      replay: this.replay1,
      finalFlight,
      clientFinishedSeq: messageSeq,
      clientRandom: this.clientRandom,
      resumed: !!this.resume,
      sessionId: this.sessionId,
      readCid: this.readCid,
      writeCid: this.writeCid,
    };
    if (!this.resume && this.sessionId.length > 0) {
      result.cacheEntry = {
        master: Buffer.from(master), suite: this.suite.name, identity, authType: this.authType,
        extendedMasterSecret: this.extendedMasterSecret, createdAt: Date.now(),
      };
    }
    this.transport.log('debug', `DTLS handshake with ${this.key} complete${this.resume ? ' (resumed)' : ''}: identity ${identity}, ${this.suite.name}`);
    this.dispose();
    this.callbacks.complete(this, result);
  }
}
