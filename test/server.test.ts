import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Lwm2mServer, Lwm2mRequestError, type RegistrationInfo } from '../src/server';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, waitFor } from './support/ports';

const KEY_A = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const KEY_B = Buffer.from('f0e0d0c0b0a090807060504030201000', 'hex');
const PSK = [
  { endpoint: 'dev-a', identity: 'id-a', key: KEY_A.toString('hex') },
  { endpoint: 'dev-b', identity: 'id-b', key: KEY_B.toString('hex') },
  // libcoap's -k takes the key as text, so this one is printable.
  { endpoint: 'dev-c', identity: 'id-c', key: Buffer.from('secret-key-dev-c').toString('hex') },
];

async function newServer(extra: ConstructorParameters<typeof Lwm2mServer>[0] = {}): Promise<Lwm2mServer> {
  const server = new Lwm2mServer({
    bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: await freeUdpPort(), psk: PSK, ...extra,
  });
  await server.start();
  return server;
}

function events(server: Lwm2mServer, name: string): RegistrationInfo[] {
  const seen: RegistrationInfo[] = [];
  server.on(name, (info: RegistrationInfo) => seen.push(info));
  return seen;
}

/** After each test, stops in order what `take` returns (what the test left running), then calls `reset`. */
function stopAfterEach(take: () => Array<{ stop(): Promise<void> } | undefined>, reset?: () => void): void {
  afterEach(async () => {
    for (const running of take()) await running?.stop();
    reset?.();
  });
}

describe('Lwm2mServer over DTLS (node-dtls-client device)', function () {
  let server: Lwm2mServer;
  let device: SimulatedDevice | undefined;
  stopAfterEach(() => [device, server], () => (device = undefined));

  it('registers a DTLS device and serves 100 reads over one session (1 handshake)', async () => {
    server = await newServer();
    const registered = events(server, 'register');
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await device.start();
    await waitFor(() => registered.length === 1, 3000, 'register event');
    assert.equal(registered[0].endpoint, 'dev-a');
    assert.equal(registered[0].secure, true);
    assert.equal(registered[0].identity, 'id-a');
    assert.deepEqual(registered[0].objects, ['/1/0', '/3/0', '/3303/0']);

    for (let i = 0; i < 100; i++) {
      const res = await server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' });
      assert.equal(res.payload, 'Open Mobile Alliance');
      assert.equal(res.code, '2.05');
      assert.equal(res.secure, true);
      assert.equal(res.sessionReused, true);
      assert.equal(res.handshakes, 1);
    }
    const stats = server.stats();
    assert.equal(stats.handshakes.total, 1);
    assert.equal(stats.requests.total, 100);
    assert.equal(stats.requests.overPooledSession, 100);
    assert.equal(stats.perSession.length, 1);
    assert.equal(stats.perSession[0].endpoint, 'dev-a');
    assert.equal(stats.perSession[0].handshakes, 1);
    assert.equal(stats.perSession[0].requests, 100);
    assert.ok(stats.perSession[0].bytesOut > 0 && stats.perSession[0].bytesIn > 0);
    assert.equal(device.requestsHandled, 100);
  });

  it('reads an instance (TLV), writes, executes and discovers', async () => {
    server = await newServer();
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await device.start();
    const inst = await server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0' });
    const values = inst.payload as Record<string, unknown>;
    assert.equal(values['/3/0/0'], 'Open Mobile Alliance');
    assert.equal(values['/3/0/9'], 87);
    assert.equal(inst.format, 'tlv');

    const temp = await server.request({ endpoint: 'dev-a', operation: 'read', path: '/3303/0/5700' });
    assert.equal(temp.payload, 21.5);

    const w = await server.request({ endpoint: 'dev-a', operation: 'write', path: '/1/0/1', payload: 600 });
    assert.equal(w.code, '2.04');
    assert.equal(device.get('/1/0/1'), 600);

    const executed = new Promise<string>((r) => device?.once('execute', (p: string) => r(p)));
    const x = await server.request({ endpoint: 'dev-a', operation: 'execute', path: '/3/0/4' });
    assert.equal(x.code, '2.04');
    assert.equal(await executed, '/3/0/4');

    const d = await server.request({ endpoint: 'dev-a', operation: 'discover', path: '/3303/0' });
    assert.ok(Object.keys(d.payload as object).includes('/3303/0/5700'));
  });

  it('refuses an identity registering another endpoint with 4.03 and no event', async () => {
    server = await newServer();
    const registered = events(server, 'register');
    device = new SimulatedDevice({ endpoint: 'dev-b', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await assert.rejects(device.start(), /4\.03/);
    assert.equal(registered.length, 0);
    assert.equal(server.registry.size, 0);
  });

  it('refuses NoSec registration unless allowed, and then only for endpoints without keys', async () => {
    server = await newServer();
    device = new SimulatedDevice({ endpoint: 'plain-1', host: '127.0.0.1', port: server.ports.coap });
    await assert.rejects(device.start(), /4\.03.*requires DTLS/);
    await device.stop();
    await server.stop();

    server = await newServer({ allowNoSec: true });
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coap });
    await assert.rejects(device.start(), /4\.03.*must register over DTLS/);
    await device.stop();
    device = new SimulatedDevice({ endpoint: 'plain-1', host: '127.0.0.1', port: server.ports.coap });
    await device.start();
    const res = await server.request({ endpoint: 'plain-1', operation: 'read', path: '/3/0/1' });
    assert.equal(res.payload, 'Lightweight M2M Client');
    assert.equal(res.secure, false);
  });

  it('answers clear errors: unknown endpoint, bad path, read-only write, device 4.04', async () => {
    server = await newServer();
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await device.start();
    await assert.rejects(server.request({ endpoint: 'nope', operation: 'read', path: '/3/0/0' }), (e: Lwm2mRequestError) => e.kind === 'unknown-endpoint' && /nope/.test(e.message));
    await assert.rejects(server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/x' }), (e: Lwm2mRequestError) => e.kind === 'bad-input' && /bad path/.test(e.message));
    await assert.rejects(server.request({ endpoint: 'dev-a', operation: 'fly', path: '/3/0' }), /unknown operation "fly"/);
    await assert.rejects(server.request({ endpoint: 'dev-a', operation: 'write', path: '/3/0/0', payload: 'x' }), /not writable/);
    await assert.rejects(server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/99' }), (e: Lwm2mRequestError) => e.kind === 'device-error' && e.code === '4.04' && /4\.04 Not Found/.test(e.message));
    assert.equal(device.requestsHandled, 1);
  });

  it('de-registration emits deregister and closes the device session', async () => {
    server = await newServer();
    const gone = events(server, 'deregister');
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await device.start();
    const disconnected = new Promise<void>((r) => device?.once('disconnected', () => r()));
    const res = await device.deregister();
    assert.equal(res.code, '2.02');
    await waitFor(() => gone.length === 1, 2000, 'deregister event');
    await disconnected;
    await waitFor(() => server.stats().sessions.active === 0, 2000, 'session freed');
    assert.equal(server.registry.size, 0);
  });

  it('a device that closes its session keeps its registration; only its own session is unbound', async () => {
    server = await newServer();
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    const other = new SimulatedDevice({ endpoint: 'dev-b', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-b', key: KEY_B } });
    try {
      await device.start();
      await other.start();
      assert.equal(server.stats().sessions.active, 2);
      await device.stop(); // close_notify, no de-registration
      await waitFor(() => server.stats().sessions.active === 1, 2000, 'session of dev-a unbound');
      assert.equal(server.registry.size, 2);
      await assert.rejects(server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' }), /session of "dev-a" has ended/);
      const res = await server.request({ endpoint: 'dev-b', operation: 'read', path: '/3/0/0' });
      assert.equal(res.code, '2.05');
      assert.equal(res.sessionReused, true);
    } finally {
      await other.stop();
    }
  });

  it('closes an idle DTLS session that no registration uses and keeps an idle registered one', async () => {
    server = await newServer({ idleTimeout: 1, idleSweepInterval: 1 });
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await device.start();
    const { dtls } = await import('node-dtls-client');
    const bare = dtls.createSocket({ type: 'udp4', address: '127.0.0.1', port: server.ports.coaps, psk: { 'id-b': KEY_B }, timeout: 5000, ciphers: ['TLS_PSK_WITH_AES_128_CCM_8'] });
    let isClosed = false;
    const closed = new Promise<void>((r) => bare.once('close', () => { isClosed = true; r(); }));
    try {
      await new Promise<void>((resolve, reject) => {
        bare.once('connected', () => resolve());
        bare.once('error', (e: Error) => reject(e));
      });
      assert.equal(server.stats().sessions.inbound, 2);
      await waitFor(() => server.stats().sessions.inbound === 1, 4000, 'the unregistered session closed');
      await closed; // close_notify reached it
      const res = await server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' });
      assert.equal(res.sessionReused, true);
      assert.equal(res.handshakes, 1);
    } finally {
      if (!isClosed) bare.close();
    }
  });

  it('lifetime expiry emits expire and frees the session', async () => {
    server = await newServer({ expiryCheckInterval: 100 });
    const expired = events(server, 'expire');
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A }, lifetime: 1 });
    await device.start();
    assert.equal(server.stats().sessions.active, 1);
    await waitFor(() => expired.length === 1, 3000, 'expire event');
    assert.equal(expired[0].endpoint, 'dev-a');
    await waitFor(() => server.stats().sessions.active === 0, 2000, 'session freed');
    assert.equal(server.registry.size, 0);
    await assert.rejects(server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0/0' }), /unknown endpoint/);
  });

  it('never writes a key into a log line or an error message, at trace level', async () => {
    const lines: string[] = [];
    server = await newServer({ log: (_level, message) => lines.push(message) });
    device = new SimulatedDevice({ endpoint: 'dev-a', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-a', key: KEY_A } });
    await device.start();
    await server.request({ endpoint: 'dev-a', operation: 'read', path: '/3/0' });
    await server.request({ endpoint: 'dev-a', operation: 'write', path: '/1/0/1', payload: 60 });
    const bad = new SimulatedDevice({ endpoint: 'dev-b', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'id-b', key: KEY_A } });
    await assert.rejects(bad.start());
    await bad.stop();
    assert.ok(lines.some((l) => /registered endpoint dev-a/.test(l)), 'registrations are logged');
    assert.ok(lines.some((l) => /handshake .*failed/i.test(l)), 'failed handshakes are logged');
    const text = lines.join('\n').toLowerCase();
    for (const k of [KEY_A, KEY_B]) {
      assert.ok(!text.includes(k.toString('hex')), 'no key in hex');
      assert.ok(!text.includes(k.toString('base64').toLowerCase()), 'no key in base64');
    }
    // A malformed table is reported without repeating the key.
    assert.throws(() => server.security.replaceAll([{ endpoint: 'x', identity: 'y', key: 'zz-not-hex-5ec2e7' }]), (e: Error) => !e.message.includes('5ec2e7'));
  });

  it('a port in use rejects start with a clear message and leaves nothing bound', async () => {
    server = await newServer();
    const clash = new Lwm2mServer({ bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: server.ports.coaps, psk: PSK });
    await assert.rejects(clash.start(), /UDP port \d+ on 127\.0\.0\.1 is already in use/);
    await clash.stop();
  });
});

describe('Lwm2mServer outbound pool mode', function () {
  let server: Lwm2mServer;
  let device: SimulatedDevice | undefined;
  stopAfterEach(() => [device, server], () => (device = undefined));

  it('dials a device that serves DTLS once, reuses it for 100 reads, closes it on de-register', async () => {
    const devicePort = await freeUdpPort();
    server = new Lwm2mServer({
      bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: await freeUdpPort(), poolMode: 'outbound',
      psk: [{ endpoint: 'gw-1', identity: 'gw-1-id', key: KEY_B.toString('hex'), host: '127.0.0.1', port: devicePort }],
    });
    await server.start();
    device = new SimulatedDevice({
      endpoint: 'gw-1', host: '127.0.0.1', port: server.ports.coaps, psk: { identity: 'gw-1-id', key: KEY_B }, serveDtls: devicePort,
    });
    let dialled = 0;
    device.on('dialled', () => dialled++);
    await device.start();
    await waitFor(() => dialled === 1, 5000, 'server to dial the device');
    const results = await Promise.all(Array.from({ length: 10 }, () => server.request({ endpoint: 'gw-1', operation: 'read', path: '/3/0/0' })));
    for (const r of results) assert.equal(r.payload, 'Open Mobile Alliance');
    for (let i = 0; i < 90; i++) {
      const r = await server.request({ endpoint: 'gw-1', operation: 'read', path: '/3/0/0' });
      assert.equal(r.sessionReused, true);
    }
    const stats = server.stats();
    const gw = stats.perSession.find((s) => s.endpoint === 'gw-1');
    assert.ok(gw);
    assert.equal(gw.mode, 'outbound');
    assert.equal(gw.handshakes, 1);
    assert.equal(gw.requests, 100);
    assert.equal(stats.sessions.outbound, 1);
    assert.equal(dialled, 1);
    // The registration's own DTLS session plus the dialled one.
    assert.equal(stats.handshakes.total, 2);

    await device.deregister();
    await waitFor(() => server.stats().sessions.outbound === 0, 3000, 'outbound session closed');
    assert.equal(server.stats().perSession.length, 0);
  });
});

describe('Lwm2mServer with libcoap coap-client-openssl', function () {
  let server: Lwm2mServer;
  stopAfterEach(() => [server]);

  function coapClient(args: string[]): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve) => {
      const p = spawn('coap-client-openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      const t = setTimeout(() => p.kill('SIGKILL'), 15000);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, out });
      });
    });
  }

  it('registers over DTLS PSK (CCM_8) and a register event comes out', async () => {
    server = await newServer();
    const registered = events(server, 'register');
    const r = await coapClient([
      '-m', 'post', '-u', 'id-c', '-k', 'secret-key-dev-c', '-t', '40', '-e', '</1/0>,</3/0>', '-B', '5',
      `coaps://127.0.0.1:${server.ports.coaps}/rd?ep=dev-c&lt=60&lwm2m=1.1`,
    ]);
    await waitFor(() => registered.length === 1, 3000, `register event (coap-client said: ${r.out})`);
    assert.equal(registered[0].endpoint, 'dev-c');
    assert.equal(registered[0].identity, 'id-c');
    assert.deepEqual(registered[0].objects, ['/1/0', '/3/0']);
    assert.equal(server.stats().handshakes.total, 1);
  });

  it('with a wrong key no registration happens and a failed handshake is counted', async () => {
    server = await newServer();
    const registered = events(server, 'register');
    await coapClient([
      '-m', 'post', '-u', 'id-c', '-k', 'wrong-key-wrong!', '-t', '40', '-e', '</3/0>', '-B', '3',
      `coaps://127.0.0.1:${server.ports.coaps}/rd?ep=dev-c`,
    ]);
    await waitFor(() => server.stats().handshakes.failed >= 1, 3000, 'failed handshake counted');
    assert.equal(registered.length, 0);
    assert.equal(server.registry.size, 0);
    assert.equal(server.stats().handshakes.total, 0);
  });
});
