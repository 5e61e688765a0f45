import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import should from 'should';
import type { DtlsSession, DtlsSessionState, HandshakeFailedInfo, MigrationInfo } from '../src/dtls';
import { SessionCache } from '../src/dtls/cache';
import { CidClient } from './support/dtls-cid-client';
import {
  type Harness, type NodeClient, nodeClient, sClient, type SClient, startHarness, waitFor,
} from './support/dtls-harness';
import { record } from './support/dtls-raw';

const IDENTITY = 'dev1';
const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
let known = new Map<string, Buffer>([[IDENTITY, KEY]]);
const psk = (id: string): Buffer | undefined => known.get(id);

let harnesses: Harness[] = [];
let clients: NodeClient[] = [];
let sclients: SClient[] = [];
let cidClients: CidClient[] = [];
let tmp: string | undefined;

async function harness(opts: Partial<Parameters<typeof startHarness>[0]> = {}, bindPort = 0): Promise<Harness> {
  const h = await startHarness({ pskLookup: psk, ...opts }, bindPort);
  harnesses.push(h);
  const echo = (s: DtlsSession) => s.on('data', (d: Buffer) => s.send(d));
  h.server.on('session', echo);
  h.server.on('restored', echo);
  return h;
}

function tmpFile(name: string): string {
  tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'dtls-sessions-'));
  return path.join(tmp, name);
}

function openssl(h: Harness, extra: string[], cipher = 'PSK-AES128-CCM8'): SClient {
  const s = sClient(h.port, IDENTITY, KEY.toString('hex'), cipher, extra);
  sclients.push(s);
  return s;
}

/** One s_client run: handshake, one line echoed, graceful quit. Returns its output. */
async function opensslRun(h: Harness, extra: string[], cipher?: string): Promise<string> {
  const s = openssl(h, extra, cipher);
  (await waitFor(() => /Cipher is/.test(s.output()), 8000)).should.be.true(s.output());
  s.proc.stdin.write('ping\n');
  (await waitFor(() => s.output().includes('ping'), 3000)).should.be.true(s.output());
  s.proc.stdin.write('Q\n');
  await Promise.race([s.exited, new Promise((r) => setTimeout(r, 3000))]);
  await s.stop();
  return s.output();
}

function cidClient(h: Harness, clientCid?: Buffer, offerCid = true): CidClient {
  const c = new CidClient({ port: h.port, identity: IDENTITY, key: KEY, clientCid, offerCid });
  cidClients.push(c);
  return c;
}

function sessions(h: Harness): DtlsSession[] {
  const out: DtlsSession[] = [];
  h.server.on('session', (s: DtlsSession) => out.push(s));
  return out;
}

afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(sclients.map((s) => s.stop()));
  await Promise.all(cidClients.map((c) => c.close()));
  await Promise.all(harnesses.map((h) => h.close()));
  clients = [];
  sclients = [];
  cidClients = [];
  harnesses = [];
  known = new Map([[IDENTITY, KEY]]);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});

describe('DTLS session resumption (openssl s_client -sess_out / -sess_in)', function () {
  this.timeout(20000);

  for (const cipher of ['PSK-AES128-CCM8', 'PSK-AES128-GCM-SHA256']) {
    it(`${cipher}: abbreviated handshake keeps suite and identity`, async () => {
      const h = await harness();
      const got = sessions(h);
      const file = tmpFile('sess.pem');
      const first = await opensslRun(h, ['-sess_out', file], cipher);
      first.should.match(/New, TLSv1.2/);
      h.server.resumptionCacheSize.should.equal(1);
      const second = await opensslRun(h, ['-sess_in', file], cipher);
      second.should.match(new RegExp(`Reused, TLSv1.2, Cipher is ${cipher}`));
      got.length.should.equal(2);
      got[0].resumed.should.be.false();
      got[1].resumed.should.be.true();
      got[1].identity.should.equal(IDENTITY);
      got[1].cipherSuite.should.equal(got[0].cipherSuite);
      got[1].sessionId.equals(got[0].sessionId).should.be.true();
      got[0].sessionId.length.should.equal(32);
      h.server.stats.handshakes.should.equal(1);
      h.server.stats.resumptions.should.equal(1);
    });
  }

  it('a revoked PSK identity is not resumed: full handshake, which fails', async () => {
    const h = await harness();
    const failed: HandshakeFailedInfo[] = [];
    h.server.on('handshakeFailed', (i: HandshakeFailedInfo) => failed.push(i));
    const file = tmpFile('sess.pem');
    await opensslRun(h, ['-sess_out', file]);
    known.delete(IDENTITY);
    const s = openssl(h, ['-sess_in', file]);
    (await waitFor(() => failed.length > 0, 8000)).should.be.true(s.output());
    failed[0].alert.should.equal('unknown_psk_identity');
    h.server.stats.resumptions.should.equal(0);
  });

  it('resumption: false issues no session id; a cached session expires after ttlMs', async () => {
    const off = await harness({ resumption: false });
    const file = tmpFile('off.pem');
    (await opensslRun(off, ['-sess_out', file])).should.match(/Session-ID: *\n/);
    fs.existsSync(file).should.be.false(); // nothing resumable to save
    off.server.stats.resumptions.should.equal(0);
    off.server.resumptionCacheSize.should.equal(0);

    const short = await harness({ resumption: { ttlMs: 300 } });
    const file2 = tmpFile('short.pem');
    await opensslRun(short, ['-sess_out', file2]);
    await new Promise((r) => setTimeout(r, 400));
    (await opensslRun(short, ['-sess_in', file2])).should.match(/New, TLSv1.2/);
    short.server.stats.resumptions.should.equal(0);
    short.server.stats.handshakes.should.equal(2);
  });

  it('the cache is bounded (oldest evicted first) and expires entries on use', () => {
    let now = 1000;
    const c = new SessionCache(2, 100, () => now);
    const entry = () => ({ master: Buffer.alloc(48, 1), suite: 'TLS_PSK_WITH_AES_128_CCM_8' as const, identity: 'x',
      authType: 'psk' as const, extendedMasterSecret: true, createdAt: now });
    const id = (n: number) => Buffer.alloc(32, n);
    c.set(id(1), entry());
    c.set(id(2), entry());
    const third = entry();
    c.set(id(3), third);
    c.size.should.equal(2);
    should(c.get(id(1))).be.undefined();
    c.get(id(3))!.should.equal(third);
    now += 100;
    should(c.get(id(3))).be.undefined();
    c.export().length.should.equal(0);
    third.master.equals(Buffer.alloc(48)).should.be.true(); // wiped when dropped
  });
});

describe('DTLS Connection ID (RFC 9146, test client)', () => {
  for (const [label, clientCid] of [['client CID of 4 bytes', Buffer.from('c0ffee01', 'hex')], ['empty client CID', Buffer.alloc(0)]] as const) {
    it(`${label}: negotiated; a new source port moves the session without a handshake`, async () => {
      const h = await harness();
      const got = sessions(h);
      const c = cidClient(h, clientCid);
      await c.connect();
      c.serverCid!.length.should.equal(6);
      (await c.roundTrip('one')).should.equal('one');
      const s = got[0];
      s.readCid!.equals(c.serverCid!).should.be.true();
      s.writeCid!.equals(clientCid).should.be.true();
      s.key.should.equal(`dtls:cid:${c.serverCid!.toString('hex')}`);
      h.server.sessionsByConnectionId.get(c.serverCid!.toString('hex'))!.should.equal(s);
      const oldPort = c.localPort;
      // The client's records carry the CID (type 25); with a non-empty client CID ours do too.
      h.received[h.received.length - 1].data[0].should.equal(25);
      h.sent[h.sent.length - 1].data[0].should.equal(clientCid.length > 0 ? 25 : 23);
      const moves: MigrationInfo[] = [];
      s.on('migrated', (i: MigrationInfo) => moves.push(i));
      await c.rebind();
      c.localPort.should.not.equal(oldPort);
      (await c.roundTrip('two')).should.equal('two');
      moves.should.eql([{ oldAddress: '127.0.0.1', oldPort, address: '127.0.0.1', port: c.localPort }]);
      s.port.should.equal(c.localPort);
      h.server.getSession('127.0.0.1', c.localPort)!.should.equal(s);
      should(h.server.getSession('127.0.0.1', oldPort)).be.undefined();
      h.server.sessions.size.should.equal(1);
      // Server-initiated data goes to the new port.
      const p = new Promise<void>((resolve) => {
        const t = setInterval(() => { if (c.inbox.some((b) => b.toString() === 'push')) { clearInterval(t); resolve(); } }, 10);
      });
      s.send(Buffer.from('push'));
      await p;
      h.server.stats.migrations.should.equal(1);
      h.server.stats.handshakes.should.equal(1);
      got.length.should.equal(1);
    });
  }

  it('only authenticated records that are the newest move a session', async () => {
    const h = await harness();
    const got = sessions(h);
    const c = cidClient(h, Buffer.from('0102', 'hex'));
    await c.connect();
    (await c.roundTrip('a')).should.equal('a');
    (await c.roundTrip('b')).should.equal('b');
    const s = got[0];
    const port = s.port;
    const dropped = h.server.stats.recordsDropped;
    const data: string[] = [];
    s.on('data', (d: Buffer) => data.push(d.toString()));
    const appRecords = c.sent.filter((d) => d[0] === 25);
    const older = appRecords[appRecords.length - 2];
    const forged = Buffer.from(appRecords[appRecords.length - 1]);
    forged.writeUIntBE(1000, 5, 6); // newer sequence number, but the tag no longer matches
    const otherPeer = { address: '127.0.0.9', port: 4444 };
    h.server.handleDatagram(older, otherPeer); // replay: rejected by the window
    h.server.handleDatagram(forged, otherPeer); // forgery: rejected by authentication
    // An unknown CID and a CID record of the wrong length are dropped too.
    const unknown = Buffer.from(appRecords[appRecords.length - 1]);
    unknown[11] ^= 0xff;
    h.server.handleDatagram(unknown, otherPeer);
    h.server.handleDatagram(record(25, 1, 5, Buffer.alloc(3)), otherPeer);
    h.server.stats.recordsDropped.should.equal(dropped + 4);
    s.port.should.equal(port);
    h.server.stats.migrations.should.equal(0);
    data.should.eql([]);
    // A record that is authentic but older than the newest seen, from another address: accepted, no move.
    const fresh1 = c.record(23, Buffer.from('late'));
    const fresh2 = c.record(23, Buffer.from('newest'));
    h.server.handleDatagram(fresh2, { address: '127.0.0.1', port });
    h.server.handleDatagram(fresh1, otherPeer);
    data.should.eql(['newest', 'late']);
    (await waitFor(() => c.inbox.some((b) => b.toString() === 'late'))).should.be.true();
    s.port.should.equal(port);
    h.server.stats.migrations.should.equal(0);
    (await c.roundTrip('c')).should.equal('c');
  });

  it('connectionId: false ignores the extension; clients that do not ask get no CID', async () => {
    const off = await harness({ connectionId: false });
    const c = cidClient(off, Buffer.from('aa', 'hex'));
    await c.connect();
    should(c.serverCid).be.undefined();
    (await c.roundTrip('plain')).should.equal('plain');
    should(off.server.sessions.values().next().value!.readCid).be.undefined();

    const on = await harness();
    const got = sessions(on);
    const n = nodeClient(on.port, IDENTITY, KEY, 'TLS_PSK_WITH_AES_128_CCM_8');
    clients.push(n);
    await n.connected;
    should(got[0].readCid).be.undefined();
    got[0].key.should.equal(`dtls:127.0.0.1:${n.localPort}`);
    on.server.sessionsByConnectionId.size.should.equal(0);
  });
});

describe('DTLS session export/import (hand-over to a new instance on the same port)', function () {
  this.timeout(20000);

  it('node-dtls-client keeps talking to a new DtlsServer instance: 0 new handshakes', async () => {
    const a = await harness();
    const c = nodeClient(a.port, IDENTITY, KEY, 'TLS_PSK_WITH_AES_128_GCM_SHA256');
    clients.push(c);
    await c.connected;
    const roundTrip = async (text: string): Promise<string> => {
      const before = c.messages.length;
      c.socket.send(Buffer.from(text));
      (await waitFor(() => c.messages.length > before, 2000)).should.be.true(`no answer to ${text}`);
      return c.messages[c.messages.length - 1].toString();
    };
    for (let i = 0; i < 5; i++) (await roundTrip(`a${i}`)).should.equal(`a${i}`);
    const live = a.server.getSession('127.0.0.1', c.localPort)!;
    live.meta = { endpoint: 'urn:dev:1' };
    const states: DtlsSessionState[] = JSON.parse(JSON.stringify(a.server.exportSessions()));
    states.length.should.equal(1);
    states[0].meta!.should.eql({ endpoint: 'urn:dev:1' });
    states[0].writeSeq.should.equal(live.exportState(0)!.writeSeq + 16);
    const closes: string[] = [];
    live.on('close', (r: string) => closes.push(r));
    const port = a.port;
    const sentBefore = a.sent.length;
    await a.detach();
    a.sent.length.should.equal(sentBefore); // no close_notify
    closes.should.eql(['detached']);
    c.isClosed().should.be.false();

    const b = await harness({}, port);
    const restored: DtlsSession[] = [];
    b.server.on('restored', (s: DtlsSession) => restored.push(s));
    const created = b.server.importSessions(states);
    created.length.should.equal(1);
    restored.should.eql(created);
    const s = restored[0];
    s.identity.should.equal(IDENTITY);
    s.cipherSuite.should.equal('TLS_PSK_WITH_AES_128_GCM_SHA256');
    s.port.should.equal(c.localPort);
    s.key.should.equal(live.key);
    s.meta!.should.eql({ endpoint: 'urn:dev:1' });
    for (let i = 0; i < 5; i++) (await roundTrip(`b${i}`)).should.equal(`b${i}`);
    // Server-initiated, too.
    const before = c.messages.length;
    s.send(Buffer.from('from b'));
    (await waitFor(() => c.messages.length > before)).should.be.true();
    b.server.stats.handshakes.should.equal(0);
    b.server.stats.cookiesSent.should.equal(0);
    b.server.stats.restored.should.equal(1);
    // The replay window came along: a record the first instance already accepted is refused.
    const old = a.received.filter((d) => d.data[0] === 23).pop()!;
    const dropped = b.server.stats.recordsDropped;
    b.server.handleDatagram(old.data, old);
    b.server.stats.recordsDropped.should.equal(dropped + 1);
  });

  it('a CID session survives export/import and can still move', async () => {
    const a = await harness();
    const c = cidClient(a, Buffer.from('beef', 'hex'));
    await c.connect();
    (await c.roundTrip('x')).should.equal('x');
    const states = JSON.parse(JSON.stringify(a.server.exportSessions())) as DtlsSessionState[];
    states[0].readCid!.should.equal(c.serverCid!.toString('hex'));
    const port = a.port;
    await a.detach();
    const b = await harness({}, port);
    b.server.importSessions(states).length.should.equal(1);
    b.server.sessionsByConnectionId.size.should.equal(1);
    (await c.roundTrip('y')).should.equal('y');
    await c.rebind();
    (await c.roundTrip('z')).should.equal('z');
    b.server.stats.migrations.should.equal(1);
    b.server.stats.handshakes.should.equal(0);
  });

  it('malformed states are skipped, never thrown', async () => {
    const h = await harness();
    const bad = [
      null, {}, { version: 2 }, { version: 1, epoch: 1, cipherSuite: 'nope' },
      { version: 1, epoch: 1, cipherSuite: 'TLS_PSK_WITH_AES_128_CCM_8', address: '127.0.0.1', port: 5, writeSeq: 0,
        keys: { clientKey: 'AA==' }, replay: { highest: -1, bitmap: '0' } },
    ] as unknown as DtlsSessionState[];
    h.server.importSessions(bad).length.should.equal(0);
    h.server.importSessions('x' as unknown as DtlsSessionState[]).length.should.equal(0);
    h.server.sessions.size.should.equal(0);
  });

  it('the resumption cache moves too: openssl resumes against the new instance', async () => {
    const a = await harness();
    const file = tmpFile('sess.pem');
    await opensslRun(a, ['-sess_out', file]);
    const cache = JSON.parse(JSON.stringify(a.server.exportResumptionCache()));
    cache.length.should.equal(1);
    const port = a.port;
    await a.detach();
    const b = await harness({}, port);
    b.server.importResumptionCache(cache).should.equal(1);
    (await opensslRun(b, ['-sess_in', file])).should.match(/Reused, TLSv1.2/);
    b.server.stats.resumptions.should.equal(1);
    b.server.stats.handshakes.should.equal(0);
  });
});
