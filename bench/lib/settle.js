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

/**
 * Memory of a fleet that has been registered for a while: the CoAP layer keeps each request's duplicate-detection
 * entry (here: every device's Register and its 2.01) for EXCHANGE_LIFETIME (247 s, RFC 7252 §4.5) and then drops
 * the channel's state. Waits until the server holds no CoAP channel state any more (at most `maxWaitMs`), then
 * settles as above. Returns the settled reading, whether the CoAP state was gone, and the total idle time.
 */
async function steadyMemory(server, maxWaitMs = 330000) {
  const t0 = Date.now();
  let channels = (await server.call('coapChannels')).count;
  while (channels > 0 && Date.now() - t0 < maxWaitMs) {
    await new Promise((r) => setTimeout(r, 5000));
    channels = (await server.call('coapChannels')).count;
  }
  const { settled } = await settledMemory(server);
  return { settled, coapChannels: channels, idleMs: Date.now() - t0 };
}

module.exports = { settledMemory, steadyMemory };
