'use strict';
/**
 * `node bench/reads.js [devices] [seconds]`: pooled reads only (a quicker loop than the full run). Registers the fleet
 * against a fresh server, then runs closed-loop reads (BENCH_WINDOW, default 64) `BENCH_ROUNDS` times (default 3) and
 * prints reads/s, server CPU µs per read and p50/p99 of each round. BENCH_PROFILE=1 runs the server under
 * `node --cpu-prof` and prints the top of the read-window profile; BENCH_RATE=n runs an open loop at n reads/s instead
 * (latency at that rate); BENCH_STALL=ms stops the fleet for that long in each round; BENCH_ACTIVE=n reads only n of
 * the devices in every other round; BENCH_QUIET=s waits that long without reads before each round after the first;
 * BENCH_TRACE_GC=1 shows the
 * server's garbage collections; BENCH_FLEET_PROCS (default 2) fleet processes; BENCH_SERVER_ARGS / BENCH_FLEET_ARGS
 * the Node options of server and fleet (as in run.js, see lib/node-args.js). Uses the built dist/ (or BENCH_ROOT).
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnChild } = require('./lib/child');
const { analyseProfile } = require('./lib/profile');
const { SERVER_ARGS, FLEET_ARGS } = require('./lib/node-args');
const { countMet } = require('./lib/overlap');

const N = Number(process.argv[2] || 1000);
const SECONDS = Number(process.argv[3] || 4);
const WINDOW = Number(process.env.BENCH_WINDOW || 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const PROFILE = process.env.BENCH_PROFILE === '1';
/** BENCH_RATE: open loop at this many reads/s instead of a closed window (latency at a given rate). */
const RATE = process.env.BENCH_RATE ? Number(process.env.BENCH_RATE) : undefined;
/** BENCH_TRACE_GC=1: the server prints its garbage collections (node --trace-gc). */
const TRACE_GC = process.env.BENCH_TRACE_GC === '1';
/**
 * BENCH_SLOW=ms: how many requests took at least that long and how many of them were outstanding while the server
 * collected garbage, or while a fleet process did; BENCH_SLOW_LIST=1 also lists when they started (server clock, grouped by 10 ms).
 */
const SLOW = process.env.BENCH_SLOW ? Number(process.env.BENCH_SLOW) : undefined;
/**
 * BENCH_STALL=ms: halfway through each round's measuring window, the fleet processes are stopped (SIGSTOP) for that
 * long and then go on: a stall of the kind that starts a backlog, at a known time, so that how the server recovers
 * from it can be compared between builds or Node options (with BENCH_RATE).
 */
const STALL = process.env.BENCH_STALL ? Number(process.env.BENCH_STALL) : undefined;
/**
 * BENCH_ACTIVE=n: every other round reads only the first n of the registered devices (the others stay registered and
 * idle), to compare a small working set with the whole fleet on one server in one run.
 */
const ACTIVE = process.env.BENCH_ACTIVE ? Number(process.env.BENCH_ACTIVE) : undefined;
/**
 * BENCH_QUIET=s: before every round but the first, no reads for that many seconds (what the full run's latency window
 * follows: an echo segment and the small-fleet segment, ~22 s without reads on the measured server).
 */
const QUIET = process.env.BENCH_QUIET ? Number(process.env.BENCH_QUIET) : 0;
const HOST = '127.0.0.1';

async function main() {
  const dir = PROFILE ? fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-reads-')) : undefined;
  const execArgv = ['--expose-gc', ...(dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'] : []), ...(TRACE_GC ? ['--trace-gc'] : []), ...SERVER_ARGS];
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execArgv, name: 'server' });
  const fleets = Array.from({ length: Number(process.env.BENCH_FLEET_PROCS || 2) }, (_, i) => spawnChild(path.join(__dirname, 'fleet.js'), { name: `fleet${i}`, execArgv: FLEET_ARGS }));
  const windows = [];
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: N, hsFrom: 1_000_000, hsCount: 1 });
    const part = Math.ceil(N / fleets.length);
    await Promise.all(fleets.map((f, i) => f.call('register', { host: HOST, port, bind: HOST, from: i * part, count: Math.min(part, N - i * part), concurrency: 32 })));
    const { count } = await server.call('registered');
    for (let r = 0; r < ROUNDS; r++) {
      if (r > 0 && QUIET > 0) await new Promise((resolve) => setTimeout(resolve, QUIET * 1000));
      const f0 = await Promise.all(fleets.map((f) => f.call('cpu')));
      if (SLOW !== undefined) await Promise.all(fleets.map((f) => f.call('gcLog')));
      let stallTimer;
      if (STALL !== undefined) {
        stallTimer = setTimeout(() => {
          for (const f of fleets) process.kill(f.pid, 'SIGSTOP');
          setTimeout(() => { for (const f of fleets) process.kill(f.pid, 'SIGCONT'); }, STALL);
        }, 500 + SECONDS * 500);
      }
      const reading = ACTIVE !== undefined && r % 2 === 1 ? Math.min(ACTIVE, count) : count;
      if (ACTIVE !== undefined) process.stdout.write(`reads over ${reading} devices: `);
      const res = await server.call('load', { from: 0, count: reading, window: WINDOW, durationMs: SECONDS * 1000, warmupMs: 500, rate: RATE, slowMs: SLOW });
      clearTimeout(stallTimer);
      const f1 = await Promise.all(fleets.map((f) => f.call('cpu')));
      // the fleet's CPU over the whole load call (warm-up included), per read measured
      const fleetUs = f0.reduce((a, c, i) => a + (f1[i].cpu.user - c.cpu.user) + (f1[i].cpu.system - c.cpu.system), 0) / (res.rps * (SECONDS + 0.5));
      if (SLOW !== undefined && res.slow.length > 0) {
        const groups = new Map();
        for (const [start, ms] of res.slow) {
          const at = Math.round((res.t0 + start) / 10) * 10;
          const g = groups.get(at) || { n: 0, max: 0 };
          g.n++;
          g.max = Math.max(g.max, ms);
          groups.set(at, g);
        }
        // the fleet's collections on the same clock (ms since the epoch)
        const fleetGc = (await Promise.all(fleets.map((f) => f.call('gcLog')))).flat();
        const metFleetGc = countMet(res.slow, res.origin + res.t0, fleetGc);
        console.log(`slow (>= ${SLOW} ms): ${res.slow.length} (${(100 * res.slow.length / (res.rps * SECONDS)).toFixed(2)} %), ${res.slowMetGc} of them outstanding during a server GC, ${metFleetGc} during a fleet GC`);
        if (process.env.BENCH_SLOW_LIST === '1') console.log(`slow (>= ${SLOW} ms) by start time (ms since the server started): ` + [...groups].map(([at, g]) => `${at}: ${g.n} (max ${g.max})`).join(', '));
      }
      windows.push(res.windowHr.map((x) => Number(BigInt(x) / 1000n)));
      console.log(`round ${r + 1}: ${Math.round(res.rps)} reads/s, server ${((res.cpuPct / 100) * 1e6 / res.rps).toFixed(1)} us/read (CPU ${res.cpuPct.toFixed(0)} %), fleet ~${fleetUs.toFixed(1)} us/read, ` +
        `sys ${res.sysPct?.toFixed(0)} %, GC ${((res.gc.minorMs + res.gc.majorMs) / (res.rps * SECONDS) * 1000).toFixed(1)} us/read (${Math.round(res.rps * SECONDS / Math.max(1, res.gc.minor))} reads/scavenge, max ${res.gc.maxMs.toFixed(1)} ms; ${res.gc.major} full, ${res.gc.majorMs.toFixed(0)} ms), p50 ${res.latency.p50.toFixed(2)} ms, p99 ${res.latency.p99.toFixed(2)} ms, server loop delay p99/max ${res.loopDelay.p99Ms.toFixed(1)}/${res.loopDelay.maxMs.toFixed(1)} ms, fleet GC max ${Math.max(...f1.map((f) => f.gc.maxMs)).toFixed(1)} ms (${f1.reduce((a, f, i) => a + f.gc.major - f0[i].gc.major, 0)} major), fleet loop delay p99/max ${Math.max(...f1.map((f) => f.loopDelay.p99Ms)).toFixed(1)}/${Math.max(...f1.map((f) => f.loopDelay.maxMs)).toFixed(1)} ms, failed ${res.failed}${res.inFlight ? `, in flight ${res.inFlight.mean.toFixed(1)} (max ${res.inFlight.max})` : ''}, load ${os.loadavg()[0].toFixed(2)}`);
    }
  } finally {
    await Promise.all([server, ...fleets].map((c) => c.exit()));
  }
  if (dir) {
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    const root = process.env.BENCH_ROOT ? path.resolve(process.env.BENCH_ROOT) : path.join(__dirname, '..');
    const a = analyseProfile(path.join(dir, file), [windows[0][0], windows[windows.length - 1][1]], path.join(root, 'dist', 'index.js'), Number(process.env.BENCH_TOP || 30));
    console.log(`profile (${a.samples} samples): self`);
    for (const f of a.topSelf) console.log(`  ${f.pct.toFixed(1).padStart(5)} %  ${f.name}  ${f.where}`);
    console.log('inclusive (project)');
    for (const f of a.topTotal) console.log(`  ${f.pct.toFixed(1).padStart(5)} %  ${f.name}  ${f.where}`);
    console.log('self by file');
    for (const f of a.byFile) console.log(`  ${f.pct.toFixed(1).padStart(5)} %  ${f.file}`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
