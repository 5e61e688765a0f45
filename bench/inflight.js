'use strict';
/**
 * `node bench/inflight.js [devices] [requests]`: the heap a pooled read holds while it waits for its answer (what a
 * backlog of requests costs the young generation). Registers the fleet against a fresh server, stops the fleet
 * process (SIGSTOP), starts `requests` reads (default 1,000; one at a time per device, in turn), and compares heap
 * snapshots taken before and after, by constructor; then lets the fleet go on and checks that every read was
 * answered. The in-process load generator's own closure and promise per read are included (see the rows). Uses the
 * built dist/ (or BENCH_ROOT); BENCH_SERVER_ARGS as in run.js; BENCH_TOP rows (default 25); BENCH_KEEP=1 keeps
 * the snapshots.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnChild } = require('./lib/child');
const { SERVER_ARGS } = require('./lib/node-args');
const { heapDiff } = require('./lib/heap');

const N = Number(process.argv[2] || 2000);
const REQUESTS = Number(process.argv[3] || 1000);
const HOST = '127.0.0.1';

async function main() {
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execArgv: ['--expose-gc', ...SERVER_ARGS], name: 'server' });
  const fleet = spawnChild(path.join(__dirname, 'fleet.js'), { name: 'fleet' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-inflight-'));
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: N, hsFrom: 1_000_000, hsCount: 1 });
    await fleet.call('register', { host: HOST, port, bind: HOST, from: 0, count: N, concurrency: 32 });
    // warm the read path (its first calls compile and allocate once), then measure
    await server.call('load', { from: 0, count: N, window: 64, durationMs: 1000, warmupMs: 200 });
    await server.call('heapSnapshot', { file: path.join(dir, 'a.heapsnapshot') });
    const m0 = await server.call('mem');
    process.kill(fleet.pid, 'SIGSTOP');
    let m1;
    try {
      await server.call('hold', { from: 0, devices: N, count: REQUESTS });
      await server.call('heapSnapshot', { file: path.join(dir, 'b.heapsnapshot') });
      m1 = await server.call('mem');
    } finally {
      process.kill(fleet.pid, 'SIGCONT');
    }
    const d = heapDiff(path.join(dir, 'a.heapsnapshot'), path.join(dir, 'b.heapsnapshot'), REQUESTS, Number(process.env.BENCH_TOP || 25));
    console.log(`${REQUESTS} reads in flight over ${N} devices: heapUsed +${Math.round((m1.heapUsed - m0.heapUsed) / REQUESTS)} B per read, snapshot +${Math.round(d.bytesPerDevice)} B per read`);
    for (const r of d.top) console.log(`  ${r.bytes.toFixed(1).padStart(8)} B  ${r.objects.toFixed(2).padStart(6)} objects  ${r.name}`);
    // the reads held must all be answered once the fleet runs again (CoAP retransmits what the stopped fleet missed)
    const t0 = Date.now();
    let h = await server.call('held');
    while (h.settled < h.started && Date.now() - t0 < 30_000) {
      await new Promise((r) => setTimeout(r, 200));
      h = await server.call('held');
    }
    console.log(`answered or failed afterwards: ${h.settled} of ${h.started}`);
  } finally {
    await Promise.all([server, fleet].map((c) => c.exit()));
    if (process.env.BENCH_KEEP === '1') console.log(`snapshots kept in ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
