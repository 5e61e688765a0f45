import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import dgram from 'node:dgram';
import type { Channel } from '../channel';
import { CoapEndpoint, encodeMessage, encodeUint, type CoapMessage, type CoapResponseInit } from '../coap';
import { DtlsServer, type DtlsSession } from '../dtls';
import { ContentFormat, decodeContent, decodeSenmlJsonRecords, encodeContent } from '../lwm2m/content';
import { ObjectModel } from '../lwm2m/model';
import { parsePath, pathStartsWith, pathToString, type Lwm2mPath } from '../lwm2m/path';

type Scalar = string | number | boolean | Buffer | Date;
/** A resource value; an array for a multiple-instance resource (index = resource instance id). */
type Value = Scalar | Scalar[];
/** `{ '/3/0': { 0: 'Maker', 1: 'Model' }, '/3303/0': { 5700: 21.5 } }` */
export type DeviceObjects = Record<string, Record<number, Value>>;

export interface SimulatedDeviceOptions {
  endpoint: string;
  /** The LwM2M server. */
  host: string;
  port: number;
  /** DTLS PSK credentials; without them the device registers over plain CoAP. */
  psk?: { identity: string; key: Buffer };
  lifetime?: number;
  lwm2mVersion?: '1.0' | '1.1' | '1.2';
  binding?: string;
  objects?: DeviceObjects;
  /** Format for object/instance reads when the server does not ask for one; default TLV. */
  format?: number;
  /**
   * Outbound pool mode: the device also runs a DTLS server on this port (0 = any free port) with the same PSK,
   * which the LwM2M server dials for its requests.
   */
  serveDtls?: number;
  /** Local UDP port for the client side (node-dtls-client `listenPort`). */
  localPort?: number;
  /** Register in queue mode (`b=UQ` for LwM2M 1.0, the `Q` parameter for 1.1+). */
  queueMode?: boolean;
  coap?: { ackTimeoutMs?: number; maxRetransmit?: number };
}

export const DEFAULT_OBJECTS: DeviceObjects = {
  '/1/0': { 0: 1, 1: 300, 6: false, 7: 'U' },
  '/3/0': {
    0: 'Open Mobile Alliance',
    1: 'Lightweight M2M Client',
    2: 'SIM-0001',
    3: '1.0.0',
    9: 87,
    11: [0],
    13: new Date(1764000000000),
    16: 'U',
  },
  '/3303/0': { 5700: 21.5, 5701: 'Cel' },
};

/**
 * A simulated LwM2M client, for demos and tests: registers with a server over DTLS (node-dtls-client) or plain
 * CoAP and answers read, write, execute and discover from an in-memory object tree.
 */
export class SimulatedDevice extends EventEmitter {
  readonly model = new ObjectModel();
  /** `/3/0` → resource id → value */
  readonly objects = new Map<string, Map<number, Value>>();
  location?: string;
  requestsHandled = 0;
  /** Port of the device's own DTLS server (serveDtls). */
  servedPort = 0;
  private readonly coap: CoapEndpoint;
  private channel?: Channel;
  private closeTransport?: () => Promise<void>;
  private dtlsServer?: DtlsServer;
  private serverSocket?: dgram.Socket;
  /** Observations the server started: token (hex) → what to notify. */
  private readonly observers = new Map<string, { token: Buffer; paths: Lwm2mPath[]; composite: boolean; accept?: number; channel: Channel; seq: number }>();
  private notifyMid = Math.floor(Math.random() * 0xffff);
  /** Attributes written with write-attributes, by path. */
  readonly attributes = new Map<string, string[]>();

  constructor(private readonly opts: SimulatedDeviceOptions) {
    super();
    for (const [path, resources] of Object.entries(opts.objects ?? DEFAULT_OBJECTS)) {
      this.objects.set(path, new Map(Object.entries(resources).map(([k, v]) => [Number(k), v])));
    }
    this.coap = new CoapEndpoint({ ...opts.coap, onRequest: (req, ch) => this.onRequest(req, ch) });
  }

  /** Changes a resource value; observers of it (or of its instance/object) get a notification. */
  set(path: string, value: Value): void {
    const p = parsePath(path);
    const inst = this.objects.get(`/${p.objectId}/${p.instanceId}`);
    if (!inst || p.resourceId === undefined) throw new Error(`no such resource ${path}`);
    inst.set(p.resourceId, value);
    this.notifyObservers(p);
  }

  /** Number of observations the server holds on this device. */
  get observationCount(): number {
    return this.observers.size;
  }

  /** LwM2M 1.1 Send: POST /dp with the current values of `paths` in SenML JSON. */
  async send(paths: string[]): Promise<CoapMessage> {
    if (!this.channel) throw new Error('not connected');
    const values: Record<string, Value> = {};
    for (const p of paths) Object.assign(values, this.valuesAt(parsePath(p)));
    const payload = encodeContent(ContentFormat.SENML_JSON, {}, values, this.model);
    return this.coap.request(this.channel, { method: 'POST', path: ['dp'], contentFormat: ContentFormat.SENML_JSON, payload });
  }

  private valuesAt(path: Lwm2mPath): Record<string, Value> {
    const out: Record<string, Value> = {};
    for (const [p, res] of this.instancesOf(path)) {
      for (const [id, v] of res) {
        if (path.resourceId !== undefined && id !== path.resourceId) continue;
        out[`${p}/${id}`] = v;
      }
    }
    return out;
  }

  private notifyObservers(changed: Lwm2mPath): void {
    for (const obs of this.observers.values()) {
      if (!obs.paths.some((p) => pathStartsWith(changed, p) || pathStartsWith(p, changed))) continue;
      let res: CoapResponseInit;
      try {
        res = obs.composite ? this.readComposite(obs.paths, obs.accept) : this.read(obs.paths[0], obs.accept);
      } catch {
        continue;
      }
      obs.seq += 1;
      this.notifyMid = (this.notifyMid + 1) & 0xffff;
      const options = [{ name: 'Observe', value: encodeUint(obs.seq) }];
      if (res.contentFormat !== undefined) options.push({ name: 'Content-Format', value: encodeUint(res.contentFormat) });
      obs.channel.send(encodeMessage({ type: 'NON', code: res.code, messageId: this.notifyMid, token: obs.token, options, payload: res.payload }));
    }
  }

  get(path: string): Value | undefined {
    const p = parsePath(path);
    return this.objects.get(`/${p.objectId}/${p.instanceId}`)?.get(p.resourceId ?? -1);
  }

  /** Connects (DTLS handshake when a PSK is set) and registers. */
  async start(): Promise<void> {
    if (this.opts.serveDtls !== undefined) await this.serve(this.opts.serveDtls);
    await this.connect();
    await this.register();
  }

  private async connect(): Promise<void> {
    const { host, port } = this.opts;
    if (!this.opts.psk) {
      const socket = dgram.createSocket('udp4');
      await new Promise<void>((r) => socket.bind(this.opts.localPort ?? 0, '127.0.0.1', () => r()));
      const ch: Channel = { key: 'server', address: host, port, secure: false, send: (d) => socket.send(d, port, host) };
      socket.on('message', (msg) => this.coap.handle(ch, msg));
      this.closeTransport = undefined;
      this.channel = ch;
      this.closeTransport = () => new Promise((r) => socket.close(() => r()));
      return;
    }
    const { dtls } = await import('node-dtls-client');
    const { identity, key } = this.opts.psk;
    const socket = dtls.createSocket({
      type: 'udp4', address: host, port, psk: { [identity]: key }, timeout: 5000,
      ciphers: ['TLS_PSK_WITH_AES_128_CCM_8'], listenPort: this.opts.localPort,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('connected', () => resolve());
      socket.once('error', (e: Error) => reject(e));
    });
    let closed = false;
    socket.on('error', (e: Error) => this.emit('transportError', e));
    socket.on('close', () => {
      closed = true;
      this.emit('disconnected');
    });
    const ch: Channel = { key: 'server', address: host, port, secure: true, identity, send: (d) => socket.send(d) };
    socket.on('message', (msg: Buffer) => this.coap.handle(ch, msg));
    this.channel = ch;
    this.closeTransport = () =>
      new Promise<void>((r) => {
        if (closed) return r();
        socket.close(() => r());
        setImmediate(r);
      });
  }

  private linkPayload(): string {
    const ct = this.opts.lwm2mVersion !== '1.0' ? ';ct="60 110 11542"' : '';
    return [`</>;rt="oma.lwm2m"${ct}`, ...[...this.objects.keys()].map((p) => `<${p}>`)].join(',');
  }

  async register(): Promise<CoapMessage> {
    if (!this.channel) throw new Error('not connected');
    const version = this.opts.lwm2mVersion ?? '1.1';
    const queue = this.opts.queueMode === true;
    const binding = this.opts.binding ?? (queue && version === '1.0' ? 'UQ' : 'U');
    const query = [`ep=${this.opts.endpoint}`, `lt=${this.opts.lifetime ?? 300}`, `lwm2m=${version}`, `b=${binding}`];
    if (queue && version !== '1.0') query.push('Q');
    const res = await this.coap.request(this.channel, {
      method: 'POST', path: ['rd'], query, contentFormat: ContentFormat.LINK, payload: Buffer.from(this.linkPayload()),
    });
    if (res.code !== '2.01') throw new Error(`registration refused: ${res.code} ${res.payload.toString()}`);
    this.location = '/' + res.locationPath.join('/');
    this.emit('registered', this.location);
    return res;
  }

  async update(query: string[] = []): Promise<CoapMessage> {
    if (!this.channel || !this.location) throw new Error('not registered');
    return this.coap.request(this.channel, { method: 'POST', path: this.location.split('/').filter(Boolean), query });
  }

  async deregister(): Promise<CoapMessage> {
    if (!this.channel || !this.location) throw new Error('not registered');
    const res = await this.coap.request(this.channel, { method: 'DELETE', path: this.location.split('/').filter(Boolean) });
    this.location = undefined;
    return res;
  }

  async stop(): Promise<void> {
    this.coap.close();
    await this.closeTransport?.();
    this.closeTransport = undefined;
    this.dtlsServer?.close();
    if (this.serverSocket) await new Promise<void>((r) => this.serverSocket?.close(() => r()));
    this.serverSocket = undefined;
  }

  /** The device's own DTLS server (outbound pool mode). */
  private async serve(port: number): Promise<void> {
    if (!this.opts.psk) throw new Error('serveDtls needs a PSK');
    const { identity, key } = this.opts.psk;
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(port, '127.0.0.1', () => r()));
    this.serverSocket = socket;
    this.servedPort = socket.address().port;
    const server = new DtlsServer({ send: (d, p, a) => socket.send(d, p, a), pskLookup: (id) => (id === identity ? key : undefined) });
    this.dtlsServer = server;
    socket.on('message', (msg, rinfo) => server.handleDatagram(msg, rinfo));
    let n = 0;
    server.on('session', (s: DtlsSession) => {
      const ch: Channel = { key: `dialled#${++n}`, address: s.address, port: s.port, secure: true, identity: s.identity, send: (d) => s.send(d) };
      this.emit('dialled', s);
      s.on('data', (d: Buffer) => this.coap.handle(ch, d));
      s.on('close', () => this.coap.forgetChannel(ch.key));
    });
  }

  private onRequest(req: CoapMessage, channel: Channel): CoapResponseInit {
    this.requestsHandled += 1;
    let path: Lwm2mPath;
    try {
      path = parsePath('/' + req.path.join('/'));
    } catch {
      return { code: '4.04' };
    }
    try {
      switch (req.code) {
        case '0.01': {
          if (req.accept === ContentFormat.LINK) return this.discover(path);
          const res = this.read(path, req.accept);
          return this.observeAnswer(req, channel, [path], false, res);
        }
        case '0.05': {
          // FETCH on the root: read-composite / observe-composite with a SenML list of paths.
          const paths = decodeSenmlJsonRecords(req.payload).map((r) => parsePath(r.name));
          const res = this.readComposite(paths, req.accept);
          return this.observeAnswer(req, channel, paths, true, res);
        }
        case '0.07': {
          // iPATCH on the root: write-composite.
          const values = decodeContent(req.contentFormat ?? ContentFormat.SENML_JSON, req.payload, {}, this.model);
          for (const [full, v] of Object.entries(values)) this.store(parsePath(full), v as Value);
          this.emit('write', path, values);
          return { code: '2.04' };
        }
        case '0.03':
          if (req.query.length > 0 && req.payload.length === 0) {
            this.attributes.set(pathToString(path), [...req.query]);
            this.emit('attributes', pathToString(path), [...req.query]);
            return { code: '2.04' };
          }
          return this.write(path, req);
        case '0.02':
          if (path.instanceId === undefined) return this.create(path, req);
          if (path.resourceId !== undefined && req.contentFormat === undefined) return this.execute(path, req);
          return this.write(path, req);
        case '0.04':
          return this.remove(path);
        default:
          return { code: '4.05' };
      }
    } catch (err) {
      return { code: '4.00', payload: Buffer.from((err as Error).message) };
    }
  }

  private observeAnswer(req: CoapMessage, channel: Channel, paths: Lwm2mPath[], composite: boolean, res: CoapResponseInit): CoapResponseInit {
    const key = req.token.toString('hex');
    if (req.observe === 1) this.observers.delete(key);
    if (req.observe !== 0 || !res.code.startsWith('2.')) return res;
    this.observers.set(key, { token: Buffer.from(req.token), paths, composite, accept: req.accept, channel, seq: 1 });
    return { ...res, options: [...(res.options ?? []), { name: 'Observe', value: encodeUint(1) }] };
  }

  private readComposite(paths: Lwm2mPath[], accept?: number): CoapResponseInit {
    const values: Record<string, Value> = {};
    for (const p of paths) Object.assign(values, this.valuesAt(p));
    const cf = accept ?? ContentFormat.SENML_JSON;
    return { code: '2.05', contentFormat: cf, payload: encodeContent(cf, {}, values, this.model) };
  }

  private store(p: Lwm2mPath, v: Value): void {
    const inst = this.objects.get(`/${p.objectId}/${p.instanceId}`);
    if (!inst || p.resourceId === undefined) throw new Error(`no such resource ${pathToString(p)}`);
    if (p.resourceInstanceId === undefined) {
      inst.set(p.resourceId, v);
    } else {
      const current = inst.get(p.resourceId);
      const arr = Array.isArray(current) ? current : [];
      arr[p.resourceInstanceId] = v as Scalar;
      inst.set(p.resourceId, arr);
    }
  }

  private create(path: Lwm2mPath, req: CoapMessage): CoapResponseInit {
    const values = decodeContent(req.contentFormat ?? ContentFormat.TLV, req.payload, path, this.model);
    const used = [...this.objects.keys()].filter((k) => k.startsWith(`/${path.objectId}/`)).map((k) => Number(k.split('/')[2]));
    let instanceId: number | undefined;
    const resources = new Map<number, Value>();
    for (const [full, v] of Object.entries(values)) {
      const parts = full.split('/').filter(Boolean).map(Number);
      // Keys are /o/i/r when the server chose the instance, /o/r... is not produced by the decoder; handle both.
      if (parts.length >= 3) {
        instanceId = parts[1];
        resources.set(parts[2], v as Value);
      }
    }
    if (instanceId === undefined) instanceId = used.length ? Math.max(...used) + 1 : 0;
    if (this.objects.has(`/${path.objectId}/${instanceId}`)) return { code: '4.00', payload: Buffer.from('instance exists') };
    this.objects.set(`/${path.objectId}/${instanceId}`, resources);
    return { code: '2.01', locationPath: [String(path.objectId), String(instanceId)] };
  }

  private remove(path: Lwm2mPath): CoapResponseInit {
    if (path.instanceId === undefined || path.resourceId !== undefined) return { code: '4.05' };
    return this.objects.delete(`/${path.objectId}/${path.instanceId}`) ? { code: '2.02' } : { code: '4.04' };
  }

  private instancesOf(path: Lwm2mPath): Array<[string, Map<number, Value>]> {
    return [...this.objects.entries()].filter(([p]) => {
      const [o, i] = p.split('/').filter(Boolean).map(Number);
      return o === path.objectId && (path.instanceId === undefined || i === path.instanceId);
    });
  }

  private read(path: Lwm2mPath, accept?: number): CoapResponseInit {
    const instances = this.instancesOf(path);
    if (instances.length === 0) return { code: '4.04' };
    if (path.resourceId !== undefined) {
      const value = instances[0][1].get(path.resourceId);
      if (value === undefined) return { code: '4.04' };
      const cf = accept ?? (Array.isArray(value) ? ContentFormat.TLV : Buffer.isBuffer(value) ? ContentFormat.OPAQUE : ContentFormat.TEXT);
      return { code: '2.05', contentFormat: cf, payload: encodeContent(cf, path, value, this.model) };
    }
    const values: Record<string, Value> = {};
    for (const [p, res] of instances) for (const [id, v] of res) values[`${p}/${id}`] = v;
    const cf = accept ?? this.opts.format ?? ContentFormat.TLV;
    return { code: '2.05', contentFormat: cf, payload: encodeContent(cf, path, values, this.model) };
  }

  private discover(path: Lwm2mPath): CoapResponseInit {
    const instances = this.instancesOf(path);
    if (instances.length === 0) return { code: '4.04' };
    const links: string[] = [];
    for (const [p, res] of instances) {
      links.push(`<${p}>`);
      for (const id of res.keys()) links.push(`<${p}/${id}>`);
    }
    return { code: '2.05', contentFormat: ContentFormat.LINK, payload: Buffer.from(links.join(',')) };
  }

  private write(path: Lwm2mPath, req: CoapMessage): CoapResponseInit {
    const instances = this.instancesOf(path);
    if (instances.length === 0 || path.instanceId === undefined) return { code: '4.04' };
    const values = decodeContent(req.contentFormat ?? ContentFormat.TEXT, req.payload, path, this.model);
    for (const [full, v] of Object.entries(values)) {
      const p = parsePath(full);
      if (p.resourceId !== undefined) this.store(p, v as Value);
    }
    this.emit('write', path, values);
    return { code: '2.04' };
  }

  private execute(path: Lwm2mPath, req: CoapMessage): CoapResponseInit {
    this.emit('execute', `/${path.objectId}/${path.instanceId}/${path.resourceId}`, req.payload.toString('utf8'));
    return { code: '2.04' };
  }
}
