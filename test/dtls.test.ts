import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import should from 'should';
import { DtlsServer, type DtlsSession, type HandshakeFailedInfo } from '../src/dtls';
import {
  delay, type Harness, type NodeClient, nodeClient, type NodeSuite, sClient, type SClient, startHarness, waitFor,
} from './support/dtls-harness';
import { clientHelloDatagram, hvrCookie, record, splitRecords } from './support/dtls-raw';

const IDENTITY = 'dev1';
const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const WRONG_KEY = Buffer.from('ffeeddccbbaa99887766554433221100', 'hex');
const psk = (id: string): Buffer | undefined => (id === IDENTITY ? KEY : undefined);

const SUITES: Array<{ node: NodeSuite; openssl: string }> = [
  { node: 'TLS_PSK_WITH_AES_128_CCM_8', openssl: 'PSK-AES128-CCM8' },
  { node: 'TLS_PSK_WITH_AES_128_CBC_SHA256', openssl: 'PSK-AES128-CBC-SHA256' },
  { node: 'TLS_PSK_WITH_AES_128_CCM', openssl: 'PSK-AES128-CCM' },
  { node: 'TLS_PSK_WITH_AES_128_GCM_SHA256', openssl: 'PSK-AES128-GCM-SHA256' },
];

/** Resources to release after each test, whatever happened. */
let harnesses: Harness[] = [];
let clients: NodeClient[] = [];
let sclients: SClient[] = [];
let sockets: dgram.Socket[] = [];

async function harness(opts: Parameters<typeof startHarness>[0] = { pskLookup: psk }): Promise<Harness> {
  const h = await startHarness(opts);
  harnesses.push(h);
  // Application echo, as a CoAP layer would answer.
  h.server.on('session', (s: DtlsSession) => s.on('data', (d: Buffer) => s.send(d)));
  return h;
}

function client(h: Harness, suite: NodeSuite, key = KEY, identity = IDENTITY, listenPort?: number): NodeClient {
  const c = nodeClient(h.port, identity, key, suite, listenPort);
  clients.push(c);
  return c;
}

function openssl(h: Harness, cipher: string, keyHex = KEY.toString('hex'), identity = IDENTITY, extra: string[] = []): SClient {
  const s = sClient(h.port, identity, keyHex, cipher, extra);
  sclients.push(s);
  return s;
}

async function rawSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  return s;
}

function nextMessage(c: NodeClient, timeoutMs = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { c.socket.off('message', on); reject(new Error('no message')); }, timeoutMs);
    const on = (m: Buffer) => { clearTimeout(t); c.socket.off('message', on); resolve(Buffer.from(m)); };
    c.socket.on('message', on);
  });
}

async function roundTrip(c: NodeClient, text: string): Promise<string> {
  const p = nextMessage(c);
  c.socket.send(Buffer.from(text));
  return (await p).toString();
}

function failures(h: Harness): HandshakeFailedInfo[] {
  const out: HandshakeFailedInfo[] = [];
  h.server.on('handshakeFailed', (i: HandshakeFailedInfo) => out.push(i));
  return out;
}

afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sclients.map((s) => s.stop()));
  await Promise.all(harnesses.map((h) => h.close()));
  for (const s of sockets) s.close();
  clients = [];
  sclients = [];
  harnesses = [];
  sockets = [];
});

describe('DtlsServer with node-dtls-client', () => {
  for (const { node: suite } of SUITES) {
    it(`${suite}: handshake, echo both ways, one session for 100 messages`, async () => {
      const h = await harness();
      const sessions: DtlsSession[] = [];
      h.server.on('session', (s: DtlsSession) => sessions.push(s));
      const c = client(h, suite);
      await c.connected;
      (await roundTrip(c, 'hello')).should.equal('hello');
      sessions.length.should.equal(1);
      const s = sessions[0];
      s.identity.should.equal(IDENTITY);
      s.cipherSuite.should.equal(suite);
      s.port.should.equal(c.localPort);
      s.address.should.equal('127.0.0.1');
      h.server.getSession('127.0.0.1', c.localPort)!.should.equal(s);
      h.server.sessions.size.should.equal(1);
      for (let i = 0; i < 100; i++) (await roundTrip(c, `msg ${i}`)).should.equal(`msg ${i}`);
      // Server-initiated data reaches the client too.
      const p = nextMessage(c);
      s.send(Buffer.from('from server'));
      (await p).toString().should.equal('from server');
      h.server.stats.handshakes.should.equal(1);
      h.server.stats.handshakesFailed.should.equal(0);
      h.server.stats.cookiesSent.should.equal(1);
      sessions.length.should.equal(1);
      s.bytesIn.should.equal(Buffer.byteLength('hello') + [...Array(100).keys()].reduce((n, i) => n + `msg ${i}`.length, 0));
      s.bytesOut.should.equal(s.bytesIn + 'from server'.length);
      h.server.pendingHandshakes.should.equal(0);
      // The first ClientHello was answered statelessly with a HelloVerifyRequest carrying 0xfeff.
      const hvr = h.sent[0].data;
      hvr[0].should.equal(22);
      hvr[13].should.equal(3);
      hvr.readUInt16BE(25).should.equal(0xfeff);
    });
  }

  it('a peer close_notify closes the session', async () => {
    const h = await harness();
    const closed: string[] = [];
    h.server.on('session', (s: DtlsSession) => s.on('close', (r: string) => closed.push(r)));
    const c = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    await c.connected;
    await c.close();
    (await waitFor(() => closed.length === 1)).should.be.true();
    closed[0].should.equal('close_notify');
    h.server.sessions.size.should.equal(0);
  });

  it('releases a quiet session\'s cipher contexts after cipherContextIdleMs, keeps them by default, makes them again on use', async () => {
    const quick = await harness({ pskLookup: psk, cipherContextIdleMs: 300 });
    const usual = await harness();
    const a = client(quick, 'TLS_PSK_WITH_AES_128_CCM_8');
    const b = client(usual, 'TLS_PSK_WITH_AES_128_CCM_8');
    await Promise.all([a.connected, b.connected]);
    for (let i = 0; i < 4; i++) {
      (await roundTrip(a, `a${i}`)).should.equal(`a${i}`);
      (await roundTrip(b, `b${i}`)).should.equal(`b${i}`);
    }
    // busy beyond the handshake: a context each way
    quick.server.cipherContextCount.should.equal(2);
    usual.server.cipherContextCount.should.equal(2);
    // one to two 300 ms periods without records
    (await waitFor(() => quick.server.cipherContextCount === 0, 3000)).should.be.true();
    // the default period (a minute) has not passed: still held
    usual.server.cipherContextCount.should.equal(2);
    // records still flow, on contexts made again
    for (let i = 0; i < 3; i++) (await roundTrip(a, `again${i}`)).should.equal(`again${i}`);
    quick.server.cipherContextCount.should.equal(2);
    // a period that would sweep without pause (or never) is refused
    for (const bad of [0, -1, Number.NaN, Infinity, 3e9]) {
      (() => new DtlsServer({ pskLookup: psk, send: () => undefined, cipherContextIdleMs: bad })).should.throw(/cipherContextIdleMs/);
    }
  });

  it('wrong key: no session, handshakeFailed with bad_record_mac or decrypt_error', async () => {
    for (const { node: suite } of SUITES) {
      const h = await harness();
      const failed = failures(h);
      let sessions = 0;
      h.server.on('session', () => sessions++);
      const c = client(h, suite, WRONG_KEY);
      await c.connected.should.be.rejected();
      (await waitFor(() => failed.length === 1)).should.be.true();
      ['bad_record_mac', 'decrypt_error'].should.containEql(failed[0].alert);
      failed[0].identity!.should.equal(IDENTITY);
      failed[0].port.should.equal(c.localPort);
      sessions.should.equal(0);
      h.server.stats.handshakesFailed.should.equal(1);
      h.server.stats.alertsSent.should.equal(1);
      h.server.pendingHandshakes.should.equal(0);
      // The key never appears in the logs.
      h.logs.join('\n').should.not.containEql(KEY.toString('hex'));
      h.logs.join('\n').should.not.containEql(WRONG_KEY.toString('hex'));
    }
  });

  it('unknown identity: unknown_psk_identity', async () => {
    const h = await harness();
    const failed = failures(h);
    const c = client(h, 'TLS_PSK_WITH_AES_128_CCM_8', KEY, 'stranger');
    const err = await c.connected.then(() => undefined, (e: Error) => e);
    should(err).be.an.Error();
    err!.message.should.match(/unknown_psk_identity/);
    (await waitFor(() => failed.length === 1)).should.be.true();
    failed[0].alert.should.equal('unknown_psk_identity');
    failed[0].identity!.should.equal('stranger');
    h.server.stats.handshakesFailed.should.equal(1);
  });

  it('no common cipher suite: handshake_failure', async () => {
    const h = await harness({ pskLookup: psk, cipherSuites: ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_CBC_SHA256'] });
    const failed = failures(h);
    const c = client(h, 'TLS_PSK_WITH_AES_128_GCM_SHA256');
    const err = await c.connected.then(() => undefined, (e: Error) => e);
    err!.message.should.match(/handshake_failure/);
    failed.length.should.equal(1);
    failed[0].alert.should.equal('handshake_failure');
    h.server.pendingHandshakes.should.equal(0);
  });

  it('honours the configured suite order and restriction', async () => {
    const h = await harness({ pskLookup: psk, cipherSuites: ['TLS_PSK_WITH_AES_128_CBC_SHA256'] });
    const failed = failures(h);
    const c = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    await c.connected.should.be.rejected();
    failed[0].alert.should.equal('handshake_failure');
    const c2 = client(h, 'TLS_PSK_WITH_AES_128_CBC_SHA256');
    await c2.connected;
    h.server.getSession('127.0.0.1', c2.localPort)!.cipherSuite.should.equal('TLS_PSK_WITH_AES_128_CBC_SHA256');
  });

  it('reassembles fragmented, duplicated and reordered handshake messages of a real client', async () => {
    const h = await harness();
    const queue: Array<{ data: Buffer; port: number; address: string }> = [];
    h.holdIncoming = (d) => {
      queue.push(d);
      return true;
    };
    const c = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    const next = async () => {
      (await waitFor(() => queue.length > 0)).should.be.true();
      return queue.shift()!;
    };
    /** Splits a whole handshake message (12-byte header + body) into fragments of `size` bytes. */
    const fragment = (msg: Buffer, size: number): Buffer[] => {
      const body = msg.subarray(12);
      const out: Buffer[] = [];
      for (let off = 0; off < body.length; off += size) {
        const part = body.subarray(off, off + size);
        const hdr = Buffer.from(msg.subarray(0, 12));
        hdr.writeUIntBE(off, 6, 3);
        hdr.writeUIntBE(part.length, 9, 3);
        out.push(Buffer.concat([hdr, part]));
      }
      return out;
    };
    let seq = 100;
    const rec0 = (type: number, body: Buffer) => record(type, 0, seq++, body);
    // 1. First ClientHello as is: answered by a HelloVerifyRequest echoing its record sequence number.
    const ch1 = await next();
    h.server.handleDatagram(ch1.data, ch1);
    splitRecords(h.sent[0].data)[0].seq.should.equal(splitRecords(ch1.data)[0].seq);
    // 2. ClientHello with cookie, cut into fragments spread over several records of one datagram, out of order.
    const ch2 = await next();
    const ch2Frags = fragment(splitRecords(ch2.data)[0].body, 16);
    ch2Frags.length.should.be.aboveOrEqual(3);
    const shuffled = [ch2Frags[2], ...ch2Frags.slice(3), ch2Frags[0], ch2Frags[1], ch2Frags[0]];
    h.server.handleDatagram(Buffer.concat(shuffled.map((f) => rec0(22, f))), ch2);
    h.server.pendingHandshakes.should.equal(1);
    // 3. Final flight: ClientKeyExchange, ChangeCipherSpec, Finished.
    const fin = await next();
    const recs = splitRecords(fin.data);
    recs.map((r) => `${r.type}/${r.epoch}`).should.eql(['22/0', '20/0', '22/1']);
    const finishedRecord = fin.data.subarray(fin.data.length - (13 + recs[2].body.length));
    const ckeFrags = fragment(recs[0].body, 2);
    ckeFrags.length.should.be.aboveOrEqual(3);
    // The encrypted Finished arrives first and must wait for the ChangeCipherSpec.
    h.server.handleDatagram(Buffer.from(finishedRecord), fin);
    // The ClientKeyExchange fragments arrive backwards, one per datagram, with a duplicate.
    for (const f of [...ckeFrags].reverse()) h.server.handleDatagram(rec0(22, f), fin);
    h.server.handleDatagram(rec0(22, ckeFrags[0]), fin);
    h.server.sessions.size.should.equal(0);
    h.server.handleDatagram(rec0(20, Buffer.from([1])), fin);
    h.holdIncoming = undefined;
    await c.connected;
    h.server.sessions.size.should.equal(1);
    (await roundTrip(c, 'reassembled')).should.equal('reassembled');
    h.server.stats.handshakes.should.equal(1);
    h.server.stats.handshakesFailed.should.equal(0);
  });

  it('accepts a cookie made before one secret rotation, not two', async () => {
    const h = await harness();
    const raw = await rawSocket();
    const replies: Buffer[] = [];
    raw.on('message', (m) => replies.push(m));
    const random = Buffer.alloc(32, 9);
    raw.send(clientHelloDatagram(0, 0, { random }), h.port, '127.0.0.1');
    (await waitFor(() => replies.length === 1)).should.be.true();
    const cookie = hvrCookie(replies[0])!;
    h.server.rotateCookieSecret();
    h.server.rotateCookieSecret();
    raw.send(clientHelloDatagram(1, 1, { random, cookie }), h.port, '127.0.0.1');
    (await waitFor(() => replies.length === 2)).should.be.true();
    should(hvrCookie(replies[1])).not.be.undefined(); // stale cookie: a new HelloVerifyRequest
    h.server.pendingHandshakes.should.equal(0);
    const fresh = hvrCookie(replies[1])!;
    h.server.rotateCookieSecret();
    raw.send(clientHelloDatagram(2, 1, { random, cookie: fresh }), h.port, '127.0.0.1');
    (await waitFor(() => replies.length === 3)).should.be.true();
    splitRecords(replies[2]).map((r) => r.body[0]).should.eql([2, 14]); // ServerHello, ServerHelloDone
    h.server.pendingHandshakes.should.equal(1);
    h.server.stats.cookiesSent.should.equal(2);
  });

  it('a rebooted client (same local port) replaces the old session only when the new handshake completes', async () => {
    const h = await harness();
    const events: string[] = [];
    const sessions: DtlsSession[] = [];
    h.server.on('session', (s: DtlsSession) => {
      sessions.push(s);
      events.push(`session ${sessions.length}`);
      const n = sessions.length;
      s.on('close', (r: string) => events.push(`close ${n} ${r}`));
    });
    const old = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    await old.connected;
    (await roundTrip(old, 'before')).should.equal('before');
    const port = old.localPort;
    // Hold back one application datagram of the old session; it is delivered during the new handshake.
    let held: { data: Buffer; port: number; address: string } | undefined;
    h.holdIncoming = (d) => {
      if (!held && d.data[0] === 23) {
        held = d;
        return true;
      }
      return false;
    };
    old.socket.send(Buffer.from('late'));
    (await waitFor(() => held !== undefined)).should.be.true();
    await old.kill(); // power loss: no close_notify
    // The new client's final flight (ClientKeyExchange ...) is held too, so the handshake stays in progress.
    let finalFlight: { data: Buffer; port: number; address: string } | undefined;
    h.holdIncoming = (d) => {
      if (!finalFlight && d.data[0] === 22 && d.data[13] === 16) {
        finalFlight = d;
        return true;
      }
      return false;
    };
    const fresh = client(h, 'TLS_PSK_WITH_AES_128_CBC_SHA256', KEY, IDENTITY, port);
    (await waitFor(() => finalFlight !== undefined)).should.be.true();
    h.server.pendingHandshakes.should.equal(1);
    h.server.getSession('127.0.0.1', port)!.should.equal(sessions[0]);
    sessions[0].closed.should.be.false();
    // The old session still works: its late record is accepted.
    const got: string[] = [];
    sessions[0].on('data', (d: Buffer) => got.push(d.toString()));
    h.server.handleDatagram(held!.data, held!);
    got.should.eql(['late']);
    events.should.eql(['session 1']);
    // Now let the new handshake finish.
    h.holdIncoming = undefined;
    h.server.handleDatagram(finalFlight!.data, finalFlight!);
    await fresh.connected;
    events.should.eql(['session 1', 'close 1 replaced', 'session 2']);
    h.server.getSession('127.0.0.1', port)!.should.equal(sessions[1]);
    sessions[1].cipherSuite.should.equal('TLS_PSK_WITH_AES_128_CBC_SHA256');
    (await roundTrip(fresh, 'after')).should.equal('after');
    h.server.stats.handshakes.should.equal(2);
    h.server.sessions.size.should.equal(1);
  });
});

describe('DtlsServer with openssl s_client', function () {
  this.timeout(20000);

  async function interop(h: Harness, cipher: string, expectSuite: string): Promise<void> {
    const lines: string[] = [];
    const sessions: DtlsSession[] = [];
    h.server.on('session', (s: DtlsSession) => {
      sessions.push(s);
      s.on('data', (d: Buffer) => lines.push(d.toString()));
    });
    const s = openssl(h, cipher);
    (await waitFor(() => /Cipher is/.test(s.output()), 8000)).should.be.true(s.output());
    s.proc.stdin.write('line from openssl\n');
    (await waitFor(() => lines.length > 0, 5000)).should.be.true();
    lines[0].should.equal('line from openssl\n');
    s.output().should.match(new RegExp(`Cipher is ${cipher}`));
    s.output().should.match(/Extended master secret: yes/);
    s.output().should.match(/Secure Renegotiation IS supported/);
    // The server's echo arrives at s_client.
    (await waitFor(() => s.output().includes('line from openssl'), 3000)).should.be.true();
    sessions.length.should.equal(1);
    sessions[0].cipherSuite.should.equal(expectSuite);
    sessions[0].identity.should.equal(IDENTITY);
    h.server.stats.handshakes.should.equal(1);
  }

  for (const { node, openssl: cipher } of SUITES) {
    it(`${cipher}: handshake with extended master secret and renegotiation_info, data both ways`, async () => {
      const h = await harness();
      await interop(h, cipher, node);
    });
  }

  it('re-sends ChangeCipherSpec+Finished when the client retransmits its final flight', async () => {
    const h = await harness();
    let dropped = 0;
    h.dropOutgoing = (d) => {
      if (dropped === 0 && d.data[0] === 20) {
        dropped++;
        return true;
      }
      return false;
    };
    await interop(h, 'PSK-AES128-CCM8', 'TLS_PSK_WITH_AES_128_CCM_8');
    dropped.should.equal(1);
    h.sent.filter((d) => d.data[0] === 20).length.should.be.aboveOrEqual(2);
  });

  it('wrong key: handshakeFailed (bad_record_mac / decrypt_error), openssl gives up', async () => {
    for (const { openssl: cipher } of SUITES) {
      const h = await harness();
      const failed = failures(h);
      const s = openssl(h, cipher, WRONG_KEY.toString('hex'));
      (await waitFor(() => failed.length > 0, 8000)).should.be.true();
      ['bad_record_mac', 'decrypt_error'].should.containEql(failed[0].alert);
      failed[0].identity!.should.equal(IDENTITY);
      h.server.sessions.size.should.equal(0);
      await Promise.race([s.exited, delay(5000)]);
      s.output().should.match(/alert/i);
      h.server.stats.handshakesFailed.should.equal(1);
    }
  });

  it('unknown identity: unknown_psk_identity', async () => {
    const h = await harness();
    const failed = failures(h);
    const s = openssl(h, 'PSK-AES128-CCM8', KEY.toString('hex'), 'nobody');
    (await waitFor(() => failed.length > 0, 8000)).should.be.true();
    failed[0].alert.should.equal('unknown_psk_identity');
    failed[0].identity!.should.equal('nobody');
    await Promise.race([s.exited, delay(5000)]);
    s.output().should.match(/unknown psk identity/i);
  });

  it('refuses renegotiation with a no_renegotiation alert (no second handshake)', async () => {
    const h = await harness();
    const s = openssl(h, 'PSK-AES128-CCM8');
    (await waitFor(() => /Cipher is/.test(s.output()), 8000)).should.be.true();
    const alertsBefore = h.server.stats.alertsSent;
    s.proc.stdin.write('R\n'); // s_client command: renegotiate
    (await waitFor(() => /no renegotiation/.test(s.output()), 5000)).should.be.true(s.output());
    h.server.stats.alertsSent.should.equal(alertsBefore + 1);
    h.server.stats.handshakes.should.equal(1);
    h.server.stats.cookiesSent.should.equal(1);
    h.server.pendingHandshakes.should.equal(0);
  });
});

describe('DtlsServer under attack', () => {
  for (const { node: suite } of SUITES) {
    it(`${suite}: garbage, truncated, oversized, forged and replayed records are dropped; the session survives`, async () => {
      const h = await harness();
      const sessions: DtlsSession[] = [];
      h.server.on('session', (s: DtlsSession) => sessions.push(s));
      const c = client(h, suite);
      await c.connected;
      const data: string[] = [];
      (await roundTrip(c, 'one')).should.equal('one');
      const s = sessions[0];
      s.on('data', (d: Buffer) => data.push(d.toString()));
      (await roundTrip(c, 'two')).should.equal('two');
      data.should.eql(['two']);
      const captured = h.received.filter((d) => d.port === c.localPort && d.data[0] === 23).pop()!;
      const rinfo = { address: '127.0.0.1', port: c.localPort };
      let dropped = h.server.stats.recordsDropped;
      const expectDropped = (n: number) => {
        h.server.stats.recordsDropped.should.equal(dropped + n);
        dropped = h.server.stats.recordsDropped;
      };

      // Replay of a captured genuine record.
      h.server.handleDatagram(captured.data, rinfo);
      expectDropped(1);
      data.should.eql(['two']);

      // Garbage.
      h.server.handleDatagram(Buffer.alloc(50, 0xaa), rinfo);
      h.server.handleDatagram(Buffer.alloc(0), rinfo);
      h.server.handleDatagram(Buffer.from([23]), rinfo);
      expectDropped(3);

      // Truncated record and an oversized length field.
      h.server.handleDatagram(captured.data.subarray(0, captured.data.length - 3), rinfo);
      const oversized = Buffer.from(captured.data);
      oversized.writeUInt16BE(0xffff, 11);
      h.server.handleDatagram(oversized, rinfo);
      expectDropped(2);

      // Forged: fresh (high) sequence number with the captured ciphertext, and a flipped ciphertext byte.
      const forged = Buffer.from(captured.data);
      forged.writeUIntBE(5000, 5, 6);
      h.server.handleDatagram(forged, rinfo);
      const flipped = Buffer.from(captured.data);
      flipped.writeUIntBE(5001, 5, 6);
      flipped[flipped.length - 1] ^= 0x80;
      h.server.handleDatagram(flipped, rinfo);
      // A record in an epoch that does not exist, a ChangeCipherSpec and a handshake record in epoch 0.
      h.server.handleDatagram(record(23, 7, 1, Buffer.alloc(40)), rinfo);
      h.server.handleDatagram(record(20, 0, 99, Buffer.from([1])), rinfo);
      h.server.handleDatagram(record(22, 0, 100, Buffer.alloc(30, 0x10)), rinfo);
      expectDropped(5);
      // A truncated, then a lying ClientHello.
      const ch = clientHelloDatagram(200, 0);
      h.server.handleDatagram(ch.subarray(0, 40), rinfo);
      const lying = Buffer.from(ch);
      lying.writeUIntBE(0xfff, 13 + 9, 3); // fragment_length beyond the record
      h.server.handleDatagram(lying, rinfo);
      expectDropped(2);
      h.server.pendingHandshakes.should.equal(0);

      // Bad inputs at the API boundary.
      (() => h.server.handleDatagram(undefined as unknown as Buffer, rinfo)).should.not.throw();
      (() => h.server.handleDatagram(Buffer.alloc(10), undefined as unknown as typeof rinfo)).should.not.throw();

      // The forged high sequence numbers did not move the replay window: genuine traffic continues.
      data.should.eql(['two']);
      s.closed.should.be.false();
      (await roundTrip(c, 'three')).should.equal('three');
      data.should.eql(['two', 'three']);
      h.server.stats.handshakes.should.equal(1);
      h.server.stats.alertsSent.should.equal(0);
    });
  }

  it('a throwing data listener does not escape handleDatagram', async () => {
    const h = await harness();
    let calls = 0;
    h.server.on('session', (s: DtlsSession) => s.on('data', () => { calls++; throw new Error('listener bug'); }));
    const c = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    await c.connected;
    (await roundTrip(c, 'x')).should.equal('x');
    calls.should.equal(1);
    h.logs.join('\n').should.match(/listener bug/);
  });

  it('random mutations of real datagrams never throw and do not hurt a live session', async () => {
    const h = await harness();
    const c = client(h, 'TLS_PSK_WITH_AES_128_CBC_SHA256');
    await c.connected;
    (await roundTrip(c, 'a')).should.equal('a');
    const handshakeCorpus = h.received.filter((d) => d.data[0] !== 23).map((d) => d.data);
    const appCorpus = h.received.filter((d) => d.data[0] === 23).map((d) => d.data);
    handshakeCorpus.length.should.be.aboveOrEqual(3);
    appCorpus.length.should.be.aboveOrEqual(1);
    // Replies to mutated handshakes (HelloVerifyRequests, flights, alerts) go to a socket owned by this test.
    const sink = await rawSocket();
    const sinkPort = (sink.address() as AddressInfo).port;
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const mutate = (src: Buffer): Buffer => {
      const b = Buffer.from(src);
      const flips = 1 + rnd(4);
      for (let j = 0; j < flips; j++) b[rnd(b.length)] = rnd(256);
      return rnd(3) === 0 ? b.subarray(0, rnd(b.length + 1)) : b;
    };
    const sentBefore = h.sent.filter((d) => d.port === c.localPort).length;
    for (let i = 0; i < 3000; i++) {
      h.server.handleDatagram(mutate(handshakeCorpus[rnd(handshakeCorpus.length)]), { address: '127.0.0.1', port: sinkPort });
      const m = mutate(appCorpus[rnd(appCorpus.length)]);
      if (m.length > 13 && m[13 + 0] === 1 && m[0] === 22) continue; // would look like a ClientHello to the client port
      h.server.handleDatagram(m, { address: '127.0.0.1', port: c.localPort });
    }
    // Nothing was answered to the live client, its session is intact.
    h.sent.filter((d) => d.port === c.localPort).length.should.equal(sentBefore);
    h.server.getSession('127.0.0.1', c.localPort)!.closed.should.be.false();
    (await roundTrip(c, 'still here')).should.equal('still here');
    h.server.stats.handshakes.should.be.aboveOrEqual(1);
  });

  it('ClientHello flood without cookies creates no state: only HelloVerifyRequests', async function () {
    this.timeout(20000);
    const h = await harness();
    const raw = await rawSocket();
    let replies = 0;
    raw.on('message', () => replies++);
    const N = 5000;
    for (let i = 0; i < N; i += 25) {
      for (let j = i; j < Math.min(i + 25, N); j++) {
        const bogus = j % 2 === 0 ? undefined : Buffer.alloc(32, j); // half carry a forged cookie
        raw.send(clientHelloDatagram(j, 0, { cookie: bogus }), h.port, '127.0.0.1');
      }
      // Pace on the replies so the loopback socket buffers never overflow.
      (await waitFor(() => replies >= Math.min(i + 25, N), 5000)).should.be.true(`replies ${replies}`);
      h.server.pendingHandshakes.should.equal(0);
    }
    (await waitFor(() => h.received.length === N, 10000)).should.be.true(`received ${h.received.length}`);
    h.server.pendingHandshakes.should.equal(0);
    h.server.sessions.size.should.equal(0);
    h.server.stats.cookiesSent.should.equal(N);
    h.sent.length.should.equal(N);
    for (const d of h.sent) {
      const recs = splitRecords(d.data);
      recs.length.should.equal(1);
      recs[0].type.should.equal(22);
      recs[0].body[0].should.equal(3); // hello_verify_request
      d.data.length.should.be.below(80); // smaller than the ClientHello: no amplification
    }
    (await waitFor(() => replies === N, 5000)).should.be.true();
  });

  it('a cookie-verified but abandoned handshake is retransmitted with backoff, then times out', async () => {
    const h = await harness({ pskLookup: psk, retransmitInitialMs: 50, retransmitMaxMs: 100, handshakeTimeoutMs: 600 });
    const failed = failures(h);
    const raw = await rawSocket();
    const replies: Buffer[] = [];
    raw.on('message', (m) => replies.push(m));
    const random = Buffer.alloc(32, 7);
    raw.send(clientHelloDatagram(0, 0, { random }), h.port, '127.0.0.1');
    (await waitFor(() => replies.length === 1)).should.be.true();
    const cookie = hvrCookie(replies[0])!;
    cookie.length.should.be.above(0);
    raw.send(clientHelloDatagram(1, 1, { random, cookie, extensions: [{ type: 23, data: Buffer.alloc(0) }] }), h.port, '127.0.0.1');
    (await waitFor(() => h.server.pendingHandshakes === 1)).should.be.true();
    // Flight: ServerHello + ServerHelloDone, with extended_master_secret echoed, record seq above the HVR's.
    (await waitFor(() => replies.length >= 2)).should.be.true();
    const flight = splitRecords(replies[1]);
    flight.map((r) => r.body[0]).should.eql([2, 14]);
    flight[0].seq.should.be.above(0);
    flight[0].body.includes(Buffer.from([0x00, 0x17, 0x00, 0x00])).should.be.true();
    (await waitFor(() => failed.length === 1, 3000)).should.be.true();
    failed[0].alert.should.equal('timeout');
    h.server.pendingHandshakes.should.equal(0);
    // Retransmitted at 50, 100, 100, ... ms until the 600 ms timeout: several copies, each with new record numbers.
    const flights = replies.slice(1).map(splitRecords);
    flights.length.should.be.within(4, 9);
    new Set(flights.map((f) => f[0].seq)).size.should.equal(flights.length);
    flights.every((f) => f[0].body.readUInt16BE(4) === 1 && f[1].body.readUInt16BE(4) === 2).should.be.true();
    // A retransmitted ClientHello after the timeout does not revive anything without a fresh cookie exchange.
    h.server.stats.handshakesFailed.should.equal(1);
  });

  it('maxHandshakes bounds the handshakes in progress', async () => {
    const h = await harness({ pskLookup: psk, maxHandshakes: 2 });
    const socks = [await rawSocket(), await rawSocket(), await rawSocket()];
    for (const raw of socks) {
      const replies: Buffer[] = [];
      raw.on('message', (m) => replies.push(m));
      const random = Buffer.alloc(32, (raw.address() as AddressInfo).port & 0xff);
      raw.send(clientHelloDatagram(0, 0, { random }), h.port, '127.0.0.1');
      (await waitFor(() => replies.length === 1)).should.be.true();
      const dropped = h.server.stats.recordsDropped;
      raw.send(clientHelloDatagram(1, 1, { random, cookie: hvrCookie(replies[0]) }), h.port, '127.0.0.1');
      await waitFor(() => replies.length === 2 || h.server.stats.recordsDropped > dropped);
    }
    h.server.pendingHandshakes.should.equal(2);
    h.server.stats.recordsDropped.should.equal(1);
  });

  it('maxSessions refuses new peers once reached', async () => {
    const h = await harness({ pskLookup: psk, maxSessions: 1 });
    const c = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    await c.connected;
    const raw = await rawSocket();
    const replies: Buffer[] = [];
    raw.on('message', (m) => replies.push(m));
    const random = Buffer.alloc(32, 5);
    raw.send(clientHelloDatagram(0, 0, { random }), h.port, '127.0.0.1');
    (await waitFor(() => replies.length === 1)).should.be.true();
    const dropped = h.server.stats.recordsDropped;
    raw.send(clientHelloDatagram(1, 1, { random, cookie: hvrCookie(replies[0]) }), h.port, '127.0.0.1');
    (await waitFor(() => h.server.stats.recordsDropped === dropped + 1)).should.be.true();
    h.server.pendingHandshakes.should.equal(0);
    replies.length.should.equal(1);
    (await roundTrip(c, 'ok')).should.equal('ok');
  });
});

describe('DtlsServer.close()', () => {
  it('sends close_notify to every session, emits close, stops handshakes', async () => {
    const h = await harness({ pskLookup: psk, retransmitInitialMs: 1000, handshakeTimeoutMs: 30000 });
    const closes: string[] = [];
    h.server.on('session', (s: DtlsSession) => s.on('close', (r: string) => closes.push(r)));
    const a = client(h, 'TLS_PSK_WITH_AES_128_CCM_8');
    const b = client(h, 'TLS_PSK_WITH_AES_128_CBC_SHA256');
    await Promise.all([a.connected, b.connected]);
    // Also a handshake in progress with its retransmission and timeout timers.
    const raw = await rawSocket();
    const replies: Buffer[] = [];
    raw.on('message', (m) => replies.push(m));
    const random = Buffer.alloc(32, 1);
    raw.send(clientHelloDatagram(0, 0, { random }), h.port, '127.0.0.1');
    (await waitFor(() => replies.length === 1)).should.be.true();
    raw.send(clientHelloDatagram(1, 1, { random, cookie: hvrCookie(replies[0]) }), h.port, '127.0.0.1');
    (await waitFor(() => h.server.pendingHandshakes === 1)).should.be.true();

    const sentBefore = h.sent.length;
    h.server.close();
    closes.sort().should.eql(['server_closed', 'server_closed']);
    h.server.sessions.size.should.equal(0);
    h.server.pendingHandshakes.should.equal(0);
    const notifies = h.sent.slice(sentBefore);
    notifies.length.should.equal(2);
    notifies.every((d) => d.data[0] === 21 && d.data.readUInt16BE(3) === 1).should.be.true();
    // node-dtls-client decrypts the close_notify and closes itself.
    (await waitFor(() => a.isClosed() && b.isClosed())).should.be.true();
    // Sending on a closed session is a no-op; datagrams after close are ignored.
    (() => h.server.handleDatagram(clientHelloDatagram(0, 0), { address: '127.0.0.1', port: 9 })).should.not.throw();
    h.sent.length.should.equal(sentBefore + 2);
  });

  it('leaves no timers: a process with a session and a pending handshake exits by itself after close()', async function () {
    this.timeout(15000);
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'support', 'dtls-exit-check.ts')],
      { cwd: path.join(__dirname, '..') });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    let doneAt = 0;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    (await waitFor(() => { if (!doneAt && out.includes('DONE')) doneAt = Date.now(); return doneAt > 0; }, 10000))
      .should.be.true(out);
    const code = await Promise.race([exited, delay(3000).then(() => 'still running' as const)]);
    if (code === 'still running') child.kill('SIGKILL');
    should(code).equal(0, out);
    JSON.parse(out.split('DONE ')[1]).should.eql({ pending: 1, sessions: 1, clientClosed: true });
  });
});
