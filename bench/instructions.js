'use strict';
/**
 * `node bench/instructions.js [devices] [seconds]`: CPU instructions per pooled read, counted by valgrind's callgrind
 * in the server process (its user-space instructions: JavaScript, V8, Node, OpenSSL, libuv; not the kernel's), with
 * the fleet running natively in its own process. Unlike reads/s and µs per read, the count barely moves with what
 * else the machine is doing, so small changes can be compared (BENCH_ROOT: another built copy, for an A/B). The server
 * runs ~30 × slower under callgrind, so it is the bottleneck and the fleet stays idle most of the time; a 30 s warm-up
 * (BENCH_WARMUP_MS) lets V8 optimise the read path first. Prints one line per measuring window (BENCH_ROUNDS, default
 * 2): reads, reads/s under callgrind, instructions per read (the load generator's own share, inside the server
 * process, included: the same in both arms of an A/B). Needs valgrind (Debian: valgrind).
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnChild } = require('./lib/child');
const { FLEET_ARGS } = require('./lib/node-args');

const N = Number(process.argv[2] || 200);
const SECONDS = Number(process.argv[3] || 15);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 2);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS || 30_000);
const WINDOW = Number(process.env.BENCH_WINDOW || 8);
const ROOT = process.env.BENCH_ROOT ? path.resolve(process.env.BENCH_ROOT) : path.join(__dirname, '..');

/** Total instructions in the newest callgrind dump of `pid` in `dir`. */
function lastDumpTotal(dir, pid) {
  const dumps = fs.readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`))
    .sort((a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]));
  const text = fs.readFileSync(path.join(dir, dumps[dumps.length - 1]), 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('summary:') || l.startsWith('totals:'));
  return Number(line.split(/\s+/)[1]);
}

async function main() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('valgrind is not installed (Debian: apt-get install valgrind)');
    process.exit(1);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-instr-'));
  // fork() runs `execPath [execArgv] script`: a wrapper puts callgrind in front of node (the IPC channel is inherited)
  const wrapper = path.join(dir, 'node-under-callgrind.sh');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${dir}/cg.%p --smc-check=all-non-file --dump-instr=no -q "${process.execPath}" "$@"\n`, { mode: 0o755 });
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execPath: wrapper, execArgv: ['--expose-gc'], env: { BENCH_ROOT: ROOT }, name: 'server' });
  const fleet = spawnChild(path.join(__dirname, 'fleet.js'), { execArgv: FLEET_ARGS, name: 'fleet' });
  try {
    const { port } = await server.call('start', { pskFrom: 0, pskCount: N, hsFrom: 1_000_000, hsCount: 1 });
    await fleet.call('register', { host: '127.0.0.1', port, bind: '127.0.0.1', from: 0, count: N, concurrency: 8 });
    await server.call('load', { from: 0, count: N, window: WINDOW, durationMs: WARMUP_MS, warmupMs: 0 });
    for (let r = 0; r < ROUNDS; r++) {
      execFileSync('callgrind_control', ['--dump', String(server.proc.pid)], { stdio: 'ignore' });
      const res = await server.call('load', { from: 0, count: N, window: WINDOW, durationMs: SECONDS * 1000, warmupMs: 0 });
      execFileSync('callgrind_control', ['--dump', String(server.proc.pid)], { stdio: 'ignore' });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const reads = res.rps * SECONDS;
      const perRead = lastDumpTotal(dir, server.proc.pid) / reads;
      console.log(`round ${r + 1}: ${Math.round(reads)} reads (${Math.round(res.rps)}/s under callgrind), ${Math.round(perRead)} instructions per read`);
    }
  } finally {
    server.proc.kill('SIGKILL');
    fleet.proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
