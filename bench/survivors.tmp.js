'use strict';
// temporary diagnostic: which allocations get promoted (die in old space) during an open-loop read load
const path = require('node:path');
const { spawnChild } = require('./lib/child');
async function main() {
  const N = 10000;
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execArgv: ['--expose-gc'], name: 'server' });
  const fleets = [0].map((i) => spawnChild(path.join(__dirname, 'fleet.js'), { name: `fleet${i}`, execArgv: ['--max-semi-space-size=2'] }));
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: N, hsFrom: 1_000_000, hsCount: 1 });
    await fleets[0].call('register', { host: '127.0.0.1', port, bind: '127.0.0.1', from: 0, count: N, concurrency: 32 });
    const { count } = await server.call('registered');
    const loadP = server.call('load', { from: 0, count, window: 64, durationMs: 12000, warmupMs: 500, rate: 10000 });
    await new Promise((r) => setTimeout(r, 3000));
    const top = await server.call('heapSample', { ms: 6000, major: true });
    const res = await loadP;
    console.log(`load ${Math.round(res.rps)}/s p99 ${res.latency.p99.toFixed(2)}`);
    for (const [k, v] of top) console.log(String(v).padStart(10), k);
  } finally {
    await Promise.all([server, ...fleets].map((c) => c.exit()));
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
