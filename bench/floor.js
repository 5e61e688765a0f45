'use strict';
/**
 * `node bench/floor.js [devices] [seconds]`: where the pooled read stands between the raw UDP echo and the DTLS
 * record-layer floor, in one run. Alternating segments of three closed loops (window BENCH_WINDOW, default 64), each
 * between a measured process and one fleet process on loopback:
 *
 *   echo    raw UDP round trips (47 B out, 63 B back: a pooled read's datagram sizes) to a peer process without
 *           devices, as in `npm run bench`
 *   floor   DTLS reads with nothing but the record layer and a CoAP match on the server side (bench/lib/floor.js):
 *           the same datagrams, the package's AES-CCM, the fleet's own DTLS client answering; no CoAP, LwM2M or
 *           request layers, no handshake
 *   pooled  LwM2M Read /3/0/0 through Lwm2mServer.request over registered DTLS devices (as `npm run bench`)
 *
 * `devices` (default 10000) devices in each of the floor's and the pooled reads' fleets; `seconds` (default 10) per
 * segment; BENCH_PAIRS (default 3) rounds of the three; BENCH_POOLED=0 leaves the pooled reads out. Prints each
 * segment, then the medians, the ratios per round (median of them) and one line of JSON. The measured processes run
 * with the Node options of `npm run bench` (bench/lib/node-args.js); uses the built dist/.
 */
const os = require('node:os');
const path = require('node:path');
const { spawnChild } = require('./lib/child');
const { SERVER_ARGS, FLEET_ARGS } = require('./lib/node-args');
const { FLOOR_FROM, FLOOR_HOST } = require('./lib/floor');

const N = Number(process.argv[2] || 10000);
const SECONDS = Number(process.argv[3] || 10);
const WINDOW = Number(process.env.BENCH_WINDOW || 64);
const PAIRS = Number(process.env.BENCH_PAIRS || 3);
const POOLED = process.env.BENCH_POOLED !== '0';
const HOST = '127.0.0.1';
const SIZES = { req: 47, resp: 63 };
const SERVER = path.join(__dirname, 'server-proc.js');
const FLEET = path.join(__dirname, 'fleet.js');
/** The whole run is bounded: registration, PAIRS rounds of three segments, and slack. */
const HARD_LIMIT_MS = 120_000 + PAIRS * 3 * (SECONDS + 15) * 1000;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const cpuUs = (a, b) => (b.cpu.user - a.cpu.user) + (b.cpu.system - a.cpu.system);

async function main() {
  const started = Date.now();
  const limit = setTimeout(() => {
    console.error(`floor: gave up after ${HARD_LIMIT_MS / 1000} s`);
    process.exit(1);
  }, HARD_LIMIT_MS);
  limit.unref();
  const floorServer = spawnChild(SERVER, { execArgv: SERVER_ARGS, name: 'floor server' });
  const echoSender = spawnChild(SERVER, { execArgv: SERVER_ARGS, name: 'echo sender' });
  const floorFleet = spawnChild(FLEET, { execArgv: FLEET_ARGS, name: 'floor fleet' });
  // the echo's peer holds no devices, as in `npm run bench` (a peer's heap moves the echo's speed)
  const echoPeer = spawnChild(FLEET, { execArgv: FLEET_ARGS, name: 'echo peer' });
  const server = POOLED ? spawnChild(SERVER, { execArgv: ['--expose-gc', ...SERVER_ARGS], name: 'server' }) : undefined;
  const fleet = POOLED ? spawnChild(FLEET, { execArgv: FLEET_ARGS, name: 'fleet' }) : undefined;
  const all = [floorServer, echoSender, floorFleet, echoPeer, server, fleet].filter(Boolean);
  const segments = { echo: [], floor: [], pooled: [] };
  try {
    const { port: floorPort } = await floorServer.call('floorBind');
    const { ports } = await floorFleet.call('floorStart', { host: HOST, port: floorPort, bind: FLOOR_HOST, from: FLOOR_FROM, count: N });
    if (POOLED) {
      const { port } = await server.call('start', { pskFrom: 0, pskCount: N, hsFrom: 1_000_000, hsCount: 1 });
      const reg = await fleet.call('register', { host: HOST, port, bind: HOST, from: 0, count: N, concurrency: 32 });
      if (reg.failed > 0) throw new Error(`${reg.failed} of ${N} registrations failed: ${reg.error}`);
    }
    console.log(`${N} devices in each fleet, window ${WINDOW}, ${SECONDS} s segments, ${PAIRS} rounds; measured processes: ${SERVER_ARGS.join(' ') || 'Node\'s defaults'}; ${os.cpus().length} CPUs, Node ${process.version}`);
    /** Runs `measure` with the peer's CPU taken around it; returns its result with µs per op of both sides. */
    const segment = async (kind, peer, measure) => {
      const c0 = await peer.call('cpu');
      const r = await measure();
      const c1 = await peer.call('cpu');
      // the peer's CPU over the whole call (its warm-up second included), per op measured
      const peerUs = cpuUs(c0, c1) / (r.rps * (SECONDS + 1));
      const out = { rps: r.rps, us: ((r.cpuPct / 100) * 1e6) / r.rps, peerUs, failed: r.failed ?? 0 };
      segments[kind].push(out);
      console.log(`${kind.padEnd(6)} ${Math.round(r.rps).toString().padStart(7)} /s  measured side ${out.us.toFixed(1)} us/op (CPU ${r.cpuPct.toFixed(0)} %), peer ~${peerUs.toFixed(1)} us/op${out.failed ? `, failed ${out.failed}` : ''}`);
    };
    for (let p = 0; p < PAIRS; p++) {
      const { port: echoPort } = await echoPeer.call('echoStart', { bind: HOST, replySize: SIZES.resp });
      await segment('echo', echoPeer, () => echoSender.call('echo', { targets: [{ address: HOST, port: echoPort }], window: WINDOW, durationMs: SECONDS * 1000, size: SIZES.req }));
      await echoPeer.call('echoStop');
      await segment('floor', floorFleet, () => floorServer.call('floorLoad', { address: FLOOR_HOST, ports, fromIndex: FLOOR_FROM, window: WINDOW, durationMs: SECONDS * 1000 }));
      if (POOLED) {
        await segment('pooled', fleet, () => server.call('load', { from: 0, count: N, window: WINDOW, durationMs: SECONDS * 1000, warmupMs: 1000 }));
      }
    }
  } finally {
    await Promise.all(all.map((c) => c.exit()));
  }
  const ratio = (a, b) => median(segments[a].map((x, i) => x.rps / segments[b][i].rps));
  const m = (kind, k) => median(segments[kind].map((x) => x[k]));
  const result = {
    devices: N, window: WINDOW, seconds: SECONDS, rounds: PAIRS, node: process.version,
    echoRps: Math.round(m('echo', 'rps')), echoSenderUs: m('echo', 'us'), echoPeerUs: m('echo', 'peerUs'),
    floorRps: Math.round(m('floor', 'rps')), floorServerUs: m('floor', 'us'), floorFleetUs: m('floor', 'peerUs'),
    floorVsEcho: ratio('floor', 'echo'),
    ...(POOLED ? {
      pooledRps: Math.round(m('pooled', 'rps')), pooledServerUs: m('pooled', 'us'), pooledFleetUs: m('pooled', 'peerUs'),
      pooledVsEcho: ratio('pooled', 'echo'), pooledVsFloor: ratio('pooled', 'floor'),
    } : {}),
    failed: { floor: segments.floor.reduce((a, x) => a + x.failed, 0), pooled: segments.pooled.reduce((a, x) => a + x.failed, 0) },
    seconds_total: Math.round((Date.now() - started) / 1000),
  };
  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  console.log('\nmedians              round trips/s   measured side us/op   peer us/op');
  console.log(`raw UDP echo         ${String(result.echoRps).padStart(13)}   ${f(result.echoSenderUs).padStart(19)}   ${f(result.echoPeerUs).padStart(10)}`);
  console.log(`DTLS record floor    ${String(result.floorRps).padStart(13)}   ${f(result.floorServerUs).padStart(19)}   ${f(result.floorFleetUs).padStart(10)}`);
  if (POOLED) console.log(`pooled LwM2M read    ${String(result.pooledRps).padStart(13)}   ${f(result.pooledServerUs).padStart(19)}   ${f(result.pooledFleetUs).padStart(10)}`);
  console.log(`floor / echo ${f(result.floorVsEcho, 3)} x${POOLED ? `, pooled / echo ${f(result.pooledVsEcho, 3)} x, pooled / floor ${f(result.pooledVsFloor, 3)} x` : ''} (medians of the rounds' ratios)`);
  console.log(JSON.stringify(result));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
