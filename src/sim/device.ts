import { EventEmitter } from 'node:events';
import dgram from 'node:dgram';
import type { Channel } from '../channel';
import { CoapEndpoint, type CoapMessage, type CoapResponseInit } from '../coap';
import { DtlsServer, type DtlsSession } from '../dtls';
import { ContentFormat, decodeContent, encodeContent } from '../lwm2m/content';
import { ObjectModel } from '../lwm2m/model';
import { parsePath, type Lwm2mPath } from '../lwm2m/path';

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

  constructor(private readonly opts: SimulatedDeviceOptions) {
    super();
    for (const [path, resources] of Object.entries(opts.objects ?? DEFAULT_OBJECTS)) {
      this.objects.set(path, new Map(Object.entries(resources).map(([k, v]) => [Number(k), v])));
    }
    this.coap = new CoapEndpoint({ ...opts.coap, onRequest: (req) => this.onRequest(req) });
  }

  set(path: string, value: Value): void {
    const p = parsePath(path);
    const inst = this.objects.get(`/${p.objectId}/${p.instanceId}`);
    if (!inst || p.resourceId === undefined) throw new Error(`no such resource ${path}`);
    inst.set(p.resourceId, value);
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
    const ct = this.opts.lwm2mVersion && this.opts.lwm2mVersion !== '1.0' ? ';ct="60 110 112 11542 11543"' : '';
    return [`</>;rt="oma.lwm2m"${ct}`, ...[...this.objects.keys()].map((p) => `<${p}>`)].join(',');
  }

  async register(): Promise<CoapMessage> {
    if (!this.channel) throw new Error('not connected');
    const query = [`ep=${this.opts.endpoint}`, `lt=${this.opts.lifetime ?? 300}`, `lwm2m=${this.opts.lwm2mVersion ?? '1.1'}`, `b=${this.opts.binding ?? 'U'}`];
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

  private onRequest(req: CoapMessage): CoapResponseInit {
    this.requestsHandled += 1;
    let path: Lwm2mPath;
    try {
      path = parsePath('/' + req.path.join('/'));
    } catch {
      return { code: '4.04' };
    }
    try {
      switch (req.code) {
        case '0.01':
          return req.accept === ContentFormat.LINK ? this.discover(path) : this.read(path, req.accept);
        case '0.03':
        case '0.02':
          if (req.code === '0.02' && path.resourceId !== undefined && req.contentFormat === undefined) return this.execute(path, req);
          return this.write(path, req);
        default:
          return { code: '4.05' };
      }
    } catch (err) {
      return { code: '4.00', payload: Buffer.from((err as Error).message) };
    }
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
    const inst = instances[0][1];
    for (const [full, v] of Object.entries(values)) {
      const p = parsePath(full);
      if (p.resourceId === undefined) continue;
      if (p.resourceInstanceId === undefined) {
        inst.set(p.resourceId, v as Value);
      } else {
        const current = inst.get(p.resourceId);
        const arr = Array.isArray(current) ? current : [];
        arr[p.resourceInstanceId] = v as Scalar;
        inst.set(p.resourceId, arr);
      }
    }
    this.emit('write', path, values);
    return { code: '2.04' };
  }

  private execute(path: Lwm2mPath, req: CoapMessage): CoapResponseInit {
    this.emit('execute', `/${path.objectId}/${path.instanceId}/${path.resourceId}`, req.payload.toString('utf8'));
    return { code: '2.04' };
  }
}
