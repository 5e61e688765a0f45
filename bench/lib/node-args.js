'use strict';
/**
 * Node options of the benchmark's processes, shared by run.js, reads.js, handshakes.js and mem.js.
 *
 * SERVER_ARGS: the measured server runs as the README's "Tuning" section recommends for a latency-sensitive
 * deployment, with a 4 MiB young generation (`--max-semi-space-size=4`, also accepted in NODE_OPTIONS). With Node's
 * default (up to 16 MiB) a scavenge comes every ~2,500 reads and pauses for 1-3 ms, most of it freeing that many
 * reads' ArrayBuffers (each received datagram and each AES output has one); at 4 MiB the pauses are a quarter as
 * long, four times as frequent, and the CPU per read is the same within the noise. BENCH_SERVER_ARGS overrides
 * (an empty value: Node's defaults).
 *
 * FLEET_ARGS: the simulated fleet runs with a small young generation: every garbage collection in a fleet process
 * pauses all its devices at once, and with Node's default size those pauses (mostly releasing the per-record cipher
 * objects) reached ~10 ms and showed up in the server's latency figures. BENCH_FLEET_ARGS overrides.
 */
const split = (v) => v.split(' ').filter(Boolean);
const SERVER_ARGS = process.env.BENCH_SERVER_ARGS !== undefined ? split(process.env.BENCH_SERVER_ARGS) : ['--max-semi-space-size=4'];
const FLEET_ARGS = process.env.BENCH_FLEET_ARGS !== undefined ? split(process.env.BENCH_FLEET_ARGS) : ['--max-semi-space-size=2'];

module.exports = { SERVER_ARGS, FLEET_ARGS };
