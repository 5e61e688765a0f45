'use strict';
/**
 * Node options of the benchmark's processes, shared by run.js, reads.js, handshakes.js and mem.js.
 *
 * SERVER_ARGS: the measured server runs with Node's default options, as the README's "Tuning" section recommends.
 * A small young generation (`--max-semi-space-size=4`) makes each scavenge pause a quarter as long, but when requests
 * pile up behind a stall they outlive their scavenges and the server can fall behind for good: at half the maximum
 * rate that happened in 8 of 14 full runs with 4 MiB, in none with Node's defaults. BENCH_SERVER_ARGS overrides (an
 * empty value: Node's defaults).
 *
 * ALT_SERVER_ARGS: the options of the second server whose latency each full run measures beside the first, at the
 * same rate: 4 MiB when the measured server has Node's defaults, else Node's defaults. BENCH_ALT_SERVER_ARGS overrides.
 *
 * FLEET_ARGS: the simulated fleet runs with a small young generation: every garbage collection in a fleet process
 * pauses all its devices at once, and with Node's default size those pauses (mostly releasing the per-record cipher
 * objects) reached ~10 ms and showed up in the server's latency figures. BENCH_FLEET_ARGS overrides.
 */
const split = (v) => v.split(' ').filter(Boolean);
const SERVER_ARGS = process.env.BENCH_SERVER_ARGS !== undefined ? split(process.env.BENCH_SERVER_ARGS) : [];
const ALT_SERVER_ARGS = process.env.BENCH_ALT_SERVER_ARGS !== undefined ? split(process.env.BENCH_ALT_SERVER_ARGS)
  : SERVER_ARGS.length === 0 ? ['--max-semi-space-size=4'] : [];
const FLEET_ARGS = process.env.BENCH_FLEET_ARGS !== undefined ? split(process.env.BENCH_FLEET_ARGS) : ['--max-semi-space-size=2'];

module.exports = { SERVER_ARGS, ALT_SERVER_ARGS, FLEET_ARGS };
