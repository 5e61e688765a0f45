import fs from 'node:fs';
import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus } from 'node-red';
import type { LogFn } from '../channel';
import { certificateConfig, parsePskTable } from '../lwm2m/security';
import {
  Lwm2mRequestError, Lwm2mServer, type Lwm2mNotification, type Lwm2mResult, type Lwm2mServerState, type MailboxEntry, type RegistrationInfo,
} from '../server';
import { EVENT_TYPES, globToRegExp } from './util';
import { registerAdmin } from './admin';
import { RedisClusterStore } from '../cluster/redis';
import { FileStateStore, StateSaver, withoutSessions, type StateFileInfo } from '../persist';

/** Most mailbox outcomes kept for request nodes that are not (yet) there, e.g. while a flow starts. */
const MAILBOX_PENDING_MAX = 1000;

/** The outcome of a request that waited in a mailbox across a restart or hand-over (no caller promise any more). */
type MailboxOutcome = { entry: MailboxEntry; result: Lwm2mResult; error?: undefined } | { entry: MailboxEntry; result?: undefined; error: Error };

/** Seconds between saves of a running server's state (when it changed). */
const PERSIST_INTERVAL_MS = 10000;

/**
 * The secret the state file key is derived from: Node-RED's credentialSecret, else the one Node-RED generated for
 * the credentials file. Undefined when credential encryption is off (credentialSecret: false) or none exists.
 */
function stateSecret(RED: NodeAPI): string | undefined {
  const settings = RED.settings as unknown as { credentialSecret?: unknown; get?: (key: string) => unknown };
  const own = settings.credentialSecret;
  if (typeof own === 'string' && own !== '') return own;
  // false: the user turned credential encryption off, and Node-RED drops its generated secret.
  if (own === false) return undefined;
  try {
    const generated = settings.get?.('_credentialSecret');
    if (typeof generated === 'string' && generated !== '') return generated;
  } catch {
    // runtime settings not available (e.g. an embedded runtime without storage)
  }
  return undefined;
}

interface ServerDef extends NodeDef {
  bind: string;
  coapPort: string | number;
  coapsPort: string | number;
  allowNoSec: boolean;
  poolMode: 'inbound' | 'outbound';
  idleTimeout: string | number;
  maxSessions: string | number;
  minLifetime: string | number;
  maxLifetime: string | number;
  persist?: boolean | string;
  store: string;
  modelDir?: string;
}
interface ServerCredentials { psk?: string; serverKey?: string; serverCert?: string; trustedCAs?: string }

interface UserNode extends Node {
  id: string;
}

interface ServerNode extends Node<ServerCredentials> {
  users: Record<string, UserNode>;
  lwm2m: Lwm2mServer;
  /** Resolves once the ports are bound; rejects with the reason they are not. */
  ready: Promise<void>;
  startError?: Error;
  register(user: UserNode): void;
  deregister(user: UserNode, done: () => void): void;
  /**
   * Where notifications of observations go, by the id of the lwm2m-request node that started them. A node
   * redeployed with the same id takes its observations over; a removed node cancels them.
   */
  notifyTargets: Map<string, (n: Lwm2mNotification) => void>;
  /**
   * Where results of mailbox entries restored after a restart or hand-over go, by the id of the lwm2m-request node
   * that sent the request. Outcomes for a node not (yet) there wait in a bounded list until it registers.
   */
  mailboxTargets: Map<string, (o: MailboxOutcome) => void>;
  setMailboxTarget(id: string, fn: (o: MailboxOutcome) => void): void;
}

interface RequestDef extends NodeDef {
  server: string;
  operation: string;
  endpoint: string;
  path: string;
  format: string;
  timeout: string | number;
}
interface EventsDef extends NodeDef {
  server: string;
  events: string;
  endpointFilter: string;
}
interface StatsDef extends NodeDef {
  server: string;
  interval: string | number;
}

type Lwm2mMsg = NodeMessageInFlow & {
  endpoint?: unknown;
  operation?: unknown;
  format?: unknown;
  timeout?: unknown;
  code?: string;
  lwm2m?: unknown;
  location?: string;
  observe?: number;
  mailbox?: { queuedAt: number; deliveredAt: number };
};

function num(value: unknown, fallback: number): number {
  if (value === '' || value === undefined || value === null) return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

export = function register(RED: NodeAPI): void {
  /**
   * State of config nodes being redeployed (closed with removed = false), by node id: the new instance takes the
   * registrations, DTLS sessions, observations and queued requests over, so devices notice nothing.
   * Lives as long as this runtime's registration of the node types, not in module scope.
   */
  const handovers = new Map<string, { state: Lwm2mServerState; bind: string; coapPort: number; coapsPort: number }>();
  /** Scale-out: this runtime's part of each config node's cluster instance id (the same across redeploys). */
  const runtimeTag = Math.random().toString(16).slice(2, 10).padEnd(8, '0');

  function Lwm2mServerNode(this: Node, config: ServerDef): void {
    RED.nodes.createNode(this, config);
    const node = this as ServerNode;
    node.users = {};
    node.notifyTargets = new Map();
    node.mailboxTargets = new Map();
    const mailboxPending: MailboxOutcome[] = [];
    const routeMailbox = (o: MailboxOutcome): void => {
      const target = o.entry.owner !== undefined ? node.mailboxTargets.get(o.entry.owner) : undefined;
      if (target) {
        target(o);
        return;
      }
      if (o.entry.owner === undefined) return;
      mailboxPending.push(o);
      if (mailboxPending.length > MAILBOX_PENDING_MAX) {
        const dropped = mailboxPending.shift();
        node.warn(`result of a queued ${dropped?.entry.operation} for "${dropped?.entry.endpoint}" dropped: no lwm2m-request node with id ${dropped?.entry.owner}`);
      }
    };
    node.setMailboxTarget = (id, fn) => {
      node.mailboxTargets.set(id, fn);
      for (let i = 0; i < mailboxPending.length; ) {
        if (mailboxPending[i].entry.owner === id) fn(mailboxPending.splice(i, 1)[0]);
        else i += 1;
      }
    };
    let status: NodeStatus = { fill: 'yellow', shape: 'ring', text: 'starting' };
    const setStatus = (s: NodeStatus): void => {
      status = s;
      for (const id of Object.keys(node.users)) node.users[id].status(s);
    };
    const log: LogFn = (level, message) => {
      if (level === 'trace') node.trace(message);
      else if (level === 'debug') node.debug(message);
      else if (level === 'warn') node.warn(message);
      else if (level === 'error') node.error(message);
      else node.log(message);
    };
    // Node-RED drops trace messages unless a logger of settings.js asks for them: then the core need not build them.
    log.trace = traceLogging(RED.settings);
    let psk: ReturnType<typeof parsePskTable> = [];
    try {
      psk = parsePskTable(node.credentials?.psk);
    } catch (err) {
      node.error(`PSK table: ${(err as Error).message}`);
    }
    // Server key/certificate and trusted CAs (ECDHE_ECDSA: raw public keys and X.509). Messages never hold key material.
    let certs: Omit<ReturnType<typeof certificateConfig>, 'warnings'> = {};
    try {
      const { warnings, ...rest } = certificateConfig(node.credentials ?? {});
      certs = rest;
      for (const w of warnings) node.warn(`certificates: ${w}`);
    } catch (err) {
      node.error(`certificates: ${(err as Error).message}`);
    }
    const coapPort = num(config.coapPort, 5683);
    const coapsPort = num(config.coapsPort, 5684);
    // Scale-out: `store` = 'redis://host:port/db' shares the fleet with every instance using that Redis.
    let cluster: RedisClusterStore | undefined;
    const storeUrl = typeof config.store === 'string' ? config.store.trim() : '';
    if (storeUrl !== '') {
      try {
        cluster = new RedisClusterStore({ url: storeUrl, instanceId: `${runtimeTag}-${node.id.replace(/[^A-Za-z0-9_-]/g, '_')}`.slice(0, 64), log });
      } catch (err) {
        node.error(`store: ${(err as Error).message}`);
      }
    }
    try {
      node.lwm2m = new Lwm2mServer({
        cluster,
        bind: config.bind || '0.0.0.0',
        coapPort,
        coapsPort,
        allowNoSec: config.allowNoSec === true,
        poolMode: config.poolMode === 'outbound' ? 'outbound' : 'inbound',
        idleTimeout: num(config.idleTimeout, 300),
        maxSessions: num(config.maxSessions, 10000),
        minLifetime: num(config.minLifetime, 1),
        maxLifetime: num(config.maxLifetime, 31536000),
        modelDir: config.modelDir || undefined,
        psk,
        ...certs,
        log,
      });
    } catch (err) {
      // A bad PSK entry or certificate: start with no security (nobody can use DTLS) rather than not at all, and say
      // what is wrong.
      node.error(`security configuration: ${(err as Error).message}`);
      node.lwm2m = new Lwm2mServer({ bind: config.bind || '0.0.0.0', coapPort, coapsPort, allowNoSec: config.allowNoSec === true, log, cluster });
    }
    const previous = handovers.get(node.id);
    handovers.delete(node.id);
    const bind = config.bind || '0.0.0.0';
    // Sessions and registrations only carry over when the server still listens where the devices talk to it.
    const carried = previous && previous.bind === bind && previous.coapPort === coapPort && previous.coapsPort === coapsPort ? previous.state : undefined;
    node.lwm2m.on('notification', (n: Lwm2mNotification, owner?: string) => {
      if (owner) node.notifyTargets.get(owner)?.(n);
    });
    node.lwm2m.on('mailbox-result', (result: Lwm2mResult, entry: MailboxEntry) => routeMailbox({ entry, result }));
    node.lwm2m.on('mailbox-error', (error: Error, entry: MailboxEntry) => routeMailbox({ entry, error }));

    // Persistence in a file: on unless the flow says false (new config nodes default to on), and only without a
    // shared store (with `store` set, the store holds the fleet and the file is not used).
    const info: StateFileInfo = { bind, coapPort, coapsPort };
    const userDir = (RED.settings as unknown as { userDir?: unknown }).userDir;
    const stateFile = typeof userDir === 'string' && userDir !== '' ? path.join(userDir, `lwm2m-${node.id.replace(/[^A-Za-z0-9_.-]/g, '_')}.state`) : undefined;
    const persist = config.persist !== false && config.persist !== 'false' && storeUrl === '';
    let store: FileStateStore | undefined;
    let saver: StateSaver | undefined;
    let closing = false;
    if (persist && stateFile) {
      const secret = stateSecret(RED);
      if (secret) store = new FileStateStore(stateFile, secret, { warn: (m) => node.warn(m) });
      else {
        node.warn('persistence is off: Node-RED has no credential secret to encrypt the saved state with (set credentialSecret in settings.js); registrations and sessions are kept in memory only');
      }
    } else if (persist) {
      node.debug('persistence is off: Node-RED has no user directory');
    }
    const starting = (async () => {
      let state = carried;
      if (!persist && stateFile) {
        // Turned off: no key material stays on disk for a server that no longer uses it.
        if (fs.existsSync(stateFile)) {
          await fs.promises.rm(stateFile, { force: true }).catch(() => undefined);
          node.log('persistence is off: removed the saved state file');
        }
      }
      if (store && !state) {
        const saved = await store.read();
        if (saved && saved.info.bind === bind && saved.info.coapPort === coapPort && saved.info.coapsPort === coapsPort) {
          state = saved.state;
        } else if (saved) {
          node.log(`saved state not restored: it belongs to ${saved.info.bind}:${saved.info.coapPort}/${saved.info.coapsPort}, the server now listens on ${bind}:${coapPort}/${coapsPort}`);
        }
      }
      if (store && state && state.sessions.length > 0) {
        // Sessions are resumed once: before they send anything, the file stops holding them.
        try {
          await store.save(withoutSessions(state), info);
        } catch (err) {
          node.warn(`saved DTLS sessions not resumed: the state file cannot be rewritten (${(err as Error).message})`);
          try {
            await store.remove();
          } catch {
            state = withoutSessions(state);
          }
        }
      }
      return node.lwm2m.start(state);
    })();
    node.ready = starting.then(
      (ports) => {
        const parts = [ports.coap ? `coap ${ports.coap}` : '', ports.coaps ? `coaps ${ports.coaps}` : ''].filter(Boolean);
        setStatus({ fill: 'green', shape: 'dot', text: `listening ${parts.join(', ') || '(no port)'}` });
        if (store && !closing) {
          saver = new StateSaver(store, () => node.lwm2m.exportState({ sessions: false }), {
            intervalMs: PERSIST_INTERVAL_MS, info, warn: (m) => node.warn(m),
          });
          saver.start();
        }
      },
      (err: Error) => {
        node.startError = err;
        node.error(`LwM2M server not started: ${err.message}`);
        setStatus({ fill: 'red', shape: 'ring', text: /in use/.test(err.message) ? 'port in use' : 'error' });
        throw err;
      },
    );
    node.ready.catch(() => undefined);
    node.register = (user) => {
      node.users[user.id] = user;
      user.status(status);
    };
    node.deregister = (user, done) => {
      delete node.users[user.id];
      done();
    };
    node.on('close', (removed: boolean, done: () => void) => {
      closing = true;
      saver?.close();
      mailboxPending.length = 0;
      // Wait for a start still reading the saved state, so nothing binds after the close.
      const closed = node.ready.catch(() => undefined).then(async () => {
        if (removed) {
          await node.lwm2m.stop();
          await store?.remove();
          return;
        }
        const state = await node.lwm2m.detach();
        handovers.set(node.id, { state, bind, coapPort, coapsPort });
        // A restart (or a redeploy followed by a crash) finds this; a server that never started saves nothing, so
        // its earlier saved state is kept.
        if (store && !node.startError) {
          await store.save(state, info).catch((err: Error) => node.warn(`LwM2M state not saved to ${store?.file}: ${err.message}`));
        }
      });
      closed.catch((err: Error) => node.warn(`LwM2M server close: ${err.message}`)).finally(() => done());
    });
  }
  RED.nodes.registerType('lwm2m-server', Lwm2mServerNode, {
    credentials: { psk: { type: 'text' }, serverKey: { type: 'password' }, serverCert: { type: 'text' }, trustedCAs: { type: 'text' } },
  });

  function getServer(node: Node, id: string): ServerNode | undefined {
    const server = RED.nodes.getNode(id) as ServerNode | null;
    if (!server || !server.lwm2m) {
      node.status({ fill: 'red', shape: 'ring', text: 'no server' });
      node.error('no lwm2m-server configured: choose a server in the node');
      return undefined;
    }
    return server;
  }

  function Lwm2mRequestNode(this: Node, config: RequestDef): void {
    RED.nodes.createNode(this, config);
    const node = this as UserNode;
    const server = getServer(node, config.server);
    const notify = (n: Lwm2mNotification): void => {
      node.send({ topic: n.path, endpoint: n.endpoint, operation: n.operation, payload: n.payload, code: n.code, format: n.format, observe: n.observe } as NodeMessage);
    };
    /** Sets the answer's fields on the msg (SPEC msg contract). */
    const applyResult = (msg: Lwm2mMsg, res: Lwm2mResult): void => {
      msg.payload = res.payload;
      msg.code = res.code;
      msg.format = res.format;
      msg.endpoint = res.endpoint;
      msg.topic = res.path;
      msg.lwm2m = { rttMs: res.rttMs, secure: res.secure, sessionReused: res.sessionReused, handshakes: res.handshakes, names: res.names };
      if (res.location !== undefined) msg.location = res.location;
      if (res.observe !== undefined) msg.observe = res.observe;
    };
    // A request that waited in a mailbox across a restart or hand-over: the saved msg comes back with the result.
    const mailbox = (o: MailboxOutcome): void => {
      const msg = { ...(o.entry.msg ?? {}) } as Lwm2mMsg;
      if (!('payload' in msg)) msg.payload = o.entry.payload;
      msg.mailbox = { queuedAt: o.entry.queuedAt, deliveredAt: Date.now() };
      if (o.result) {
        applyResult(msg, o.result);
        node.send(msg as NodeMessage);
        return;
      }
      if (o.error instanceof Lwm2mRequestError && o.error.code) msg.code = o.error.code;
      node.error(o.error, msg as NodeMessage);
    };
    if (server) {
      server.register(node);
      server.notifyTargets.set(node.id, notify);
      server.setMailboxTarget(node.id, mailbox);
    }
    node.on('input', (m: NodeMessageInFlow, send: (msg: NodeMessage) => void, done: (err?: Error) => void) => {
      const msg = m as Lwm2mMsg;
      if (!server) {
        done(new Error('no lwm2m-server configured: choose a server in the node'));
        return;
      }
      const operation = config.operation || (typeof msg.operation === 'string' ? msg.operation : '');
      const endpoint = config.endpoint || (typeof msg.endpoint === 'string' ? msg.endpoint : '');
      const fromMsg = msg.topic as unknown;
      const path: string | string[] = config.path || (typeof fromMsg === 'string' || Array.isArray(fromMsg) ? (fromMsg as string | string[]) : '');
      const format = config.format && config.format !== 'auto' ? config.format : typeof msg.format === 'string' ? msg.format : 'auto';
      const timeout = config.timeout !== '' && config.timeout !== undefined ? num(config.timeout, 10000) : num(msg.timeout, 10000);
      if (!operation) {
        done(new Error('missing operation: set msg.operation (or the node\'s operation), e.g. "read"'));
        return;
      }
      server.ready
        .then(() =>
          server.lwm2m.request({
            endpoint, operation, path, payload: msg.payload, format, timeout, owner: node.id, msg,
            onObserveEnd: (reason) => node.status({ fill: 'grey', shape: 'ring', text: `observation ended: ${reason}` }),
          }),
        )
        .then(
          (res) => {
            applyResult(msg, res);
            send(msg);
            done();
          },
          (err: Error) => {
            if (err instanceof Lwm2mRequestError && err.code) msg.code = err.code;
            const reason = server.startError ? `LwM2M server not started: ${server.startError.message}` : err.message;
            done(err === server.startError ? new Error(reason) : err);
          },
        );
    });
    node.on('close', (removed: boolean, done: () => void) => {
      node.status({});
      if (!server) {
        done();
        return;
      }
      if (server.notifyTargets.get(node.id) === notify) server.notifyTargets.delete(node.id);
      if (server.mailboxTargets.get(node.id) === mailbox) server.mailboxTargets.delete(node.id);
      if (removed) server.lwm2m.cancelObservationsOf(node.id);
      server.deregister(node, done);
    });
  }
  RED.nodes.registerType('lwm2m-request', Lwm2mRequestNode);

  function Lwm2mEventsNode(this: Node, config: EventsDef): void {
    RED.nodes.createNode(this, config);
    const node = this as UserNode;
    const server = getServer(node, config.server);
    if (!server) return;
    server.register(node);
    const wanted = (config.events || EVENT_TYPES.join(','))
      .split(',')
      .map((s) => s.trim())
      .filter((s) => (EVENT_TYPES as readonly string[]).includes(s));
    const filter = globToRegExp(config.endpointFilter || '');
    const listeners: Array<[string, (...args: unknown[]) => void]> = wanted.map((topic) => [
      topic,
      (info: unknown, extra?: unknown) => {
        const reg = info as RegistrationInfo & { endpoint: string };
        if (filter && !filter.test(reg.endpoint)) return;
        const msg: NodeMessage & { endpoint: string; changes?: unknown; registration?: unknown } = { topic, endpoint: reg.endpoint, payload: info };
        if (topic === 'update' && Array.isArray(extra)) msg.changes = extra;
        if (topic === 'send') {
          msg.payload = extra;
          msg.registration = info;
        }
        node.send(msg);
      },
    ]);
    for (const [event, fn] of listeners) server.lwm2m.on(event, fn);
    node.on('close', (_removed: boolean, done: () => void) => {
      for (const [event, fn] of listeners) server.lwm2m.off(event, fn);
      node.status({});
      server.deregister(node, done);
    });
  }
  RED.nodes.registerType('lwm2m-events', Lwm2mEventsNode);

  function Lwm2mStatsNode(this: Node, config: StatsDef): void {
    RED.nodes.createNode(this, config);
    const node = this as UserNode;
    const server = getServer(node, config.server);
    if (server) server.register(node);
    const emit = (msg: NodeMessage, send: (m: NodeMessage) => void): void => {
      if (!server) return;
      msg.payload = server.lwm2m.stats();
      send(msg);
    };
    node.on('input', (msg: NodeMessageInFlow, send: (m: NodeMessage) => void, done: (err?: Error) => void) => {
      if (!server) {
        done(new Error('no lwm2m-server configured: choose a server in the node'));
        return;
      }
      emit(msg, send);
      done();
    });
    const seconds = num(config.interval, 0);
    const timer = server && seconds > 0 ? setInterval(() => emit({ topic: 'stats' }, (m) => node.send(m)), seconds * 1000) : undefined;
    node.on('close', (_removed: boolean, done: () => void) => {
      if (timer) clearInterval(timer);
      node.status({});
      if (server) server.deregister(node, done);
      else done();
    });
  }
  RED.nodes.registerType('lwm2m-stats', Lwm2mStatsNode);
  registerAdmin(RED);
};

/** Whether a logger in Node-RED's settings (`logging: { console: { level: 'trace' } }`) writes trace messages. */
function traceLogging(settings: unknown): boolean {
  const logging = (settings as { logging?: unknown } | undefined)?.logging;
  if (!logging || typeof logging !== 'object') return false;
  return Object.values(logging as Record<string, unknown>).some((l) => !!l && typeof l === 'object' && (l as { level?: unknown }).level === 'trace');
}
