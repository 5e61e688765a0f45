import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { RedisClientType } from 'redis';
import type { LogFn } from '../channel';
import type { Registration } from '../lwm2m/registry';
import { securityEntryData, type SecurityEntry, type SecurityEntryInput } from '../lwm2m/security';
import {
  Lwm2mRequestError, registrationInfo, type Lwm2mErrorKind, type Lwm2mNotification, type Lwm2mRequest, type Lwm2mResult,
  type Lwm2mServer, type Lwm2mServerState, type RegistrationInfo,
} from '../server';
import { decodeJson, encodeJson } from './codec';
import type { ClusterStore } from './types';

type RedisClient = RedisClientType;

export interface RedisClusterOptions {
  /** `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. */
  url: string;
  /** Prefix of every key and channel, default `lwm2m:`; instances that share a fleet use the same prefix. */
  prefix?: string;
  /** This instance's id (letters, digits, `-`, `_`); default random. Keep it across an in-process redeploy. */
  instanceId?: string;
  /** Milliseconds between heartbeats and sweeps, default 2000. An instance is gone after 3 missed heartbeats. */
  heartbeatMs?: number;
  /** Milliseconds to wait for Redis on attach, default 5000. */
  connectTimeoutMs?: number;
  /** Take over the state an instance hands over when it closes (default true). */
  takeover?: boolean;
  /**
   * Milliseconds to wait before taking over from an instance that closed, default 3000: an instance that comes
   * back with the same id within that time (a Node-RED redeploy) keeps its devices.
   */
  takeoverDelayMs?: number;
  log?: LogFn;
}

/** Seconds a registration record outlives its lifetime in Redis, so the owner's own expiry check runs first. */
const GRACE_MS = 5000;
/** How long a requester waits for the new owner after the old one handed its devices over. */
const HANDOVER_WAIT_MS = 5000;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** Longest wait for Redis while a request is looked up. */
const REDIS_TIMEOUT_MS = 5000;

type RegEvent = 'register' | 'update' | 'deregister' | 'expire';

interface RemoteEntry {
  owner: string;
  reg: Registration;
}

interface PendingForward {
  req: Lwm2mRequest;
  to: string;
  deadline: number;
  resolve: (r: Lwm2mResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface Observer {
  onNotify?: (n: Lwm2mNotification) => void;
  onObserveEnd?: (reason: string) => void;
  owner?: string;
}

type PlainRequest = Omit<Lwm2mRequest, 'onNotify' | 'onObserveEnd'>;

type Message =
  | { t: 'reg'; ev: RegEvent | 'claim'; from: string; owner: string; reg: Registration; changes?: string[] }
  | { t: 'gone'; from: string; handoff: boolean }
  | { t: 'adopted'; from: string; by: string; endpoints: string[] }
  | { t: 'sec'; from: string; endpoints: string[] }
  | { t: 'req'; id: string; from: string; req: PlainRequest; waitMs: number }
  | { t: 'res'; id: string; ok: true; result: Lwm2mResult }
  | { t: 'res'; id: string; ok: false; error: { message: string; kind: Lwm2mErrorKind; code?: string } }
  | { t: 'notify'; corr: string; owner?: string; n: Lwm2mNotification }
  | { t: 'end'; corr: string; reason: string };

/** Compare-and-delete of a registration record: only while it still belongs to ARGV[1]. */
const DEL_IF_OWNER = `if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[2]); return 1 end
return 0`;
/**
 * Claims a registration this instance brought along at start (saved state): not while another live instance holds
 * it (that one took the device over meanwhile). KEYS: record, index; ARGV: id, instance key prefix, reg, ttl, endpoint.
 */
const CLAIM = `local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. owner) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'reg', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1`;
/** Compare-and-set of the owner of a registration record. */
const MOVE_IF_OWNER = `if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', ARGV[2]); return 1 end
return 0`;

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable Redis URL)';
  }
}

/**
 * Shared state of several Lwm2mServer instances in Redis, and request forwarding between them over Redis
 * pub/sub. Keys (all under `prefix`):
 * - `reg:<endpoint>` hash { owner, reg } with a TTL of the remaining lifetime (+5 s); `regs` set of endpoints;
 * - `inst:<id>` heartbeat of a live instance (TTL 3 heartbeats);
 * - `handoff:<id>` the state (registrations, DTLS sessions, observations, queue) of an instance that closed;
 * - `sec` hash endpoint → security entry (PSK key or RPK public key);
 * - channels `events` (everyone) and `to:<id>` (requests to and answers for one instance).
 *
 * Events: 'register' | 'update' | 'deregister' | 'expire' (info, owner) for registry events of other instances;
 * 'adopted' (fromInstance, endpoints) after this instance took devices over.
 */
export class RedisClusterStore extends EventEmitter implements ClusterStore {
  readonly instanceId: string;
  private readonly prefix: string;
  private readonly heartbeatMs: number;
  private readonly opts: RedisClusterOptions;
  private pub?: RedisClient;
  private sub?: RedisClient;
  private server?: Lwm2mServer;
  private timer?: NodeJS.Timeout;
  private connected = false;
  private closing = false;
  private lastError = '';
  /** Registrations of other instances (or orphaned ones), by endpoint. */
  private readonly remote = new Map<string, RemoteEntry>();
  /** lastSeen written to Redis for each local registration, and when that record expires there. */
  private readonly written = new Map<string, { lastSeen: number; expiresAt: number }>();
  private readonly pending = new Map<string, PendingForward>();
  private readonly observers = new Map<string, Observer>();
  /** Instances that announced they closed (true: they handed their state over). */
  private readonly gone = new Map<string, boolean>();
  private readonly serverListeners: Array<[string, (...args: unknown[]) => void]> = [];
  private readonly takeoverTimers = new Set<NodeJS.Timeout>();
  private sweeping = false;
  /** Redis writes in the order the registry events happened. */
  private chain: Promise<void> = Promise.resolve();

  constructor(options: RedisClusterOptions) {
    super();
    if (typeof options.url !== 'string' || !/^rediss?:\/\//.test(options.url)) {
      throw new Error('store must be a redis:// or rediss:// URL');
    }
    if (options.instanceId !== undefined && !ID_RE.test(options.instanceId)) {
      throw new Error('instanceId: 1 to 64 letters, digits, "-" or "_"');
    }
    this.opts = options;
    this.instanceId = options.instanceId ?? randomBytes(6).toString('hex');
    this.prefix = options.prefix ?? 'lwm2m:';
    this.heartbeatMs = Math.max(100, options.heartbeatMs ?? 2000);
  }

  private log(level: 'debug' | 'info' | 'warn', message: string): void {
    this.opts.log?.(level, `cluster ${this.instanceId}: ${message}`);
  }

  private key(...parts: string[]): string {
    return this.prefix + parts.join(':');
  }

  async attach(server: Lwm2mServer): Promise<void> {
    if (this.server) throw new Error('this store is already attached to a server');
    this.server = server;
    const { createClient } = await import('redis');
    const where = redactUrl(this.opts.url);
    const connectTimeout = this.opts.connectTimeoutMs ?? 5000;
    const make = (): RedisClient => {
      const c = createClient({
        url: this.opts.url,
        socket: {
          connectTimeout,
          // Before the first connection a failure is final (start() reports it); afterwards keep retrying.
          reconnectStrategy: (retries: number, cause: Error) =>
            this.connected && !this.closing ? Math.min(100 * (retries + 1), 3000) : new Error(`Redis store ${where} not reachable: ${cause.message}`),
        },
      });
      c.on('error', (err: Error) => {
        if (err.message !== this.lastError) this.log('warn', `Redis ${where}: ${err.message}`);
        this.lastError = err.message;
      });
      c.on('ready', () => {
        if (this.lastError) this.log('info', `Redis ${where} reachable again`);
        this.lastError = '';
      });
      return c;
    };
    this.pub = make();
    this.sub = make();
    try {
      await Promise.all([this.pub.connect(), this.sub.connect()]);
    } catch (err) {
      throw new Error(`Redis store ${where} not reachable: ${(err as Error).message.replace(/^Redis store .* not reachable: /, '')}`);
    }
    this.connected = true;
    await this.sub.subscribe([this.key('events'), this.key('to', this.instanceId)], (message: string) => this.onMessage(message));
    await this.beat();
    await this.shareSecurity(server);
    // What this instance brought along (state carried over at start) is its own unless another live instance took
    // the device over meanwhile.
    for (const reg of server.registry.all()) {
      const ok = await this.pub.eval(CLAIM, {
        keys: [this.key('reg', reg.endpoint), this.key('regs')],
        arguments: [this.instanceId, this.key('inst', ''), encodeJson(reg), String(this.ttlOf(reg)), reg.endpoint],
      });
      if (ok === 1) {
        this.written.set(reg.endpoint, { lastSeen: reg.lastSeen, expiresAt: Date.now() + this.ttlOf(reg) });
        await this.publish(this.key('events'), { t: 'reg', ev: 'claim', from: this.instanceId, owner: this.instanceId, reg });
      } else {
        this.log('info', `${reg.endpoint} is held by another instance now: not resumed here`);
        server.releaseRegistration(reg.endpoint);
      }
    }
    await this.loadRemote();
    this.listen(server);
    if (this.opts.takeover !== false) await this.claimOrphanedHandoffs();
    this.timer = setInterval(() => {
      // While Redis is unreachable the commands wait in the client's queue: one sweep at a time.
      if (this.sweeping) return;
      this.sweeping = true;
      this.sweep()
        .catch((err: Error) => this.log('debug', `sweep: ${err.message}`))
        .finally(() => (this.sweeping = false));
    }, this.heartbeatMs);
    this.log('info', `joined ${where} (prefix "${this.prefix}"): ${this.remote.size} registration(s) on other instances`);
  }

  private listen(server: Lwm2mServer): void {
    const on = (event: string, fn: (...args: unknown[]) => void): void => {
      server.on(event, fn);
      this.serverListeners.push([event, fn]);
    };
    for (const ev of ['register', 'update'] as const) {
      on(ev, (info: unknown, changes?: unknown) => {
        const reg = server.registry.byEndpoint((info as RegistrationInfo).endpoint);
        if (reg) this.enqueue(() => this.writeReg(reg, ev, Array.isArray(changes) ? (changes as string[]) : undefined));
      });
    }
    for (const ev of ['deregister', 'expire'] as const) {
      on(ev, (info: unknown) => {
        const i = info as RegistrationInfo;
        this.written.delete(i.endpoint);
        this.enqueue(async () => {
          await this.deleteReg(i.endpoint, this.instanceId, ev, i);
        });
      });
    }
    on('notification', (n: unknown, owner: unknown) => this.relayNotification(n as Lwm2mNotification, owner));
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: Error) => this.log('warn', `Redis write failed: ${err.message}`));
  }

  private async beat(): Promise<void> {
    await this.pub?.set(this.key('inst', this.instanceId), String(Date.now()), { expiration: { type: 'PX', value: this.heartbeatMs * 3 } });
  }

  private ttlOf(reg: Registration, now = Date.now()): number {
    return Math.max(1000, reg.lastSeen + reg.lifetime * 1000 - now) + GRACE_MS;
  }

  private async writeReg(reg: Registration, ev: RegEvent | 'claim', changes?: string[]): Promise<void> {
    const pub = this.pub;
    if (!pub) return;
    const k = this.key('reg', reg.endpoint);
    const ttl = this.ttlOf(reg);
    await pub.multi()
      .hSet(k, { owner: this.instanceId, reg: encodeJson(reg) })
      .pExpire(k, ttl)
      .sAdd(this.key('regs'), reg.endpoint)
      .exec();
    this.written.set(reg.endpoint, { lastSeen: reg.lastSeen, expiresAt: Date.now() + ttl });
    this.remote.delete(reg.endpoint);
    await this.publish(this.key('events'), { t: 'reg', ev, from: this.instanceId, owner: this.instanceId, reg, changes });
  }

  /** Deletes the record while it still belongs to `owner`; publishes the event when it did. */
  private async deleteReg(endpoint: string, owner: string, ev: 'deregister' | 'expire', info: RegistrationInfo | Registration): Promise<boolean> {
    const pub = this.pub;
    if (!pub) return false;
    const done = await pub.eval(DEL_IF_OWNER, { keys: [this.key('reg', endpoint), this.key('regs')], arguments: [owner, endpoint] });
    if (done !== 1) return false;
    const reg = { ...(info as Registration) };
    await this.publish(this.key('events'), { t: 'reg', ev, from: this.instanceId, owner, reg });
    return true;
  }

  private async publish(channel: string, msg: Message): Promise<number> {
    if (!this.pub) return 0;
    return this.pub.publish(channel, encodeJson(msg));
  }

  /** Pushes this instance's configured entries to Redis, then takes every entry Redis has. */
  private async shareSecurity(server: Lwm2mServer): Promise<void> {
    const pub = this.pub as RedisClient;
    const mine: string[] = [];
    for (const { endpoint } of server.security.list()) {
      const entry = server.security.entryOf(endpoint);
      if (!entry) continue;
      await pub.hSet(this.key('sec'), endpoint, encodeJson(securityEntryData(entry)));
      mine.push(endpoint);
    }
    const all = await pub.hGetAll(this.key('sec'));
    for (const [endpoint, text] of Object.entries(all)) this.applySecurity(endpoint, text);
    if (mine.length > 0) await this.publish(this.key('events'), { t: 'sec', from: this.instanceId, endpoints: mine });
  }

  private applySecurity(endpoint: string, text: string | null | undefined): void {
    const server = this.server;
    if (!server) return;
    if (text === null || text === undefined) {
      server.security.remove(endpoint);
      return;
    }
    try {
      const entry = decodeJson(text) as SecurityEntry;
      const current = server.security.entryOf(endpoint);
      if (current && encodeJson(current) === encodeJson(entry)) return;
      server.security.add(entry as SecurityEntryInput);
    } catch (err) {
      // The message names the endpoint and the rule, never the key.
      this.log('warn', `security entry of "${endpoint}" from Redis not used: ${(err as Error).message}`);
    }
  }

  /** Adds or replaces a security entry on every instance (the local SecurityStore API only changes this one). */
  async addSecurity(input: SecurityEntryInput): Promise<void> {
    const server = this.server;
    if (!server || !this.pub) throw new Error('the store is not attached');
    const entry = server.security.add(input);
    await this.pub.hSet(this.key('sec'), entry.endpoint, encodeJson(securityEntryData(entry)));
    await this.publish(this.key('events'), { t: 'sec', from: this.instanceId, endpoints: [entry.endpoint] });
  }

  /** Removes a security entry from every instance. */
  async removeSecurity(endpoint: string): Promise<boolean> {
    if (!this.server || !this.pub) throw new Error('the store is not attached');
    const had = this.server.security.remove(endpoint);
    const n = await this.pub.hDel(this.key('sec'), endpoint);
    await this.publish(this.key('events'), { t: 'sec', from: this.instanceId, endpoints: [endpoint] });
    return had || n > 0;
  }

  private async loadRemote(): Promise<void> {
    const pub = this.pub as RedisClient;
    const endpoints = await pub.sMembers(this.key('regs'));
    for (const endpoint of endpoints) {
      const rec = await this.readReg(endpoint);
      if (!rec) {
        await pub.sRem(this.key('regs'), endpoint);
        continue;
      }
      if (rec.owner === this.instanceId && this.server?.registry.byEndpoint(endpoint)) continue;
      this.remote.set(endpoint, rec);
    }
  }

  private async readReg(endpoint: string): Promise<RemoteEntry | undefined> {
    const h = await this.pub?.hGetAll(this.key('reg', endpoint));
    if (!h || typeof h.owner !== 'string' || typeof h.reg !== 'string') return undefined;
    try {
      return { owner: h.owner, reg: decodeJson(h.reg) as Registration };
    } catch {
      return undefined;
    }
  }

  private async isAlive(id: string): Promise<boolean> {
    if (id === this.instanceId) return !this.closing;
    return ((await this.pub?.exists(this.key('inst', id))) ?? 0) > 0;
  }

  /** Heartbeat; keeps records fresh; expires registrations of instances that are gone; fails requests to them. */
  private async sweep(now = Date.now()): Promise<void> {
    if (this.closing || !this.server) return;
    await this.beat();
    for (const reg of this.server.registry.all()) {
      // Traffic without an Update (notifications, Send) moves lastSeen: refresh the record's TTL now and then.
      const w = this.written.get(reg.endpoint);
      const moved = w === undefined ? Infinity : reg.lastSeen - w.lastSeen;
      const soon = w !== undefined && w.expiresAt - now < GRACE_MS + 3 * this.heartbeatMs;
      if (moved >= Math.min(60000, (reg.lifetime * 1000) / 4) || (moved > 0 && soon)) await this.writeReg(reg, 'claim');
    }
    const alive = new Map<string, boolean>();
    const check = async (id: string): Promise<boolean> => {
      let a = alive.get(id);
      if (a === undefined) {
        a = await this.isAlive(id);
        alive.set(id, a);
      }
      return a;
    };
    for (const [endpoint, { owner, reg }] of [...this.remote]) {
      if (reg.lastSeen + reg.lifetime * 1000 > now) continue;
      // Held by no live instance (this one does not have it either, or it would not be in `remote`).
      if (owner !== this.instanceId && (await check(owner))) continue;
      // The owner is gone and the lifetime ran out: exactly one instance wins the delete and fires 'expire'.
      this.remote.delete(endpoint);
      if (await this.deleteReg(endpoint, owner, 'expire', reg)) {
        this.log('debug', `lifetime expired for ${endpoint} (its instance ${owner} is gone)`);
        this.server.emit('expire', registrationInfo(reg));
      }
    }
    for (const [id, p] of [...this.pending]) {
      if (this.gone.get(p.to) === true) continue;
      if (await check(p.to)) continue;
      // An instance that hands over writes its hand-off before it stops counting as alive, and announces 'gone'
      // after: between the two, its forwarded requests are about to come back as 'closed' and be sent again.
      if ((await this.pub?.exists(this.key('handoff', p.to))) === 1) continue;
      this.settle(id, undefined, ownerGone(p.req.endpoint, p.to));
    }
  }

  // ---- forwarding -------------------------------------------------------------------------------------------

  async forward(req: Lwm2mRequest): Promise<Lwm2mResult> {
    if (!this.pub || this.closing) throw new Lwm2mRequestError('the LwM2M server is closed', 'closed');
    const rec = await withTimeout(this.readReg(req.endpoint), REDIS_TIMEOUT_MS);
    if (!rec) {
      this.remote.delete(req.endpoint);
      throw new Lwm2mRequestError(`unknown endpoint "${req.endpoint}": no device with that name is registered`, 'unknown-endpoint');
    }
    if (rec.owner === this.instanceId || !(await withTimeout(this.isAlive(rec.owner), REDIS_TIMEOUT_MS))) throw ownerGone(req.endpoint, rec.owner);
    const waitMs = req.timeout ?? (rec.reg.queueMode ? 300000 : 120000);
    return this.send(rec.owner, req, Date.now() + waitMs);
  }

  private send(to: string, req: Lwm2mRequest, deadline: number): Promise<Lwm2mResult> {
    const id = randomBytes(8).toString('hex');
    const observing = req.operation === 'observe' || req.operation === 'observe-composite';
    // The flow message stays here: the owner does not keep forwarded requests across restarts.
    const { onNotify, onObserveEnd, msg: _msg, ...plain } = req;
    if (observing) {
      this.observers.set(id, { onNotify, onObserveEnd, owner: req.owner });
      plain.owner = `cluster:${this.instanceId}:${id}:${req.owner ?? ''}`;
    }
    const waitMs = Math.max(1, deadline - Date.now());
    if (req.timeout !== undefined) plain.timeout = waitMs;
    return new Promise<Lwm2mResult>((resolve, reject) => {
      const p: PendingForward = {
        req, to, deadline, resolve, reject,
        // The owner answers within the request's own timeout; the margin covers the hops through Redis.
        timer: setTimeout(() => this.settle(id, undefined, new Lwm2mRequestError(
          `no answer from instance ${to} (which holds "${req.endpoint}") within ${waitMs} ms`, 'timeout')), waitMs + 3000),
      };
      this.pending.set(id, p);
      this.publish(this.key('to', to), { t: 'req', id, from: this.instanceId, req: plain, waitMs }).then(
        (receivers) => {
          if (receivers === 0) this.settle(id, undefined, ownerGone(req.endpoint, to));
        },
        (err: Error) => this.settle(id, undefined, new Lwm2mRequestError(`cannot forward to instance ${to}: ${err.message}`, 'transport')),
      );
    });
  }

  private settle(id: string, result: Lwm2mResult | undefined, error?: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (error) {
      this.observers.delete(id);
      p.reject(error);
    } else if (result) {
      if (result.observe === undefined) this.observers.delete(id);
      p.resolve(result);
    }
  }

  /** A forwarded request failed with 'closed' because its owner handed over: send it to the new owner. */
  private async retryAfterHandover(id: string, p: PendingForward): Promise<void> {
    this.pending.delete(id);
    clearTimeout(p.timer);
    this.observers.delete(id);
    const until = Math.min(p.deadline, Date.now() + HANDOVER_WAIT_MS);
    try {
      for (;;) {
        if (this.closing) throw new Lwm2mRequestError('the LwM2M server is closed', 'closed');
        if (this.server?.registry.byEndpoint(p.req.endpoint)) break;
        const rec = await this.readReg(p.req.endpoint);
        if (!rec) throw new Lwm2mRequestError(`device "${p.req.endpoint}" left while the request waited`, 'unknown-endpoint');
        if (rec.owner !== p.to && rec.owner !== this.instanceId) break;
        if (rec.owner === p.to && (await this.isAlive(p.to))) break;
        if (Date.now() >= until) throw ownerGone(p.req.endpoint, p.to);
        await new Promise((r) => setTimeout(r, 50));
      }
      const remaining = Math.max(1, p.deadline - Date.now());
      const server = this.server;
      if (!server) throw new Lwm2mRequestError('the LwM2M server is closed', 'closed');
      const req = p.req.timeout !== undefined ? { ...p.req, timeout: remaining } : p.req;
      p.resolve(await server.request(req));
    } catch (err) {
      p.reject(err as Error);
    }
  }

  private onMessage(text: string): void {
    let msg: Message;
    try {
      msg = decodeJson(text) as Message;
    } catch {
      this.log('debug', 'dropped a message that is not JSON');
      return;
    }
    try {
      this.handle(msg);
    } catch (err) {
      this.log('warn', `dropped a ${String((msg as { t?: unknown })?.t)} message: ${(err as Error).message}`);
    }
  }

  private handle(msg: Message): void {
    if (!msg || typeof msg !== 'object' || this.closing) return;
    const server = this.server;
    if (!server) return;
    switch (msg.t) {
      case 'reg': {
        if (msg.from === this.instanceId || !msg.reg || typeof msg.reg.endpoint !== 'string') return;
        const ep = msg.reg.endpoint;
        if (msg.ev === 'deregister' || msg.ev === 'expire') {
          this.remote.delete(ep);
        } else {
          this.remote.set(ep, { owner: msg.owner, reg: msg.reg });
          // The device registered through another instance: forget the stale copy here, quietly. For a claim or an
          // update, only when the record says so (two instances claiming at once: the last writer keeps it).
          if (server.registry.byEndpoint(ep)) {
            const release = (): void => {
              if (server.releaseRegistration(ep)) this.written.delete(ep);
            };
            if (msg.ev === 'register') release();
            else {
              this.readReg(ep).then(
                (rec) => (rec?.owner === msg.owner ? release() : this.remote.delete(ep)),
                (err: Error) => this.log('debug', `record of ${ep} not read: ${err.message}`),
              );
            }
          }
        }
        if (msg.ev !== 'claim') this.emit(msg.ev, registrationInfo(msg.reg), msg.owner);
        return;
      }
      case 'gone': {
        if (msg.from === this.instanceId) return;
        this.gone.set(msg.from, msg.handoff);
        if (msg.handoff && this.opts.takeover !== false) {
          const from = msg.from;
          const t = setTimeout(() => {
            this.takeoverTimers.delete(t);
            // Back already (same id, e.g. redeployed in its process): it keeps its devices.
            this.isAlive(from)
              .then((alive) => (alive ? undefined : this.adopt(from)))
              .catch((err: Error) => this.log('warn', `taking over from ${from} failed: ${err.message}`));
          }, Math.max(0, this.opts.takeoverDelayMs ?? 3000));
          this.takeoverTimers.add(t);
        }
        if (!msg.handoff) {
          for (const [id, p] of [...this.pending]) if (p.to === msg.from) this.settle(id, undefined, ownerGone(p.req.endpoint, msg.from));
        }
        return;
      }
      case 'adopted': {
        if (msg.by === this.instanceId) return;
        for (const ep of msg.endpoints) {
          const r = this.remote.get(ep);
          if (r) r.owner = msg.by;
        }
        this.log('debug', `instance ${msg.by} took over ${msg.endpoints.length} device(s) from ${msg.from}`);
        return;
      }
      case 'sec': {
        if (msg.from === this.instanceId) return;
        const endpoints = msg.endpoints.filter((e) => typeof e === 'string');
        if (endpoints.length === 0 || !this.pub) return;
        this.pub.hmGet(this.key('sec'), endpoints).then(
          (texts) => endpoints.forEach((ep, i) => this.applySecurity(ep, texts[i])),
          (err: Error) => this.log('warn', `security table not reloaded: ${err.message}`),
        );
        return;
      }
      case 'req':
        this.execute(msg.id, msg.from, msg.req, msg.waitMs);
        return;
      case 'res': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        if (msg.ok) {
          this.settle(msg.id, msg.result);
          return;
        }
        const e = msg.error;
        if (e.kind === 'closed' && this.gone.get(p.to) === true) {
          // It waited in the old owner's mailbox (never sent): queue it again where the device went.
          void this.retryAfterHandover(msg.id, p);
          return;
        }
        this.settle(msg.id, undefined, new Lwm2mRequestError(e.message, e.kind, e.code));
        return;
      }
      case 'notify': {
        const o = this.observers.get(msg.corr);
        this.deliver(msg.n, o, msg.owner);
        return;
      }
      case 'end': {
        const o = this.observers.get(msg.corr);
        this.observers.delete(msg.corr);
        o?.onObserveEnd?.(msg.reason);
        return;
      }
      default:
        return;
    }
  }

  private deliver(n: Lwm2mNotification, o: Observer | undefined, owner: string | undefined): void {
    try {
      o?.onNotify?.(n);
      this.server?.emit('notification', n, o?.owner ?? (owner || undefined));
    } catch (err) {
      this.log('warn', `notification handler failed: ${(err as Error).message}`);
    }
  }

  /** Runs a request another instance forwarded, and publishes the answer to it. */
  private execute(id: string, from: string, plain: PlainRequest, waitMs: number): void {
    const server = this.server;
    if (!server || typeof id !== 'string' || typeof from !== 'string' || !plain || typeof plain !== 'object') return;
    const req: Lwm2mRequest = { ...plain };
    if (req.timeout === undefined && Number.isFinite(waitMs) && waitMs > 0) req.timeout = waitMs;
    const relay = parseRelayOwner(req.owner);
    if (relay) {
      req.onObserveEnd = (reason) => {
        this.publish(this.key('to', relay.instance), { t: 'end', corr: relay.corr, reason }).catch(() => undefined);
      };
    }
    const answer = (msg: Message): void => {
      this.publish(this.key('to', from), msg).catch((err: Error) => this.log('warn', `answer to ${from} not sent: ${err.message}`));
    };
    server.request(req, { forwarded: true }).then(
      (result) => answer({ t: 'res', id, ok: true, result }),
      (err: Error) => {
        const e = err instanceof Lwm2mRequestError ? err : new Lwm2mRequestError(err.message, 'transport');
        answer({ t: 'res', id, ok: false, error: { message: e.message, kind: e.kind, code: e.code } });
      },
    );
  }

  /** Notifications of observations another instance started go to that instance. */
  private relayNotification(n: Lwm2mNotification, owner: unknown): void {
    const relay = parseRelayOwner(owner);
    if (!relay) return;
    if (relay.instance === this.instanceId) {
      // This instance took the observation over from the one that held the device.
      this.deliver(n, this.observers.get(relay.corr), relay.owner);
      return;
    }
    this.publish(this.key('to', relay.instance), { t: 'notify', corr: relay.corr, owner: relay.owner, n }).catch(() => undefined);
  }

  // ---- hand-over ----------------------------------------------------------------------------------------------

  private async claimOrphanedHandoffs(): Promise<void> {
    const pub = this.pub as RedisClient;
    const ids: string[] = [];
    for await (const batch of pub.scanIterator({ MATCH: this.key('handoff', '*'), COUNT: 100 })) {
      for (const k of ([] as string[]).concat(batch)) ids.push(k.slice(this.key('handoff', '').length));
    }
    for (const id of ids) {
      if (id !== this.instanceId && (await this.isAlive(id))) continue;
      await this.adopt(id);
    }
  }

  /** Takes over the state instance `from` handed over (only one instance gets it). */
  private async adopt(from: string): Promise<void> {
    const pub = this.pub;
    const server = this.server;
    if (!pub || !server || this.closing) return;
    const text = await pub.getDel(this.key('handoff', from));
    if (!text) return;
    const state = decodeJson(text) as Lwm2mServerState;
    const keep: Registration[] = [];
    for (const reg of state.registrations ?? []) {
      if (server.registry.byEndpoint(reg.endpoint)) continue;
      const moved = await pub.eval(MOVE_IF_OWNER, { keys: [this.key('reg', reg.endpoint)], arguments: [from, this.instanceId] });
      if (moved === 1) keep.push(reg);
    }
    const endpoints = new Set(keep.map((r) => r.endpoint));
    const channels = new Set(keep.map((r) => r.channelKey));
    server.adoptState({
      ...state,
      registrations: keep,
      sessions: (state.sessions ?? []).filter((s) => channels.has(channelKeyOf(s.meta) ?? s.key)),
      observations: (state.observations ?? []).filter((o) => endpoints.has(o.endpoint)),
      queue: (state.queue ?? []).filter((q) => endpoints.has(q.endpoint)),
      pool: (state.pool ?? []).filter((p) => endpoints.has(p.endpoint)),
    });
    for (const reg of keep) {
      this.remote.delete(reg.endpoint);
      const now = server.registry.byEndpoint(reg.endpoint);
      if (now) await this.writeReg(now, 'claim');
    }
    await this.publish(this.key('events'), { t: 'adopted', from, by: this.instanceId, endpoints: [...endpoints] });
    this.log('info', `took over ${keep.length} device(s) and ${state.sessions?.length ?? 0} DTLS session(s) from instance ${from}`);
    this.emit('adopted', from, [...endpoints]);
  }

  async detach(server: Lwm2mServer, handOver: boolean): Promise<boolean> {
    if (this.server !== server || !this.pub || this.closing) return false;
    if (!this.connected) {
      this.closing = true;
      return false;
    }
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const [event, fn] of this.serverListeners.splice(0)) server.off(event, fn);
    await this.chain;
    let handed = false;
    try {
      // Also when the server hands over in-process (`handOver` false, e.g. a redeploy): if no successor with this
      // id comes back (the process is shutting down), another instance takes the devices over.
      {
        const state = server.exportState();
        delete state.handover;
        const now = Date.now();
        if (state.registrations.length > 0) {
          const ttl = Math.max(...state.registrations.map((r) => this.ttlOf(r, now)));
          await this.pub.set(this.key('handoff', this.instanceId), encodeJson(state), { expiration: { type: 'PX', value: ttl } });
          handed = true;
        }
        await this.pub.del(this.key('inst', this.instanceId));
        this.closing = true;
        await this.publish(this.key('events'), { t: 'gone', from: this.instanceId, handoff: handed });
        if (handed) this.log(handOver ? 'info' : 'debug', `handed ${state.registrations.length} device(s) and ${state.sessions.length} DTLS session(s) over`);
      }
    } catch (err) {
      this.log('warn', `hand-over failed: ${(err as Error).message}`);
    }
    this.closing = true;
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, new Lwm2mRequestError('the LwM2M server is closed', 'closed'));
    return handed;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.takeoverTimers) clearTimeout(t);
    this.takeoverTimers.clear();
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, new Lwm2mRequestError('the LwM2M server is closed', 'closed'));
    if (this.server) for (const [event, fn] of this.serverListeners.splice(0)) this.server.off(event, fn);
    // Answers to forwarded requests that the teardown ended are still on their way out.
    await new Promise((r) => setImmediate(r));
    await this.chain;
    const clients = [this.sub, this.pub].filter((c): c is RedisClient => c !== undefined);
    this.sub = undefined;
    this.pub = undefined;
    await Promise.all(clients.map(async (c) => {
      try {
        if (c.isOpen) await c.close();
      } catch {
        c.destroy();
      }
    }));
    this.observers.clear();
    this.remote.clear();
    this.written.clear();
    this.server = undefined;
  }

  remoteRegistrations(): RegistrationInfo[] {
    return [...this.remote.values()].map((r) => registrationInfo(r.reg));
  }

  /** Every registration in the fleet with the instance that holds it, and whether that instance is alive. */
  async fleet(): Promise<Array<RegistrationInfo & { instance: string; alive: boolean }>> {
    const out: Array<RegistrationInfo & { instance: string; alive: boolean }> = [];
    if (!this.pub) return out;
    for (const endpoint of await this.pub.sMembers(this.key('regs'))) {
      const rec = await this.readReg(endpoint);
      if (rec) out.push({ ...registrationInfo(rec.reg), instance: rec.owner, alive: await this.isAlive(rec.owner) });
    }
    return out;
  }
}

/** `p`, or a 'transport' Lwm2mRequestError when Redis does not answer within `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Lwm2mRequestError(`the Redis store did not answer within ${ms} ms`, 'transport')), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function ownerGone(endpoint: string, owner: string): Lwm2mRequestError {
  return new Lwm2mRequestError(
    `cannot reach "${endpoint}": owner instance gone (${owner} held its DTLS session); the device must reconnect or register again`,
    'no-session',
  );
}

function channelKeyOf(meta: unknown): string | undefined {
  const k = meta && typeof meta === 'object' ? (meta as { channelKey?: unknown }).channelKey : undefined;
  return typeof k === 'string' ? k : undefined;
}

/** `cluster:<instance>:<correlation id>:<owner>`, the owner of an observation started through another instance. */
function parseRelayOwner(owner: unknown): { instance: string; corr: string; owner: string } | undefined {
  if (typeof owner !== 'string' || !owner.startsWith('cluster:')) return undefined;
  const m = /^cluster:([A-Za-z0-9_-]+):([0-9a-f]+):(.*)$/s.exec(owner);
  return m ? { instance: m[1], corr: m[2], owner: m[3] } : undefined;
}
