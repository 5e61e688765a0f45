'use strict';
/**
 * The measured process: an Lwm2mServer from the built library (dist/), or the same server inside Node-RED
 * (the built nodes/lwm2m.js loaded by node-red-node-test-helper). Started with --expose-gc so memory figures are
 * taken after a full collection. Driven by the parent over IPC.
 *
 *   start       { pskFrom, pskCount, hsFrom, hsCount }  Lwm2mServer on 127.0.0.1, plain CoAP off
 *   noderedStart{ pskFrom, pskCount }                   the same inside a Node-RED flow
 *   addPsk      { from, count }
 *   registered  number of registered endpoints
 *   coapChannels  CoAP channels that still hold state (duplicate-detection entries and the like)
 *   smaps       RSS by kind of mapping (malloc heap, anonymous, files)
 *   heapSample  { ms, all, major, depth?, interval?, top? }  sampling heap profile over ms: where the objects still
 *               alive at the end were allocated (all: every allocation, collected or not; major: also those promoted
 *               and then collected), by the last `depth` frames
 *   mem         process.memoryUsage() after gc()
 *   load        { from, count, window, durationMs, warmupMs, rate?, slowMs? }  LwM2M Read /3/0/0 round trips; also
 *               the garbage collections in the measuring window and (slowMs) the requests that took that long, and
 *               how many of them were outstanding while this process collected garbage
 *   echo        { targets: [{address, port}], window, durationMs, warmupMs, size }  raw UDP round trips
 *   floorBind   a UDP socket for the record-layer floor (bench/lib/floor.js); its port
 *   floorLoad   { address, ports, fromIndex, window, durationMs, warmupMs }  the floor's closed-loop reads over that socket
 *               (its sessions with those devices made by the first call and kept)
 *   echoLatency { target: {address, port}, rate, durationMs, warmupMs, size }  raw UDP round trips at a rate, timed
 *               (the target: a tagged echo, see fleet.js)
 *   cpu         process.cpuUsage() and the wall clock
 *   heapSnapshot{ file }  after gc()
 *   stop / exit
 */
const dgram = require('node:dgram');
// performance from perf_hooks: the global one is a getter, which the load generator (in this process) would pay per read
const { PerformanceObserver, constants, monitorEventLoopDelay, performance } = require('node:perf_hooks');
const path = require('node:path');
const keys = require('./lib/keys');
const { serveCommands } = require('./lib/child');
const { countMet } = require('./lib/overlap');

/** Where the built dist/ and nodes/ are: the repository, or BENCH_ROOT (another built copy of it). */
const ROOT = process.env.BENCH_ROOT ? path.resolve(process.env.BENCH_ROOT) : path.join(__dirname, '..');
let server;
let red; // { helper, reqNode, outNode }

function endpoints(from, count) {
  return Array.from({ length: count }, (_, i) => keys.endpoint(from + i));
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(lat, n) {
  const s = Array.from(lat.subarray(0, n)).sort((a, b) => a - b);
  return { p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN, samples: s.length };
}

/** A UDP port that was free a moment ago (coapsPort 0 means "off" for the server, so it needs a number). */
function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function start({ pskFrom, pskCount, hsFrom, hsCount }) {
  const { Lwm2mServer } = require(path.join(ROOT, 'dist/index.js'));
  server = new Lwm2mServer({
    bind: '127.0.0.1', coapPort: 0, coapsPort: await freeUdpPort(), maxSessions: 250_000, idleTimeout: 3600,
    // BENCH_CIPHER_CONTEXTS: the server's dtls.maxCipherContexts (default: the server's own)
    dtls: { maxHandshakes: 5000, ...(process.env.BENCH_CIPHER_CONTEXTS ? { maxCipherContexts: Number(process.env.BENCH_CIPHER_CONTEXTS) } : {}) },
  });
  server.on('error', () => undefined);
  const before = memory();
  addPsk({ from: pskFrom, count: pskCount });
  addPsk({ from: hsFrom, count: hsCount });
  const ports = await server.start();
  return { port: ports.coaps, before, afterPsk: memory() };
}

function addPsk({ from, count }) {
  for (let i = from; i < from + count; i++) server.security.add(keys.pskEntry(i));
  return {};
}

/** RSS by kind of mapping (Linux /proc/self/smaps): the [heap] of malloc, anonymous mappings, files. */
function smaps() {
  const out = {};
  let kind = '';
  for (const line of require('node:fs').readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) kind = m[1] === '' ? 'anon' : m[1].startsWith('[') ? m[1] : 'file';
    else if (line.startsWith('Rss:')) out[kind] = (out[kind] || 0) + Number(line.split(/\s+/)[1]) * 1024;
  }
  return out;
}

async function heapSample({ ms, all = false, major = false, depth = 2, interval = 4096, top = 25 }) {
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  const post = (m, p) => new Promise((res, rej) => session.post(m, p, (e, r) => (e ? rej(e) : res(r))));
  // all: every allocation, including objects already collected (allocation profile), not only the survivors
  // major: also what died in a major GC (objects that were promoted, then died), but not what died young
  await post('HeapProfiler.startSampling', { samplingInterval: interval, includeObjectsCollectedByMajorGC: all || major, includeObjectsCollectedByMinorGC: all });
  await new Promise((r) => setTimeout(r, ms));
  // major: a scavenge first, so objects that died young since the last one are not counted as still alive
  if (major && global.gc) {
    global.gc({ type: 'minor' });
    global.gc({ type: 'minor' });
    // the collected samples are dropped by weak callbacks, some of them run after the collection
    await new Promise((r) => setTimeout(r, 50));
  }
  const { profile } = await post('HeapProfiler.stopSampling');
  session.disconnect();
  const agg = new Map();
  const walk = (n, stack) => {
    const here = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
    const st = [...stack, here].slice(-depth);
    if (n.selfSize > 0) agg.set(st.join(' < '), (agg.get(st.join(' < ')) || 0) + n.selfSize);
    for (const c of n.children) walk(c, st);
  };
  walk(profile.head, []);
  return [...agg].sort((a, b) => b[1] - a[1]).slice(0, top);
}

function memory() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers,
    spaces: require('node:v8').getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size, s.space_used_size, s.physical_space_size]) };
}

/**
 * Issues one read of `endpoint` and calls `done(good)` (good: a 2.05 answer). Callbacks rather than an async function
 * per read: the load generator runs inside the measured process and should add as little garbage as it can.
 */
function makeRead() {
  if (red) {
    const { reqNode, waiters } = red;
    let n = 0;
    return (endpoint, done) => {
      const id = `m${++n}`;
      waiters.set(id, done);
      reqNode.receive({ _benchId: id, endpoint, topic: '/3/0/0', operation: 'read' });
    };
  }
  return (endpoint, done) => {
    server.request({ endpoint, operation: 'read', path: '/3/0/0', timeout: 10_000 }).then((r) => done(r.code === '2.05'), () => done(false));
  };
}

/**
 * Starts `count` reads (one per device, in turn from `from`) and returns at once, leaving them outstanding: with the
 * fleet stopped, a heap snapshot then shows what a request in flight holds. `settled` counts those answered or failed.
 */
let held = { started: 0, settled: 0 };
function hold({ from, devices, count }) {
  const eps = endpoints(from, devices);
  const read = makeRead();
  held = { started: count, settled: 0 };
  const h = held;
  for (let i = 0; i < count; i++) read(eps[i % eps.length], () => h.settled++);
  return { started: count };
}

/**
 * Closed loop (window requests always outstanding) or, with `rate`, open loop (requests started on schedule).
 * Counts only what completes inside the measuring window (after warmupMs).
 */
async function load({ from, count, window, durationMs, warmupMs = 1000, rate, slowMs }) {
  const slow = [];
  // open loop: requests outstanding, sampled at each 1 ms tick inside the measuring window (mean and maximum)
  let inFlightMax = 0;
  let inFlightMean;
  const eps = endpoints(from, count);
  const read = makeRead();
  const lat = new Float64Array(2_000_000);
  let nLat = 0;
  let ok = 0;
  let failed = 0;
  let rr = 0;
  const t0 = performance.now();
  const mStart = t0 + warmupMs;
  const mEnd = mStart + durationMs;
  // garbage collections inside the measuring window: count and pause time by kind
  const gc = { minor: 0, major: 0, minorMs: 0, majorMs: 0, maxMs: 0 };
  /** slowMs: start and end of each collection (pairs), to tell which slow requests waited for one */
  const pauses = [];
  const gcObs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.startTime < mStart || e.startTime > mEnd) continue;
      const major = e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;
      gc[major ? 'major' : 'minor']++;
      gc[major ? 'majorMs' : 'minorMs'] += e.duration;
      gc.maxMs = Math.max(gc.maxMs, e.duration);
      if (slowMs !== undefined && pauses.length < 100_000) pauses.push(e.startTime, e.startTime + e.duration);
    }
  });
  gcObs.observe({ entryTypes: ['gc'] });
  let cpu0 = process.cpuUsage();
  let hr0 = process.hrtime.bigint();
  // how late this process's event loop ran inside the measuring window (garbage collections included)
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  const armCpu = setTimeout(() => {
    cpu0 = process.cpuUsage();
    hr0 = process.hrtime.bigint();
    loopDelay.enable();
  }, warmupMs);
  /** One read; `after` runs once it is answered (or failed). */
  const one = (after) => {
    const ep = eps[rr++ % eps.length];
    const s = performance.now();
    read(ep, (good) => {
      const e = performance.now();
      if (s >= mStart && e <= mEnd) {
        if (good) ok++;
        else failed++;
        if (nLat < lat.length) lat[nLat++] = e - s;
        if (slowMs !== undefined && e - s >= slowMs && slow.length < 10_000) slow.push([s - t0, e - s]);
      }
      after();
    });
  };
  if (!rate) {
    await new Promise((resolve) => {
      let running = window;
      const loop = () => {
        if (performance.now() < mEnd) one(loop);
        else if (--running === 0) resolve();
      };
      for (let i = 0; i < window; i++) loop();
    });
  } else {
    let started = 0;
    let inFlight = 0;
    let inFlightSum = 0;
    let inFlightTicks = 0;
    const maxInFlight = 4 * window + 1000;
    const landed = () => inFlight--;
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        if (now >= mStart && now <= mEnd) {
          inFlightTicks++;
          inFlightSum += inFlight;
          if (inFlight > inFlightMax) inFlightMax = inFlight;
        }
        if (now >= mEnd) {
          clearInterval(tick);
          const wait = setInterval(() => {
            if (inFlight === 0) {
              clearInterval(wait);
              resolve();
            }
          }, 5);
          return;
        }
        const due = Math.floor(((now - t0) / 1000) * rate);
        while (started < due && inFlight < maxInFlight) {
          started++;
          inFlight++;
          one(landed);
        }
      }, 1);
    });
    inFlightMean = inFlightSum / Math.max(1, inFlightTicks);
  }
  clearTimeout(armCpu);
  // let the observer deliver the last collections before the slow requests are matched with them
  await new Promise((r) => setImmediate(r));
  gcObs.disconnect();
  loopDelay.disable();
  // a slow request "met" a collection of this process when one ran while it was outstanding
  const slowMetGc = countMet(slow, t0, pauses);
  const cpu = process.cpuUsage(cpu0);
  const wallUs = Number(process.hrtime.bigint() - hr0) / 1000;
  return {
    ok, failed, rps: ok / (durationMs / 1000), latency: summary(lat, nLat),
    cpuPct: (100 * (cpu.user + cpu.system)) / wallUs, sysPct: (100 * cpu.system) / wallUs,
    windowHr: [hr0.toString(), process.hrtime.bigint().toString()], slow, slowMetGc, t0, origin: performance.timeOrigin, gc,
    inFlight: rate ? { mean: inFlightMean, max: inFlightMax } : undefined,
    loopDelay: { p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 },
  };
}

/** Raw UDP: `window` datagrams of `size` bytes always outstanding, spread over the echo targets. */
/**
 * Raw UDP round trips to one echo peer, open loop: `rate` datagrams/s started on a 1 ms schedule (as `load` starts
 * reads), each timed until its answer. Each datagram carries its sequence number, which the peer (a tagged echo)
 * sends back, so a datagram the kernel drops is counted as lost and shifts nothing. The latency floor of this machine
 * for the same traffic, without DTLS or CoAP.
 */
async function echoLatency({ target, rate, durationMs, warmupMs = 1000, size }) {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const sentAt = new Float64Array(Math.ceil((rate * (warmupMs + durationMs)) / 1000) + 1000);
  const lat = new Float64Array(sentAt.length);
  let n = 0;
  let answered = 0;
  const t0 = performance.now();
  const mStart = t0 + warmupMs;
  const mEnd = mStart + durationMs;
  s.on('message', (m) => {
    const e = performance.now();
    const seq = m.readUInt32BE(0);
    const at = seq < sentAt.length ? sentAt[seq] : 0;
    if (at === 0) return;
    sentAt[seq] = 0;
    answered++;
    if (at >= mStart && e <= mEnd) lat[n++] = e - at;
  });
  let started = 0;
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const now = performance.now();
      if (now >= mEnd) {
        clearInterval(tick);
        setTimeout(resolve, 200);
        return;
      }
      const due = Math.min(sentAt.length, Math.floor(((now - t0) / 1000) * rate));
      for (; started < due; started++) {
        const payload = Buffer.alloc(size, 0xa5);
        payload.writeUInt32BE(started, 0);
        sentAt[started] = performance.now();
        s.send(payload, target.port, target.address);
      }
    }, 1);
  });
  await new Promise((r) => s.close(r));
  return { count: n, lost: started - answered, latency: summary(lat, n) };
}

async function echo({ targets, window, durationMs, warmupMs = 1000, size }) {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const payload = Buffer.alloc(size, 0xa5);
  let ok = 0;
  let sent = 0;
  const t0 = performance.now();
  const mStart = t0 + warmupMs;
  const mEnd = mStart + durationMs;
  let cpu0;
  let hr0;
  await new Promise((resolve) => {
    const send = () => {
      const t = targets[sent++ % targets.length];
      s.send(payload, t.port, t.address);
    };
    let outstanding = 0;
    s.on('message', () => {
      outstanding--;
      const now = performance.now();
      if (now >= mStart && now <= mEnd) ok++;
      if (now < mEnd) {
        outstanding++;
        send();
      } else if (outstanding === 0) resolve();
    });
    // A lost datagram would shrink the window: top it up every 20 ms.
    const topUp = setInterval(() => {
      const now = performance.now();
      if (!cpu0 && now >= mStart) {
        cpu0 = process.cpuUsage();
        hr0 = process.hrtime.bigint();
      }
      if (now >= mEnd + 1000) {
        clearInterval(topUp);
        resolve();
        return;
      }
      if (now < mEnd) while (outstanding < window) { outstanding++; send(); }
    }, 20);
    while (outstanding < window) { outstanding++; send(); }
  });
  const cpu = process.cpuUsage(cpu0);
  const wallUs = Number(process.hrtime.bigint() - hr0) / 1000;
  await new Promise((r) => s.close(r));
  return { ok, rps: ok / (durationMs / 1000), cpuPct: (100 * (cpu.user + cpu.system)) / wallUs };
}

async function noderedStart({ pskFrom, pskCount }) {
  const helper = require('node-red-node-test-helper');
  helper.init(require.resolve('node-red'));
  const lwm2mNodes = require(path.join(ROOT, 'nodes/lwm2m.js'));
  const psk = JSON.stringify(Array.from({ length: pskCount }, (_, i) => keys.pskEntry(pskFrom + i)));
  const flow = [
    { id: 'tab', type: 'tab', label: 'bench' },
    { id: 'srv', type: 'lwm2m-server', z: '', name: 'bench', bind: '127.0.0.1', coapPort: 0, coapsPort: await freeUdpPort(), allowNoSec: false, poolMode: 'inbound', idleTimeout: 3600, maxSessions: 250000, minLifetime: 1, maxLifetime: 86400 },
    { id: 'req', type: 'lwm2m-request', z: 'tab', server: 'srv', operation: 'read', endpoint: '', path: '', format: 'auto', timeout: '', wires: [['out']] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  const catchNode = require('@node-red/nodes/core/common/25-catch.js');
  await helper.startServer();
  // The test helper wraps Node's send/status/log/warn/error/debug/trace (and RED.log.log) in sinon spies that record
  // every call, its arguments included, and emit an event for each: what its tests assert on, but under load they cost
  // more CPU than the nodes themselves and keep every message alive. A deployed Node-RED has no such wrappers: the
  // originals go back once the flow is loaded.
  const proto = helper._NodePrototype;
  const methods = ['log', 'status', 'warn', 'error', 'debug', 'trace', 'send'];
  const originals = methods.map((m) => proto[m]);
  const originalLog = helper._log.log;
  await helper.load([lwm2mNodes, catchNode], flow, { srv: { psk } });
  methods.forEach((m, i) => { proto[m] = originals[i]; });
  helper._log.log = originalLog;
  // each wired node took its own copy of send when it was wired: wire them again
  for (const { id } of flow) {
    const n = helper.getNode(id);
    if (n && Array.isArray(n.wires)) n.updateWires(n.wires);
  }
  const srv = helper.getNode('srv');
  await srv.ready;
  const waiters = new Map();
  const settle = (ok) => (m) => {
    const w = waiters.get(m._benchId);
    if (w) {
      waiters.delete(m._benchId);
      w(ok);
    }
  };
  helper.getNode('out').on('input', settle(true));
  helper.getNode('caught').on('input', settle(false));
  red = { helper, reqNode: helper.getNode('req'), waiters };
  server = srv.lwm2m;
  return { port: server.ports.coaps };
}

async function stop() {
  if (red) {
    await red.helper.unload();
    await red.helper.stopServer();
    red = undefined;
    server = undefined;
  }
  if (server) await server.stop();
  server = undefined;
  if (floorSocket) await new Promise((r) => floorSocket.close(r));
  floor = undefined;
  floorSocket = undefined;
  return {};
}

/**
 * The record-layer floor's socket (floorBind), sessions (made by the first floorLoad, kept for the next ones) and
 * reads (floorLoad), see bench/lib/floor.js; no Lwm2mServer.
 */
let floorSocket;
let floor;
async function floorBind() {
  if (floorSocket) await new Promise((r) => floorSocket.close(r));
  floorSocket = dgram.createSocket('udp4');
  await new Promise((r) => floorSocket.bind(0, '127.0.0.1', r));
  floor = undefined;
  return { port: floorSocket.address().port };
}

function floorLoad({ address = '127.0.0.1', ports, fromIndex = 0, window, durationMs, warmupMs }) {
  const lib = require('./lib/floor');
  if (!floor || floor.address !== address || floor.fromIndex !== fromIndex || floor.sessions.length !== ports.length
      || floor.sessions.some((s, i) => s.port !== ports[i])) {
    const { CcmContext, CcmScratch } = require(path.join(ROOT, 'dist/index.js'));
    floor = lib.floorSessions({ CcmContext, CcmScratch, address, ports, fromIndex });
  }
  return lib.floorLoad({ floor, socket: floorSocket, window, durationMs, warmupMs });
}

async function handle(msg) {
  switch (msg.cmd) {
    case 'start': return start(msg);
    case 'noderedStart': return noderedStart(msg);
    case 'addPsk': return addPsk(msg);
    case 'registered': return { count: server.registry.size };
    case 'held': return held;
    // CoAP per-channel state (e.g. the Register's duplicate-detection entry, kept EXCHANGE_LIFETIME) still held
    case 'heapSample': return heapSample(msg);
    case 'echoLatency': return echoLatency(msg);
    case 'coapChannels': return { count: server.coap.channelCount };
    case 'mem': return memory();
    case 'load': return load(msg);
    case 'hold': return hold(msg);
    case 'echo': return echo(msg);
    case 'floorBind': return floorBind();
    case 'floorLoad': return floorLoad(msg);
    case 'smaps': return smaps();
    case 'cpu': return { cpu: process.cpuUsage(), wall: performance.now() };
    case 'heapSnapshot': {
      memory();
      return { file: require('node:v8').writeHeapSnapshot(msg.file) };
    }
    case 'stop': return stop();
    case 'exit':
      await stop();
      setImmediate(() => process.exit(0));
      return {};
    default: throw new Error(`unknown command ${msg.cmd}`);
  }
}

serveCommands(handle, {
  errorText: (err) => err.stack || err.message,
  onDisconnect: () => stop().finally(() => process.exit(0)),
});
