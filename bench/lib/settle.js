'use strict';
/**
 * Memory of an idle server: `mem` right after the fleet registered still holds what the registration burst grew
 * (V8's young generation at its maximum size, old-space pages not yet given back). V8 shrinks those by itself once
 * the process is idle (its memory reducer starts about 8 s after activity stops). This polls the server's `mem`
 * command every 2 s until RSS stops falling (less than 0.5 % between two polls after the reducer's first pass) or
 * `maxMs` runs out, and returns the first and the settled reading with the idle time it took.
 */
async function settledMemory(server, maxMs = 20000) {
  const t0 = Date.now();
  const first = await server.call('mem');
  let prev = first;
  let last = first;
  while (Date.now() - t0 < maxMs) {
    await new Promise((r) => setTimeout(r, 2000));
    last = await server.call('mem');
    const idle = Date.now() - t0;
    if (idle >= 10000 && last.rss >= prev.rss * 0.995) break;
    prev = last;
  }
  return { first, settled: last, idleMs: Date.now() - t0 };
}

module.exports = { settledMemory };
