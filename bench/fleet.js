'use strict';
/**
 * A simulated device fleet in its own process (the load generator). Driven by the parent over IPC; every device
 * has its own UDP socket (the server keys DTLS sessions by address:port) and its own DTLS session.
 *
 * Commands (process.send replies carry the same `id`):
 *   register   { host, port, bind, from, count, concurrency }   handshake + LwM2M Register for devices from..from+count-1
 *   handshakes { host, port, bind, from, idCount, concurrency, durationMs, withRequest }
 *              repeated fresh sessions: new socket, full PSK handshake, [one CoAP GET answered by the server],
 *              close_notify, socket closed
 *   floorStart { host, port, bind, from, count }  record-layer floor devices (bench/lib/floor.js): DTLS sessions
 *              established with derived keys, no handshake; returns their ports
 *   echoStart  { bind, replySize, tagged? }  a raw UDP echo socket answering each datagram with replySize bytes
 *              (tagged: starting with the request's first 4 bytes)
 *   cpu        process.cpuUsage(), the wall clock, this process's garbage collections (count, pause time, major
 *              ones, longest pause since the previous cpu call) and event-loop delay (p99, max since the previous cpu
 *              call): a fleet pause delays every device's answers at once
 *   stats      reads answered, datagram sizes seen
 *   gcLog      the garbage collections since the previous gcLog call, as start, end pairs (ms since the epoch)
 *   exit
 */
const dgram = require('node:dgram');
const { DtlsClient } = require('./lib/dtls-client');
const coap = require('./lib/coap');
const keys = require('./lib/keys');
const { floorKeys } = require('./lib/floor');
const { serveCommands } = require('./lib/child');
// The package's CCM over long-lived AES contexts, so busy simulated devices cost the load generator less CPU.
const CcmContext = process.env.BENCH_FLEET_CCM === '0' ? undefined : require('../dist/index.js').CcmContext;
/** One set of per-record scratch buffers for every simulated device's contexts (as the server's share theirs). */
const ccmScratch = CcmContext ? new (require('../dist/index.js').CcmScratch)() : undefined;

const { PerformanceObserver, constants, monitorEventLoopDelay } = require('node:perf_hooks');

/** How late this process's event loop runs (a stall delays every simulated device's answers at once). */
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

const gc = { count: 0, ms: 0, major: 0, maxMs: 0 };
/** The latest collections as start, end pairs (ms since the epoch), for `gcLog` (at most GC_LOG of them). */
const GC_LOG = 20000;
let gcLog = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (gcLog.length < 2 * GC_LOG) gcLog.push(performance.timeOrigin + e.startTime, performance.timeOrigin + e.startTime + e.duration);
    gc.count++;
    gc.ms += e.duration;
    if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
    if (e.duration > gc.maxMs) gc.maxMs = e.duration;
  }
}).observe({ entryTypes: ['gc'] });

const devices = [];
/** The record-layer floor's devices (floorStart), apart from the registered ones. */
const floorDevices = [];
const stats = { readsAnswered: 0, reqBytes: 0, respBytes: 0, sizeSamples: 0 };
let echoSocket;
const READ_PAYLOAD = Buffer.from('Open Mobile Alliance');

/**
 * The devices' answers leave in batches, once per I/O phase, as the server's do: one wake-up of the server's process
 * per burst instead of one per datagram, so the load generator's sends stay cheap.
 */
const outbox = { sockets: [], data: [], ports: [], hosts: [], scheduled: false };
function flushOutbox() {
  outbox.scheduled = false;
  const { sockets, data, ports, hosts } = outbox;
  for (let i = 0; i < sockets.length; i++) {
    try {
      sockets[i].send(data[i], ports[i], hosts[i]);
    } catch {
      // socket closed meanwhile
    }
  }
  sockets.length = data.length = ports.length = hosts.length = 0;
}
function sendVia(socket, data, port, host) {
  outbox.sockets.push(socket);
  outbox.data.push(data);
  outbox.ports.push(port);
  outbox.hosts.push(host);
  if (!outbox.scheduled) {
    outbox.scheduled = true;
    setImmediate(flushOutbox);
  }
}
/**
 * The answer to a confirmable GET (`req`): ACK 2.05 with its message ID and token, Content-Format text/plain (0,
 * an empty value) and READ_PAYLOAD; the same bytes coap.encode makes, without its intermediate buffers.
 */
function readAnswer(req) {
  const tkl = req[0] & 15;
  const out = Buffer.allocUnsafe(4 + tkl + 2 + READ_PAYLOAD.length);
  out[0] = 0x60 | tkl; // version 1, ACK
  out[1] = (2 << 5) | 5; // 2.05
  out[2] = req[2];
  out[3] = req[3];
  for (let i = 0; i < tkl; i++) out[4 + i] = req[4 + i];
  out[4 + tkl] = 0xc0; // option delta 12 (Content-Format), length 0
  out[5 + tkl] = 0xff;
  READ_PAYLOAD.copy(out, 6 + tkl);
  return out;
}

const LINKS = Buffer.from('</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",</1/0>,</3/0>,</3303/0>');

function bindSocket(address) {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, address, () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

function closeSocket(s) {
  return new Promise((r) => {
    try {
      s.close(() => r());
    } catch {
      r();
    }
  });
}

/** A registered device: answers every confirmable GET with a piggybacked 2.05 text payload. */
class Device {
  constructor(index, socket, host, port) {
    this.index = index;
    this.socket = socket;
    this.mid = (index * 7919) & 0xffff;
    this.pending = new Map();
    this.client = new DtlsClient({ socket, host, port, identity: keys.identity(index), key: keys.key(index), onData: (d) => this.onCoap(d),
      CcmContext, ccmScratch, sendVia });
    socket.on('message', (m) => this.client.onDatagram(m));
  }

  onCoap(data) {
    if (data.length >= 4 && data[0] >> 4 === 4 && data[1] === 1) {
      // a confirmable GET (CoAP version 1, CON, 0.01: the reads) gets a piggybacked 2.05
      const res = readAnswer(data);
      stats.readsAnswered++;
      if (stats.sizeSamples < 1000) {
        stats.sizeSamples++;
        stats.reqBytes += data.length + 29; // + DTLS record header (13) + explicit nonce (8) + CCM_8 tag (8)
        stats.respBytes += res.length + 29;
      }
      this.client.send(res);
      return;
    }
    const msg = coap.decode(data);
    if (!msg) return;
    const done = this.pending.get(msg.mid);
    if (done && (msg.type === coap.TYPE.ACK || msg.type === coap.TYPE.RST) && msg.code !== '0.00') {
      this.pending.delete(msg.mid);
      done(msg);
    }
  }

  /** Confirmable request, retransmitted twice (2 s, 4 s) before giving up. */
  request(init) {
    const mid = (this.mid = (this.mid + 1) & 0xffff);
    const token = Buffer.alloc(4);
    token.writeUInt32BE(mid * 65537 >>> 0);
    const data = coap.encode({ type: coap.TYPE.CON, mid, token, ...init });
    return new Promise((resolve, reject) => {
      let tries = 0;
      let timer;
      const send = () => {
        this.client.send(data);
        timer = setTimeout(() => {
          if (++tries > 2) {
            this.pending.delete(mid);
            reject(new Error('CoAP request timed out'));
          } else send();
        }, 2000 * 2 ** tries);
      };
      this.pending.set(mid, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      send();
    });
  }

  async register() {
    await this.client.connect();
    const res = await this.request({
      code: '0.02',
      options: [
        [coap.OPT.uriPath, 'rd'], [coap.OPT.contentFormat, 40],
        [coap.OPT.uriQuery, `ep=${keys.endpoint(this.index)}`], [coap.OPT.uriQuery, 'lt=86400'],
        [coap.OPT.uriQuery, 'lwm2m=1.1'], [coap.OPT.uriQuery, 'b=U'],
      ],
      payload: LINKS,
    });
    if (res.code !== '2.01') throw new Error(`registration answered ${res.code} ${res.payload.toString()}`);
  }
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight; returns { ok, failed, ms, error }. */
async function pool(count, concurrency, task, deadline = Infinity) {
  let next = 0;
  let ok = 0;
  let failed = 0;
  let error;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      const i = next++;
      try {
        await task(i);
        ok++;
      } catch (e) {
        failed++;
        error = error || e.message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { ok, failed, ms: performance.now() - t0, error };
}

async function register({ host, port, bind, from, count, concurrency }) {
  return pool(count, concurrency, async (k) => {
    const socket = await bindSocket(bind);
    const d = new Device(from + k, socket, host, port);
    devices.push(d);
    await d.register();
  });
}

/**
 * Record-layer floor devices (bench/lib/floor.js): sockets of their own, sessions established with derived keys and
 * no handshake, answering GETs as the registered devices do. Returns their ports.
 */
async function floorStart({ host, port, bind, from, count }) {
  const ports = [];
  for (let k = 0; k < count; k++) {
    const socket = await bindSocket(bind);
    const d = new Device(from + k, socket, host, port);
    const key = floorKeys(from + k);
    d.client.establish({ writeKey: key.clientKey, writeIv: key.clientIv, readKey: key.serverKey, readIv: key.serverIv });
    floorDevices.push(d);
    ports.push(socket.address().port);
  }
  return { ports };
}

async function handshakes({ host, port, bind, from, idCount, concurrency, durationMs, withRequest }) {
  const deadline = performance.now() + durationMs;
  return pool(Number.MAX_SAFE_INTEGER, concurrency, async (k) => {
    const socket = await bindSocket(bind);
    const idx = from + (k % idCount);
    let client;
    try {
      const pending = new Map();
      client = new DtlsClient({
        socket, host, port, identity: keys.identity(idx), key: keys.key(idx),
        onData: (d) => {
          const m = coap.decode(d);
          const done = m && pending.get(m.mid);
          if (done) done(m);
        },
      });
      socket.on('message', (m) => client.onDatagram(m));
      await client.connect();
      if (withRequest) {
        const mid = k & 0xffff;
        const answer = new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no answer to the GET')), 5000);
          pending.set(mid, (m) => {
            clearTimeout(t);
            resolve(m);
          });
        });
        client.send(coap.encode({ type: coap.TYPE.CON, code: '0.01', mid, token: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), options: [[coap.OPT.uriPath, '3'], [coap.OPT.uriPath, '0'], [coap.OPT.uriPath, '0']] }));
        await answer;
      }
    } finally {
      client?.close();
      await closeSocket(socket);
    }
  }, deadline);
}

async function echoStart({ bind, replySize, tagged = false }) {
  echoSocket = await bindSocket(bind);
  const reply = Buffer.alloc(replySize, 0x5a);
  if (tagged) {
    // each answer starts with the request's first 4 bytes (its sequence number), so answers match their requests
    // even when the kernel drops a datagram
    echoSocket.on('message', (m, r) => {
      const out = Buffer.allocUnsafe(replySize);
      reply.copy(out);
      m.copy(out, 0, 0, 4);
      echoSocket.send(out, r.port, r.address);
    });
  } else {
    echoSocket.on('message', (m, r) => echoSocket.send(reply, r.port, r.address));
  }
  return { port: echoSocket.address().port };
}

async function handle(msg) {
  switch (msg.cmd) {
    case 'register': return register(msg);
    case 'handshakes': return handshakes(msg);
    case 'echoStart': return echoStart(msg);
    case 'floorStart': return floorStart(msg);
    case 'echoStop':
      if (echoSocket) await closeSocket(echoSocket);
      echoSocket = undefined;
      return {};
    case 'cpu': {
      const out = {
        cpu: process.cpuUsage(), wall: performance.now(), gc: { ...gc },
        loopDelay: { p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 },
      };
      gc.maxMs = 0;
      loopDelay.reset();
      return out;
    }
    case 'stats': return { ...stats, devices: devices.length };
    case 'gcLog': {
      // the collections logged since the last call: when a slow request met one (see server-proc's load, slowMs)
      const out = gcLog;
      gcLog = [];
      return out;
    }
    case 'exit':
      for (const d of devices) d.client.close();
      await Promise.all([...devices, ...floorDevices].map((d) => closeSocket(d.socket)));
      if (echoSocket) await closeSocket(echoSocket);
      setImmediate(() => process.exit(0));
      return {};
    default: throw new Error(`unknown command ${msg.cmd}`);
  }
}

serveCommands(handle);
