/**
 * Scale-out: two Lwm2mServer instances in this process, on their own ports, sharing one real redis-server (started
 * here on a free loopback port, no persistence). Devices are SimulatedDevices over DTLS (node-dtls-client).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { createClient } from 'redis';
import { Lwm2mServer, Lwm2mRequestError, type Lwm2mNotification, type RegistrationInfo } from '../src/server';
import { RedisClusterStore, decodeJson, encodeJson } from '../src/cluster';
import { SimulatedDevice, DEFAULT_OBJECTS } from '../src/sim/device';
import { freeTcpPort, freeUdpPort, startUdpFrontDoor, waitFor } from './support/ports';
import { startRedisServer, type RedisServer } from './support/redis-server';

const KEY_A = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const KEY_B = Buffer.from('f0e0d0c0b0a090807060504030201000', 'hex');
const PSK = [
  { endpoint: 'dev-a', identity: 'id-a', key: KEY_A.toString('hex') },
  { endpoint: 'dev-b', identity: 'id-b', key: KEY_B.toString('hex') },
];
const OBJECTS = { ...DEFAULT_OBJECTS, '/19/0': { 0: [Buffer.from('c0ffee00', 'hex')] } };

describe('Scale-out: two server instances sharing a Redis store', function () {
  this.timeout(20000);
  let redis: RedisServer | undefined;
  let url = '';
  let prefixNo = 0;
  let prefix = '';
  const servers: Lwm2mServer[] = [];
  const devices: SimulatedDevice[] = [];
  const closers: Array<() => Promise<void>> = [];

  before(async function () {
    this.timeout(15000);
    redis = await startRedisServer();
    url = redis.url;
  });

  after(async () => {
    await redis?.stop();
  });

  beforeEach(() => {
    prefix = `t${++prefixNo}:`;
  });

  afterEach(async () => {
    for (const d of devices.splice(0)) await d.stop();
    for (const s of servers.splice(0)) await s.stop();
    for (const c of closers.splice(0)) await c();
  });

  function store(instanceId: string, extra: Partial<ConstructorParameters<typeof RedisClusterStore>[0]> = {}): RedisClusterStore {
    return new RedisClusterStore({ url, prefix, instanceId, heartbeatMs: 200, takeoverDelayMs: 100, ...extra });
  }

  async function newServer(cluster: RedisClusterStore, psk = PSK, extra: ConstructorParameters<typeof Lwm2mServer>[0] = {}): Promise<Lwm2mServer> {
    const server = new Lwm2mServer({
      bind: '127.0.0.1', coapPort: 0, coapsPort: await freeUdpPort(), psk, cluster, expiryCheckInterval: 200, ...extra,
    });
    servers.push(server);
    await server.start();
    return server;
  }

  function device(endpoint: string, port: number, extra: Partial<ConstructorParameters<typeof SimulatedDevice>[0]> = {}): SimulatedDevice {
    const entry = PSK.find((p) => p.endpoint === endpoint);
    assert.ok(entry);
    const d = new SimulatedDevice({
      endpoint, host: '127.0.0.1', port, psk: { identity: entry.identity, key: Buffer.from(entry.key, 'hex') }, objects: OBJECTS, ...extra,
    });
    devices.push(d);
    return d;
  }

  function seen(emitter: { on(e: string, f: (...a: unknown[]) => void): unknown }, name: string): RegistrationInfo[] {
    const list: RegistrationInfo[] = [];
    emitter.on(name, (info: unknown) => list.push(info as RegistrationInfo));
    return list;
  }

  const listed = (s: Lwm2mServer, ep: string): boolean => s.registrations().some((r) => r.endpoint === ep);

  it('a device registered through A is read, written and observed from B; its de-registration is seen by B', async () => {
    const storeA = store('a');
    const storeB = store('b');
    const a = await newServer(storeA);
    // B has no PSK table of its own: it gets A's from Redis.
    const b = await newServer(storeB, []);
    assert.ok(b.security.byEndpoint('dev-a'), 'B took the security table from Redis');
    const registeredA = seen(a, 'register');
    const registeredB = seen(b, 'register');
    const clusterRegB = seen(storeB, 'register');
    const dev = device('dev-a', a.ports.coaps);
    await dev.start();
    await waitFor(() => registeredA.length === 1 && listed(b, 'dev-a'), 3000, 'registration visible on B');
    await waitFor(() => clusterRegB.length === 1, 3000, 'cluster register event on B');
    assert.equal(registeredB.length, 0, 'registry events fire on the owning instance only');
    assert.equal(clusterRegB[0].endpoint, 'dev-a');

    const name = await b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' });
    assert.equal(name.payload, 'Open Mobile Alliance');
    assert.equal(name.code, '2.05');
    assert.equal(name.secure, true);
    // Dates and Buffers survive the way through Redis.
    const time = await b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/13' });
    assert.ok(time.payload instanceof Date, `a Date, got ${typeof time.payload}`);
    assert.equal((time.payload as Date).getTime(), 1764000000000);
    const data = await b.request({ endpoint: 'dev-a', operation: 'read', path: '/19/0/0' });
    const bytes = (data.payload as Record<string, unknown>)['/19/0/0/0'];
    assert.ok(Buffer.isBuffer(bytes) && bytes.equals(Buffer.from('c0ffee00', 'hex')), `a Buffer, got ${String(bytes)}`);

    const w = await b.request({ endpoint: 'dev-a', operation: 'write', path: '/1/0/1', payload: 600 });
    assert.equal(w.code, '2.04');
    assert.equal(dev.get('/1/0/1'), 600);
    // B never talked DTLS to the device: A did, over the device's one session.
    assert.equal(b.stats().requests.total, 0);
    assert.equal(a.stats().handshakes.total, 1);
    assert.equal(a.stats().requests.total, 4);

    // A device error comes back as the same error.
    await assert.rejects(b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/99' }), (err: unknown) => {
      assert.ok(err instanceof Lwm2mRequestError);
      assert.equal(err.kind, 'device-error');
      assert.equal(err.code, '4.04');
      return true;
    });

    // Observe through B: notifications travel back to B (callback and 'notification' event with the owner).
    const notes: Lwm2mNotification[] = [];
    const events: Array<[Lwm2mNotification, unknown]> = [];
    b.on('notification', (n: Lwm2mNotification, owner: unknown) => events.push([n, owner]));
    const aEvents: unknown[] = [];
    a.on('notification', (_n: unknown, owner: unknown) => aEvents.push(owner));
    const obs = await b.request({ endpoint: 'dev-a', operation: 'observe', path: '/3303/0/5700', owner: 'node-1', onNotify: (n) => notes.push(n) });
    assert.equal(obs.payload, 21.5);
    dev.set('/3303/0/5700', 22.5);
    await waitFor(() => notes.length === 1 && events.length === 1, 3000, 'notification on B');
    assert.equal(notes[0].payload, 22.5);
    assert.equal(events[0][1], 'node-1');
    assert.equal(aEvents.length, 1);
    assert.notEqual(aEvents[0], 'node-1', 'A does not route it to its own node-1');
    await b.request({ endpoint: 'dev-a', operation: 'cancel-observe', path: '/3303/0/5700' });

    // De-registration through A: B stops listing it and sees the event; requests from B now say unknown.
    const deregB = seen(storeB, 'deregister');
    const deregA = seen(a, 'deregister');
    const deregBLocal = seen(b, 'deregister');
    await dev.deregister();
    await waitFor(() => deregB.length === 1 && !listed(b, 'dev-a'), 3000, 'de-registration seen on B');
    assert.equal(deregA.length, 1);
    assert.equal(deregBLocal.length, 0);
    await assert.rejects(b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' }), /unknown endpoint "dev-a"/);
  });

  it('an instance that closes hands its DTLS sessions over: B takes the device over and the device notices nothing', async () => {
    const a = await newServer(store('a'));
    const storeB = store('b');
    const b = await newServer(storeB);
    const door = await startUdpFrontDoor(a.ports.coaps);
    closers.push(() => door.close());
    const dev = device('dev-a', door.port);
    await dev.start();
    await waitFor(() => listed(b, 'dev-a'), 3000, 'registration visible on B');
    assert.equal((await b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' })).payload, 'Open Mobile Alliance');

    const adopted = new Promise<string[]>((r) => storeB.once('adopted', (_from: string, eps: string[]) => r(eps)));
    await a.stop();
    assert.deepEqual(await adopted, ['dev-a']);
    // The load balancer now sends the device's datagrams to B.
    door.target = b.ports.coaps;
    assert.ok(listed(b, 'dev-a'));
    const res = await b.request({ endpoint: 'dev-a', operation: 'read', path: '/3303/0/5700' });
    assert.equal(res.payload, 21.5);
    assert.equal(res.sessionReused, true);
    assert.equal(b.stats().handshakes.total, 0, 'no new handshake: B continues A\'s session');
    // The device keeps talking over the same session: an Update reaches B's registry.
    const up = await dev.update();
    assert.equal(up.code, '2.04');
    const gone = seen(b, 'deregister');
    assert.equal((await dev.deregister()).code, '2.02');
    await waitFor(() => gone.length === 1, 2000, 'de-registration on B');
  });

  it('a request from B waiting for a sleeping queue-mode device moves with the device when its instance closes', async () => {
    const a = await newServer(store('a'), PSK, { queueAwakeTime: 0.3 });
    const storeB = store('b');
    const b = await newServer(storeB, PSK, { queueAwakeTime: 0.3 });
    const door = await startUdpFrontDoor(a.ports.coaps);
    closers.push(() => door.close());
    const dev = device('dev-a', door.port, { queueMode: true });
    const asleep = seen(a, 'sleep');
    await dev.start();
    await waitFor(() => asleep.length === 1 && listed(b, 'dev-a'), 3000, 'device asleep, visible on B');
    // B's request waits in A's mailbox…
    const waiting = b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0', timeout: 10000 });
    let settled = false;
    let settledWith: unknown;
    void waiting.then((r) => { settled = true; settledWith = r; }, (e) => { settled = true; settledWith = e; });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(settled, false);
    assert.equal(dev.requestsHandled, 0);
    // …A closes and hands the device over to B; the request is queued again on B, and goes out when the device wakes.
    const adopted = new Promise((r) => storeB.once('adopted', r));
    await a.stop();
    await adopted;
    door.target = b.ports.coaps;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(settled, false, `still waiting for the device (${String((settledWith as Error)?.message ?? JSON.stringify(settledWith))})`);
    assert.equal((await dev.update()).code, '2.04');
    const res = await waiting;
    assert.equal(res.payload, 'Open Mobile Alliance');
    assert.equal(dev.requestsHandled, 1);
    assert.equal(b.stats().handshakes.total, 0);
  });

  it('without a take-over B still lists the device; requests fail clearly until it registers through B', async () => {
    const a = await newServer(store('a'));
    const b = await newServer(store('b', { takeover: false }));
    const devA = device('dev-a', a.ports.coaps);
    await devA.start();
    // dev-b has a short lifetime and never comes back: its registration expires although its instance is gone.
    const devB = device('dev-b', a.ports.coaps, { lifetime: 2 });
    await devB.start();
    await waitFor(() => listed(b, 'dev-a') && listed(b, 'dev-b'), 3000, 'both visible on B');
    const expiredB = seen(b, 'expire');
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    assert.ok(listed(b, 'dev-a'), 'B still lists the device of the closed instance');
    await assert.rejects(b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0', timeout: 2000 }), (err: unknown) => {
      assert.ok(err instanceof Lwm2mRequestError);
      assert.equal(err.kind, 'no-session');
      assert.match(err.message, /owner instance gone.*the device must reconnect/);
      return true;
    });
    await waitFor(() => expiredB.length === 1 && !listed(b, 'dev-b'), 8000, 'expiry of dev-b fired once on B');
    assert.equal(expiredB[0].endpoint, 'dev-b');
    assert.ok(listed(b, 'dev-a'), 'dev-a lives on (lifetime 300 s)');

    // The device comes back through B (new handshake, new registration): B holds it now.
    await devA.stop();
    const again = device('dev-a', b.ports.coaps);
    await again.start();
    const res = await b.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' });
    assert.equal(res.payload, 'Open Mobile Alliance');
    assert.equal(res.handshakes, 1);
  });

  it('a device that registers again through B moves there; A forgets it without a de-register event', async () => {
    const a = await newServer(store('a'));
    const b = await newServer(store('b'));
    const first = device('dev-a', a.ports.coaps);
    await first.start();
    await waitFor(() => listed(b, 'dev-a'), 3000, 'visible on B');
    const deregA = seen(a, 'deregister');
    const regB = seen(b, 'register');
    const second = device('dev-a', b.ports.coaps);
    await second.start();
    await waitFor(() => regB.length === 1 && a.registry.byEndpoint('dev-a') === undefined, 3000, 'A released dev-a');
    assert.equal(deregA.length, 0);
    // A now forwards to B, which talks to the device over its new session.
    const res = await a.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' });
    assert.equal(res.payload, 'Open Mobile Alliance');
    assert.equal(second.requestsHandled, 1);
    assert.equal(first.requestsHandled, 0);
  });

  it('registration records in Redis carry the owner and a TTL of the lifetime; PSK keys are in the sec hash', async () => {
    const a = await newServer(store('a'));
    const dev = device('dev-a', a.ports.coaps, { lifetime: 60 });
    await dev.start();
    const c = createClient({ url });
    await c.connect();
    closers.push(async () => {
      await c.close();
    });
    await waitFor(() => listed(a, 'dev-a'), 2000, 'registered');
    let rec: Record<string, string> = {};
    for (let i = 0; i < 50 && !rec.owner; i++) {
      rec = await c.hGetAll(`${prefix}reg:dev-a`);
      if (!rec.owner) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(rec.owner, 'a');
    const reg = decodeJson(rec.reg) as { endpoint: string; identity: string };
    assert.equal(reg.endpoint, 'dev-a');
    const ttl = await c.pTTL(`${prefix}reg:dev-a`);
    assert.ok(ttl > 55000 && ttl <= 65000, `TTL ${ttl} ms ≈ lifetime 60 s + grace`);
    assert.deepEqual(await c.sMembers(`${prefix}regs`), ['dev-a']);
    assert.ok(await c.exists(`${prefix}inst:a`));
    const sec = decodeJson((await c.hGet(`${prefix}sec`, 'dev-a')) ?? 'null') as { identity: string; key: Buffer };
    assert.equal(sec.identity, 'id-a');
    assert.ok(Buffer.isBuffer(sec.key) && sec.key.equals(KEY_A));
  });

  it('start() fails clearly, with nothing left bound, when Redis cannot be reached', async () => {
    const deadPort = await freeTcpPort();
    const coapsPort = await freeUdpPort();
    const server = new Lwm2mServer({
      bind: '127.0.0.1', coapPort: 0, coapsPort,
      cluster: new RedisClusterStore({ url: `redis://user:s3cret@127.0.0.1:${deadPort}`, connectTimeoutMs: 1000 }),
    });
    await assert.rejects(server.start(), (err: Error) => {
      assert.match(err.message, /Redis store redis:\/\/user:\*\*\*@127\.0\.0\.1:\d+\/? not reachable/);
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(coapsPort, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((r) => probe.close(() => r()));
  });

  it('JSON between instances keeps Buffers, Dates and objects that have a "$t" key', () => {
    const value = { b: Buffer.from([1, 2, 255]), d: new Date(5), nested: [{ $t: 'buf', v: 'AQ==' }, null], u: undefined, s: 'x' };
    const back = decodeJson(encodeJson(value)) as typeof value;
    assert.ok(Buffer.isBuffer(back.b) && back.b.equals(value.b));
    assert.ok(back.d instanceof Date && back.d.getTime() === 5);
    assert.deepEqual(back.nested, [{ $t: 'buf', v: 'AQ==' }, null]);
    assert.equal('u' in back, false);
    assert.equal(back.s, 'x');
  });
});
