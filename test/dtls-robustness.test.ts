import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import should from 'should';
import { type DtlsSession, DtlsServer } from '../src/dtls';
import { CidClient } from './support/dtls-cid-client';
import { fuzz } from './support/dtls-fuzz';
import { type Harness, type NodeClient, nodeClient, startHarness, waitFor } from './support/dtls-harness';
import { clientHelloDatagram, hvrCookie } from './support/dtls-raw';
import { type LossyRelay, startLossyRelay } from './support/dtls-relay';

const IDENTITY = 'dev1';
const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const psk = (id: string): Buffer | undefined => (id === IDENTITY ? KEY : undefined);

let harnesses: Harness[] = [];
let clients: NodeClient[] = [];
let cids: CidClient[] = [];
let relays: LossyRelay[] = [];
let sockets: dgram.Socket[] = [];
let servers: DtlsServer[] = [];

afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(cids.map((c) => c.close()));
  await Promise.all(harnesses.map((h) => h.close()));
  await Promise.all(relays.map((r) => r.close()));
  for (const s of sockets) s.close();
  for (const s of servers) s.close();
  harnesses = [];
  clients = [];
  cids = [];
  relays = [];
  sockets = [];
  servers = [];
});

async function harness(opts: Partial<Parameters<typeof startHarness>[0]> = {}): Promise<Harness> {
  const h = await startHarness({ pskLookup: psk, ...opts });
  harnesses.push(h);
  h.server.on('session', (s: DtlsSession) => s.on('data', (d: Buffer) => s.send(d)));
  return h;
}

async function sinkSocket(): Promise<number> {
  const s = dgram.createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
}

async function nodeRoundTrip(c: NodeClient, text: string, ms = 2000): Promise<string> {
  const before = c.messages.length;
  c.socket.send(Buffer.from(text));
  (await waitFor(() => c.messages.length > before, ms)).should.be.true(`no answer to ${text}`);
  return c.messages[c.messages.length - 1].toString();
}

describe('DtlsServer hardening', function () {
  this.timeout(60000);

  it('memory stays flat under a 50k ClientHello flood, with and without valid cookies', () => {
    let lastHvr: Buffer | undefined;
    let sent = 0;
    const server = new DtlsServer({
      send: (d) => { sent++; if (d[13] === 3) lastHvr = d; },
      pskLookup: psk,
      maxHandshakes: 200,
    });
    servers.push(server);
    const flood = (from: number, to: number): void => {
      for (let i = from; i < to; i++) {
        const rinfo = { address: `10.0.${(i >> 8) & 0xff}.${i & 0xff}`, port: 1024 + (i % 50000) };
        const random = Buffer.alloc(32, i & 0xff);
        random.writeUInt32BE(i, 0);
        server.handleDatagram(clientHelloDatagram(0, 0, { random }), rinfo);
        if (i % 10 === 0 && lastHvr) {
          // A peer that answers the HelloVerifyRequest: costs a handshake slot, bounded by maxHandshakes.
          server.handleDatagram(clientHelloDatagram(1, 1, { random, cookie: hvrCookie(lastHvr) }), rinfo);
        }
      }
    };
    flood(0, 5000); // warm-up
    const before = process.memoryUsage();
    flood(5000, 55000);
    const after = process.memoryUsage();
    const growthMb = (after.heapUsed + after.external - before.heapUsed - before.external) / 1e6;
    growthMb.should.be.below(20, `heap+external grew ${growthMb.toFixed(1)} MB`);
    server.pendingHandshakes.should.equal(200);
    server.sessions.size.should.equal(0);
    server.stats.cookiesSent.should.equal(55000);
    server.stats.recordsDropped.should.be.aboveOrEqual(5500 - 200); // cookie-verified hellos over the limit
    sent.should.be.aboveOrEqual(55000);
  });

  it('fuzz: 100k random and mutated datagrams, no exception, live sessions unharmed', async () => {
    const h = await harness();
    const a = nodeClient(h.port, IDENTITY, KEY, 'TLS_PSK_WITH_AES_128_CBC_SHA256');
    const b = nodeClient(h.port, IDENTITY, KEY, 'TLS_PSK_WITH_AES_128_GCM_SHA256');
    clients.push(a, b);
    await Promise.all([a.connected, b.connected]);
    const c = new CidClient({ port: h.port, identity: IDENTITY, key: KEY, clientCid: Buffer.from('0a0b', 'hex') });
    cids.push(c);
    await c.connect();
    for (let i = 0; i < 3; i++) {
      (await nodeRoundTrip(a, `a${i}`)).should.equal(`a${i}`);
      (await nodeRoundTrip(b, `b${i}`)).should.equal(`b${i}`);
      (await c.roundTrip(`c${i}`)).should.equal(`c${i}`);
    }
    const corpus = {
      handshake: h.received.filter((d) => d.data[0] === 22 || d.data[0] === 20).map((d) => d.data),
      app: h.received.filter((d) => d.data[0] === 23 || d.data[0] === 25).map((d) => d.data),
    };
    corpus.handshake.length.should.be.aboveOrEqual(6);
    corpus.app.length.should.be.aboveOrEqual(9);
    const live = [a.localPort, b.localPort, c.localPort].map((port) => ({ address: '127.0.0.1', port }));
    const sessionsBefore = live.map((p) => h.server.getSession(p.address, p.port)!);
    const sink = [await sinkSocket(), await sinkSocket()];
    // Replies to the mutated traffic go to sockets of this test, never to the live clients.
    h.received.length = 0;
    h.sent.length = 0;
    const dropped = h.server.stats.recordsDropped;
    let done = 0;
    // In slices, so that the event loop (sockets, timers) keeps running.
    for (let slice = 0; slice < 10; slice++) {
      const r = fuzz(h.server, corpus, { count: 10_000, seed: 1000 + slice, livePeers: live, sinkPorts: sink });
      r.threw.should.equal(0);
      done += r.datagrams;
      await new Promise((res) => setImmediate(res));
    }
    done.should.equal(100_000);
    // handleDatagram catches internal errors and logs them at 'error': there must be none.
    h.logs.filter((l) => l.startsWith('error')).should.eql([]);
    h.server.stats.recordsDropped.should.be.above(dropped + 50_000);
    const toLive = h.sent.filter((d) => live.some((p) => p.port === d.port));
    toLive.length.should.equal(0);
    live.forEach((p, i) => {
      const s = h.server.getSession(p.address, p.port)!;
      s.should.equal(sessionsBefore[i]);
      s.closed.should.be.false();
    });
    h.server.stats.migrations.should.equal(0);
    (await nodeRoundTrip(a, 'after a')).should.equal('after a');
    (await nodeRoundTrip(b, 'after b')).should.equal('after b');
    (await c.roundTrip('after c')).should.equal('after c');
    h.server.stats.handshakes.should.equal(3);
  });

  it('a datagram of one record with trailing bytes, or of two records: each whole record delivered, the rest dropped', async () => {
    const h = await harness();
    const c = new CidClient({ port: h.port, identity: IDENTITY, key: KEY, offerCid: false });
    cids.push(c);
    await c.connect();
    (await c.roundTrip('first')).should.equal('first');
    const dropped = h.server.stats.recordsDropped;
    const sendRaw = (d: Buffer): void => {
      c.socket.send(d, h.port, '127.0.0.1');
    };
    // a whole record, then five bytes that are not one (shorter than a record header)
    sendRaw(Buffer.concat([c.record(23, Buffer.from('one')), Buffer.from([23, 0xfe, 0xfd, 0, 1])]));
    (await waitFor(() => c.inbox.length >= 2, 2000)).should.be.true('the whole record before the trailing bytes');
    h.server.stats.recordsDropped.should.equal(dropped + 1);
    // two records in one datagram: both delivered, in order
    sendRaw(Buffer.concat([c.record(23, Buffer.from('two')), c.record(23, Buffer.from('three'))]));
    (await waitFor(() => c.inbox.length >= 4, 2000)).should.be.true('both records of one datagram');
    c.inbox.map((b) => b.toString()).should.eql(['first', 'one', 'two', 'three']);
    h.server.stats.recordsDropped.should.equal(dropped + 1);
    // a record whose length runs past the datagram is dropped whole, the session stays up
    const cut = c.record(23, Buffer.from('four'));
    sendRaw(cut.subarray(0, cut.length - 1));
    (await waitFor(() => h.server.stats.recordsDropped === dropped + 2, 2000)).should.be.true('the cut record counted');
    (await c.roundTrip('five')).should.equal('five');
  });
});

describe('DtlsServer through a lossy relay (20% loss both ways)', function () {
  this.timeout(60000);

  it('openssl s_client: handshake (with retransmissions) and 50 echo round trips', async () => {
    const h = await harness({ retransmitInitialMs: 200, retransmitMaxMs: 800 });
    const relay = await startLossyRelay(h.port, 0.2, 42);
    relays.push(relay);
    const proc = spawn('openssl', ['s_client', '-dtls1_2', '-connect', `127.0.0.1:${relay.port}`, '-psk', KEY.toString('hex'),
      '-psk_identity', IDENTITY, '-cipher', 'PSK-AES128-CCM8', '-quiet']);
    let out = '';
    proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    proc.stderr.on('data', () => undefined);
    proc.stdin.on('error', () => undefined);
    const exited = new Promise((r) => proc.once('exit', r));
    try {
      (await waitFor(() => h.server.sessions.size === 1, 30000)).should.be.true('no handshake through the relay');
      // Application data is not retransmitted by DTLS: like CoAP, the application repeats a request until answered.
      for (let i = 0; i < 50; i++) {
        const line = `echo-${i}\n`;
        let answered = false;
        for (let attempt = 0; attempt < 20 && !answered; attempt++) {
          proc.stdin.write(line);
          answered = await waitFor(() => out.includes(line), 150);
        }
        answered.should.be.true(`round trip ${i} never completed`);
      }
      (relay.stats.upDropped + relay.stats.downDropped).should.be.above(0);
      h.server.stats.handshakes.should.equal(1);
    } finally {
      proc.kill('SIGKILL');
      await exited;
    }
  });

  it('node-dtls-client (no retransmission of its own): reconnects until a handshake succeeds, then 50 round trips', async () => {
    const h = await harness({ retransmitInitialMs: 200, retransmitMaxMs: 800 });
    const relay = await startLossyRelay(h.port, 0.2, 7);
    relays.push(relay);
    let c: NodeClient | undefined;
    for (let attempt = 0; attempt < 15 && !c; attempt++) {
      const candidate = nodeClient(relay.port, IDENTITY, KEY, 'TLS_PSK_WITH_AES_128_CCM_8');
      clients.push(candidate);
      try {
        await candidate.connected;
        c = candidate;
      } catch {
        await candidate.close();
      }
    }
    should(c).not.be.undefined();
    for (let i = 0; i < 50; i++) {
      const text = `n${i}`;
      let answered = false;
      for (let attempt = 0; attempt < 20 && !answered; attempt++) {
        const before = c!.messages.length;
        c!.socket.send(Buffer.from(text));
        answered = await waitFor(() => c!.messages.slice(before).some((m) => m.toString() === text), 150);
      }
      answered.should.be.true(`round trip ${i} never completed`);
    }
  });
});
