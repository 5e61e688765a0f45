import { Buffer } from 'node:buffer';
import { type ECDH, type KeyObject, createECDH, createHash, type Hash, randomBytes, sign, timingSafeEqual, verify } from 'node:crypto';
import type { X509Certificate } from 'node:crypto';
import { AlertDescription, AlertLevel, type AlertName, alertName, encodeAlert } from './alerts';
import { type AuthType, type CachedSession, type SessionCache } from './cache';
import {
  CertificateType, ECDSA_SHA256, SECP256R1, type ServerCredentials, decodeCertificate, encodeCertificate,
  encodeCertificateRequest, p256FromSpki, verifyClientChain,
} from './certs';
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
import type { RandomBlock } from './random-block';

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
  /** Server key and chain for the ECDHE_ECDSA suites. */
  credentials?: ServerCredentials;
  /** Where the server random and session ids come from; undefined = one randomBytes call each. */
  random?: RandomBlock;
  /** CAs that client X.509 chains must lead to. */
  trustedCAs?: readonly X509Certificate[];
  /** Client raw public key (SubjectPublicKeyInfo, DER) -> identity; undefined = unknown key. */
  rpkLookup?: (spki: Buffer) => { identity: string } | undefined;
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

type State = 'wait_cert' | 'wait_cke' | 'wait_cv' | 'wait_ccs' | 'wait_finished' | 'done';

/** Certificate types for the ECDHE_ECDSA suites (RFC 7250), and whether the ServerHello echoes each. */
interface CertTypes { server: number; client: number; echoServer: boolean; echoClient: boolean; pointFormats: boolean }

/** Everything decided from the ClientHello. */
interface Negotiated {
  suite: CipherSuiteInfo;
  secureRenegotiation: boolean;
  extendedMasterSecret: boolean;
  resume?: { sessionId: Buffer; entry: CachedSession };
  readCid?: Buffer;
  writeCid?: Buffer;
  certTypes?: CertTypes;
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
  private readonly serverRandom: Buffer;
  private readonly suite: CipherSuiteInfo;
  private readonly extendedMasterSecret: boolean;
  private readonly transcript: Hash = createHash('sha256');
  /** The handshake messages themselves, for the CertificateVerify signature (RFC 5246 §7.4.8). */
  private readonly messages: Buffer[] = [];
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
  private readonly certTypes: CertTypes | undefined;
  private ecdh: ECDH | undefined;
  private peerKey: KeyObject | undefined;
  private peerSpki: Buffer | undefined;
  private peerNotAfter: number | undefined;

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
    this.serverRandom = opts.random ? opts.random.take(32) : randomBytes(32);
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
    this.certTypes = n.certTypes;
    this.sessionId = n.resume ? n.resume.sessionId : (opts.cache ? (opts.random ? opts.random.take(32) : randomBytes(32)) : Buffer.alloc(0));
    this.retransmitMs = opts.retransmitInitialMs;
    this.addTranscript(helloMessage);
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
    let certTypes: CertTypes | undefined;
    if (resume) {
      suite = suiteByName(resume.entry.suite);
    } else {
      for (const s of opts.suites) {
        if (!hello.cipherSuites.includes(s.id)) continue;
        if (s.keyExchange === 'psk') {
          if (!opts.pskLookup) continue;
        } else {
          certTypes = ServerHandshake.negotiateCertTypes(hello, opts);
          if (!certTypes) continue;
        }
        suite = s;
        break;
      }
    }
    if (!suite) return refuse('handshake_failure', 'no cipher suite in common');
    if (suite.keyExchange === 'psk') certTypes = undefined;
    const h = new ServerHandshake(address, port, hello, helloMessage, helloSeq, helloRecordSeq,
      { suite, secureRenegotiation, extendedMasterSecret, resume, readCid, writeCid, certTypes }, opts, transport,
      callbacks);
    h.begin(secureRenegotiation);
    return h;
  }

  /**
   * For the ECDHE_ECDSA suites: the hello must allow P-256, uncompressed points and ecdsa_secp256r1_sha256 (RFC 8422),
   * and there must be a server and a client certificate type both sides support (RFC 7250). Undefined otherwise.
   */
  private static negotiateCertTypes(hello: ClientHello, opts: HandshakeOptions): CertTypes | undefined {
    const creds = opts.credentials;
    if (!creds) return undefined;
    const ext = (type: number): Buffer | undefined => hello.extensions.find((e) => e.type === type)?.data;
    const list16 = (d: Buffer): number[] | undefined => {
      if (d.length < 2 || d.readUInt16BE(0) !== d.length - 2 || d.length % 2 !== 0) return undefined;
      const out: number[] = [];
      for (let i = 2; i < d.length; i += 2) out.push(d.readUInt16BE(i));
      return out;
    };
    const list8 = (d: Buffer): number[] | undefined => (d.length >= 1 && d[0] === d.length - 1 ? [...d.subarray(1)] : undefined);
    const groups = ext(ExtensionType.supported_groups);
    if (groups && !list16(groups)?.includes(SECP256R1)) return undefined;
    const formats = ext(ExtensionType.ec_point_formats);
    if (formats && !list8(formats)?.includes(0)) return undefined;
    const sigs = ext(ExtensionType.signature_algorithms);
    if (sigs && !list16(sigs)?.includes(ECDSA_SHA256)) return undefined;
    const serverOk = (t: number): boolean =>
      (t === CertificateType.rawPublicKey && creds.rpk) || (t === CertificateType.x509 && creds.chain.length > 0);
    const clientOk = (t: number): boolean =>
      (t === CertificateType.rawPublicKey && !!opts.rpkLookup) ||
      (t === CertificateType.x509 && (opts.trustedCAs?.length ?? 0) > 0);
    const sct = ext(ExtensionType.server_certificate_type);
    const cct = ext(ExtensionType.client_certificate_type);
    const server = sct ? list8(sct)?.find(serverOk) : (serverOk(CertificateType.x509) ? CertificateType.x509 : undefined);
    const client = cct ? list8(cct)?.find(clientOk) : (clientOk(CertificateType.x509) ? CertificateType.x509 : undefined);
    if (server === undefined || client === undefined) return undefined;
    return { server, client, echoServer: !!sct, echoClient: !!cct, pointFormats: !!formats };
  }

  private addTranscript(message: Buffer): void {
    this.transcript.update(message);
    this.messages.push(message);
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
    } else if (entry.authType === 'rpk') {
      let found: { identity: string } | undefined;
      try {
        found = entry.peerSpki ? opts.rpkLookup?.(entry.peerSpki) : undefined;
      } catch {
        found = undefined;
      }
      if (!found || found.identity !== entry.identity) return undefined;
    } else if (!(entry.peerNotAfter !== undefined && Date.now() <= entry.peerNotAfter && (opts.trustedCAs?.length ?? 0) > 0)) {
      return undefined;
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
    const ct = this.resume ? undefined : this.certTypes;
    if (ct) {
      if (ct.pointFormats) extensions.push({ type: ExtensionType.ec_point_formats, data: Buffer.from([1, 0]) });
      if (ct.echoServer) extensions.push({ type: ExtensionType.server_certificate_type, data: Buffer.from([ct.server]) });
      if (ct.echoClient) extensions.push({ type: ExtensionType.client_certificate_type, data: Buffer.from([ct.client]) });
    }
    // encrypt_then_mac and session tickets are not echoed.
    const serverHello = encodeHandshake(HandshakeType.server_hello, this.nextSendSeq++, encodeServerHello({
      serverVersion: DTLS_1_2, random: this.serverRandom, sessionId: this.sessionId, cipherSuite: this.suite.id,
      extensions,
    }));
    this.addTranscript(serverHello);
    this.flight = [{ type: ContentType.handshake, epoch: 0, payload: serverHello }];
    if (this.resume) {
      this.beginAbbreviated(this.resume.entry);
    } else if (ct && this.opts.credentials) {
      this.beginEcdhe(ct, this.opts.credentials);
    } else {
      // RFC 4279 §2: no ServerKeyExchange without an identity hint.
      const done = encodeHandshake(HandshakeType.server_hello_done, this.nextSendSeq++, Buffer.alloc(0));
      this.addTranscript(done);
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
    this.addTranscript(finished);
    this.flight.push(
      { type: ContentType.change_cipher_spec, epoch: 0, payload: Buffer.from([1]) },
      { type: ContentType.handshake, epoch: 1, payload: finished },
    );
    this.state = 'wait_ccs';
  }

  /** Certificate, ServerKeyExchange (ECDHE P-256, signed), CertificateRequest, ServerHelloDone (RFC 8422 §2.2). */
  private beginEcdhe(ct: CertTypes, creds: ServerCredentials): void {
    const add = (type: number, body: Buffer): void => {
      const m = encodeHandshake(type, this.nextSendSeq++, body);
      this.addTranscript(m);
      this.flight.push({ type: ContentType.handshake, epoch: 0, payload: m });
    };
    add(HandshakeType.certificate, encodeCertificate(ct.server, creds));
    this.ecdh = createECDH('prime256v1');
    const point = this.ecdh.generateKeys(); // uncompressed
    const params = Buffer.concat([Buffer.from([3, SECP256R1 >> 8, SECP256R1 & 0xff, point.length]), point]);
    const signature = sign('sha256', Buffer.concat([this.clientRandom, this.serverRandom, params]), creds.privateKey);
    const sigHeader = Buffer.from([ECDSA_SHA256 >> 8, ECDSA_SHA256 & 0xff, signature.length >> 8, signature.length & 0xff]);
    add(HandshakeType.server_key_exchange, Buffer.concat([params, sigHeader, signature]));
    add(HandshakeType.certificate_request, encodeCertificateRequest());
    add(HandshakeType.server_hello_done, Buffer.alloc(0));
    this.state = 'wait_cert';
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
    this.messages.length = 0;
    this.ecdh = undefined;
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
    if (this.state === 'wait_cert' && msgType === HandshakeType.certificate && epoch === 0) {
      this.onClientCertificate(body, full);
      return;
    }
    if (this.state === 'wait_cke' && msgType === HandshakeType.client_key_exchange && epoch === 0) {
      if (this.suite.keyExchange === 'psk') this.onClientKeyExchange(body, full);
      else this.onEcdheClientKeyExchange(body, full);
      return;
    }
    if (this.state === 'wait_cv' && msgType === HandshakeType.certificate_verify && epoch === 0) {
      this.onCertificateVerify(body, full);
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
    this.addTranscript(full);
    // RFC 4279 §2: premaster = uint16(N) ‖ N zero bytes ‖ uint16(N) ‖ PSK.
    const n = psk.length;
    const premaster = Buffer.alloc(4 + 2 * n);
    premaster.writeUInt16BE(n, 0);
    premaster.writeUInt16BE(n, 2 + n);
    psk.copy(premaster, 4 + n);
    this.deriveMaster(premaster);
    this.state = 'wait_ccs';
    this.transport.log('debug', `DTLS handshake with ${this.key}: ClientKeyExchange for identity ${identity}`);
  }

  /** Client Certificate: a raw public key looked up by the application, or an X.509 chain checked against the CAs. */
  private onClientCertificate(body: Buffer, full: Buffer): void {
    this.awaitingPeer = false;
    this.clearRetransmit();
    const ct = this.certTypes;
    if (!ct) {
      this.fail('internal_error', 'no certificate types', true);
      return;
    }
    let items: Buffer[];
    try {
      items = decodeCertificate(ct.client, body);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.fail('decode_error', 'malformed client Certificate', true);
      return;
    }
    if (items.length === 0) {
      this.fail('handshake_failure', 'client sent no certificate', true);
      return;
    }
    if (ct.client === CertificateType.rawPublicKey) {
      const spki = Buffer.from(items[0]);
      const key = p256FromSpki(spki);
      if (!key) {
        this.fail('bad_certificate', 'client raw public key is not an EC P-256 SubjectPublicKeyInfo', true);
        return;
      }
      let found: { identity: string } | undefined;
      try {
        found = this.opts.rpkLookup?.(spki);
      } catch (e) {
        this.fail('internal_error', `raw public key lookup failed: ${(e as Error).message}`, true);
        return;
      }
      if (!found || typeof found.identity !== 'string') {
        this.fail('certificate_unknown', 'unknown client raw public key', true);
        return;
      }
      this.identity = found.identity;
      this.authType = 'rpk';
      this.peerKey = key;
      this.peerSpki = spki;
    } else {
      const v = verifyClientChain(items, this.opts.trustedCAs ?? []);
      if ('error' in v) {
        this.fail(v.alert, v.error, true);
        return;
      }
      this.identity = v.commonName;
      this.authType = 'x509';
      this.peerKey = v.publicKey;
      this.peerNotAfter = v.notAfter;
    }
    this.addTranscript(full);
    this.state = 'wait_cke';
    this.transport.log('debug', `DTLS handshake with ${this.key}: client ${this.authType} credential for identity ${this.identity}`);
  }

  /** ECDHE ClientKeyExchange (RFC 8422 §5.7): opaque point<1..2^8-1>, uncompressed P-256. */
  private onEcdheClientKeyExchange(body: Buffer, full: Buffer): void {
    if (body.length < 1 || body[0] !== body.length - 1 || body.length !== 66 || body[1] !== 4 || !this.ecdh) {
      this.fail('decode_error', 'malformed ECDHE ClientKeyExchange', true);
      return;
    }
    let premaster: Buffer;
    try {
      premaster = this.ecdh.computeSecret(body.subarray(1));
    } catch {
      this.fail('illegal_parameter', 'client ECDHE point is not on P-256', true);
      return;
    }
    this.ecdh = undefined;
    this.addTranscript(full);
    this.deriveMaster(premaster);
    this.state = 'wait_cv';
  }

  /** CertificateVerify (RFC 5246 §7.4.8): ECDSA-SHA256 over every handshake message so far. */
  private onCertificateVerify(body: Buffer, full: Buffer): void {
    if (body.length < 4 || body.readUInt16BE(0) !== ECDSA_SHA256 || body.readUInt16BE(2) !== body.length - 4 || !this.peerKey) {
      this.fail('decode_error', 'malformed CertificateVerify or not ecdsa_secp256r1_sha256', true);
      return;
    }
    let ok = false;
    try {
      ok = verify('sha256', Buffer.concat(this.messages), this.peerKey, body.subarray(4));
    } catch {
      ok = false;
    }
    if (!ok) {
      this.fail('decrypt_error', 'CertificateVerify signature does not verify', true);
      return;
    }
    this.addTranscript(full);
    this.state = 'wait_ccs';
  }

  private deriveMaster(premaster: Buffer): void {
    if (this.extendedMasterSecret) {
      // RFC 7627 §4: session_hash covers the messages up to and including ClientKeyExchange.
      const sessionHash = this.transcript.copy().digest();
      this.master = prf(premaster, 'extended master secret', sessionHash, 48);
    } else {
      this.master = prf(premaster, 'master secret', Buffer.concat([this.clientRandom, this.serverRandom]), 48);
    }
    premaster.fill(0);
    this.installKeys(this.master);
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
      this.addTranscript(full);
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
        master: unpooledCopy(master), suite: this.suite.name, identity, authType: this.authType,
        extendedMasterSecret: this.extendedMasterSecret, createdAt: Date.now(),
      };
      if (this.peerSpki) result.cacheEntry.peerSpki = this.peerSpki;
      if (this.peerNotAfter !== undefined) result.cacheEntry.peerNotAfter = this.peerNotAfter;
    }
    this.transport.log('debug', `DTLS handshake with ${this.key} complete${this.resume ? ' (resumed)' : ''}: identity ${identity}, ${this.suite.name}`);
    this.dispose();
    this.callbacks.complete(this, result);
  }
}

/** A copy in its own memory: a long-lived secret must not pin (or sit in) a slab of Node's shared Buffer pool. */
function unpooledCopy(b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  b.copy(out);
  return out;
}
