'use strict';
/**
 * `npm run bench`: measures the LwM2M server against its limits in one run, prints a table and then one line of
 * JSON (SPEC "Benchmark output"). Everything runs on loopback, bounded in count and time.
 *
 * Processes: this orchestrator (measures nothing itself), one measured server process at a time
 * (bench/server-proc.js, the built dist/ library or the built Node-RED nodes), and the simulated fleet
 * (bench/fleet.js, several processes, each device on its own UDP socket with its own DTLS session).
 *
 * Environment: BENCH_QUICK=1 (small sizes, < 2 min), BENCH_DEVICES (registered fleet, default 10000 / quick 1000),
 * BENCH_BIG_DEVICES (memory fleet, default 100000 / quick 5000; 0 skips it), BENCH_WINDOW (outstanding requests; default: the
 * best of 8, 16, 32 and 64 in a short sweep, then used for the reads, the UDP echo and handshake-per-request),
 * BENCH_SECONDS (seconds per throughput phase or segment, default 10 / quick 3), BENCH_PAIRS (alternating segments of
 * pooled reads and raw UDP echo; the ratio is the median of the pairs' ratios; default 3 / quick 1), BENCH_LATENCY_SECONDS (seconds of each latency
 * phase and of the UDP echo's latency floor, default 30 / quick 3: a p99 over 10 s moved with whether a rare pause,
 * such as a full garbage collection, happened to fall inside the window), BENCH_FLEET_PROCS (fleet processes for the
 * reads, the echo and the handshakes; default 1: the echo limit is then between two Node processes, as the issue
 * defines it, and the server, the fleet and nothing else share the 2 cores),
 * BENCH_SERVER_ARGS (Node options of the measured server processes, default the README's recommendation:
 * --no-allocation-site-pretenuring --heap-growing-percent=100; empty: Node's defaults), BENCH_ALT_SERVER_ARGS (the
 * second latency server's, default Node's defaults), BENCH_FLEET_ARGS (Node options of the fleet processes, default
 * --max-semi-space-size=2), BENCH_ALT=0 (skip the latency phase of the second server), BENCH_FLEET_CCM=0 (the fleet's
 * devices without long-lived CCM contexts), BENCH_CIPHER_CONTEXTS (the server's dtls.maxCipherContexts), BENCH_PROFILE=0 (skip the CPU profile), BENCH_NODERED=0 (skip the Node-RED phase), BENCH_ROOT (measure another
 * built copy of the package: the directory holding its dist/ and nodes/), BENCH_HEAP=0 (skip the heap snapshots), BENCH_FLOOR=0 (skip the DTLS record-layer floor's segments).
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { settledMemory, steadyMemory } = require('./lib/settle');
const { spawnChild } = require('./lib/child');
const { analyseProfile } = require('./lib/profile');
const { heapDiff } = require('./lib/heap');
const { SERVER_ARGS, ALT_SERVER_ARGS, FLEET_ARGS } = require('./lib/node-args');
const { FLOOR_FROM, FLOOR_HOST } = require('./lib/floor');
/** How a server's Node options are named in the output. */
const argsLabel = (args) => args.join(' ') || 'Node\'s default options';

const QUICK = process.env.BENCH_QUICK === '1';
const envNum = (name, def) => (process.env[name] !== undefined && process.env[name] !== '' ? Number(process.env[name]) : def);
const CFG = {
  devices: envNum('BENCH_DEVICES', QUICK ? 1000 : 10000),
  bigDevices: envNum('BENCH_BIG_DEVICES', QUICK ? 5000 : 100000),
  windows: process.env.BENCH_WINDOW ? [Number(process.env.BENCH_WINDOW)] : [8, 16, 32, 64],
  window: 64,
  seconds: envNum('BENCH_SECONDS', QUICK ? 3 : 10),
  pairs: envNum('BENCH_PAIRS', QUICK ? 1 : 3),
  /**
   * After each echo segment, a segment of pooled reads on a second server holding a fleet of only this many devices
   * (the issue's minimum, 1,000; its own fleet process), registered before the pairs start (BENCH_SMALL_FLEET=0
   * leaves these segments out).
   */
  smallFleet: envNum('BENCH_SMALL_FLEET', 1000),
  latencySeconds: envNum('BENCH_LATENCY_SECONDS', QUICK ? 3 : 30),
  fleetProcs: envNum('BENCH_FLEET_PROCS', 1),
  perProcSockets: 15000,
  regConcurrency: 32,
  noderedDevices: QUICK ? 1000 : 1000,
  profile: process.env.BENCH_PROFILE !== '0',
  nodered: process.env.BENCH_NODERED !== '0',
  heap: process.env.BENCH_HEAP !== '0',
  /** The DTLS record-layer floor segments in the pairs phase (bench/lib/floor.js); BENCH_FLOOR=0 leaves them out. */
  floor: process.env.BENCH_FLOOR !== '0',
};
const HS_FROM = 1_000_000;
const HS_IDS = 64;
const HOST = '127.0.0.1';
const SERVER = path.join(__dirname, 'server-proc.js');
const FLEET = path.join(__dirname, 'fleet.js');
const HARD_LIMIT_MS = (QUICK ? 2 : 15) * 60_000;

const children = new Set();
const results = {};
let heap;
const notes = [];
const phaseErrors = [];
const t0 = Date.now();
const LOAD_AT_START = os.loadavg();

function log(s) {
  process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);
}

function spawn(script, opts) {
  const c = spawnChild(script, opts);
  children.add(c);
  c.proc.once('exit', () => children.delete(c));
  return c;
}

async function exitAll(list) {
  await Promise.all(list.map((c) => c.exit()));
}

/** Sum of CPU time of the given children between two samples, in % of one core. */
async function cpuSample(list) {
  return Promise.all(list.map((c) => c.call('cpu')));
}
function cpuPct(before, after) {
  let used = 0;
  let wall = 0;
  for (let i = 0; i < before.length; i++) {
    used += (after[i].cpu.user - before[i].cpu.user) + (after[i].cpu.system - before[i].cpu.system);
    wall = Math.max(wall, (after[i].wall - before[i].wall) * 1000);
  }
  return (100 * used) / wall;
}

function split(total, parts) {
  const out = [];
  for (let i = 0; i < parts; i++) out.push(Math.floor(total / parts) + (i < total % parts ? 1 : 0));
  return out;
}

/** Registers devices [0, count) spread over the fleet processes; returns { ok, failed, rate, fleetCpuPct }. */
async function registerFleet(fleets, port, count, bindFor = () => HOST) {
  const shares = split(count, fleets.length);
  const c0 = await cpuSample(fleets);
  const start = performance.now();
  let from = 0;
  const runs = fleets.map((f, i) => {
    const args = { host: HOST, port, bind: bindFor(i), from, count: shares[i], concurrency: CFG.regConcurrency };
    from += shares[i];
    return f.call('register', args);
  });
  const res = await Promise.all(runs);
  const ms = performance.now() - start;
  const c1 = await cpuSample(fleets);
  const ok = res.reduce((a, r) => a + r.ok, 0);
  const failed = res.reduce((a, r) => a + r.failed, 0);
  const error = res.find((r) => r.error)?.error;
  return { ok, failed, error, ms, rate: ok / (ms / 1000), fleetCpuPct: cpuPct(c0, c1) };
}

/** Runs fn and samples CPU of the fleet processes (summed) and of the server around it. */
async function measured(fleets, server, fn) {
  const all = server ? [...fleets, server] : fleets;
  const c0 = await cpuSample(all);
  const r = await fn();
  const c1 = await cpuSample(all);
  const out = { ...r };
  if (fleets.length) out.fleetCpuPct = cpuPct(c0.slice(0, fleets.length), c1.slice(0, fleets.length));
  if (server) {
    const a = c0[fleets.length];
    const b = c1[fleets.length];
    out.serverCpuPct = cpuPct([a], [b]);
    out.serverCpuUs = (b.cpu.user - a.cpu.user) + (b.cpu.system - a.cpu.system);
  }
  return out;
}

/** The element of `items` whose `key` is the median (the lower middle one for an even count). */
function medianOf(items, key) {
  const sorted = [...items].sort((a, b) => key(a) - key(b));
  return sorted[(sorted.length - 1) >> 1];
}

function perDevice(after, before, n) {
  return { rss: Math.round((after.rss - before.rss) / n), heap: Math.round((after.heapUsed - before.heapUsed) / n), external: Math.round(((after.external - before.external)) / n) };
}

/** Loopback UDP datagrams the kernel dropped for a full receive buffer (Linux /proc/net/snmp), machine-wide. */
function udpRcvbufErrors() {
  try {
    const lines = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
    const names = lines[0].trim().split(/\s+/);
    const values = lines[1].trim().split(/\s+/);
    return Number(values[names.indexOf('RcvbufErrors')]);
  } catch {
    return NaN;
  }
}
const udpDrops = {};

async function phase(name, fn, group = false) {
  log(`${name} ...`);
  const drops0 = udpRcvbufErrors();
  try {
    await fn();
    const d = udpRcvbufErrors() - drops0;
    if (d > 0 && !group) udpDrops[name] = d;
  } catch (e) {
    phaseErrors.push(`${name}: ${e.message.split('\n')[0]}`);
    log(`${name} FAILED: ${e.stack}`);
  }
}

/**
 * A second server with a fleet of `n` devices (its own fleet process), registered and warmed up with a short round of
 * reads: the pairs phase measures it after each echo segment. The caller ends both processes.
 */
async function smallFleetServer(n) {
  const server = spawn(SERVER, { execArgv: ['--expose-gc', ...SERVER_ARGS], name: 'small-fleet server' });
  const fleets = [spawn(FLEET, { name: 'small fleet', execArgv: FLEET_ARGS })];
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: n, hsFrom: HS_FROM, hsCount: 1 });
    const reg = await registerFleet(fleets, port, n);
    if (reg.ok !== n) throw new Error(`small fleet: ${reg.ok} of ${n} registered${reg.error ? ` (${reg.error})` : ''}`);
    await server.call('load', { from: 0, count: n, window: CFG.window, durationMs: 2000 });
    return { server, fleets };
  } catch (err) {
    await exitAll([server, ...fleets]);
    throw err;
  }
}

/**
 * The DTLS record-layer floor (bench/lib/floor.js): a process doing only what every DTLS read must, and a fleet
 * process with `n` devices whose sessions are established with derived keys (no handshake), warmed up with a short
 * round of reads: the pairs phase measures it at the start of each pair. The caller ends both processes.
 */
async function floorPair(n) {
  const server = spawn(SERVER, { execArgv: [...SERVER_ARGS], name: 'floor server' });
  const fleet = spawn(FLEET, { name: 'floor fleet', execArgv: FLEET_ARGS });
  try {
    const { port } = await server.call('floorBind');
    const { ports } = await fleet.call('floorStart', { host: HOST, port, bind: FLOOR_HOST, from: FLOOR_FROM, count: n });
    await server.call('floorLoad', { address: FLOOR_HOST, ports, fromIndex: FLOOR_FROM, window: CFG.window, durationMs: 2000 });
    return { server, fleet, ports };
  } catch (err) {
    await exitAll([server, fleet]);
    throw err;
  }
}

/** Phase group 1: the registered fleet against one server: registrations, memory at 10k, reads, latency, echo, handshakes. */
async function mainServer() {
  const server = spawn(SERVER, { execArgv: ['--expose-gc', ...SERVER_ARGS], name: 'server' });
  const fleets = Array.from({ length: CFG.fleetProcs }, (_, i) => spawn(FLEET, { name: `fleet${i}`, execArgv: FLEET_ARGS }));
  // The raw UDP echo runs between processes of its own: a sender (server-proc.js without a server, the measured
  // server's Node options) and one echo peer per fleet process (fleet.js without devices, the fleet's options). Run
  // inside the measured server and the fleet, the echo's garbage stayed in their heaps: hundreds of MB promoted
  // during each echo segment, then full collections of 60-90 ms in the server's latency window that came next.
  const echoSender = spawn(SERVER, { execArgv: [...SERVER_ARGS], name: 'echo sender' });
  const echoPeers = Array.from({ length: CFG.fleetProcs }, (_, i) => spawn(FLEET, { name: `echo peer${i}`, execArgv: FLEET_ARGS }));
  try {
    const { port, before, afterPsk } = await server.call('start', { pskFrom: 0, pskCount: CFG.devices, hsFrom: HS_FROM, hsCount: HS_IDS });
    const heapDir = CFG.heap ? fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-bench-heap-')) : undefined;
    if (heapDir) await server.call('heapSnapshot', { file: path.join(heapDir, 'before.heapsnapshot') });
    // Writing a heap snapshot grows the process (and RSS does not shrink back): read the baseline after it.
    const base10k = heapDir ? await server.call('mem') : before;
    await phase(`register ${CFG.devices} devices`, async () => {
      const r = await measured([], server, () => registerFleet(fleets, port, CFG.devices));
      results.registrationServerUsPerOp = r.serverCpuUs / r.ok;
      results.registrationsPerSec = r.rate;
      results.registrationFailures = r.failed;
      results.registrationFleetCpuPct = r.fleetCpuPct;
      if (r.failed) notes.push(`${r.failed} of ${CFG.devices} registrations failed (${r.error})`);
      const reg = await server.call('registered');
      results.registeredDevices = reg.count;
      const mem = await settledMemory(server);
      const after = mem.settled;
      const per = perDevice(after, base10k, reg.count);
      results.devices10k = reg.count;
      results.bytesPerSession10k = per.rss;
      results.bytesPerSession10kBusy = perDevice(mem.first, base10k, reg.count).rss;
      results.idleMs10k = mem.idleMs;
      results.heapPerSession10k = per.heap;
      results.pskStoreBytesPerDevice10k = Math.round((afterPsk.rss - before.rss) / CFG.devices);
      results.serverRss10k = after.rss;
      if (heapDir) {
        await server.call('heapSnapshot', { file: path.join(heapDir, 'after.heapsnapshot') });
        heap = heapDiff(path.join(heapDir, 'before.heapsnapshot'), path.join(heapDir, 'after.heapsnapshot'), reg.count);
        fs.rmSync(heapDir, { recursive: true, force: true });
      }
    });
    const sizes = { req: 47, resp: 63 };
    await phase('window sweep', async () => {
      if (CFG.windows.length === 1) {
        results.window = CFG.windows[0];
        return;
      }
      const sweep = {};
      for (const w of CFG.windows) {
        const r = await server.call('load', { from: 0, count: results.registeredDevices || CFG.devices, window: w, durationMs: 2000, warmupMs: 500 });
        sweep[w] = Math.round(r.rps);
      }
      results.windowSweep = sweep;
      results.window = Number(Object.entries(sweep).sort((a, b) => b[1] - a[1])[0][0]);
    });
    CFG.window = results.window || 64;
    // Reads and the raw UDP echo in alternating segments: this machine's speed drifts by ±10 % from one ten-second
    // stretch to the next, so each ratio compares segments of one pair (floor, pooled reads, echo, small fleet: the
    // pooled reads with the echo segment right after them, the floor with the same echo segment, the small fleet with
    // the echo segment right before it), and the figures reported are medians (the reads' details from the median
    // reads segment, the echo's from its median).
    await phase(`pooled reads and raw UDP echo, ${CFG.pairs} alternating pair${CFG.pairs === 1 ? '' : 's'} (window ${CFG.window}, ${results.registeredDevices} devices)`, async () => {
      const pooled = [];
      const echoes = [];
      const small = [];
      const registered = results.registeredDevices || CFG.devices;
      const smallCount = CFG.smallFleet > 0 && CFG.smallFleet < registered ? CFG.smallFleet : 0;
      const smallSet = smallCount > 0 ? await smallFleetServer(smallCount) : undefined;
      let floorSet;
      const floors = [];
      try {
        // without the floor (it failed to start) the pairs still run
        if (CFG.floor) {
          floorSet = await floorPair(registered).catch((err) => {
            notes.push(`the DTLS record-layer floor did not start: ${err.message}`);
            return undefined;
          });
        }
        for (let k = 0; k < CFG.pairs; k++) {
          // the floor first: the latency phase then follows the same segments as before it was added (echo, small fleet)
          if (floorSet) {
            floors.push(await measured([floorSet.fleet], undefined, () => floorSet.server.call('floorLoad', { address: FLOOR_HOST, ports: floorSet.ports, fromIndex: FLOOR_FROM, window: CFG.window, durationMs: CFG.seconds * 1000 })));
          }
          pooled.push(await measured(fleets, undefined, () => server.call('load', { from: 0, count: results.registeredDevices || CFG.devices, window: CFG.window, durationMs: CFG.seconds * 1000 })));
          if (k === 0) {
            const st = await Promise.all(fleets.map((f) => f.call('stats')));
            const n = st.reduce((a, x) => a + x.sizeSamples, 0);
            if (n > 0) {
              sizes.req = Math.round(st.reduce((a, x) => a + x.reqBytes, 0) / n);
              sizes.resp = Math.round(st.reduce((a, x) => a + x.respBytes, 0) / n);
            }
            results.readDatagramBytes = sizes;
          }
          const targets = [];
          for (const f of echoPeers) targets.push({ address: HOST, port: (await f.call('echoStart', { bind: HOST, replySize: sizes.resp })).port });
          echoes.push(await measured(echoPeers, undefined, () => echoSender.call('echo', { targets, window: CFG.window, durationMs: CFG.seconds * 1000, size: sizes.req })));
          await Promise.all(echoPeers.map((f) => f.call('echoStop')));
          if (smallSet) {
            small.push(await measured(smallSet.fleets, undefined, () => smallSet.server.call('load', { from: 0, count: smallCount, window: CFG.window, durationMs: CFG.seconds * 1000 })));
          }
        }
      } finally {
        if (smallSet) await exitAll([smallSet.server, ...smallSet.fleets]);
        if (floorSet) await exitAll([floorSet.server, floorSet.fleet]);
      }
      if (floors.length > 0) {
        // each compared with the pooled segment right after it and the echo segment after that
        const a = medianOf(floors, (x) => x.rps);
        results.floorDevices = floorSet.ports.length;
        results.floorReadRps = a.rps;
        results.floorServerUsPerOp = (a.cpuPct / 100) * 1e6 / a.rps;
        results.floorFleetCpuPct = a.fleetCpuPct;
        results.floorReadFailures = floors.reduce((x, f) => x + f.failed, 0);
        results.floorSegments = floors.map((x) => Math.round(x.rps));
        const vsEcho = floors.map((x, i) => x.rps / echoes[i].rps);
        results.floorVsUdpPairs = vsEcho.map((x) => Math.round(x * 1000) / 1000);
        results.floorVsUdp = medianOf(vsEcho, (x) => x);
        results.pooledVsFloor = medianOf(pooled.map((x, i) => x.rps / floors[i].rps), (x) => x);
      }
      if (small.length > 0) {
        // each compared with the echo segment right before it
        const a = medianOf(small, (x) => x.rps);
        results.smallFleetDevices = smallCount;
        results.smallFleetReadRps = a.rps;
        results.smallFleetServerUsPerOp = (a.cpuPct / 100) * 1e6 / a.rps;
        results.smallFleetCpuPct = a.fleetCpuPct;
        results.smallFleetSegments = small.map((x) => Math.round(x.rps));
        const smallRatios = small.map((x, i) => x.rps / echoes[i].rps);
        results.smallFleetVsUdpPairs = smallRatios.map((x) => Math.round(x * 1000) / 1000);
        results.smallFleetVsUdp = medianOf(smallRatios, (x) => x);
      }
      const r = medianOf(pooled, (x) => x.rps);
      results.pooledServerUsPerOp = (r.cpuPct / 100) * 1e6 / r.rps;
      results.pooledReadRps = r.rps;
      results.pooledReadFailures = pooled.reduce((a, x) => a + x.failed, 0);
      results.pooledServerCpuPct = r.cpuPct;
      results.loadGeneratorCpuPct = r.fleetCpuPct;
      results.pooledP50Ms = r.latency.p50;
      results.pooledP99Ms = r.latency.p99;
      const e = medianOf(echoes, (x) => x.rps);
      results.udpEchoRps = e.rps;
      results.udpEchoCpuPct = e.cpuPct;
      results.udpEchoFleetCpuPct = e.fleetCpuPct;
      results.udpEchoServerUsPerOp = (e.cpuPct / 100) * 1e6 / e.rps;
      results.pooledSegments = pooled.map((x) => Math.round(x.rps));
      results.udpEchoSegments = echoes.map((x) => Math.round(x.rps));
      const ratios = pooled.map((x, i) => x.rps / echoes[i].rps);
      results.pooledVsUdpPairs = ratios.map((x) => Math.round(x * 1000) / 1000);
      results.pooledVsUdp = medianOf(ratios, (x) => x);
    });
    await phase('latency at half the maximum rate', async () => {
      const rate = Math.max(1, Math.round((results.pooledReadRps || 1000) / 2));
      await Promise.all(fleets.map((f) => f.call('cpu'))); // resets the fleet's longest GC pause and loop delay
      const r = await server.call('load', { from: 0, count: results.registeredDevices || CFG.devices, window: CFG.window, durationMs: CFG.latencySeconds * 1000, rate });
      const f = await Promise.all(fleets.map((x) => x.call('cpu')));
      results.latencyFleetGcMaxMs = Math.max(...f.map((x) => x.gc.maxMs));
      results.latencyFleetLoopDelayMaxMs = Math.max(...f.map((x) => x.loopDelay.maxMs));
      results.latencyRate = rate;
      results.latencyAchievedRps = r.rps;
      results.p50Ms = r.latency.p50;
      results.p99Ms = r.latency.p99;
      results.p999Ms = undefined;
      results.latencyMaxMs = r.latency.max;
      results.latencyServer = serverDuring(r);
    });
    // the same rate as the latency phase, raw: what this machine's loopback and scheduling give without DTLS/CoAP
    if (results.latencyRate) {
      await phase('raw UDP echo at the latency rate (the latency floor)', async () => {
        const target = { address: HOST, port: (await echoPeers[0].call('echoStart', { bind: HOST, replySize: sizes.resp, tagged: true })).port };
        const l = await echoSender.call('echoLatency', { target, rate: results.latencyRate, durationMs: CFG.latencySeconds * 1000, size: sizes.req });
        await echoPeers[0].call('echoStop');
        results.udpEchoP50Ms = l.latency.p50;
        results.udpEchoP99Ms = l.latency.p99;
        results.udpEchoMaxMs = l.latency.max;
        results.udpEchoLatencyLost = l.lost;
      });
    }
    const hsSeconds = Math.max(2, Math.round(CFG.seconds * 0.6));
    const handshakes = async (concurrency, withRequest) => {
      const per = split(concurrency, Math.min(concurrency, fleets.length));
      const used = fleets.slice(0, per.length);
      return measured(used, server, async () => {
        const res = await Promise.all(used.map((f, i) => f.call('handshakes', {
          host: HOST, port, bind: HOST, from: HS_FROM + i * (HS_IDS / 2), idCount: HS_IDS / 2, concurrency: per[i], durationMs: hsSeconds * 1000, withRequest,
        })));
        const ok = res.reduce((a, r) => a + r.ok, 0);
        const failed = res.reduce((a, r) => a + r.failed, 0);
        const ms = Math.max(...res.map((r) => r.ms));
        return { ok, failed, rate: ok / (ms / 1000), error: res.find((r) => r.error)?.error };
      });
    };
    await phase('PSK handshakes, concurrency 1', async () => {
      const r = await handshakes(1, false);
      results.handshakesPerSecC1 = r.rate;
      results.handshakesC1FleetCpuPct = r.fleetCpuPct;
      results.handshakesC1ServerCpuPct = r.serverCpuPct;
      if (r.failed) notes.push(`handshakes C1: ${r.failed} failed (${r.error})`);
    });
    await phase('PSK handshakes, concurrency 8', async () => {
      const r = await handshakes(8, false);
      results.handshakesPerSecC8 = r.rate;
      results.handshakesC8FleetCpuPct = r.fleetCpuPct;
      results.handshakesC8ServerCpuPct = r.serverCpuPct;
      results.handshakeServerUsPerOp = r.serverCpuUs / r.ok;
      if (r.failed) notes.push(`handshakes C8: ${r.failed} failed (${r.error})`);
    });
    await phase(`handshake per request (window ${CFG.window})`, async () => {
      const r = await handshakes(CFG.window, true);
      results.perRequestHandshakeRps = r.rate;
      results.perRequestFleetCpuPct = r.fleetCpuPct;
      results.perRequestServerCpuPct = r.serverCpuPct;
      results.perRequestServerUsPerOp = r.serverCpuUs / r.ok;
      if (r.failed) notes.push(`handshake-per-request: ${r.failed} failed (${r.error})`);
    });
  } finally {
    await exitAll([server, ...fleets, echoSender, ...echoPeers]);
  }
}

/** Phase group 2: the pooled read through a Node-RED flow (lwm2m-request node, built nodes/lwm2m.js). */
async function noderedServer() {
  const server = spawn(SERVER, { execArgv: ['--expose-gc', ...SERVER_ARGS], name: 'node-red server' });
  const fleets = Array.from({ length: CFG.fleetProcs }, (_, i) => spawn(FLEET, { name: `fleet${i}`, execArgv: FLEET_ARGS }));
  try {
    const n = CFG.noderedDevices;
    const { port } = await server.call('noderedStart', { pskFrom: 0, pskCount: n });
    const reg = await registerFleet(fleets, port, n);
    if (reg.failed) notes.push(`Node-RED phase: ${reg.failed} registrations failed (${reg.error})`);
    const count = (await server.call('registered')).count;
    const r = await measured(fleets, undefined, () => server.call('load', { from: 0, count, window: CFG.window, durationMs: CFG.seconds * 1000 }));
    results.nodeRedPooledReadRps = r.rps;
    results.nodeRedDevices = count;
    results.nodeRedFailures = r.failed;
    results.nodeRedServerCpuPct = r.cpuPct;
    results.nodeRedFleetCpuPct = r.fleetCpuPct;
    results.nodeRedServerUsPerOp = (r.cpuPct / 100) * 1e6 / r.rps;
  } finally {
    await exitAll([server, ...fleets]);
  }
}

/** Phase group 3: a fresh server under `node --cpu-prof`, profiled during pooled reads only (samples filtered by time). */
async function profileServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-bench-prof-'));
  const server = spawn(SERVER, { execArgv: ['--expose-gc', ...SERVER_ARGS, '--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'], name: 'profiled server' });
  const fleets = Array.from({ length: CFG.fleetProcs }, (_, i) => spawn(FLEET, { name: `fleet${i}`, execArgv: FLEET_ARGS }));
  let window;
  try {
    const n = Math.min(CFG.devices, 1000);
    const { port } = await server.call('start', { pskFrom: 0, pskCount: n, hsFrom: HS_FROM, hsCount: 1 });
    await registerFleet(fleets, port, n);
    const r = await server.call('load', { from: 0, count: n, window: CFG.window, durationMs: CFG.seconds * 1000 });
    results.profiledReadRps = r.rps;
    window = r.windowHr.map((x) => Number(BigInt(x) / 1000n));
  } finally {
    await exitAll([server, ...fleets]);
  }
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no .cpuprofile written');
  const full = path.join(dir, file);
  const a = analyseProfile(full, window, path.join(process.env.BENCH_ROOT ? path.resolve(process.env.BENCH_ROOT) : path.join(__dirname, '..'), 'dist', 'index.js'));
  results.profileFile = full;
  return a;
}

/**
 * Phase group 1b: the latency phase again, on a second server with the other Node options (ALT_SERVER_ARGS: Node's
 * defaults when the measured server has options of its own), at the same offered rate as the main latency phase,
 * after the same kind of warm-up (registrations, idle until memory settles, reads at the maximum rate): what the
 * options change. Skipped with BENCH_ALT=0 or when both option lists are the same.
 */
async function altLatency() {
  const server = spawn(SERVER, { execArgv: ['--expose-gc', ...ALT_SERVER_ARGS], name: `server (${argsLabel(ALT_SERVER_ARGS)})` });
  const fleets = Array.from({ length: CFG.fleetProcs }, (_, i) => spawn(FLEET, { name: `fleet${i}`, execArgv: FLEET_ARGS }));
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: CFG.devices, hsFrom: HS_FROM, hsCount: 1 });
    const reg = await registerFleet(fleets, port, CFG.devices);
    if (reg.failed) notes.push(`${argsLabel(ALT_SERVER_ARGS)}: ${reg.failed} of ${CFG.devices} registrations failed (${reg.error})`);
    const count = (await server.call('registered')).count;
    // the main server's warm-up: idle until memory settles, then a short sweep and the reads at the maximum rate
    await settledMemory(server);
    await server.call('load', { from: 0, count, window: CFG.window, durationMs: 4000, warmupMs: 500 });
    const p = await server.call('load', { from: 0, count, window: CFG.window, durationMs: CFG.seconds * 1000 });
    results.altPooledReadRps = p.rps;
    const rate = results.latencyRate || Math.max(1, Math.round(p.rps / 2));
    const r = await server.call('load', { from: 0, count, window: CFG.window, durationMs: CFG.latencySeconds * 1000, rate });
    results.altLatencyRate = rate;
    results.altLatencyAchievedRps = r.rps;
    results.altP50Ms = r.latency.p50;
    results.altP99Ms = r.latency.p99;
    results.altLatencyMaxMs = r.latency.max;
    results.altLatencyServer = serverDuring(r);
  } finally {
    await exitAll([server, ...fleets]);
  }
}

/** Phase group 4: memory per idle registered device with a big fleet (several fleet processes, <= 15,000 sockets each). */
async function bigFleet() {
  const n = CFG.bigDevices;
  const procs = Math.max(1, Math.ceil(n / CFG.perProcSockets));
  const server = spawn(SERVER, { execArgv: ['--expose-gc', ...SERVER_ARGS, '--max-old-space-size=8192'], name: 'big server' });
  const fleets = Array.from({ length: procs }, (_, i) => spawn(FLEET, { name: `bigfleet${i}`, execArgv: FLEET_ARGS }));
  try {
    const { port, before, afterPsk } = await server.call('start', { pskFrom: 0, pskCount: n, hsFrom: HS_FROM, hsCount: 1 });
    // One loopback address per fleet process once the fleet needs more ports than one address offers.
    const bindFor = (i) => (n > 25000 ? `127.0.0.${i + 1}` : HOST);
    const r = await registerFleet(fleets, port, n, bindFor);
    if (r.failed) notes.push(`big fleet: ${r.failed} of ${n} registrations failed (${r.error})`);
    const reg = (await server.call('registered')).count;
    const mem = await settledMemory(server);
    results.bytesPerSession100kBusy = perDevice(mem.first, before, reg).rss;
    results.bytesPerSession100kIdle = perDevice(mem.settled, before, reg).rss;
    results.heapPerSession100kIdle = perDevice(mem.settled, before, reg).heap;
    results.idleMs100k = mem.idleMs;
    // Steady state: once the Registers' duplicate-detection entries have expired (EXCHANGE_LIFETIME, 247 s).
    // A quick run does not wait for it and reports the idle figure.
    let after = mem.settled;
    results.steadyMs100k = mem.idleMs;
    if (QUICK) {
      notes.push('quick run: memory at 100k is the idle figure, not steady state (CoAP exchange state not yet expired)');
    } else {
      log(`big fleet: ${reg} registered; waiting for the CoAP exchange lifetime to pass (about 5 minutes) ...`);
      const steady = await steadyMemory(server);
      after = steady.settled;
      if (steady.coapChannels > 0) notes.push(`big fleet: ${steady.coapChannels} CoAP channels still held state when memory was measured`);
      results.steadyMs100k += steady.idleMs;
    }
    const per = perDevice(after, before, reg);
    results.devices100k = reg;
    results.bytesPerSession100k = per.rss;
    results.heapPerSession100k = per.heap;
    results.pskStoreBytesPerDevice100k = Math.round((afterPsk.rss - before.rss) / n);
    results.serverRss100k = after.rss;
    results.registrationsPerSecBig = r.rate;
    results.bigFleetProcs = procs;
    if (reg < 100000) notes.push(`bytesPerSession100k measured with ${reg} registered devices (not 100,000)`);
  } finally {
    await exitAll([server, ...fleets]);
  }
}

/**
 * What the server went through in a latency phase (see server-proc's load): the requests outstanding (mean, maximum;
 * at the load generator's cap, it fell behind), its garbage collections and its longest event-loop delay.
 */
const serverDuring = (r) => ({ inFlight: r.inFlight, gc: r.gc, loopDelayMaxMs: r.loopDelay.maxMs });
const serverText = (d) => (d ? `, in flight ${fmt(d.inFlight?.mean, 1)} (max ${fmt(d.inFlight?.max)}); server GCs ${d.gc.minor} scavenges ${fmt(d.gc.minorMs, 0)} ms, ${d.gc.major} full ${fmt(d.gc.majorMs, 0)} ms, longest pause ${fmt(d.gc.maxMs, 1)} ms; event loop late by up to ${fmt(d.loopDelayMaxMs, 1)} ms` : '');
const fmt = (v, d = 0) => (typeof v === 'number' && Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');

function table(profile) {
  const r = results;
  const rows = [
    ['raw UDP echo round trips/s (limit)', fmt(r.udpEchoRps), `window ${CFG.window}, ${r.readDatagramBytes?.req ?? '?'} B out / ${r.readDatagramBytes?.resp ?? '?'} B back, ${CFG.fleetProcs} echo process${CFG.fleetProcs === 1 ? '' : 'es'}; median of segments ${JSON.stringify(r.udpEchoSegments ?? [])}; sender CPU ${fmt(r.udpEchoCpuPct)} % (${fmt(r.udpEchoServerUsPerOp, 1)} us/op), echo CPU ${fmt(r.udpEchoFleetCpuPct)} %`],
    ['pooled LwM2M Read round trips/s', fmt(r.pooledReadRps), `Lwm2mServer.request read /3/0/0, window ${CFG.window}, over ${fmt(r.registeredDevices)} registered DTLS devices; median of segments ${JSON.stringify(r.pooledSegments ?? [])}, each followed by an echo segment (pooled / echo per pair ${JSON.stringify(r.pooledVsUdpPairs ?? [])}); server CPU ${fmt(r.pooledServerCpuPct)} % (${fmt(r.pooledServerUsPerOp, 1)} us/op), fleet CPU ${fmt(r.loadGeneratorCpuPct)} %${r.windowSweep ? `; window sweep ${JSON.stringify(r.windowSweep)}` : ''}`],
    ...(r.floorReadRps ? [['DTLS record-layer floor round trips/s', fmt(r.floorReadRps), `a process doing only the DTLS record layer and a CoAP match per read (bench/lib/floor.js) with ${fmt(r.floorDevices)} devices whose sessions are set up without handshakes, each segment before a pooled and an echo segment (floor / echo per pair ${JSON.stringify(r.floorVsUdpPairs ?? [])}, median ${fmt(r.floorVsUdp, 3)} x; pooled / floor median ${fmt(r.pooledVsFloor, 3)} x); median of segments ${JSON.stringify(r.floorSegments ?? [])}; floor server ${fmt(r.floorServerUsPerOp, 1)} us/op, fleet CPU ${fmt(r.floorFleetCpuPct)} %${r.floorReadFailures ? `, ${fmt(r.floorReadFailures)} failed` : ''}`]] : []),
    ...(r.smallFleetReadRps ? [[`pooled LwM2M Read round trips/s, ${fmt(r.smallFleetDevices)}-device fleet`, fmt(r.smallFleetReadRps), `a second server and fleet process, each segment after an echo segment (pooled / echo per pair ${JSON.stringify(r.smallFleetVsUdpPairs ?? [])}, median ${fmt(r.smallFleetVsUdp, 3)} x); median of segments ${JSON.stringify(r.smallFleetSegments ?? [])}; server ${fmt(r.smallFleetServerUsPerOp, 1)} us/op, fleet CPU ${fmt(r.smallFleetCpuPct)} %`]] : []),
    ['handshake-per-request round trips/s', fmt(r.perRequestHandshakeRps), `window ${CFG.window}; server CPU ${fmt(r.perRequestServerCpuPct)} % (${fmt(r.perRequestServerUsPerOp, 1)} us/op), fleet CPU ${fmt(r.perRequestFleetCpuPct)} %`],
    ['PSK handshakes/s, concurrency 1', fmt(r.handshakesPerSecC1), `server CPU ${fmt(r.handshakesC1ServerCpuPct)} %, fleet CPU ${fmt(r.handshakesC1FleetCpuPct)} %`],
    ['PSK handshakes/s, concurrency 8', fmt(r.handshakesPerSecC8), `server CPU ${fmt(r.handshakesC8ServerCpuPct)} % (${fmt(r.handshakeServerUsPerOp, 1)} us/handshake), fleet CPU ${fmt(r.handshakesC8FleetCpuPct)} %`],
    [`registrations/s (${fmt(CFG.devices)} devices)`, fmt(r.registrationsPerSec), `handshake + Register, ${CFG.fleetProcs} x ${CFG.regConcurrency} in flight; server ${fmt(r.registrationServerUsPerOp, 1)} us/registration, fleet CPU ${fmt(r.registrationFleetCpuPct)} %`],
    [`RSS bytes per device at ${fmt(r.devices10k)}`, fmt(r.bytesPerSession10k), `after ${fmt((r.idleMs10k || 0) / 1000, 0)} s idle (${fmt(r.bytesPerSession10kBusy)} right after registering); heap ${fmt(r.heapPerSession10k)} B/device; ${CFG.heap ? 'PSK table not included, its share' : 'PSK store share included'} ${fmt(r.pskStoreBytesPerDevice10k)} B`],
    [`RSS bytes per device at ${fmt(r.devices100k)}`, fmt(r.bytesPerSession100k), `registered ${fmt((r.steadyMs100k || 0) / 1000, 0)} s, ${QUICK ? 'CoAP exchange state not yet expired (quick run)' : 'CoAP exchange state expired'} (${fmt(r.bytesPerSession100kBusy)} right after registering, ${fmt(r.bytesPerSession100kIdle)} after ${fmt((r.idleMs100k || 0) / 1000, 0)} s idle); heap ${fmt(r.heapPerSession100k)} B/device (${fmt(r.heapPerSession100kIdle)} at ${fmt((r.idleMs100k || 0) / 1000, 0)} s); PSK store share ${fmt(r.pskStoreBytesPerDevice100k)} B; server RSS ${fmt((r.serverRss100k || 0) / 2 ** 20)} MiB; ${fmt(r.registrationsPerSecBig)} reg/s`],
    ['latency p50 / p99 ms at half max rate', `${fmt(r.p50Ms, 2)} / ${fmt(r.p99Ms, 2)}`, `offered ${fmt(r.latencyRate)}/s, achieved ${fmt(r.latencyAchievedRps)}/s, max ${fmt(r.latencyMaxMs, 1)} ms${serverText(r.latencyServer)}; fleet: longest GC pause ${fmt(r.latencyFleetGcMaxMs, 1)} ms, event loop late by up to ${fmt(r.latencyFleetLoopDelayMaxMs, 1)} ms`],
    [`latency p50 / p99 ms, ${argsLabel(ALT_SERVER_ARGS)}`, `${fmt(r.altP50Ms, 2)} / ${fmt(r.altP99Ms, 2)}`, `the same on a server with ${argsLabel(ALT_SERVER_ARGS)} (not ${argsLabel(SERVER_ARGS)}): offered ${fmt(r.altLatencyRate)}/s, achieved ${fmt(r.altLatencyAchievedRps)}/s, max ${fmt(r.altLatencyMaxMs, 1)} ms${serverText(r.altLatencyServer)}; its pooled reads ${fmt(r.altPooledReadRps)}/s`],
    ['raw UDP echo p50 / p99 ms, same rate', `${fmt(r.udpEchoP50Ms, 2)} / ${fmt(r.udpEchoP99Ms, 2)}`, `the latency floor: one echo process, open loop at ${fmt(r.latencyRate)}/s, max ${fmt(r.udpEchoMaxMs, 1)} ms${r.udpEchoLatencyLost ? `, ${fmt(r.udpEchoLatencyLost)} lost` : ''}`],
    ['Node-RED pooled Read round trips/s', fmt(r.nodeRedPooledReadRps), `lwm2m-request node in a flow, ${fmt(r.nodeRedDevices)} devices, window ${CFG.window}; Node-RED process CPU ${fmt(r.nodeRedServerCpuPct)} % (${fmt(r.nodeRedServerUsPerOp, 1)} us/op), fleet CPU ${fmt(r.nodeRedFleetCpuPct)} %`],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  const out = [];
  out.push(`LwM2M server benchmark${QUICK ? ' (QUICK: reduced sizes)' : ''}: ${os.cpus().length} cores (${os.cpus()[0]?.model?.trim()}), ${fmt(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${fmt((Date.now() - t0) / 1000)} s`);
  out.push(`measured server's Node options: ${argsLabel(SERVER_ARGS)} (README: Tuning); latency also with ${argsLabel(ALT_SERVER_ARGS)}; fleet's: ${FLEET_ARGS.join(' ') || '(Node defaults)'}`);
  out.push(`load average at start ${LOAD_AT_START.map((x) => x.toFixed(2)).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (anything else running on the machine shows here)`);
  out.push('');
  for (const [a, b, c] of rows) out.push(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
  out.push('');
  out.push('Targets:');
  for (const t of targets()) out.push(`  ${t.pass === undefined ? 'n/a ' : t.pass ? 'PASS' : 'FAIL'}  ${t.name}: ${t.value}`);
  if (r.floorVsUdp !== undefined) {
    // what the two ratio targets would show for a server with no layers above the DTLS record layer (same run)
    const fh = r.perRequestHandshakeRps ? `, ${fmt(r.floorReadRps / r.perRequestHandshakeRps, 2)} x handshake-per-request` : '';
    out.push(`        the DTLS record-layer floor (no CoAP, LwM2M or request layers): ${fmt(r.floorVsUdp, 3)} x raw UDP echo${fh}; pooled reads ${fmt(r.pooledVsFloor, 3)} x the floor`);
  }
  out.push('');
  out.push('Definitions: a "round trip" is one confirmable CoAP GET /3/0/0 from the server answered by a piggybacked 2.05');
  out.push('(text, 20 bytes) from the device, over DTLS 1.2 PSK AES-128-CCM_8. "Handshake per request" = new UDP socket,');
  out.push('full PSK handshake with the cookie exchange, one confirmable CoAP GET sent to the server and its answer');
  out.push('(4.04 from the server\'s resource handler), close_notify, socket closed: what every request costs without');
  out.push('a pooled session. The fleet (load generator) is separate processes; its CPU is % of one core, summed.');
  if (heap) {
    out.push('');
    out.push(`Heap added per registered device (V8 heap snapshots before/after ${fmt(r.devices10k)} registrations): ${fmt(heap.bytesPerDevice)} B`);
    for (const h of heap.top) out.push(`    ${fmt(h.bytes).padStart(6)} B  ${h.objects.toFixed(2).padStart(6)} objects  ${h.name}`);
  }
  if (profile) {
    out.push('');
    out.push(`CPU profile of the server during pooled reads (node --cpu-prof, ${profile.samples} samples in the read window, ${profile.file}):`);
    out.push('  self time by function:');
    for (const f of profile.topSelf) out.push(`    ${f.pct.toFixed(1).padStart(5)} %  ${f.name}  ${f.where}`);
    out.push('  self time by source file:');
    for (const f of profile.byFile) out.push(`    ${f.pct.toFixed(1).padStart(5)} %  ${f.file}`);
    out.push('  inclusive time (project functions):');
    for (const f of profile.topTotal) out.push(`    ${f.pct.toFixed(1).padStart(5)} %  ${f.name}  ${f.where}`);
  }
  if (Object.keys(udpDrops).length) {
    out.push('');
    out.push('UDP datagrams dropped by the kernel (receive buffer full, whole machine) per phase; each lost request or');
    out.push('answer costs a CoAP retransmission (>= 2 s) or a DTLS flight retransmission (1 s):');
    for (const [k, v] of Object.entries(udpDrops)) out.push(`    ${String(v).padStart(6)}  ${k}`);
  }
  if (notes.length || phaseErrors.length) {
    out.push('');
    for (const n of notes) out.push(`note: ${n}`);
    for (const e of phaseErrors) out.push(`phase failed: ${e}`);
  }
  return out.join('\n');
}

function targets() {
  const r = results;
  const ratio = (a, b) => (a && b ? a / b : undefined);
  // the median of the paired segments' ratios (see the reads-and-echo phase)
  const pu = r.pooledVsUdp;
  const ph = ratio(r.pooledReadRps, r.perRequestHandshakeRps);
  return [
    { name: 'pooled reads >= 0.40 x raw UDP echo', value: pu === undefined ? 'n/a' : `${pu.toFixed(3)} x`, pass: pu === undefined ? undefined : pu >= 0.4 },
    ...(r.smallFleetVsUdp === undefined ? [] : [{ name: `  the same with a fleet of ${fmt(r.smallFleetDevices)} devices`, value: `${r.smallFleetVsUdp.toFixed(3)} x`, pass: r.smallFleetVsUdp >= 0.4 }]),
    { name: 'pooled >= 20 x handshake-per-request', value: ph === undefined ? 'n/a' : `${ph.toFixed(2)} x`, pass: ph === undefined ? undefined : ph >= 20 },
    { name: '>= 2,000 PSK handshakes/s at concurrency 8', value: fmt(r.handshakesPerSecC8), pass: r.handshakesPerSecC8 === undefined ? undefined : r.handshakesPerSecC8 >= 2000 },
    { name: '100,000 registered DTLS devices at <= 4 KB RSS each', value: `${fmt(r.bytesPerSession100k)} B at ${fmt(r.devices100k)} devices`, pass: r.bytesPerSession100k === undefined ? undefined : r.devices100k >= 100000 && r.bytesPerSession100k <= 4096 },
    { name: 'p99 < 5 ms at half the maximum rate', value: `${fmt(r.p99Ms, 2)} ms`, pass: r.p99Ms === undefined ? undefined : r.p99Ms < 5 },
  ];
}

async function main() {
  const hard = setTimeout(() => {
    log(`hard time limit of ${HARD_LIMIT_MS / 1000} s reached, stopping`);
    for (const c of children) c.proc.kill('SIGKILL');
    process.exit(2);
  }, HARD_LIMIT_MS);
  log(`config ${JSON.stringify(CFG)}`);
  await phase('registered fleet', mainServer, true);
  if (ALT_SERVER_ARGS.join(' ') !== SERVER_ARGS.join(' ') && process.env.BENCH_ALT !== '0') await phase(`latency with ${argsLabel(ALT_SERVER_ARGS)}`, altLatency);
  if (CFG.nodered) await phase('Node-RED flow', noderedServer);
  let profile;
  if (CFG.profile) await phase('CPU profile', async () => { profile = await profileServer(); });
  if (CFG.bigDevices > 0) await phase(`big fleet: register ${CFG.bigDevices} devices`, bigFleet);
  clearTimeout(hard);
  const r = results;
  const json = {
    udpEchoRps: round(r.udpEchoRps), pooledReadRps: round(r.pooledReadRps), perRequestHandshakeRps: round(r.perRequestHandshakeRps),
    handshakesPerSecC1: round(r.handshakesPerSecC1), handshakesPerSecC8: round(r.handshakesPerSecC8), registrationsPerSec: round(r.registrationsPerSec),
    bytesPerSession10k: r.bytesPerSession10k, bytesPerSession100k: r.bytesPerSession100k, p50Ms: round(r.p50Ms, 3), p99Ms: round(r.p99Ms, 3), udpEchoP50Ms: round(r.udpEchoP50Ms, 3), udpEchoP99Ms: round(r.udpEchoP99Ms, 3),
    nodeRedPooledReadRps: round(r.nodeRedPooledReadRps), loadGeneratorCpuPct: round(r.loadGeneratorCpuPct, 1),
    pooledVsUdp: round(r.pooledVsUdp, 3), pooledVsUdpPairs: r.pooledVsUdpPairs,
    pooledSegments: r.pooledSegments, udpEchoSegments: r.udpEchoSegments, smallFleetDevices: r.smallFleetDevices,
    smallFleetReadRps: r.smallFleetReadRps === undefined ? undefined : Math.round(r.smallFleetReadRps),
    smallFleetVsUdp: r.smallFleetVsUdp === undefined ? undefined : round(r.smallFleetVsUdp, 3), smallFleetVsUdpPairs: r.smallFleetVsUdpPairs, pooledVsHandshakePerRequest: round(r.pooledReadRps / r.perRequestHandshakeRps, 2),
    floorReadRps: r.floorReadRps === undefined ? undefined : Math.round(r.floorReadRps), floorVsUdp: round(r.floorVsUdp, 3), floorVsUdpPairs: r.floorVsUdpPairs,
    pooledVsFloor: round(r.pooledVsFloor, 3), floorServerUsPerOp: round(r.floorServerUsPerOp, 1), floorVsHandshakePerRequest: round(r.floorReadRps / r.perRequestHandshakeRps, 2),
    heapPerSession10k: r.heapPerSession10k, heapPerSession100k: r.heapPerSession100k, devices10k: r.devices10k, devices100k: r.devices100k,
    bytesPerSession10kBusy: r.bytesPerSession10kBusy, bytesPerSession100kBusy: r.bytesPerSession100kBusy, bytesPerSession100kIdle: r.bytesPerSession100kIdle,
    serverCpuPctPooled: round(r.pooledServerCpuPct, 1), nodeRedVsPooled: round(r.nodeRedPooledReadRps / r.pooledReadRps, 3),
    pooledServerUsPerOp: round(r.pooledServerUsPerOp, 1), handshakeServerUsPerOp: round(r.handshakeServerUsPerOp, 1), perRequestServerUsPerOp: round(r.perRequestServerUsPerOp, 1),
    altP50Ms: round(r.altP50Ms, 3), altP99Ms: round(r.altP99Ms, 3), serverArgs: SERVER_ARGS.join(' '), altServerArgs: ALT_SERVER_ARGS.join(' '),
    window: CFG.window, quick: QUICK, loadAvg: os.loadavg().map((x) => round(x, 2)), cores: os.cpus().length, node: process.version, seconds: round((Date.now() - t0) / 1000, 1),
    targetsPassed: targets().filter((t) => t.pass).length, targetsTotal: targets().length,
    udpDrops: Object.keys(udpDrops).length ? udpDrops : undefined,
    errors: phaseErrors.length ? phaseErrors : undefined,
  };
  process.stdout.write(`${table(profile)}\n`);
  process.stdout.write(`${JSON.stringify(json)}\n`);
}

function round(v, d = 0) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  const m = 10 ** d;
  return Math.round(v * m) / m;
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const c of children) c.proc.kill('SIGKILL');
    process.exit(130);
  });
}

main().catch(async (e) => {
  log(e.stack);
  for (const c of children) c.proc.kill('SIGKILL');
  process.exit(1);
});
