/**
 * DTLS fuzzing run: `npm run fuzz [-- --count 1000000 --seconds 300 --seed 1]`.
 * Starts a DtlsServer on 127.0.0.1 with live sessions (node-dtls-client CBC and GCM, and a connection-ID client),
 * captures their real datagrams, feeds random and mutated datagrams, then checks that nothing threw, that the live
 * sessions are the same objects, still open and still answering. Exit code 1 on any failure.
 */
import { CidClient } from '../test/support/dtls-cid-client';
import { fuzz } from '../test/support/dtls-fuzz';
import { nodeClient, startHarness, waitFor } from '../test/support/dtls-harness';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

async function main(): Promise<void> {
  const count = arg('count', 1_000_000);
  const seconds = arg('seconds', 300);
  const seed = arg('seed', 1);
  const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const h = await startHarness({ pskLookup: (id) => (id === 'dev1' ? key : undefined) });
  h.server.on('session', (s) => s.on('data', (d: Buffer) => s.send(d)));
  const a = nodeClient(h.port, 'dev1', key, 'TLS_PSK_WITH_AES_128_CBC_SHA256');
  const b = nodeClient(h.port, 'dev1', key, 'TLS_PSK_WITH_AES_128_GCM_SHA256');
  const c = new CidClient({ port: h.port, identity: 'dev1', key, clientCid: Buffer.from('0a0b', 'hex') });
  let failed = false;
  try {
    await Promise.all([a.connected, b.connected, c.connect()]);
    const echo = async (n: typeof a, text: string): Promise<boolean> => {
      const before = n.messages.length;
      n.socket.send(Buffer.from(text));
      return waitFor(() => n.messages.length > before, 2000);
    };
    for (let i = 0; i < 3; i++) {
      await echo(a, `a${i}`);
      await echo(b, `b${i}`);
      await c.roundTrip(`c${i}`);
    }
    const corpus = {
      handshake: h.received.filter((d) => d.data[0] === 22 || d.data[0] === 20).map((d) => d.data),
      app: h.received.filter((d) => d.data[0] === 23 || d.data[0] === 25).map((d) => d.data),
    };
    const live = [a.localPort, b.localPort, c.localPort].map((port) => ({ address: '127.0.0.1', port }));
    const before = live.map((p) => h.server.getSession(p.address, p.port));
    h.received.length = 0;
    h.sent.length = 0;
    // The server's answers to the fuzzed datagrams go to ports nobody listens on; only the count is kept.
    h.dropOutgoing = () => true;
    const deadline = Date.now() + seconds * 1000;
    const start = Date.now();
    let done = 0;
    let threw = 0;
    const slice = 50_000;
    while (done < count && Date.now() < deadline) {
      const r = fuzz(h.server, corpus, {
        count: Math.min(slice, count - done), seed: seed * 1_000_003 + done, livePeers: live, sinkPorts: [9, 19, 29],
        deadline,
      });
      done += r.datagrams;
      // handleDatagram catches internal errors and logs them at 'error': count those as exceptions too.
      threw += r.threw + h.logs.filter((l) => l.startsWith('error')).length;
      h.logs.length = 0;
      h.sent.length = 0;
      const rate = Math.round(done / ((Date.now() - start) / 1000));
      process.stdout.write(`\rfuzz: ${done.toLocaleString('en')} / ${count.toLocaleString('en')} datagrams, ` +
        `${rate.toLocaleString('en')}/s, exceptions ${threw}, dropped ${h.server.stats.recordsDropped.toLocaleString('en')}`);
      await new Promise((res) => setImmediate(res));
    }
    process.stdout.write('\n');
    h.dropOutgoing = undefined;
    const intact = live.every((p, i) => {
      const s = h.server.getSession(p.address, p.port);
      return s !== undefined && s === before[i] && !s.closed;
    });
    const answering = (await echo(a, 'after')) && (await echo(b, 'after')) && (await c.roundTrip('after')) === 'after';
    const s = h.server.stats;
    console.log(`summary: ${done} datagrams in ${((Date.now() - start) / 1000).toFixed(1)} s, seed ${seed}; ` +
      `exceptions ${threw}; records dropped ${s.recordsDropped}; HelloVerifyRequests ${s.cookiesSent}; ` +
      `handshakes ${s.handshakes} (3 expected), failed ${s.handshakesFailed}; sessions intact: ${intact}; ` +
      `sessions answering: ${answering}`);
    failed = threw > 0 || !intact || !answering || s.handshakes !== 3 || done < Math.min(count, 100_000);
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}`);
    failed = true;
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
    await h.close();
  }
  process.exitCode = failed ? 1 : 0;
}

void main();
