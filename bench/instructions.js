'use strict';
/**
 * `node bench/instructions.js [devices] [seconds]`: CPU instructions per pooled read, counted by valgrind's callgrind
 * in the server process (its user-space instructions: JavaScript, V8, Node, OpenSSL, libuv; not the kernel's), with
 * the fleet running natively in its own process. Unlike reads/s and µs per read, the count barely moves with what
 * else the machine is doing, so small changes can be compared (BENCH_ROOT: another built copy, for an A/B). The server
 * runs ~30 × slower under callgrind, so it is the bottleneck and the fleet stays idle most of the time; a 30 s warm-up
 * (BENCH_WARMUP_MS) lets V8 optimise the read path first. Prints one line per measuring window (BENCH_ROUNDS, default
 * 2): reads, reads/s under callgrind, instructions per read (the load generator's own share, inside the server
 * process, included: the same in both arms of an A/B), and after the last round where the main thread's go among
 * Node's native parts of a read (callgrind_annotate). BENCH_KEEP=1 keeps the callgrind dumps (their folder is printed)
 * for `callgrind_annotate`. Needs valgrind (Debian: valgrind).
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
/**
 * BENCH_CACHE_SIM=1: callgrind also simulates the caches (first level and last level, sized as this CPU's) and the
 * rounds print data cache misses per read too; after the last round, the functions with the most last-level misses
 * (JavaScript functions named from the server's `--perf-basic-prof` map). About twice as slow again.
 */
const CACHE_SIM = process.env.BENCH_CACHE_SIM === '1';
/**
 * The caches simulated (size, ways, line), as this machine's AMD EPYC cores have them: 48 KiB first-level data cache
 * and, as the "last level", the 1 MiB second-level cache of a core (the third level, shared, is left out: in a virtual
 * machine how much of it the process gets is unknown). BENCH_CACHES replaces these valgrind options.
 */
const SIM_CACHES = process.env.BENCH_CACHES || '--D1=49152,12,64 --LL=1048576,8,64';
/** BENCH_FUNCTIONS=1: after the last round, the functions of the main thread with the most instructions (self). */
const FUNCTIONS = process.env.BENCH_FUNCTIONS === '1';
/** JavaScript functions get names from the server's perf map only when asked for (the map grows all the time). */
const PERF_MAP = CACHE_SIM || FUNCTIONS;

/** The files of the newest callgrind dump of `pid` in `dir` (one per thread: --separate-threads, the main one `-01`). */
function lastDump(dir, pid) {
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`));
  const part = (f) => Number(f.split('.')[2].split('-')[0]);
  const last = Math.max(...files.map(part));
  return files.filter((f) => part(f) === last).map((f) => path.join(dir, f));
}

/**
 * Instructions in the newest dump: `main`, the main thread's (JavaScript, and the garbage collector's work on it),
 * and `all`, every thread's (V8's helper threads too, which mark and sweep concurrently: the noisier part).
 */
function lastDumpTotals(dir, pid) {
  let main = 0;
  let all = 0;
  /** with BENCH_CACHE_SIM, the main thread's data reads and writes that missed the first level (D1) and the last (LL) */
  const misses = { d1: 0, ll: 0 };
  for (const f of lastDump(dir, pid)) {
    const lines = fs.readFileSync(f, 'utf8').split('\n');
    const events = (lines.find((l) => l.startsWith('events:')) || 'events: Ir').split(/\s+/).slice(1);
    const totals = lines.find((l) => l.startsWith('summary:') || l.startsWith('totals:')).split(/\s+/).slice(1).map(Number);
    const ev = (name) => totals[events.indexOf(name)] || 0;
    all += ev('Ir');
    if (f.endsWith('-01')) {
      main = ev('Ir');
      misses.d1 = ev('D1mr') + ev('D1mw');
      misses.ll = ev('DLmr') + ev('DLmw');
    }
  }
  return { main, all, misses };
}

/**
 * The JavaScript functions of the server's perf map (`--perf-basic-prof`: start, size and name of each piece of
 * generated code), sorted by start, to name the addresses callgrind shows as `???:0x…`.
 */
function perfMap(pid) {
  const file = `/tmp/perf-${pid}.map`;
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [start, size, ...name] = l.split(' ');
    return { start: parseInt(start, 16), end: parseInt(start, 16) + parseInt(size, 16), name: name.join(' ') };
  }).sort((a, b) => a.start - b.start);
}

/** The name of the code at `addr` in a sorted perf map (binary search), or undefined. */
function nameAt(map, addr) {
  let lo = 0;
  let hi = map.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (map[mid].end <= addr) lo = mid + 1;
    else if (map[mid].start > addr) hi = mid - 1;
    else return map[mid].name;
  }
  return undefined;
}

/**
 * The main thread's self counts of `events` (callgrind event names) by function in the newest dump, per read, the
 * `top` of them by the first event, JavaScript functions named from the server's perf map (code V8 generated for the
 * same function more than once is added up). Versions of one function V8 made at different tiers count apart.
 */
function byFunction(dir, pid, reads, events, title, top = 30) {
  const main = lastDump(dir, pid).find((f) => f.endsWith('-01'));
  const text = execFileSync('callgrind_annotate', ['--inclusive=no', '--threshold=100', `--show=${events.join(',')}`,
    `--sort=${events[0]}`, main], { maxBuffer: 256 << 20 }).toString();
  const map = perfMap(pid);
  const field = String.raw`(\.|[\d,]+)(?:\s+\([^)]*\))?\s+`;
  const row = new RegExp(`^\\s*${field.repeat(events.length)}(\\S.*)$`);
  const byName = new Map();
  for (const l of text.split('\n')) {
    const m = l.match(row);
    if (!m || l.includes('(100.0%)')) continue; // the totals, and main() and its callers
    const counts = m.slice(1, 1 + events.length).map((x) => (x === '.' ? 0 : Number(x.replace(/,/g, ''))));
    let fn = m[1 + events.length].replace(/\s*\[[^\]]*\]$/, '');
    const at = fn.match(/^\?\?\?:0x([0-9a-f]+)/);
    if (at) fn = nameAt(map, parseInt(at[1], 16)) || fn;
    const sum = byName.get(fn) || events.map(() => 0);
    counts.forEach((c, i) => { sum[i] += c; });
    byName.set(fn, sum);
  }
  console.log(title);
  for (const [fn, sum] of [...byName].sort((a, b) => b[1][0] - a[1][0]).slice(0, top)) {
    const cols = sum.map((c) => (c / reads).toFixed(c / reads < 100 ? 2 : 0).padStart(8)).join(' ');
    console.log(`  ${cols}  ${fn.replace(ROOT, '.').slice(0, 100)}`);
  }
}

/**
 * Where the main thread's instructions go, inclusive, per read: Node's native parts that every read goes through
 * (the C++ behind a JavaScript call, found by their symbols in the dump of the last round), via callgrind_annotate.
 */
const PARTS = [
  ['node::crypto::CipherBase::Update(v8::FunctionCallbackInfo', 'Cipher.update calls (the C++ behind them, AES included)'],
  ['EVP_CipherUpdate', '  of which OpenSSL AES itself'],
  ['v8::ArrayBuffer::NewBackingStore(v8::Isolate*, unsigned long)', '  of which the output buffer\'s memory'],
  ['node::AddressToJS', 'sender address object of each received datagram'],
  ['node::UDPWrap::OnAlloc', 'receive buffer of each datagram'],
  ['node::UDPWrap::DoSend', 'dgram send (user space; the kernel is not counted)'],
  ['v8::internal::Heap::CollectGarbage', 'garbage collection on the main thread'],
  ['node::InternalCallbackScope::Close', 'JavaScript run after each I/O callback (promise jobs)'],
  ['node::UDPWrap::OnRecv(uv_udp_s*', 'everything a received datagram sets off (JavaScript included)'],
];

function breakdown(dir, pid, reads) {
  const main = lastDump(dir, pid).find((f) => f.endsWith('-01'));
  const text = execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', main], { maxBuffer: 256 << 20 }).toString();
  const lines = text.split('\n');
  for (const [symbol, what] of PARTS) {
    const line = lines.find((l) => l.includes(symbol));
    const n = line ? Number(line.trim().split(/\s+/)[0].replace(/,/g, '')) : NaN;
    console.log(`  ${String(Number.isFinite(n) ? Math.round(n / reads) : '-').padStart(7)}  ${what}`);
  }
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
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${dir}/cg.%p --smc-check=all-non-file --dump-instr=no --separate-threads=yes${CACHE_SIM ? ` --cache-sim=yes ${SIM_CACHES}` : ''} -q "${process.execPath}" "$@"\n`, { mode: 0o755 });
  const server = spawnChild(path.join(__dirname, 'server-proc.js'), { execPath: wrapper, execArgv: PERF_MAP ? ['--expose-gc', '--perf-basic-prof'] : ['--expose-gc'], env: { BENCH_ROOT: ROOT }, name: 'server' });
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
      const t = lastDumpTotals(dir, server.proc.pid);
      console.log(`round ${r + 1}: ${Math.round(reads)} reads (${Math.round(res.rps)}/s under callgrind), ${Math.round(t.all / reads)} instructions per read (main thread ${Math.round(t.main / reads)})`
        + (CACHE_SIM ? `, main thread data cache misses per read: ${(t.misses.d1 / reads).toFixed(1)} first level, ${(t.misses.ll / reads).toFixed(1)} last level` : ''));
      if (r === ROUNDS - 1) {
        console.log('main thread, instructions per read, inclusive (last round):');
        breakdown(dir, server.proc.pid, reads);
        if (FUNCTIONS) byFunction(dir, server.proc.pid, reads, ['Ir'], 'main thread, instructions per read by function (self, last round):');
        if (CACHE_SIM) {
          byFunction(dir, server.proc.pid, reads, ['DLmr', 'DLmw', 'D1mr', 'D1mw'],
            'main thread, data cache misses per read by function (self, last round): last level read / write, first level read / write', 25);
        }
      }
    }
  } finally {
    server.proc.kill('SIGKILL');
    fleet.proc.kill('SIGKILL');
    if (PERF_MAP && process.env.BENCH_KEEP !== '1') fs.rmSync(`/tmp/perf-${server.proc.pid}.map`, { force: true });
    if (process.env.BENCH_KEEP === '1') console.log(`callgrind dumps kept in ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
