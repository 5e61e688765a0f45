'use strict';
/**
 * `node bench/handshakes.js [registered] [seconds]`: PSK handshakes only (a quicker loop than the full run). Starts a
 * server, registers `registered` devices first (default 10,000: the full run's handshake phases also run against its
 * registered fleet), then runs fresh full handshakes (new socket, cookie exchange, close_notify) at BENCH_CONCURRENCY
 * (default 8) from two fleet processes, `BENCH_ROUNDS` times (default 2), and prints handshakes/s and server CPU µs
 * per handshake. BENCH_ROOT measures another built copy.
 */
const path = require('node:path');
const { spawnChild } = require('./lib/child');
const { SERVER_ARGS, FLEET_ARGS } = require('./lib/node-args');

const REGISTERED = Number(process.argv[2] ?? 10000);
const SECONDS = Number(process.argv[3] || 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY || 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 2);
const HOST = '127.0.0.1';
const HS_FROM = 1_000_000;
const HS_IDS = 2000;

async function main() {
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execArgv: ['--expose-gc', ...SERVER_ARGS], name: 'server' });
  const fleets = [0, 1].map((i) => spawnChild(path.join(__dirname, 'fleet.js'), { name: `fleet${i}`, execArgv: FLEET_ARGS }));
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: Math.max(1, REGISTERED), hsFrom: HS_FROM, hsCount: HS_IDS });
    const half = Math.ceil(REGISTERED / 2);
    if (REGISTERED > 0) {
      await Promise.all(fleets.map((f, i) => f.call('register', { host: HOST, port, bind: HOST, from: i * half, count: Math.min(half, REGISTERED - i * half), concurrency: 32 })));
    }
    console.log(`registered ${(await server.call('registered')).count}`);
    for (let r = 0; r < ROUNDS; r++) {
      const c0 = await server.call('cpu');
      const res = await Promise.all(fleets.map((f, i) => f.call('handshakes', {
        host: HOST, port, bind: HOST, from: HS_FROM + i * (HS_IDS / 2), idCount: HS_IDS / 2, concurrency: Math.ceil(CONCURRENCY / 2),
        durationMs: SECONDS * 1000, withRequest: false,
      })));
      const c1 = await server.call('cpu');
      const ok = res.reduce((a, x) => a + x.ok, 0);
      const failed = res.reduce((a, x) => a + x.failed, 0);
      const ms = Math.max(...res.map((x) => x.ms));
      const cpuUs = (c1.cpu.user - c0.cpu.user) + (c1.cpu.system - c0.cpu.system);
      console.log(`round ${r + 1}: ${Math.round(ok / (ms / 1000))} handshakes/s at concurrency ${CONCURRENCY}, server ${(cpuUs / Math.max(1, ok)).toFixed(0)} us CPU per handshake, failed ${failed}`);
    }
  } finally {
    await Promise.all([server, ...fleets].map((c) => c.exit()));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
