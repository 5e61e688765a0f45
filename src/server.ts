import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import dgram from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP, isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Channel, LogFn } from './channel';
import { CoapEndpoint, CoapTimeoutError, type CoapEndpointOptions, type CoapMessage, type CoapResponseInit, type ExchangeSink } from './coap';
import { DtlsServer, type DtlsServerOptions, type DtlsSession } from './dtls';
import type { DtlsSessionState } from './dtls/session';
import { ContentType } from './dtls/record';
import { ObjectModel } from './lwm2m/model';
import { decodeResult, Lwm2mInputError, prepareOperation, TargetCache, type OperationInput, type PreparedOperation } from './lwm2m/operations';
import { parsePath } from './lwm2m/path';
import { observationKey, ObservationStore, type Observation } from './lwm2m/observations';
import { flatString } from './flat-string';
import { MailboxTimeoutError, QueueMode, type MailboxEntry } from './lwm2m/queue';
import { RegistrationInterface } from './lwm2m/registration';
import { Registry, type Registration } from './lwm2m/registry';
import { SecurityStore, type SecurityEntryInput } from './lwm2m/security';
import type { CertificateOptions } from './dtls/certs';
import { ContentFormat, decodeContent, formatName } from './lwm2m/content';
import {
  OutboundDialler, SessionChannel, SessionPool, growSocketBuffers, sessionChannel, udpChannel, type PoolMode, type PoolEntry,
  type SessionChannelHost,
} from './pool';
import type { ClusterStore } from './cluster/types';
import { fromJsonSafe, toJsonSafe } from './cluster/codec';
import { BatchedSender } from './pool/batched-sender';

/**
 * Everything needed to carry a running server over to a new instance (redeploy) or a new process (restart):
 * registrations, DTLS sessions (their keys included: treat the whole state as a secret), observations, queue-mode
 * state and pool counters. JSON-serialisable except `handover`, which only lives in-process.
 */
export interface Lwm2mServerState {
  version: 1;
  savedAt: number;
  registrations: Registration[];
  sessions: DtlsSessionState[];
  observations: Array<Omit<Observation, 'token' | 'onEnd'> & { token: string }>;
  queue: Array<{ endpoint: string; awakeUntil: number; asleep: boolean }>;
  /** Requests waiting in sleeping devices' mailboxes (absent in states saved by older versions). */
  mailbox?: MailboxEntryState[];
  pool: Array<{ endpoint: string; handshakes: number; requests: number; createdAt: number; lastUsed: number }>;
  counters: { requests: { total: number; overPooledSession: number; timeouts: number }; handshakes: number; handshakesFailed: number };
  /** In-process only: the detached instance, whose waiting queue-mode requests move to the new one. */
  handover?: Lwm2mServer;
}

/**
 * A request waiting in a queue-mode device's mailbox, JSON-safe (see MailboxEntry): `payload` and `msg` are encoded
 * as by the cluster codec (Buffers, Dates and bigints tagged).
 */
export type MailboxEntryState = MailboxEntry;
export type { MailboxEntry } from './lwm2m/queue';

/** Most a saved copy of a request's `msg` may take (JSON characters); larger properties are left out. */
const MAILBOX_MSG_LIMIT = 64 * 1024;
/** `msg` properties kept first when a copy has to be cut down. */
const MAILBOX_MSG_FIRST = ['_msgid', 'topic', 'endpoint', 'operation', 'payload'];

export interface Lwm2mServerOptions {
  /** Address to bind, default '0.0.0.0'; '::' listens on IPv6 and IPv4. */
  bind?: string;
  /** Plain CoAP port, default 5683; 0 = off. */
  coapPort?: number;
  /** CoAP over DTLS port, default 5684; 0 = off. */
  coapsPort?: number;
  /** Accept unsecured registrations (default false). */
  allowNoSec?: boolean;
  poolMode?: PoolMode;
  /** Seconds an outbound session (or a DTLS session bound to no registration) may stay idle; default 300. */
  idleTimeout?: number;
  /** Seconds between idle sweeps; default 60. */
  idleSweepInterval?: number;
  maxSessions?: number;
  /** Registration lifetime bounds in seconds; defaults 1 and one year. */
  minLifetime?: number;
  maxLifetime?: number;
  /** Milliseconds between lifetime-expiry (and queue-mode sleep) checks; default 1000. */
  expiryCheckInterval?: number;
  /** Queue mode: seconds a device stays reachable after it last talked; default 93 (CoAP MAX_TRANSMIT_WAIT). */
  queueAwakeTime?: number;
  /**
   * Security table: PSK entries `{ endpoint, identity, key, host?, port? }` and raw-public-key entries
   * `{ endpoint, rpk }` (P-256 SubjectPublicKeyInfo DER as hex, or PEM). See SecurityStore.
   */
  psk?: SecurityEntryInput[];
  /**
   * Server identity for the ECDHE_ECDSA suites: P-256 key and certificate chain (PEM, leaf first). Also offered as a
   * raw public key unless `rpk: false`. Devices then authenticate with a raw public key (RPK entries) or an X.509
   * certificate chained to `trustedCAs` whose CN is the endpoint name.
   */
  certificate?: CertificateOptions;
  /** PEM CA certificates that device certificates must chain to. */
  trustedCAs?: string[];
  /** CoAP settings: ackTimeoutMs, ackRandomFactor, maxRetransmit, blockSize (16..1024), maxBodySize, … */
  coap?: Omit<CoapEndpointOptions, 'onRequest' | 'log'>;
  dtls?: Pick<DtlsServerOptions, 'handshakeTimeoutMs' | 'maxHandshakes' | 'retransmitInitialMs' | 'maxCipherContexts' | 'cipherContextIdleMs'>;
  model?: ObjectModel;
  /** A folder of extra DDF XML object definitions to load into the object model. */
  modelDir?: string;
  log?: LogFn;
  /**
   * Scale-out: a shared store (RedisClusterStore) through which several instances serve one fleet. Requests for
   * devices held by another instance are forwarded there; stop() hands this instance's devices over.
   */
  cluster?: ClusterStore;
}

/** What flows see of a registration (SPEC: lwm2m-events payload). */
export type RegistrationInfo = Pick<
  Registration,
  | 'endpoint' | 'registrationId' | 'lifetime' | 'lwm2mVersion' | 'binding' | 'queueMode' | 'objects' | 'address'
  | 'port' | 'secure' | 'identity' | 'registeredAt' | 'lastSeen'
>;

export interface Lwm2mRequest extends OperationInput {
  endpoint: string;
  /**
   * Overall limit in milliseconds (CoAP retransmissions stop earlier if they run out first). For a sleeping
   * queue-mode device it includes the wait in the mailbox (default 300000 there).
   */
  timeout?: number;
  /** observe / observe-composite: called for every notification after the first answer. */
  onNotify?: (n: Lwm2mNotification) => void;
  /** observe / observe-composite: called once if the observation ends other than by cancel-observe. */
  onObserveEnd?: (reason: string) => void;
  /** Who sends the request / starts the observation (e.g. a node id): cancelObservationsOf(), mailbox results. */
  owner?: string;
  /**
   * The flow message the request belongs to. When the request has to wait in a sleeping device's mailbox, a JSON-safe
   * copy of it (best effort: properties that do not serialise are left out, 64 KB at most; `payload` is left out
   * when it is the request's payload) is kept with the entry, so that the result can still be delivered with it
   * after a restart or hand-over ('mailbox-result' / 'mailbox-error' events).
   */
  msg?: object;
}

/** One notification of an observation. */
export interface Lwm2mNotification {
  endpoint: string;
  /** The observed path (composite: the paths joined with ','). */
  path: string;
  operation: 'observe' | 'observe-composite';
  code: string;
  payload: unknown;
  format?: string;
  /** The notification's Observe sequence number. */
  observe?: number;
}

export interface Lwm2mResult {
  endpoint: string;
  path: string;
  operation: string;
  code: string;
  payload: unknown;
  /** Format name of the answer (SPEC msg.format names), undefined when it had no payload. */
  format?: string;
  contentFormat?: number;
  rttMs: number;
  secure: boolean;
  sessionReused: boolean;
  handshakes: number;
  /** create: the new instance's path from Location-Path, e.g. '/31024/8'. */
  location?: string;
  /** observe: the Observe sequence number of the first answer (undefined when the device did not start observing). */
  observe?: number;
  /** Names from the object model for the paths in the answer, e.g. { "/3/0/0": "Manufacturer" }. */
  names: Record<string, string>;
}

export type Lwm2mErrorKind =
  | 'unknown-endpoint' | 'bad-input' | 'timeout' | 'device-error' | 'no-session' | 'decode' | 'transport' | 'closed' | 'asleep';

export class Lwm2mRequestError extends Error {
  override name = 'Lwm2mRequestError';
  constructor(message: string, readonly kind: Lwm2mErrorKind, readonly code?: string) {
    super(message);
  }
}

export interface Lwm2mStats {
  sessions: { active: number; inbound: number; outbound: number };
  handshakes: { total: number; failed: number };
  requests: { total: number; overPooledSession: number; timeouts: number };
  registrations: number;
  observations: number;
  perSession: Array<{
    endpoint: string; mode: PoolMode; address: string; port: number; identity?: string;
    handshakes: number; requests: number; bytesIn: number; bytesOut: number;
    createdAt: number; lastUsed: number; idleMs: number; connected: boolean;
  }>;
}

const CODE_NAMES: Record<string, string> = {
  '4.00': 'Bad Request', '4.01': 'Unauthorized', '4.02': 'Bad Option', '4.03': 'Forbidden', '4.04': 'Not Found',
  '4.05': 'Method Not Allowed', '4.06': 'Not Acceptable', '4.08': 'Request Entity Incomplete', '4.09': 'Conflict',
  '4.12': 'Precondition Failed', '4.13': 'Request Entity Too Large', '4.15': 'Unsupported Content-Format',
  '5.00': 'Internal Server Error', '5.01': 'Not Implemented', '5.02': 'Bad Gateway', '5.03': 'Service Unavailable',
  '5.04': 'Gateway Timeout', '5.05': 'Proxying Not Supported',
};

interface ChannelCounters { bytesIn: number; bytesOut: number }

/** One request on its way: what planRequest checked and prepared, and what the later steps add. */
interface RequestPlan {
  readonly req: Lwm2mRequest;
  readonly via: RequestVia;
  reg: Registration;
  readonly op: PreparedOperation;
  /** Observation key (observe and cancel only). */
  readonly key: string;
  readonly cancelled: Observation | undefined;
  readonly observing: boolean;
  readonly cancelling: boolean;
  /** What is left of the caller's timeout (ms). */
  timeout: number | undefined;
  channel: Channel | undefined;
  entry: PoolEntry | undefined;
  reused: boolean;
  /** The observation the answer established (notifications are delivered to it). */
  observation: Observation | undefined;
  /** performance.now() when the request went out. */
  t0: number;
  /** Settle the caller's promise (set when the request goes out; see Lwm2mServer.answers). */
  resolve: (result: Lwm2mResult) => void;
  reject: (err: Error) => void;
}

/** A plan's resolve and reject before its request goes out. */
const unset = (): void => undefined;

function isPlan(p: RequestPlan | Promise<Lwm2mResult>): p is RequestPlan {
  return (p as Partial<RequestPlan>).op !== undefined;
}

/** How a request reached this server: forwarded by another cluster instance, or a cancel that waited in a mailbox. */
type RequestVia = { forwarded?: boolean; cancelToken?: Buffer };

/** `via` of a request made here (not forwarded by another cluster instance, not a mailbox cancel). */
const DIRECT: RequestVia = Object.freeze({});

/**
 * An OMA LwM2M server: UDP sockets, DTLS server, registration interface, registry, session pool and
 * request layer, all owned by this instance. Usable without Node-RED.
 */
export class Lwm2mServer extends EventEmitter {
  readonly security = new SecurityStore();
  readonly registry = new Registry();
  readonly model: ObjectModel;
  /** Parsed request paths, shared by the requests naming them. */
  private readonly targets = new TargetCache();
  readonly observations = new ObservationStore();
  private readonly queue: QueueMode;
  private readonly opts: Required<Pick<Lwm2mServerOptions, 'bind' | 'coapPort' | 'coapsPort' | 'allowNoSec' | 'poolMode' | 'idleTimeout' | 'idleSweepInterval' | 'maxSessions' | 'minLifetime' | 'maxLifetime' | 'expiryCheckInterval'>> & Lwm2mServerOptions;
  private readonly coap: CoapEndpoint;
  private readonly dtls: DtlsServer;
  private readonly pool: SessionPool;
  private readonly dialler: OutboundDialler;
  private readonly registration: RegistrationInterface;
  /** Live device-opened DTLS sessions by channel key. */
  private readonly dtlsChannels = new Map<string, SessionChannel<DtlsSession>>();
  /** Byte counters of outbound (server-dialled) channels; a device-opened session's SessionChannel counts its own. */
  private readonly counters = new Map<string, ChannelCounters>();
  /** Receives data, close and migration of every device-opened DTLS session (through its SessionChannel). */
  private readonly channelHost: SessionChannelHost<DtlsSession> = {
    channelData: (channel, data) => this.coap.handle(channel, data),
    channelClosed: (channel) => {
      const key = channel.key;
      this.dtlsChannels.delete(key);
      this.coap.forgetChannel(key, 'DTLS session closed');
      this.pool.unbindChannel(key);
    },
    channelMigrated: (channel, info) => {
      // RFC 9146: an authenticated record from a new address moved the session (NAT rebinding).
      for (const reg of this.registry.all()) {
        if (reg.channelKey !== channel.key) continue;
        reg.address = info.address;
        reg.port = info.port;
        const entry = this.pool.get(reg.endpoint);
        if (entry) {
          entry.address = info.address;
          entry.port = info.port;
        }
        this.opts.log?.('debug', `endpoint ${reg.endpoint} moved from ${info.oldAddress}:${info.oldPort} to ${info.address}:${info.port} (connection ID)`);
        this.emit('update', registrationInfo(reg), ['address', 'port']);
      }
    },
  };
  private coapSocket?: dgram.Socket;
  private coapsSocket?: dgram.Socket;
  /** Datagrams leave each port in batches, one per I/O phase (see BatchedSender). */
  private readonly coapSender = new BatchedSender(() => this.coapSocket, (err) => this.socketError(err));
  private readonly coapsSender = new BatchedSender(() => this.coapsSocket, (err) => this.socketError(err), notApplicationData);
  private timers: NodeJS.Timeout[] = [];
  private serial = 0;
  private started = false;
  private stopped = false;
  private readonly requestStats = { total: 0, overPooledSession: 0, timeouts: 0 };
  private readonly outboundStats = { handshakes: 0, failed: 0 };
  /** Handshake counts carried over from a previous instance. */
  private readonly inheritedStats = { handshakes: 0, failed: 0 };
  /** Set on a detached instance: the instance that took over (queued requests continue there). */
  private successor?: Lwm2mServer;
  /** Ports bound, not stopped: restored mailbox entries may be settled. */
  private running = false;
  /** Restored mailbox entries whose deadline had passed, and ones for devices not registered here (see settleRestored). */
  private readonly expiredEntries: MailboxEntry[] = [];
  private readonly unplaced: MailboxEntry[] = [];

  constructor(options: Lwm2mServerOptions = {}) {
    super();
    this.opts = {
      bind: '0.0.0.0', coapPort: 5683, coapsPort: 5684, allowNoSec: false, poolMode: 'inbound',
      idleTimeout: 300, idleSweepInterval: 60, maxSessions: 10000, minLifetime: 1, maxLifetime: 31536000,
      expiryCheckInterval: 1000,
      ...stripUndefined(options),
    };
    this.queue = new QueueMode((options.queueAwakeTime ?? 93) * 1000, {
      sleep: (endpoint) => this.emitQueueEvent('sleep', endpoint),
      awake: (endpoint) => this.emitQueueEvent('awake', endpoint),
      wake: (entry) => this.runMailboxEntry(entry),
      lapse: (entry, err) => this.emitMailboxError(entry, err),
    });
    const log = this.opts.log;
    this.model = options.model ?? new ObjectModel();
    if (options.modelDir) {
      const { loaded, errors } = this.model.loadDirectory(options.modelDir);
      for (const e of errors) log?.('warn', `object definitions: ${e.file}: ${e.error}`);
      log?.('info', `loaded ${loaded.length} object definition(s) from ${options.modelDir}`);
    }
    if (options.psk) this.security.replaceAll(options.psk);
    this.coap = new CoapEndpoint({ ...this.opts.coap, onRequest: (req, ch) => this.onCoapRequest(req, ch), log });
    this.dtls = new DtlsServer({
      send: (data, port, address) => this.coapsSender.send(data, port, address),
      pskLookup: (identity) => this.security.keyFor(identity),
      certificate: options.certificate,
      trustedCAs: options.trustedCAs,
      rpkLookup: (spki) => this.security.rpkLookup(spki),
      maxSessions: this.opts.maxSessions,
      ...this.opts.dtls,
      log,
    });
    this.dtls.on('session', (s: DtlsSession) => this.onDtlsSession(s));
    this.dtls.on('restored', (s: DtlsSession) => this.onDtlsSession(s, true));
    this.dtls.on('handshakeFailed', (info: { address: string; port: number; identity?: string; alert: string; reason: string }) => {
      log?.('debug', `DTLS handshake from ${info.address}:${info.port}${info.identity !== undefined ? ` (identity "${info.identity}")` : ''} failed: ${info.alert} (${info.reason})`);
      this.emit('handshakeFailed', info);
    });
    this.dialler = new OutboundDialler({
      timeoutMs: 10000,
      onMessage: (ch, data) => {
        this.count(ch.key).bytesIn += data.length;
        this.coap.handle(ch, data);
      },
      log,
    });
    this.pool = new SessionPool({
      mode: this.opts.poolMode,
      idleTimeoutMs: this.opts.idleTimeout * 1000,
      maxSessions: this.opts.maxSessions,
      log,
      dial: (endpoint) => this.dialOutbound(endpoint),
    });
    this.registration = new RegistrationInterface(this.registry, this.security, {
      allowNoSec: this.opts.allowNoSec,
      minLifetime: this.opts.minLifetime,
      maxLifetime: this.opts.maxLifetime,
      log,
    });
    this.registry.on('register', (reg: Registration, replaced?: Registration) => this.onRegister(reg, replaced));
    this.registry.on('update', (reg: Registration, changed: string[]) => this.onUpdate(reg, changed));
    this.registry.on('deregister', (reg: Registration) => this.onGone(reg, 'deregister'));
    this.registry.on('expire', (reg: Registration) => this.onGone(reg, 'expire'));
  }

  /** Ports actually bound (0 when off). */
  get ports(): { coap: number; coaps: number } {
    return {
      coap: this.coapSocket ? this.coapSocket.address().port : 0,
      coaps: this.coapsSocket ? this.coapsSocket.address().port : 0,
    };
  }

  get poolMode(): PoolMode {
    return this.opts.poolMode;
  }

  /** Binds the UDP ports. Rejects with a clear message (and nothing left bound) when a port is in use. */
  async start(state?: Lwm2mServerState): Promise<{ coap: number; coaps: number }> {
    if (this.started) throw new Error('server already started');
    this.started = true;
    if (state) this.restore(state);
    try {
      // cluster: join the shared store (rejects when it cannot be reached) before any datagram is read, so that what
      // `state` brought along is checked against the store first
      if (this.opts.cluster) await this.opts.cluster.attach(this);
      if (this.opts.coapPort > 0) {
        this.coapSocket = await this.bindSocket(this.opts.coapPort, (msg, rinfo) => {
          const ch = udpChannel(this.coapSender, rinfo.address, rinfo.port);
          this.coap.handle(ch, msg);
        });
      }
      if (this.opts.coapsPort > 0) {
        this.coapsSocket = await this.bindSocket(this.opts.coapsPort, (msg, rinfo) => this.dtls.handleDatagram(msg, rinfo));
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.timers.push(
      setInterval(() => {
        this.registry.expire();
        this.queue.sweep();
      }, this.opts.expiryCheckInterval),
    );
    this.timers.push(setInterval(() => this.sweepIdle(), this.opts.idleSweepInterval * 1000));
    this.running = true;
    this.settleRestored();
    this.opts.log?.('info', `LwM2M server listening on ${this.opts.bind} coap:${this.ports.coap || 'off'} coaps:${this.ports.coaps || 'off'}`);
    return this.ports;
  }

  private bindSocket(port: number, onMessage: (msg: Buffer, rinfo: dgram.RemoteInfo) => void): Promise<dgram.Socket> {
    const bind = this.opts.bind;
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type: isIPv6(bind) ? 'udp6' : 'udp4', lookup: literalLookup });
      const onError = (err: NodeJS.ErrnoException): void => {
        socket.close();
        const why = err.code === 'EADDRINUSE' ? 'is already in use' : err.code === 'EACCES' ? 'needs more privileges' : `cannot be bound (${err.message})`;
        reject(new Error(`UDP port ${port} on ${bind} ${why}`));
      };
      socket.once('error', onError);
      socket.bind(port, bind, () => {
        socket.off('error', onError);
        growSocketBuffers(socket);
        socket.on('error', (err) => this.socketError(err));
        socket.on('message', (msg, rinfo) => {
          try {
            onMessage(msg, rinfo);
          } catch (err) {
            this.opts.log?.('warn', `dropped a datagram from ${rinfo.address}:${rinfo.port}: ${(err as Error).message}`);
          }
        });
        resolve(socket);
      });
    });
  }

  /**
   * A snapshot of the state (see Lwm2mServerState). Contains session keys: keep it secret. Exporting sessions caps
   * how many more records each live session may send (see DtlsSession.exportState), so a running server that keeps
   * serving after the snapshot (e.g. a periodic save) passes `{ sessions: false }`: sessions are then left out and
   * untouched.
   */
  exportState(opts: { sessions?: boolean } = {}): Lwm2mServerState {
    return {
      version: 1,
      savedAt: Date.now(),
      registrations: this.registry.all().map((r) => ({ ...r, objects: [...r.objects] })),
      sessions: opts.sessions === false ? [] : this.dtls.exportSessions(),
      observations: this.observations.all().map(({ onEnd: _onEnd, token, ...o }) => ({ ...o, token: token.toString('hex') })),
      queue: this.queue.exportState(),
      mailbox: this.queue.exportEntries().map((e) => ({ ...e, payload: toJsonSafe(e.payload) })),
      pool: this.pool.all().map((e) => ({ endpoint: e.endpoint, handshakes: e.handshakes, requests: e.requests, createdAt: e.createdAt, lastUsed: e.lastUsed })),
      counters: {
        requests: { ...this.requestStats },
        handshakes: this.handshakeTotals().total,
        handshakesFailed: this.handshakeTotals().failed,
      },
    };
  }

  /**
   * Stops this instance without telling the devices (no close_notify, no de-registration) and returns its state,
   * for a new instance to start with: `next.start(old.detach())`. Devices notice nothing.
   */
  async detach(): Promise<Lwm2mServerState> {
    const state = this.exportState();
    state.handover = this;
    await this.stop({ notify: false });
    return state;
  }

  private restore(state: Lwm2mServerState): void {
    if (state.version !== 1) throw new Error(`unsupported server state version ${String(state.version)}`);
    for (const reg of state.registrations) this.registry.restore({ ...reg });
    this.requestStats.total = state.counters.requests.total;
    this.requestStats.overPooledSession = state.counters.requests.overPooledSession;
    this.requestStats.timeouts = state.counters.requests.timeouts;
    this.inheritedStats.handshakes = state.counters.handshakes;
    this.inheritedStats.failed = state.counters.handshakesFailed;
    // Sessions come back through the 'restored' event, which binds them to their registrations.
    this.dtls.importSessions(state.sessions);
    for (const p of state.pool) {
      const entry = this.pool.get(p.endpoint);
      if (!entry) continue;
      entry.handshakes = p.handshakes;
      entry.requests = p.requests;
      entry.createdAt = p.createdAt;
      entry.lastUsed = p.lastUsed;
    }
    this.queue.importState(state.queue);
    for (const o of state.observations) {
      if (!this.registry.byEndpoint(o.endpoint)) continue;
      const obs: Observation = { ...o, token: Buffer.from(o.token, 'hex') };
      this.observations.add(obs);
      const channel = this.dtlsChannels.get(obs.channelKey)?.channel ?? this.plainChannelOf(obs.endpoint);
      if (channel) this.coap.adoptObservation(channel, obs.token, (msg: CoapMessage) => this.deliverRestored(obs, msg));
    }
    // Outbound sessions belong to the process that dialled them: dial afresh.
    if (this.pool.mode === 'outbound') {
      for (const reg of this.registry.all()) {
        try {
          this.bindPool(reg, true);
        } catch (err) {
          this.opts.log?.('warn', `endpoint ${reg.endpoint}: ${(err as Error).message}`);
        }
      }
    }
    // (a state that went through JSON may carry a copy of `handover`: only a live instance counts)
    const handover = state.handover instanceof Lwm2mServer ? state.handover : undefined;
    if (handover) {
      handover.successor = this;
      // The waiting requests themselves (live callers and restored entries) move over; `state.mailbox` describes the
      // same requests and is not queued a second time.
      handover.queue.transferTo(this.queue);
    } else {
      this.restoreMailbox(state.mailbox ?? []);
    }
    this.opts.log?.('info', `restored ${state.registrations.length} registration(s), ${state.sessions.length} DTLS session(s), ${state.observations.length} observation(s)`);
  }

  /**
   * Queues saved mailbox entries again with the time left to their deadline. Entries already here (a hand-over
   * seen twice) are skipped; expired ones, and ones for devices not registered here, are settled once the server
   * runs (see settleRestored).
   */
  private restoreMailbox(list: MailboxEntryState[]): void {
    const entries: MailboxEntry[] = [];
    for (const e of list) {
      if (!e || typeof e.id !== 'string' || typeof e.endpoint !== 'string' || typeof e.operation !== 'string' || typeof e.deadline !== 'number') {
        this.opts.log?.('warn', 'a saved mailbox entry is malformed and was dropped');
        continue;
      }
      const entry: MailboxEntry = {
        ...e,
        queuedAt: typeof e.queuedAt === 'number' ? e.queuedAt : e.deadline,
        payload: fromJsonSafe(e.payload),
        msg: e.msg && typeof e.msg === 'object' ? e.msg : undefined,
      };
      if (this.registry.byEndpoint(entry.endpoint)) entries.push(entry);
      else if (this.queue.claim(entry.id)) this.unplaced.push(entry);
    }
    this.expiredEntries.push(...this.queue.importEntries(entries));
    if (entries.length > 0 || this.unplaced.length > 0) {
      this.opts.log?.('info', `restored ${entries.length + this.unplaced.length} request(s) waiting for queue-mode devices`);
    }
    if (this.started && this.running) this.settleRestored();
  }

  /**
   * Restored entries that cannot wait here: expired ones fail ('mailbox-error'); those for a device registered
   * elsewhere go out now (in a cluster, request() forwards them to the instance holding the device).
   */
  private settleRestored(): void {
    for (const entry of this.expiredEntries.splice(0)) this.emitMailboxError(entry, this.queue.expiredError(entry));
    for (const entry of this.unplaced.splice(0)) this.runMailboxEntry(entry);
  }

  /** The descriptor of a request about to wait in a mailbox. */
  private mailboxEntry(req: Lwm2mRequest, waitMs: number, now: number): MailboxEntry {
    return {
      id: `${now.toString(36)}-${randomBytes(6).toString('hex')}`,
      endpoint: req.endpoint,
      operation: req.operation,
      path: Array.isArray(req.path) ? [...req.path] : req.path,
      payload: req.payload,
      format: req.format,
      timeout: req.timeout,
      deadline: now + waitMs,
      queuedAt: now,
      owner: req.owner,
      msg: req.msg ? mailboxMsg(req.msg, req.payload) : undefined,
    };
  }

  /** A restored mailbox entry's device woke up: send it; the outcome is an event (there is no caller any more). */
  private runMailboxEntry(entry: MailboxEntry): void {
    const timeout = entry.timeout !== undefined ? Math.max(1, entry.deadline - Date.now()) : undefined;
    const req: Lwm2mRequest = {
      endpoint: entry.endpoint, operation: entry.operation, path: entry.path, payload: entry.payload, format: entry.format, timeout, owner: entry.owner,
    };
    const cancelToken = typeof entry.cancelToken === 'string' && /^(?:[0-9a-f]{2}){0,8}$/.test(entry.cancelToken) ? Buffer.from(entry.cancelToken, 'hex') : undefined;
    this.request(req, { cancelToken }).then(
      (result) => {
        try {
          this.emit('mailbox-result', result, mailboxView(entry));
        } catch (err) {
          this.opts.log?.('warn', `mailbox-result handler failed: ${(err as Error).message}`);
        }
      },
      (err: Error) => this.emitMailboxError(entry, err),
    );
  }

  private emitMailboxError(entry: MailboxEntry, err: Error): void {
    const error = err instanceof Lwm2mRequestError
      ? err
      : new Lwm2mRequestError(`${entry.operation} ${String(entry.path)}: ${err.message}`, err instanceof MailboxTimeoutError ? 'asleep' : 'closed');
    try {
      if (this.listenerCount('mailbox-error') > 0) this.emit('mailbox-error', error, mailboxView(entry));
      else this.opts.log?.('warn', `queued request for "${entry.endpoint}" failed: ${error.message}`);
    } catch (e) {
      this.opts.log?.('warn', `mailbox-error handler failed: ${(e as Error).message}`);
    }
  }

  private plainChannelOf(endpoint: string): Channel | undefined {
    const reg = this.registry.byEndpoint(endpoint);
    if (!reg || reg.secure || !this.coapSocket) return undefined;
    return udpChannel(this.coapSender, reg.address, reg.port);
  }

  /** Notifications of observations that came over from a previous instance go out as 'notification' events. */
  private deliverRestored(obs: Observation, msg: CoapMessage): void {
    const op: PreparedOperation = {
      operation: obs.composite ? 'observe-composite' : 'observe',
      path: obs.composite ? {} : parsePath(obs.paths[0]),
      pathString: obs.paths.join(','),
      paths: obs.paths,
      composite: obs.composite,
      coap: { method: 'GET', path: [] },
    };
    this.deliverNotification(obs, op, msg, {} as Lwm2mRequest);
  }

  /**
   * Closes sockets, sessions and timers. Safe to call more than once. `notify: false` leaves DTLS peers unaware (and
   * requests waiting in mailboxes waiting, for an in-process successor). A later stop() of a detached instance that
   * no successor took over ends those waiting callers with a 'closed' error.
   */
  async stop(opts: { notify?: boolean } = {}): Promise<void> {
    if (this.stopped) {
      if (opts.notify !== false && !this.successor) this.queue.close();
      return;
    }
    this.stopped = true;
    this.running = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // cluster: a closing instance hands its devices (DTLS sessions included) over through the shared store
    const handedOver = this.opts.cluster ? await this.opts.cluster.detach(this, opts.notify !== false) : false;
    if (opts.notify === false) {
      // Hand-over: waiting requests stay queued (they move to the successor); observations stay on the devices.
      this.observations.clear();
    } else {
      this.queue.close(
        'the LwM2M server is closed',
        handedOver ? 'the LwM2M server is closed; the request was handed over to the instance that takes the device over' : undefined,
      );
      this.observations.clear();
    }
    this.expiredEntries.length = 0;
    this.unplaced.length = 0;
    this.coap.close();
    this.pool.closeAll();
    this.dtls.close({ notify: opts.notify !== false && !handedOver });
    this.dtlsChannels.clear();
    this.coapSender.flush();
    this.coapsSender.flush(); // the close_notify alerts
    await Promise.all([this.coapSocket, this.coapsSocket].map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : undefined)));
    this.coapSocket = undefined;
    this.coapsSocket = undefined;
    this.coapSender.clear();
    this.coapsSender.clear();
    this.registry.removeAllListeners();
    this.registry.clear();
    await this.opts.cluster?.close();
  }

  /** cluster: takes over the registrations, DTLS sessions, observations and queue state another instance handed over. */
  adoptState(state: Lwm2mServerState): void {
    const counters = { requests: { ...this.requestStats }, handshakes: this.inheritedStats.handshakes, handshakesFailed: this.inheritedStats.failed };
    this.restore({ ...state, handover: undefined, counters });
  }

  /** cluster: the device registered through another instance; forget it here without a registry event. */
  releaseRegistration(endpoint: string): boolean {
    const reg = this.registry.byEndpoint(endpoint);
    if (!reg || !this.registry.forget(reg)) return false;
    this.dropObservations(this.observations.removeEndpoint(endpoint), 'registered through another server instance');
    this.queue.forget(endpoint, `device "${endpoint}" registered through another server instance while the request waited`);
    this.pool.remove(endpoint);
    const live = this.dtlsChannels.get(reg.channelKey);
    // Silently: the session may have moved to the other instance with the same keys.
    if (live && this.pool.mode === 'inbound') live.session.terminate('replaced', false);
    return true;
  }

  private socketError(err: Error): void {
    this.opts.log?.('warn', `UDP socket error: ${err.message}`);
  }

  private count(key: string): ChannelCounters {
    let c: ChannelCounters | undefined = this.dtlsChannels.get(key) ?? this.counters.get(key);
    if (!c) {
      c = { bytesIn: 0, bytesOut: 0 };
      this.counters.set(key, c);
    }
    return c;
  }

  private onDtlsSession(session: DtlsSession, restored = false): void {
    const meta = (session.meta ?? {}) as { channelKey?: string };
    const key = restored && typeof meta.channelKey === 'string' ? meta.channelKey : flatString(`dtls:${session.address}:${session.port}#${++this.serial}`);
    session.meta = { channelKey: key };
    // The channel is also the session's owner and its byte counters: no listener closures per session.
    const channel = new SessionChannel(key, session, this.channelHost);
    session.owner = channel;
    this.dtlsChannels.set(key, channel);
    this.opts.log?.(
      'debug',
      `DTLS session ${restored ? 'restored' : 'established'} with ${session.address}:${session.port} as "${session.identity}" (${session.cipherSuite})`,
    );
    if (restored) {
      // Looked up by the session's identity first: a scan per restored session would make restoring n sessions n².
      const reg = this.registrationOver(session, key) ?? this.registry.all().find((r) => r.channelKey === key);
      if (reg && this.pool.mode === 'inbound') this.pool.bindInbound(reg.endpoint, channel, false);
      return;
    }
    // A registered device that handshakes again (reboot, new NAT port) keeps its registration: requests now go
    // over the new authenticated session of the same identity.
    const endpoint = this.security.endpointOf(session);
    const reg = endpoint !== undefined ? this.registry.byEndpoint(endpoint) : undefined;
    if (reg && reg.secure && reg.identity === session.identity && this.pool.mode === 'inbound') {
      reg.channelKey = key;
      reg.address = session.address;
      reg.port = session.port;
      this.pool.bindInbound(reg.endpoint, channel, true);
    }
  }

  private async onCoapRequest(req: CoapMessage, channel: Channel): Promise<CoapResponseInit> {
    const res = this.registration.handle(req, channel);
    if (res) return res;
    if (req.path.length === 1 && req.path[0] === 'dp') return this.onSend(req, channel);
    return { code: '4.04', payload: Buffer.from(`no resource /${req.path.join('/')} on this server`) };
  }

  /** The registration a device-initiated request belongs to: same DTLS identity, or same plain UDP peer. */
  private registrationOf(channel: Channel): Registration | undefined {
    if (channel.secure) {
      const endpoint = this.security.endpointOf(channel);
      const reg = endpoint !== undefined ? this.registry.byEndpoint(endpoint) : undefined;
      return reg && reg.secure && reg.identity === channel.identity ? reg : undefined;
    }
    return this.registry.all().find((r) => !r.secure && r.address === channel.address && r.port === channel.port);
  }

  /** LwM2M 1.1 Send (POST /dp): decoded data keyed by path, as a 'send' event. */
  private onSend(req: CoapMessage, channel: Channel): CoapResponseInit {
    if (req.code !== '0.02') return { code: '4.05', payload: Buffer.from('only POST is allowed on /dp') };
    const reg = this.registrationOf(channel);
    if (!reg) return { code: '4.03', payload: Buffer.from('Send from a device that is not registered') };
    const cf = req.contentFormat ?? ContentFormat.SENML_JSON;
    if (cf !== ContentFormat.SENML_JSON && cf !== ContentFormat.SENML_CBOR && cf !== ContentFormat.LWM2M_CBOR) {
      return { code: '4.15', payload: Buffer.from(`Send payload must be SenML JSON, SenML CBOR or LwM2M CBOR, not content format ${cf}`) };
    }
    let values: Record<string, unknown>;
    try {
      values = decodeContent(cf, req.payload, {}, this.model);
    } catch (err) {
      this.opts.log?.('debug', `Send from ${reg.endpoint} could not be decoded: ${(err as Error).message}`);
      return { code: '4.00', payload: Buffer.from(`cannot decode Send payload: ${(err as Error).message}`) };
    }
    this.registry.touch(reg);
    if (reg.queueMode) this.queue.heard(reg.endpoint);
    this.opts.log?.('debug', `Send from endpoint ${reg.endpoint}: ${Object.keys(values).length} value(s)`);
    this.emit('send', registrationInfo(reg), values);
    return { code: '2.04' };
  }

  private emitQueueEvent(name: 'sleep' | 'awake', endpoint: string): void {
    const reg = this.registry.byEndpoint(endpoint);
    if (reg) this.emit(name, registrationInfo(reg));
  }

  /** Ends observations passively: the device's next notification for them gets RST. */
  private dropObservations(list: Observation[], reason: string): void {
    for (const obs of list) {
      const live = this.dtlsChannels.get(obs.channelKey)?.channel;
      const ch = live ?? this.pool.get(obs.endpoint)?.channel;
      if (ch) this.coap.cancelObservation(ch, obs.token);
      obs.onEnd?.(reason);
    }
  }

  /** Cancels (passively) every observation started by `owner`, e.g. when a flow node is removed. */
  cancelObservationsOf(owner: string): number {
    const list = this.observations.ofOwner(owner);
    for (const o of list) this.observations.remove(o);
    this.dropObservations(list.map((o) => ({ ...o, onEnd: undefined })), 'cancelled');
    return list.length;
  }

  private onRegister(reg: Registration, replaced?: Registration): void {
    if (replaced) this.dropObservations(this.observations.removeEndpoint(replaced.endpoint), 're-registered');
    if (reg.queueMode) this.queue.heard(reg.endpoint);
    // Outbound: the device re-registered (often after a reboot), so its old session is stale; dial afresh.
    if (replaced && this.pool.mode === 'outbound') this.pool.remove(replaced.endpoint);
    try {
      this.bindPool(reg, true);
    } catch (err) {
      this.opts.log?.('warn', `endpoint ${reg.endpoint}: ${(err as Error).message}`);
    }
    this.emit('register', registrationInfo(reg));
  }

  private onUpdate(reg: Registration, changed: string[]): void {
    if (reg.queueMode) this.queue.heard(reg.endpoint);
    if (changed.includes('channelKey')) {
      try {
        this.bindPool(reg, false);
      } catch (err) {
        this.opts.log?.('warn', `endpoint ${reg.endpoint}: ${(err as Error).message}`);
      }
    }
    this.emit('update', registrationInfo(reg), changed);
  }

  private bindPool(reg: Registration, registering: boolean): void {
    const psk = this.security.byEndpoint(reg.endpoint);
    if (this.pool.mode === 'outbound' && psk) {
      if (registering || !this.pool.get(reg.endpoint)) {
        this.pool.prepareOutbound(reg.endpoint, psk.host ?? reg.address, psk.port ?? reg.port, psk.identity);
      }
      return;
    }
    if (!reg.secure) return;
    const live = this.dtlsChannels.get(reg.channelKey);
    if (live) this.pool.bindInbound(reg.endpoint, live.channel, false);
  }

  private onGone(reg: Registration, why: 'deregister' | 'expire'): void {
    this.dropObservations(this.observations.removeEndpoint(reg.endpoint), why === 'expire' ? 'registration expired' : 'de-registered');
    this.queue.forget(reg.endpoint, `device "${reg.endpoint}" ${why === 'expire' ? 'registration expired' : 'de-registered'} while the request waited`);
    this.pool.remove(reg.endpoint);
    // Free the device's DTLS session too, after the answer to its De-register has gone out.
    const live = this.dtlsChannels.get(reg.channelKey);
    if (live && this.pool.mode === 'inbound') setImmediate(() => live.session.close());
    this.opts.log?.('debug', `${why === 'expire' ? 'lifetime expired for' : 'de-registered'} endpoint ${reg.endpoint}`);
    this.emit(why, registrationInfo(reg));
  }

  private async dialOutbound(endpoint: string): Promise<import('./pool').OutboundSession> {
    const psk = this.security.byEndpoint(endpoint);
    const entry = this.pool.get(endpoint);
    if (!psk || !entry) throw new Error(`no security information for endpoint "${endpoint}"`);
    try {
      const session = await this.dialler.dial({ host: entry.address, port: entry.port, identity: psk.identity, key: psk.key });
      this.outboundStats.handshakes += 1;
      const key = session.channel.key;
      const counted: Channel = {
        ...session.channel,
        send: (data) => {
          this.count(key).bytesOut += data.length;
          session.channel.send(data);
        },
      };
      session.onClose(() => {
        this.counters.delete(key);
        this.coap.forgetChannel(key, 'outbound DTLS session closed');
      });
      return { ...session, channel: counted };
    } catch (err) {
      this.outboundStats.failed += 1;
      throw err;
    }
  }

  /**
   * The registration of the endpoint that `session`'s identity belongs to, when it talks over the channel `key`
   * (undefined otherwise: another endpoint may still use the channel, which only a scan would find).
   */
  private registrationOver(session: DtlsSession, key: string): Registration | undefined {
    const endpoint = this.security.endpointOf(session);
    const reg = endpoint !== undefined ? this.registry.byEndpoint(endpoint) : undefined;
    return reg?.channelKey === key ? reg : undefined;
  }

  private sweepIdle(now = Date.now()): void {
    this.pool.sweepIdle(now);
    const idleMs = this.opts.idleTimeout * 1000;
    // Bound = some registration talks over the channel. Found through the session's identity (no list of every
    // registration per sweep); the full set of channel keys is made only for a channel not found that way.
    let bound: Set<string> | undefined;
    for (const [key, { session }] of this.dtlsChannels) {
      if (now - session.lastActivity < idleMs) continue;
      if (this.registrationOver(session, key)) continue;
      bound ??= new Set(this.registry.all().map((r) => r.channelKey));
      if (!bound.has(key)) session.close();
    }
  }

  /** Sends one LwM2M operation to a registered device. */
  request(req: Lwm2mRequest, via: RequestVia = DIRECT): Promise<Lwm2mResult> {
    // Not an async function: a pooled read goes through plain promise callbacks (an async frame this size was the
    // largest single allocation of a request).
    let plan: RequestPlan | Promise<Lwm2mResult>;
    try {
      plan = this.planRequest(req, via);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!isPlan(plan)) return plan;
    // Queue mode: wait in the device's mailbox until it talks again.
    if (plan.reg.queueMode && !this.queue.isAwake(plan.reg.endpoint)) return this.afterWake(plan);
    return this.onChannel(plan);
  }

  /** Checks the request and prepares the operation; a device held by another cluster instance: the forwarded request. */
  private planRequest(req: Lwm2mRequest, via: RequestVia): RequestPlan | Promise<Lwm2mResult> {
    if (this.stopped) throw new Lwm2mRequestError('the LwM2M server is closed', 'closed');
    if (typeof req.endpoint !== 'string' || req.endpoint === '') {
      throw new Lwm2mRequestError('missing endpoint: set msg.endpoint (or the node\'s endpoint) to a registered device name', 'bad-input');
    }
    const reg = this.registry.byEndpoint(req.endpoint);
    // cluster: a device held by another instance is reached through it
    if (!reg && this.opts.cluster && !via.forwarded) return this.opts.cluster.forward(req);
    if (!reg) throw new Lwm2mRequestError(`unknown endpoint "${req.endpoint}": no device with that name is registered`, 'unknown-endpoint');
    if (req.timeout !== undefined && (!Number.isFinite(req.timeout) || req.timeout <= 0)) {
      throw new Lwm2mRequestError(`bad timeout ${String(req.timeout)}: a positive number of milliseconds`, 'bad-input');
    }
    let op;
    try {
      op = prepareOperation(req, reg, this.model, this.targets);
    } catch (err) {
      if (err instanceof Lwm2mInputError) throw new Lwm2mRequestError(err.message, 'bad-input');
      throw err;
    }
    const cancelling = op.operation === 'cancel-observe' || op.operation === 'cancel-observe-composite';
    const observing = op.operation === 'observe' || op.operation === 'observe-composite';
    const key = observing || cancelling ? observationKey(op.composite, op.paths) : '';
    let cancelled: Observation | undefined;
    if (cancelling) {
      cancelled = this.observations.get(reg.endpoint, key);
      if (cancelled) {
        this.observations.remove(cancelled);
        op.coap.token = cancelled.token;
      } else if (via.cancelToken) {
        // A cancel that waited in a mailbox: its observation left the table when it was queued.
        op.coap.token = via.cancelToken;
      } else {
        throw new Lwm2mRequestError(`no active observation of ${op.pathString} on "${reg.endpoint}" to cancel`, 'bad-input');
      }
    }
    return {
      req, via, reg, op, key, cancelled, observing, cancelling, timeout: req.timeout,
      channel: undefined, entry: undefined, reused: false, observation: undefined, t0: 0, resolve: unset, reject: unset,
    };
  }

  /** A queue-mode device asleep: waits in its mailbox, then goes on (on this server, or its successor after a redeploy). */
  private async afterWake(plan: RequestPlan): Promise<Lwm2mResult> {
    const { req, via, op } = plan;
    const waitMs = req.timeout ?? 300000;
    const t0 = Date.now();
    try {
      // Requests forwarded by another instance are not kept across restarts: their sender retries them.
      const entry = via.forwarded ? undefined : this.mailboxEntry(req, waitMs, t0);
      if (entry && plan.cancelling) entry.cancelToken = op.coap.token?.toString('hex');
      await this.queue.whenAwake(plan.reg.endpoint, waitMs, entry);
    } catch (err) {
      const kind = err instanceof MailboxTimeoutError ? 'asleep' : 'closed';
      throw new Lwm2mRequestError(`${op.operation} ${op.pathString}: ${(err as Error).message}`, kind);
    }
    if (req.timeout !== undefined) plan.timeout = Math.max(1, req.timeout - (Date.now() - t0));
    // Woken on the instance that took over after a redeploy: continue there.
    if (this.stopped && this.successor) {
      return this.successor.request({ ...req, timeout: plan.timeout }, plan.cancelling ? { cancelToken: op.coap.token } : {});
    }
    const reg = this.registry.byEndpoint(req.endpoint);
    if (!reg) throw new Lwm2mRequestError(`device "${req.endpoint}" left while the request waited`, 'unknown-endpoint');
    plan.reg = reg;
    return this.onChannel(plan);
  }

  /** Finds the channel to the device (the pooled DTLS session, made if needed, or plain CoAP) and sends. */
  private onChannel(plan: RequestPlan): Promise<Lwm2mResult> {
    const reg = plan.reg;
    const usesPool = reg.secure || (this.pool.mode === 'outbound' && this.security.byEndpoint(reg.endpoint) !== undefined);
    const ready = usesPool ? this.pool.readyEntry(reg.endpoint) : undefined;
    if (ready) {
      // the session is up: no promise hop
      plan.channel = ready.channel as Channel;
      plan.entry = ready;
      plan.reused = true;
      return this.exchange(plan);
    }
    if (usesPool) {
      return this.pool.channelFor(reg.endpoint).then(
        ({ channel, entry, reused }) => {
          plan.channel = channel;
          plan.entry = entry;
          plan.reused = reused;
          return this.exchange(plan);
        },
        (err: Error) => {
          throw new Lwm2mRequestError(`cannot reach "${reg.endpoint}": ${err.message}`, 'no-session');
        },
      );
    }
    if (!this.coapSocket) return Promise.reject(new Lwm2mRequestError('the plain CoAP port is off', 'transport'));
    plan.channel = udpChannel(this.coapSender, reg.address, reg.port);
    return this.exchange(plan);
  }

  /** Sends the prepared operation on the plan's channel; resolves with the decoded result. */
  private exchange(plan: RequestPlan): Promise<Lwm2mResult> {
    const channel = plan.channel as Channel;
    const onNotification = plan.observing
      ? (msg: CoapMessage): void => {
          if (plan.observation) this.deliverNotification(plan.observation, plan.op, msg, plan.req);
        }
      : undefined;
    plan.t0 = performance.now();
    this.requestStats.total += 1;
    if (channel.secure && plan.reused) this.requestStats.overPooledSession += 1;
    if (plan.entry) plan.entry.requests += 1;
    return new Promise<Lwm2mResult>((resolve, reject) => {
      plan.resolve = resolve;
      plan.reject = reject;
      this.coap.requestWith(channel, plan.op.coap, { timeoutMs: plan.timeout, onNotification }, this.answers, plan);
    });
  }

  /**
   * Where the CoAP layer hands each request's outcome, with the request's plan: one pair of functions per server, not
   * a promise, two callbacks and a microtask per request between the layers. Runs inside the CoAP layer's handling of
   * the answer, so nothing thrown here may leave it.
   */
  private readonly answers: ExchangeSink<RequestPlan> = {
    answered: (plan, res) => {
      let result: Lwm2mResult;
      try {
        result = this.settleRequest(plan, res);
      } catch (err) {
        plan.reject(err as Error);
        return;
      }
      plan.resolve(result);
    },
    failed: (plan, err) => {
      const { op, reg } = plan;
      if (err instanceof CoapTimeoutError || /timed? ?out/i.test(err.message)) {
        this.requestStats.timeouts += 1;
        plan.reject(new Lwm2mRequestError(`no answer from "${reg.endpoint}" to ${op.operation} ${op.pathString}: ${err.message}`, 'timeout'));
      } else {
        plan.reject(new Lwm2mRequestError(`${op.operation} ${op.pathString} on "${reg.endpoint}" failed: ${err.message}`, 'transport'));
      }
    },
  };

  /** The device answered: an error for a non-2.xx code, else the result (an observation recorded first). */
  private settleRequest(plan: RequestPlan, res: CoapMessage): Lwm2mResult {
    const { op, reg: registration, req, observing, entry } = plan;
    const channel = plan.channel as Channel;
    const rttMs = Math.round((performance.now() - plan.t0) * 1000) / 1000;
    if (entry) entry.lastUsed = Date.now();
    if (registration.queueMode) this.queue.heard(registration.endpoint);
    if (!res.code.startsWith('2.')) {
      if (observing) this.coap.cancelObservation(channel, res.token);
      const diag = res.payload.length > 0 && res.payload.length < 256 ? `: ${res.payload.toString('utf8')}` : '';
      throw new Lwm2mRequestError(
        `device "${registration.endpoint}" answered ${res.code} ${CODE_NAMES[res.code] ?? ''} to ${op.operation} ${op.pathString}${diag}`.replace(/\s+:/, ':'),
        'device-error',
        res.code,
      );
    }
    if (plan.cancelled) plan.cancelled.onEnd?.('cancelled');
    if (observing && res.observe !== undefined) {
      const observation: Observation = {
        endpoint: registration.endpoint, registrationId: registration.registrationId, key: plan.key, paths: op.paths, composite: op.composite,
        token: Buffer.from(res.token), channelKey: channel.key, owner: req.owner, createdAt: Date.now(), onEnd: req.onObserveEnd,
      };
      plan.observation = observation;
      const replaced = this.observations.add(observation);
      if (replaced && !replaced.token.equals(observation.token)) this.dropObservations([replaced], 'replaced by a new observation');
    }
    let payload: unknown;
    try {
      payload = decodeResult(op, res, this.model);
    } catch (err) {
      throw new Lwm2mRequestError(`cannot decode the answer of "${registration.endpoint}" to ${op.operation} ${op.pathString}: ${(err as Error).message}`, 'decode', res.code);
    }
    return {
      endpoint: registration.endpoint,
      path: op.pathString,
      operation: op.operation,
      code: res.code,
      payload,
      format: res.payload.length > 0 ? formatName(res.contentFormat ?? 0) : undefined,
      contentFormat: res.contentFormat,
      rttMs,
      secure: channel.secure,
      sessionReused: channel.secure && plan.reused,
      handshakes: entry?.handshakes ?? 0,
      location: res.locationPath.length > 0 ? '/' + res.locationPath.join('/') : undefined,
      observe: observing ? res.observe : undefined,
      names: this.namesOf(op, payload),
    };
  }

  /** Names of the requested paths and of the path keys of the payload (see ObjectModel.namesFor), in one object. */
  private namesOf(op: PreparedOperation, payload: unknown): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = 0; i < op.paths.length; i++) if (op.paths[i] !== '/') this.addName(out, op.paths[i]);
    if (payload && typeof payload === 'object' && !Buffer.isBuffer(payload) && !(payload instanceof Date)) {
      for (const key of Object.keys(payload)) if (key.startsWith('/')) this.addName(out, key);
    }
    return out;
  }

  /** Puts the model's name of `path` into `names` (nameOf never throws: a path it cannot name gives null). */
  private addName(names: Record<string, string>, path: string): void {
    const name = this.model.nameOf(path);
    if (name !== null) names[path] = name;
  }

  private deliverNotification(obs: Observation, op: import('./lwm2m/operations').PreparedOperation, msg: CoapMessage, req: Lwm2mRequest): void {
    const reg = this.registry.byEndpoint(obs.endpoint);
    if (reg) {
      this.registry.touch(reg);
      if (reg.queueMode) this.queue.heard(reg.endpoint);
    }
    if (!msg.code.startsWith('2.') || msg.observe === undefined) {
      // The device ended the observation (error code, or a final response without Observe).
      if (this.observations.remove(obs)) obs.onEnd?.(`device answered ${msg.code}`);
      return;
    }
    let payload: unknown;
    try {
      payload = decodeResult(op, msg, this.model);
    } catch (err) {
      this.opts.log?.('warn', `notification from ${obs.endpoint} for ${op.pathString} could not be decoded: ${(err as Error).message}`);
      return;
    }
    const n: Lwm2mNotification = {
      endpoint: obs.endpoint,
      path: op.pathString,
      operation: op.composite ? 'observe-composite' : 'observe',
      code: msg.code,
      payload,
      format: msg.payload.length > 0 ? formatName(msg.contentFormat ?? 0) : undefined,
      observe: msg.observe,
    };
    try {
      req.onNotify?.(n);
      // Every notification is also an event, with the owner that started the observation (Node-RED routes
      // notifications of observations carried over a redeploy this way).
      this.emit('notification', n, obs.owner);
    } catch (err) {
      this.opts.log?.('warn', `notification handler failed: ${(err as Error).message}`);
    }
  }

  /** Handshakes of this instance (inbound, outbound) plus those carried over from a previous one. */
  private handshakeTotals(): { total: number; failed: number } {
    return {
      total: this.dtls.stats.handshakes + this.outboundStats.handshakes + this.inheritedStats.handshakes,
      failed: this.dtls.stats.handshakesFailed + this.outboundStats.failed + this.inheritedStats.failed,
    };
  }

  /** Registered devices, as flows see them. */
  registrations(): RegistrationInfo[] {
    const local = this.registry.all().map(registrationInfo);
    // cluster: the devices held by other instances too
    if (!this.opts.cluster) return local;
    const seen = new Set(local.map((r) => r.endpoint));
    return [...local, ...this.opts.cluster.remoteRegistrations().filter((r) => !seen.has(r.endpoint))];
  }

  stats(now = Date.now()): Lwm2mStats {
    const outbound = this.pool.countSessions().outbound;
    const inbound = this.dtlsChannels.size;
    return {
      sessions: { active: inbound + outbound, inbound, outbound },
      handshakes: this.handshakeTotals(),
      requests: { ...this.requestStats },
      registrations: this.registry.size,
      observations: this.observations.size,
      perSession: this.pool.all().map((e) => {
        const c = e.channel ? this.dtlsChannels.get(e.channel.key) ?? this.counters.get(e.channel.key) : undefined;
        return {
          endpoint: e.endpoint, mode: e.mode, address: e.address, port: e.port, identity: e.identity,
          handshakes: e.handshakes, requests: e.requests, bytesIn: c?.bytesIn ?? 0, bytesOut: c?.bytesOut ?? 0,
          createdAt: e.createdAt, lastUsed: e.lastUsed, idleMs: now - e.lastUsed, connected: e.channel !== undefined,
        };
      }),
    };
  }
}

export function registrationInfo(reg: Registration): RegistrationInfo {
  return {
    endpoint: reg.endpoint, registrationId: reg.registrationId, lifetime: reg.lifetime, lwm2mVersion: reg.lwm2mVersion,
    binding: reg.binding, queueMode: reg.queueMode, objects: [...reg.objects], address: reg.address, port: reg.port,
    secure: reg.secure, identity: reg.identity, registeredAt: reg.registeredAt, lastSeen: reg.lastSeen,
  };
}

/**
 * A JSON-safe copy of a flow message for a mailbox entry, best effort: properties that do not serialise (or are
 * objects of other classes, such as HTTP request/response objects) are left out, `payload` too when it is the
 * request's own payload (the entry keeps that), and the copy stays within MAILBOX_MSG_LIMIT.
 */
function mailboxMsg(msg: object, requestPayload: unknown): Record<string, unknown> | undefined {
  const src = msg as Record<string, unknown>;
  const keys = Object.keys(src);
  const ordered = [...MAILBOX_MSG_FIRST.filter((k) => keys.includes(k)), ...keys.filter((k) => !MAILBOX_MSG_FIRST.includes(k))];
  const out: Record<string, unknown> = {};
  let size = 2;
  for (const k of ordered) {
    const v = src[k];
    if (k === 'payload' && v === requestPayload) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof Date)) {
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) continue;
    }
    let plain: unknown;
    try {
      plain = toJsonSafe(v);
    } catch {
      continue;
    }
    if (plain === undefined) continue;
    const len = JSON.stringify(plain).length + JSON.stringify(k).length + 2;
    if (size + len > MAILBOX_MSG_LIMIT) continue;
    size += len;
    out[k] = plain;
  }
  return out;
}

/** A mailbox entry as the 'mailbox-result' / 'mailbox-error' events carry it: `msg` decoded again. */
function mailboxView(entry: MailboxEntry): MailboxEntry {
  const { cancelToken: _token, ...view } = entry;
  return { ...view, msg: entry.msg ? (fromJsonSafe(entry.msg) as Record<string, unknown>) : undefined };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * DTLS datagrams that are not application data (handshake flights, HelloVerifyRequest, alerts) leave at once: a
 * handshake waits for each of its round trips in turn, so holding them to the end of the I/O phase slows it down.
 */
function notApplicationData(datagram: Buffer): boolean {
  const type = datagram[0];
  return type !== ContentType.application_data && type !== ContentType.tls12_cid;
}

/**
 * The server sockets' address lookup: every datagram goes to a peer's numeric address, which dgram would otherwise
 * pass through dns.lookup and a process.nextTick on each send; a numeric address is handed back at once (as dgram
 * does for a connected socket), anything else still goes to dns.lookup.
 */
function literalLookup(address: string, options: LookupOneOptions | number,
    callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = isIP(address);
  if (family !== 0) callback(null, address, family);
  else dnsLookup(address, options as LookupOneOptions, callback);
}
