/**
 * The encrypted state file: round trip (a real server's state, restored by a new server with no new handshake),
 * wrong secret, truncated and altered files moved aside, mode 0600, and atomic writes under SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileStateStore, StateSaver, withoutSessions } from '../src/persist';
import { Lwm2mServer, type Lwm2mServerState } from '../src/server';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort } from './support/ports';
import { bigState } from './support/persist-state';

const KEY = Buffer.from('8899aabbccddeeff0011223344556677', 'hex');
const PSK = [{ endpoint: 'p-dev', identity: 'p-dev-identity', key: KEY.toString('hex') }];
const SECRET = 'node-red credential secret for tests';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-persist-'));
}

function corruptFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('.corrupt-'));
}

describe('persistence: encrypted state file', function () {
  this.timeout(30000);
  let dir = '';
  const servers: Lwm2mServer[] = [];
  let device: SimulatedDevice | undefined;

  beforeEach(() => {
    dir = tmpDir();
  });
  afterEach(async () => {
    await device?.stop();
    device = undefined;
    for (const s of servers.splice(0)) await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('round trip: a detached server state is saved, loaded and restored by a new server with no new handshake', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    const a = new Lwm2mServer({ bind: '127.0.0.1', coapPort, coapsPort, psk: PSK });
    servers.push(a);
    await a.start();
    device = new SimulatedDevice({ endpoint: 'p-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'p-dev-identity', key: KEY } });
    await device.start();
    assert.equal((await a.request({ endpoint: 'p-dev', operation: 'read', path: '/3/0/0' })).payload, 'Open Mobile Alliance');
    const state = await a.detach();
    assert.equal(state.handover, a);
    assert.equal(state.sessions.length, 1);

    const file = path.join(dir, 'srv.state');
    const store = new FileStateStore(file, SECRET);
    await store.save(state, { bind: '127.0.0.1', coapPort, coapsPort });
    const raw = fs.readFileSync(file);
    // Nothing readable: no identity, no endpoint name, no key material.
    for (const secret of ['p-dev-identity', 'p-dev', state.sessions[0].keys.clientKey, state.sessions[0].keys.serverKey, KEY.toString('hex')]) {
      assert.ok(!raw.includes(Buffer.from(secret)), `"${secret.slice(0, 6)}…" in the file`);
    }

    const read = await new FileStateStore(file, Buffer.from(SECRET)).read();
    assert.ok(read);
    assert.deepEqual(read.info, { bind: '127.0.0.1', coapPort, coapsPort });
    const { handover: _h, ...plain } = state;
    assert.deepEqual(read.state, JSON.parse(JSON.stringify(plain)));
    assert.equal('handover' in read.state, false);

    const b = new Lwm2mServer({ bind: '127.0.0.1', coapPort, coapsPort, psk: PSK });
    servers.push(b);
    await b.start(read.state);
    assert.deepEqual(b.registrations().map((r) => r.endpoint), ['p-dev']);
    const res = await b.request({ endpoint: 'p-dev', operation: 'read', path: '/3/0/1' });
    assert.equal(res.code, '2.05');
    assert.equal(res.handshakes, 1);
    assert.equal(b.stats().handshakes.total, 1);
  });

  it('a file written under another secret is reported and moved aside, never thrown', async () => {
    const file = path.join(dir, 'srv.state');
    await new FileStateStore(file, SECRET).save(bigState(1, 3));
    const warnings: string[] = [];
    const other = new FileStateStore(file, 'another secret', { warn: (m) => warnings.push(m) });
    assert.equal(await other.load(), undefined);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cannot be decrypted/);
    assert.match(warnings[0], /moved to .*srv\.state\.corrupt-/);
    assert.ok(!warnings[0].includes(SECRET) && !warnings[0].includes('another secret'));
    assert.equal(fs.existsSync(file), false);
    assert.equal(corruptFiles(dir).length, 1);
    // Nothing left to load: the next start begins empty, quietly.
    assert.equal(await other.load(), undefined);
    assert.equal(warnings.length, 1);
  });

  it('truncated, altered and foreign files are reported and moved aside', async () => {
    const file = path.join(dir, 'srv.state');
    const store = new FileStateStore(file, SECRET, { warn: (m) => warnings.push(m) });
    const warnings: string[] = [];
    await store.save(bigState(7, 50));
    const good = fs.readFileSync(file);
    const cases: Array<[string, Buffer, RegExp]> = [
      ['empty', Buffer.alloc(0), /truncated/],
      ['magic only', good.subarray(0, 8), /truncated/],
      ['header without body', good.subarray(0, 53), /cannot be decrypted/],
      ['half', good.subarray(0, Math.floor(good.length / 2)), /cannot be decrypted/],
      ['last byte missing', good.subarray(0, good.length - 1), /cannot be decrypted/],
      ['one bit flipped', Buffer.from(good.map((b, i) => (i === good.length - 10 ? b ^ 1 : b))), /cannot be decrypted/],
      ['header altered', Buffer.from(good.map((b, i) => (i === 12 ? b ^ 0x80 : b))), /cannot be decrypted/],
      ['not a state file', Buffer.from('{"registrations": []}'), /not an LwM2M server state file/],
      ['future format', Buffer.from(good.map((b, i) => (i === 8 ? 9 : b))), /unsupported file format 9/],
    ];
    for (const [what, data, reason] of cases) {
      fs.writeFileSync(file, data);
      const before = corruptFiles(dir).length;
      assert.equal(await store.load(), undefined, what);
      assert.match(warnings.at(-1) ?? '', reason, what);
      assert.equal(fs.existsSync(file), false, what);
      assert.equal(corruptFiles(dir).length, before + 1, what);
    }
    assert.equal(warnings.length, cases.length);
    // And a good file still loads.
    fs.writeFileSync(file, good);
    assert.equal((await store.load())?.counters.handshakes, 7);
  });

  it('a decryptable file with a state of another version is moved aside too', async () => {
    const file = path.join(dir, 'srv.state');
    const warnings: string[] = [];
    const store = new FileStateStore(file, SECRET, { warn: (m) => warnings.push(m) });
    await store.save({ ...bigState(1, 1), version: 2 } as unknown as Lwm2mServerState);
    assert.equal(await store.load(), undefined);
    assert.match(warnings[0], /unsupported server state version 2/);
    await store.save({ ...bigState(1, 1), registrations: 'x' } as unknown as Lwm2mServerState);
    assert.equal(await store.load(), undefined);
    assert.match(warnings[1], /without registrations/);
  });

  it('writes mode 0600 whatever the umask, and replaces the file with each save', async function () {
    if (process.platform === 'win32') this.skip();
    const file = path.join(dir, 'srv.state');
    const old = process.umask(0);
    try {
      const store = new FileStateStore(file, SECRET);
      await store.save(bigState(1, 1));
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      fs.chmodSync(file, 0o644);
      await store.save(bigState(2, 1));
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      assert.equal((await store.load())?.savedAt, 2);
      assert.deepEqual(fs.readdirSync(dir), ['srv.state']);
    } finally {
      process.umask(old);
    }
  });

  it('refuses to work without a secret', () => {
    assert.throws(() => new FileStateStore(path.join(dir, 'x'), ''), /non-empty secret/);
    assert.throws(() => new FileStateStore(path.join(dir, 'x'), Buffer.alloc(0)), /non-empty secret/);
  });

  it('concurrent saves leave the last one started on disk', async () => {
    const file = path.join(dir, 'srv.state');
    const store = new FileStateStore(file, SECRET);
    await Promise.all([1, 2, 3, 4, 5].map((n) => store.save(bigState(n, 200))));
    assert.equal((await store.load())?.savedAt, 5);
  });

  it('withoutSessions drops sessions and the observations that live on them; StateSaver saves only changes', async () => {
    const state = bigState(1, 2);
    state.registrations[1] = { ...state.registrations[1], secure: false, channelKey: 'udp:127.0.0.1:9999' };
    state.sessions = [{ key: state.registrations[0].channelKey } as unknown as Lwm2mServerState['sessions'][0]];
    const obs = { registrationId: 'r', key: '/3/0', paths: ['/3/0'], composite: false, createdAt: 1 };
    state.observations = [
      { ...obs, endpoint: 'dev-0', token: '01', channelKey: state.registrations[0].channelKey },
      { ...obs, endpoint: 'dev-1', token: '02', channelKey: 'udp:127.0.0.1:9999' },
    ];
    const plain = withoutSessions(state);
    assert.deepEqual(plain.sessions, []);
    assert.deepEqual(plain.observations.map((o) => o.token), ['02']);
    assert.equal(state.sessions.length, 1, 'the input is left as it was');

    const store = new FileStateStore(path.join(dir, 'srv.state'), SECRET);
    let current = state;
    const saver = new StateSaver(store, () => ({ ...current, savedAt: Date.now() }), { info: { coapsPort: 1 } });
    await saver.tick();
    await saver.tick();
    assert.deepEqual(saver.counts, { saved: 1, unchanged: 1, failed: 0 });
    current = { ...state, registrations: [{ ...state.registrations[0], lastSeen: 99 }] };
    await saver.tick();
    assert.deepEqual(saver.counts, { saved: 2, unchanged: 1, failed: 0 });
    const read = await store.read();
    assert.equal(read?.state.registrations[0].lastSeen, 99);
    assert.deepEqual(read?.state.sessions, []);
    assert.deepEqual(read?.info, { coapsPort: 1 });
    saver.close();
  });

  it('a writer killed with SIGKILL at random points never leaves a half-written file (20 kills)', async function () {
    this.timeout(60000);
    const file = path.join(dir, 'big.state');
    const script = path.join(__dirname, 'support', 'persist-writer.ts');
    let sawTemp = 0;
    let lastLoaded = 0;
    for (let i = 0; i < 20; i++) {
      const child = spawn(process.execPath, ['--require', 'tsx/cjs', script, file, SECRET, '20000'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const until = Date.now() + 15000;
      while (!out.includes('ready') && Date.now() < until && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
      assert.ok(out.includes('ready'), `writer did not start: ${err}`);
      if (i % 2 === 0) {
        // A random point: building, encrypting, writing or renaming, in the first save or one of the next few.
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 400)));
      } else {
        // Inside a write: as soon as the temporary file shows up, plus 0-3 ms.
        const limit = Date.now() + 5000;
        while (!fs.readdirSync(dir).some((n) => n.includes('.tmp-')) && Date.now() < limit) await new Promise((r) => setImmediate(r));
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 4)));
      }
      child.kill('SIGKILL');
      await exited;
      const completed = [...out.matchAll(/saved (\d+)/g)].map((m) => Number(m[1]));
      const lastSaved = completed.length ? Math.max(...completed) : 0;
      if (fs.readdirSync(dir).some((n) => n.includes('.tmp-'))) sawTemp += 1;
      const warnings: string[] = [];
      const state = await new FileStateStore(file, SECRET, { warn: (m) => warnings.push(m) }).load();
      assert.deepEqual(warnings, [], `kill ${i + 1}: the file did not load`);
      if (state) {
        assert.equal(state.registrations.length, 20000);
        // The last completed save, or one that completed its rename just before the kill (not yet reported).
        assert.ok(state.savedAt >= lastSaved, `kill ${i + 1}: loaded save ${state.savedAt}, but save ${lastSaved} had completed`);
        lastLoaded = state.savedAt;
      } else {
        assert.equal(lastSaved, 0, `kill ${i + 1}: no file after a completed save`);
        assert.equal(lastLoaded, 0, `kill ${i + 1}: the file disappeared`);
      }
      // Stale temporary files of the dead writer are cleaned up by the load.
      assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('.tmp-')), []);
      assert.deepEqual(corruptFiles(dir), []);
    }
    // The kills did interrupt writes (a temporary file was left behind).
    assert.ok(sawTemp >= 5, `only ${sawTemp} of 20 kills interrupted a write`);
  });
});
