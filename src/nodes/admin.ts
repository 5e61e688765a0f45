/**
 * Admin HTTP endpoints used by the editor (request dialog suggestions, path autocomplete, the LwM2M sidebar).
 * They sit on Node-RED's admin app, so they follow its adminAuth: listing needs `lwm2m.read`, and reading a
 * resource of a device needs `lwm2m.write`, so a read-only editor user can watch devices but never send them
 * a request.
 *
 *   GET  /lwm2m/servers                                    deployed lwm2m-server config nodes
 *   GET  /lwm2m/model                                      Objects of the object model (id, name)
 *   GET  /lwm2m/model/:objectId                            one Object with its Resources
 *   GET  /lwm2m/:serverId/devices                          registered devices with their session counters
 *   GET  /lwm2m/:serverId/devices/:endpoint/objects        a device's Objects and Instances, with names
 *   POST /lwm2m/:serverId/devices/:endpoint/read {path}    reads a path of a device
 *
 * Registry changes are also published on the editor's comms channel as `lwm2m/devices/<serverId>`, so an open
 * sidebar refreshes at once.
 */
import { Buffer } from 'node:buffer';
import type { NodeAPI } from 'node-red';
import type { Request, Response, RequestHandler } from 'express';
import { ObjectModel, type ObjectDef } from '../lwm2m/model';
import { Lwm2mRequestError, type Lwm2mServer, type Lwm2mStats, type RegistrationInfo } from '../server';

export const SERVER_TYPE = 'lwm2m-server';
export const READ_PERMISSION = 'lwm2m.read';
export const WRITE_PERMISSION = 'lwm2m.write';
export const COMMS_TOPIC = 'lwm2m/devices';
const DEFAULT_DEVICES = 1000;
const MAX_DEVICES = 100000;

/** What the admin endpoints need of a deployed lwm2m-server config node. */
interface ServerNodeLike {
  id: string;
  type: string;
  name?: string;
  lwm2m?: Lwm2mServer;
  ready?: Promise<void>;
  startError?: Error;
}

export interface ServerSummary {
  id: string;
  name: string;
  ports: { coap: number; coaps: number };
  poolMode: string;
  registrations: number;
  error?: string;
}

export interface DeviceSummary {
  endpoint: string;
  address: string;
  port: number;
  secure: boolean;
  identity?: string;
  lwm2mVersion: string;
  binding: string;
  queueMode: boolean;
  lifetime: number;
  registeredAt: number;
  lastSeen: number;
  objects: string[];
  /** The pooled session of the device, when there is one. */
  session?: { mode: string; handshakes: number; requests: number; bytesIn: number; bytesOut: number; connected: boolean; lastUsed: number };
}

export interface ObjectSummary {
  id: number;
  name?: string;
  version?: string;
  multiple?: boolean;
  instances: number[];
}

export interface ResourceSummary {
  id: number;
  name: string;
  operations: string;
  type: string;
  multiple: boolean;
  mandatory: boolean;
  units?: string;
}

function httpStatusFor(err: unknown): number {
  if (!(err instanceof Lwm2mRequestError)) return 500;
  switch (err.kind) {
    case 'unknown-endpoint':
      return 404;
    case 'bad-input':
      return 400;
    case 'timeout':
      return 504;
    case 'device-error':
    case 'no-session':
    case 'transport':
    case 'decode':
      return 502;
    default:
      return 503;
  }
}

export function deviceSummaries(regs: RegistrationInfo[], stats: Lwm2mStats): DeviceSummary[] {
  const sessions = new Map(stats.perSession.map((s) => [s.endpoint, s]));
  return regs
    .map((r): DeviceSummary => {
      const s = sessions.get(r.endpoint);
      return {
        endpoint: r.endpoint, address: r.address, port: r.port, secure: r.secure, identity: r.identity,
        lwm2mVersion: r.lwm2mVersion, binding: r.binding, queueMode: r.queueMode, lifetime: r.lifetime,
        registeredAt: r.registeredAt, lastSeen: r.lastSeen, objects: r.objects,
        session: s
          ? { mode: s.mode, handshakes: s.handshakes, requests: s.requests, bytesIn: s.bytesIn, bytesOut: s.bytesOut, connected: s.connected, lastUsed: s.lastUsed }
          : undefined,
      };
    })
    .sort((a, b) => a.endpoint.localeCompare(b.endpoint));
}

/** `['/1/0', '/3/0', '/3303']` → one entry per Object with its Instance IDs and model names. */
export function objectSummaries(objects: string[], model: ObjectModel): ObjectSummary[] {
  const byId = new Map<number, Set<number>>();
  for (const link of objects) {
    const m = /^\/?(\d+)(?:\/(\d+))?\/?$/.exec(link);
    if (!m) continue;
    const id = Number(m[1]);
    let set = byId.get(id);
    if (!set) {
      set = new Set();
      byId.set(id, set);
    }
    if (m[2] !== undefined) set.add(Number(m[2]));
  }
  return [...byId.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([id, instances]) => {
      const def = model.get(id);
      return { id, name: def?.name, version: def?.version, multiple: def?.multiple, instances: [...instances].sort((a, b) => a - b) };
    });
}

export function resourceSummaries(def: ObjectDef): ResourceSummary[] {
  return [...def.resources.values()]
    .sort((a, b) => a.id - b.id)
    .map((r) => ({ id: r.id, name: r.name, operations: r.operations, type: r.type, multiple: r.multiple, mandatory: r.mandatory, units: r.units || undefined }));
}

/** Registers the admin endpoints on RED.httpAdmin and the comms notifications. Call once per module load. */
export function registerAdmin(RED: NodeAPI): void {
  const coreModel = new ObjectModel();
  const read: RequestHandler = RED.auth.needsPermission(READ_PERMISSION) as RequestHandler;
  const write: RequestHandler = RED.auth.needsPermission(WRITE_PERMISSION) as RequestHandler;

  function servers(): ServerNodeLike[] {
    const out: ServerNodeLike[] = [];
    RED.nodes.eachNode((def) => {
      if (def.type !== SERVER_TYPE) return;
      const node = RED.nodes.getNode(def.id) as unknown as ServerNodeLike | null;
      if (node && node.lwm2m) out.push(node);
    });
    return out;
  }

  function serverOr404(req: Request, res: Response): ServerNodeLike | undefined {
    const id = String(req.params.serverId);
    const node = RED.nodes.getNode(id) as unknown as ServerNodeLike | null;
    if (!node || node.type !== SERVER_TYPE || !node.lwm2m) {
      res.status(404).json({ error: `no deployed lwm2m-server with id "${id}"` });
      return undefined;
    }
    return node;
  }

  RED.httpAdmin.get('/lwm2m/servers', read, (_req: Request, res: Response) => {
    const list: ServerSummary[] = servers().map((n) => {
      const lwm2m = n.lwm2m as Lwm2mServer;
      return {
        id: n.id, name: n.name || '', ports: lwm2m.ports, poolMode: lwm2m.poolMode,
        registrations: lwm2m.registry.size, error: n.startError?.message,
      };
    });
    res.json(list);
  });

  RED.httpAdmin.get('/lwm2m/model', read, (_req: Request, res: Response) => {
    res.json(coreModel.ids().map((id) => {
      const def = coreModel.get(id) as ObjectDef;
      return { id, name: def.name, version: def.version, multiple: def.multiple };
    }));
  });

  RED.httpAdmin.get('/lwm2m/model/:objectId', read, (req: Request, res: Response) => {
    const raw = String(req.params.objectId);
    const def = /^\d{1,5}$/.test(raw) ? coreModel.get(Number(raw)) : undefined;
    if (!def) {
      res.status(404).json({ error: `Object ${raw} is not in the object model` });
      return;
    }
    res.json({ id: def.id, name: def.name, version: def.version, multiple: def.multiple, mandatory: def.mandatory, resources: resourceSummaries(def) });
  });

  // ?q= keeps endpoints containing that text (case-insensitive); ?limit= caps the list (default 1000). The
  // X-Total-Count header gives how many matched before the cap, so large fleets stay cheap to show.
  RED.httpAdmin.get('/lwm2m/:serverId/devices', read, (req: Request, res: Response) => {
    const node = serverOr404(req, res);
    if (!node) return;
    const lwm2m = node.lwm2m as Lwm2mServer;
    const q = typeof req.query.q === 'string' ? req.query.q.toLowerCase() : '';
    const limitRaw = typeof req.query.limit === 'string' ? Number(req.query.limit) : NaN;
    const limit = Number.isInteger(limitRaw) && limitRaw > 0 ? Math.min(limitRaw, MAX_DEVICES) : DEFAULT_DEVICES;
    const regs = lwm2m.registrations().filter((r) => q === '' || r.endpoint.toLowerCase().includes(q));
    const list = deviceSummaries(regs, lwm2m.stats());
    res.set('X-Total-Count', String(list.length));
    res.json(list.slice(0, limit));
  });

  RED.httpAdmin.get('/lwm2m/:serverId/devices/:endpoint/objects', read, (req: Request, res: Response) => {
    const node = serverOr404(req, res);
    if (!node) return;
    const lwm2m = node.lwm2m as Lwm2mServer;
    const endpoint = String(req.params.endpoint);
    const reg = lwm2m.registrations().find((r) => r.endpoint === endpoint);
    if (!reg) {
      res.status(404).json({ error: `unknown endpoint "${endpoint}": no device with that name is registered` });
      return;
    }
    res.json(objectSummaries(reg.objects, lwm2m.model));
  });

  RED.httpAdmin.post('/lwm2m/:serverId/devices/:endpoint/read', write, (req: Request, res: Response) => {
    const node = serverOr404(req, res);
    if (!node) return;
    const lwm2m = node.lwm2m as Lwm2mServer;
    const body = (req.body ?? {}) as { path?: unknown; timeout?: unknown };
    if (typeof body.path !== 'string' || body.path.trim() === '') {
      res.status(400).json({ error: 'missing path: send {"path": "/3/0/0"}' });
      return;
    }
    const timeout = typeof body.timeout === 'number' && body.timeout > 0 ? Math.min(body.timeout, 60000) : 10000;
    const endpoint = String(req.params.endpoint);
    Promise.resolve(node.ready)
      .then(() => lwm2m.request({ endpoint, operation: 'read', path: body.path as string, timeout }))
      .then(
        (r) => {
          res.json({
            endpoint: r.endpoint, path: r.path, code: r.code, format: r.format, rttMs: r.rttMs,
            payload: Buffer.isBuffer(r.payload) ? { hex: r.payload.toString('hex') } : r.payload,
          });
        },
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          res.status(httpStatusFor(err)).json({ error: e.message, code: err instanceof Lwm2mRequestError ? err.code : undefined });
        },
      );
  });

  // Live notifications: attach once to each Lwm2mServer instance that a deploy starts.
  const watched = new WeakSet<Lwm2mServer>();
  const onFlowsStarted = (): void => {
    for (const node of servers()) {
      const lwm2m = node.lwm2m as Lwm2mServer;
      if (watched.has(lwm2m)) continue;
      watched.add(lwm2m);
      for (const event of ['register', 'update', 'deregister', 'expire']) {
        lwm2m.on(event, (info: RegistrationInfo) => {
          RED.comms.publish(`${COMMS_TOPIC}/${node.id}`, { server: node.id, event, endpoint: info.endpoint }, false);
        });
      }
    }
  };
  // One listener per runtime: a later load of this module (as in tests) replaces the earlier one.
  const key = Symbol.for('node-red-lwm2m-server.admin.flowsStarted');
  const events = RED.events as typeof RED.events & { [key]?: () => void };
  const previous = events[key];
  if (previous) events.off('flows:started', previous);
  events[key] = onFlowsStarted;
  events.on('flows:started', onFlowsStarted);
}
