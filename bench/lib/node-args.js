'use strict';
/**
 * Node options of the benchmark's processes, shared by the bench scripts (run.js, reads.js, floor.js, handshakes.js,
 * mem.js, inflight.js, instructions.js) and scripts/demo.js (`npm start`).
 *
 * SERVER_ARGS: the measured server runs with the Node options the README's "Tuning" section recommends for a busy
 * server: `--no-allocation-site-pretenuring --heap-growing-percent=100`. (From run AD of the fifteenth round to run
 * AG of the sixteenth it also had `--max-semi-space-size=4`, shorter scavenges: its latency window collapsed in run AG, see the
 * README; BENCH_SERVER_ARGS measures it again.) With Node's defaults, V8 sets the old
 * generation's next full collection at ~1.1 x what survived the last one (the server promotes little at a steady
 * rate), so every burst of promotion (requests piling up behind any pause, 10,000 sessions' cipher contexts made
 * again after a quiet stretch) brings the next full collection within a second or two, whose pause piles up
 * requests again: runs of 4-21 full collections per 30 s. And in some server processes (2 of 5 in an A/B) V8 decided, on
 * allocation-site feedback, to allocate objects of the request path in the old generation directly (a read then
 * cost ~4 us more and brought a full collection every ~2 s). BENCH_SERVER_ARGS overrides (an empty value: Node's
 * defaults).
 *
 * ALT_SERVER_ARGS: the options of the second server whose latency each full run measures beside the first, at the
 * same rate: Node's defaults when the measured server has options of its own, else a 4 MiB young generation.
 * BENCH_ALT_SERVER_ARGS overrides.
 *
 * FLEET_ARGS: the simulated fleet runs with a small young generation: every garbage collection in a fleet process
 * pauses all its devices at once, and with Node's default size those pauses (mostly releasing the per-record cipher
 * objects) reached ~10 ms and showed up in the server's latency figures. BENCH_FLEET_ARGS overrides.
 */
const split = (v) => v.split(' ').filter(Boolean);
/** The options README "Tuning" recommends for a busy server (`npm start` runs Node-RED with them too). */
const RECOMMENDED = ['--no-allocation-site-pretenuring', '--heap-growing-percent=100'];
const SERVER_ARGS = process.env.BENCH_SERVER_ARGS !== undefined ? split(process.env.BENCH_SERVER_ARGS) : RECOMMENDED;
const ALT_SERVER_ARGS = process.env.BENCH_ALT_SERVER_ARGS !== undefined ? split(process.env.BENCH_ALT_SERVER_ARGS)
  : SERVER_ARGS.length === 0 ? ['--max-semi-space-size=4'] : [];
const FLEET_ARGS = process.env.BENCH_FLEET_ARGS !== undefined ? split(process.env.BENCH_FLEET_ARGS) : ['--max-semi-space-size=2'];

module.exports = { RECOMMENDED, SERVER_ARGS, ALT_SERVER_ARGS, FLEET_ARGS };
