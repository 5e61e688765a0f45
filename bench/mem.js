'use strict';
/**
 * `node bench/mem.js [devices]`: memory per idle registered DTLS device only (a quicker loop than the full run).
 * Registers the fleet against a fresh server, prints RSS and heap per device after a full GC and the heap added per
 * device by constructor (V8 heap snapshots before and after). Uses the built dist/ (or BENCH_ROOT).
 * Environment: BENCH_FLEET_PROCS (default 2), BENCH_HEAP=0 (skip the snapshots), BENCH_STEADY=1 (also measure once the
 * CoAP exchange lifetime has passed, about 5 minutes), BENCH_SMAPS=1 (RSS by kind of mapping), BENCH_TOP (rows, default 25),
 * BENCH_KEEP=1 (keep the snapshots, e.g. to open them in Chrome DevTools).
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnChild } = require('./lib/child');
const { SERVER_ARGS } = require('./lib/node-args');
const { settledMemory, steadyMemory } = require('./lib/settle');
const { heapDiff } = require('./lib/heap');

const N = Number(process.argv[2] || 10000);
const PROCS = Number(process.env.BENCH_FLEET_PROCS || Math.max(2, Math.ceil(N / 15000)));
const HOST = '127.0.0.1';

async function main() {
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execArgv: ['--expose-gc', ...SERVER_ARGS, '--max-old-space-size=8192'], name: 'server' });
  const fleets = Array.from({ length: PROCS }, (_, i) => spawnChild(path.join(__dirname, 'fleet.js'), { name: `fleet${i}` }));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-mem-'));
  try {
    const { port, before } = await server.call('start', { pskFrom: 0, pskCount: N, hsFrom: 1_000_000, hsCount: 1 });
    const heap = process.env.BENCH_HEAP !== '0';
    if (heap) await server.call('heapSnapshot', { file: path.join(dir, 'a.heapsnapshot') });
    const base = heap ? await server.call('mem') : before;
    const smapsBefore = process.env.BENCH_SMAPS ? await server.call('smaps') : undefined;
    const per = Math.ceil(N / PROCS);
    let from = 0;
    const t0 = performance.now();
    const res = await Promise.all(fleets.map((f, i) => {
      const count = Math.min(per, N - from);
      const args = { host: HOST, port, bind: N > 25000 ? `127.0.0.${i + 1}` : HOST, from, count, concurrency: 32 };
      from += count;
      return f.call('register', args);
    }));
    const secs = (performance.now() - t0) / 1000;
    const { count } = await server.call('registered');
    const mem = await settledMemory(server);
    let after = mem.settled;
    console.log(`right after registering: RSS ${Math.round((mem.first.rss - base.rss) / count)} B per device; after ${(mem.idleMs / 1000).toFixed(0)} s idle: ` +
      `RSS ${Math.round((after.rss - base.rss) / count)} B, heap ${Math.round((after.heapUsed - base.heapUsed) / count)} B`);
    if (process.env.BENCH_STEADY === '1') {
      const steady = await steadyMemory(server);
      after = steady.settled;
      console.log(`after the CoAP exchange lifetime (${((mem.idleMs + steady.idleMs) / 1000).toFixed(0)} s idle, ${steady.coapChannels} channels with state left):`);
    }
    if (smapsBefore) {
      const a = await server.call('smaps');
      console.log('RSS by mapping, per device:', Object.fromEntries(Object.keys(a).filter((k) => a[k] !== (smapsBefore[k] || 0)).map((k) => [k, Math.round((a[k] - (smapsBefore[k] || 0)) / count)])));
    }
    const failed = res.reduce((a, r) => a + r.failed, 0);
    console.log(`${count} registered (${failed} failed) in ${secs.toFixed(1)} s; per device: RSS ${Math.round((after.rss - base.rss) / count)} B, ` +
      `heap ${Math.round((after.heapUsed - base.heapUsed) / count)} B (committed ${Math.round((after.heapTotal - base.heapTotal) / count)} B), ` +
      `external ${Math.round((after.external - base.external) / count)} B`);
    if (heap) {
      await server.call('heapSnapshot', { file: path.join(dir, 'b.heapsnapshot') });
      const d = heapDiff(path.join(dir, 'a.heapsnapshot'), path.join(dir, 'b.heapsnapshot'), count, Number(process.env.BENCH_TOP || 25));
      console.log(`heap snapshot: ${Math.round(d.bytesPerDevice)} B per device`);
      for (const h of d.top) console.log(`  ${String(Math.round(h.bytes)).padStart(6)} B  ${h.objects.toFixed(2).padStart(6)}  ${h.name}`);
    }
  } finally {
    if (process.env.BENCH_KEEP === '1') console.log(`snapshots kept in ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
    await Promise.all([server, ...fleets].map((c) => c.exit()));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
