import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { CoapEndpoint } from '../src/coap';
import { Lwm2mServer, Lwm2mRequestError, type Lwm2mNotification, type RegistrationInfo } from '../src/server';
import { SimulatedDevice, type SimulatedDeviceOptions } from '../src/sim/device';
import { freeUdpPort, waitFor } from './support/ports';

const KEY = Buffer.from('a1a2a3a4a5a6a7a8a9aaabacadaeaf00', 'hex');

/** Each operation runs over DTLS and over plain CoAP. */
for (const transport of ['dtls', 'coap'] as const) {
  describe(`LwM2M operations over ${transport === 'dtls' ? 'DTLS' : 'plain CoAP'}`, function () {
    let server: Lwm2mServer;
    let device: SimulatedDevice;
    const endpoint = transport === 'dtls' ? 'ops-dtls' : 'ops-plain';

    async function start(extra: Partial<SimulatedDeviceOptions> = {}, serverExtra: ConstructorParameters<typeof Lwm2mServer>[0] = {}): Promise<void> {
      server = new Lwm2mServer({
        bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: await freeUdpPort(), allowNoSec: true,
        psk: [{ endpoint: 'ops-dtls', identity: 'ops-dtls-id', key: KEY.toString('hex') }], ...serverExtra,
      });
      await server.start();
      device = new SimulatedDevice({
        endpoint, host: '127.0.0.1',
        port: transport === 'dtls' ? server.ports.coaps : server.ports.coap,
        psk: transport === 'dtls' ? { identity: 'ops-dtls-id', key: KEY } : undefined,
        ...extra,
      });
      await device.start();
    }
    afterEach(async () => {
      await device?.stop();
      await server?.stop();
    });

    it('read (resource, instance, object) and discover', async () => {
      await start();
      assert.equal((await server.request({ endpoint, operation: 'read', path: '/3/0/0' })).payload, 'Open Mobile Alliance');
      const inst = (await server.request({ endpoint, operation: 'read', path: '/3/0', format: 'senml-json' })).payload as Record<string, unknown>;
      assert.equal(inst['/3/0/9'], 87);
      assert.deepEqual(inst['/3/0/11/0'], 0);
      const obj = (await server.request({ endpoint, operation: 'read', path: '/3303' })).payload as Record<string, unknown>;
      assert.equal(obj['/3303/0/5700'], 21.5);
      const d = (await server.request({ endpoint, operation: 'discover', path: '/3/0' })).payload as Record<string, unknown>;
      assert.ok('/3/0/9' in d);
    });

    it('write (replace) and write-update in TLV and SenML JSON, refused before sending for read-only resources', async () => {
      await start();
      await server.request({ endpoint, operation: 'write', path: '/1/0/1', payload: 120, format: 'tlv' });
      assert.equal(device.get('/1/0/1'), 120);
      await server.request({ endpoint, operation: 'write-update', path: '/1/0', payload: { '/1/0/1': 240, '/1/0/6': true }, format: 'senml-json' });
      assert.equal(device.get('/1/0/1'), 240);
      assert.equal(device.get('/1/0/6'), true);
      await server.request({ endpoint, operation: 'write', path: '/1/0/1', payload: 360, format: 'text' });
      assert.equal(device.get('/1/0/1'), 360);
      const before = device.requestsHandled;
      await assert.rejects(server.request({ endpoint, operation: 'write', path: '/3/0/9', payload: 5 }), /not writable/);
      assert.equal(device.requestsHandled, before, 'nothing was sent');
    });

    it('write-attributes with validation of invalid combinations', async () => {
      await start();
      const r = await server.request({ endpoint, operation: 'write-attributes', path: '/3303/0/5700', payload: { pmin: 5, pmax: 60, gt: 30, lt: 10, st: 2 } });
      assert.equal(r.code, '2.04');
      assert.deepEqual(device.attributes.get('/3303/0/5700'), ['pmin=5', 'pmax=60', 'gt=30', 'lt=10', 'st=2']);
      await server.request({ endpoint, operation: 'write-attributes', path: '/3303/0', payload: { pmax: null } });
      assert.deepEqual(device.attributes.get('/3303/0'), ['pmax']);
      const bad: Array<[unknown, RegExp, string?]> = [
        [{ pmin: 10, pmax: 5 }, /pmax \(5\) must not be less than pmin \(10\)/],
        [{ gt: 10, lt: 20 }, /lt \(20\) must be less than gt \(10\)/, '/3303/0/5700'],
        [{ gt: 20, lt: 10, st: 6 }, /lt \+ 2×st/, '/3303/0/5700'],
        [{ gt: 5 }, /apply to a numeric resource/, '/3303/0'],
        [{ gt: 5 }, /is String/, '/3/0/0'],
        [{ pmin: -1 }, /whole number/],
        [{ st: 0 }, /greater than 0/, '/3303/0/5700'],
        [{ foo: 1 }, /unknown attribute "foo"/],
        [{ edge: 1 }, /needs LwM2M 1\.2/, '/1/0/6'],
        [{}, /at least one attribute/],
        ['pmin=5', /needs an object/],
      ];
      for (const [payload, re, path] of bad) {
        await assert.rejects(server.request({ endpoint, operation: 'write-attributes', path: path ?? '/3303/0', payload }), (e: Lwm2mRequestError) => e.kind === 'bad-input' && re.test(e.message), String(re));
      }
    });

    it('execute with arguments, create (with and without instance id) and delete', async () => {
      await start();
      const executed = new Promise<[string, string]>((r) => device.once('execute', (p: string, a: string) => r([p, a])));
      await server.request({ endpoint, operation: 'execute', path: '/3/0/4', payload: "0='now'" });
      assert.deepEqual(await executed, ['/3/0/4', "0='now'"]);
      await assert.rejects(server.request({ endpoint, operation: 'execute', path: '/3/0/0' }), /not executable/);

      const c1 = await server.request({ endpoint, operation: 'create', path: '/3303', payload: { '/3303/7/5700': 30.5, '/3303/7/5701': 'Cel' }, format: 'tlv' });
      assert.equal(c1.code, '2.01');
      assert.equal(c1.location, '/3303/7');
      assert.equal(device.get('/3303/7/5700'), 30.5);
      const c2 = await server.request({ endpoint, operation: 'create', path: '/3303', payload: { '/3303/9/5700': 1 }, format: 'senml-json' });
      assert.equal(c2.location, '/3303/9');
      const del = await server.request({ endpoint, operation: 'delete', path: '/3303/7' });
      assert.equal(del.code, '2.02');
      await assert.rejects(server.request({ endpoint, operation: 'read', path: '/3303/7' }), (e: Lwm2mRequestError) => e.code === '4.04');
      await assert.rejects(server.request({ endpoint, operation: 'delete', path: '/3303' }), /delete needs an object instance path/);
    });

    it('observe delivers ordered notifications until cancel-observe (active cancel)', async () => {
      await start();
      const notes: Lwm2mNotification[] = [];
      const first = await server.request({ endpoint, operation: 'observe', path: '/3303/0/5700', onNotify: (n) => notes.push(n) });
      assert.equal(first.payload, 21.5);
      assert.equal(typeof first.observe, 'number');
      assert.equal(server.observations.size, 1);
      device.set('/3303/0/5700', 22);
      device.set('/3303/0/5700', 23);
      await waitFor(() => notes.length === 2, 3000, 'two notifications');
      assert.deepEqual(notes.map((n) => n.payload), [22, 23]);
      assert.ok((notes[1].observe ?? 0) > (notes[0].observe ?? 0));
      assert.equal(notes[0].path, '/3303/0/5700');
      await server.request({ endpoint, operation: 'cancel-observe', path: '/3303/0/5700' });
      assert.equal(device.observationCount, 0, 'device forgot the observation (GET Observe=1)');
      assert.equal(server.observations.size, 0);
      device.set('/3303/0/5700', 24);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(notes.length, 2);
      await assert.rejects(server.request({ endpoint, operation: 'cancel-observe', path: '/3303/0/5700' }), /no active observation/);
    });

    it('read-composite, write-composite, observe-composite and cancel-observe-composite', async () => {
      await start();
      const r = await server.request({ endpoint, operation: 'read-composite', path: ['/3/0/0', '/3303/0/5700'] });
      assert.deepEqual(r.payload, { '/3/0/0': 'Open Mobile Alliance', '/3303/0/5700': 21.5 });
      const r2 = await server.request({ endpoint, operation: 'read-composite', path: '/1/0/1, /3/0/9' });
      assert.deepEqual(r2.payload, { '/1/0/1': 300, '/3/0/9': 87 });
      await server.request({ endpoint, operation: 'write-composite', path: '/', payload: { '/1/0/1': 99, '/1/0/6': true } });
      assert.equal(device.get('/1/0/1'), 99);
      assert.equal(device.get('/1/0/6'), true);
      await assert.rejects(server.request({ endpoint, operation: 'write-composite', path: '/', payload: { '/1/0/1': 1, '/3303/0/5701': 'x' } }), /5701 \(Sensor Units\) is not writable/);
      const notes: Lwm2mNotification[] = [];
      await server.request({ endpoint, operation: 'observe-composite', path: ['/3303/0/5700', '/3/0/9'], onNotify: (n) => notes.push(n) });
      device.set('/3303/0/5700', 19);
      await waitFor(() => notes.length === 1, 3000, 'composite notification');
      assert.deepEqual(notes[0].payload, { '/3303/0/5700': 19, '/3/0/9': 87 });
      await server.request({ endpoint, operation: 'cancel-observe-composite', path: ['/3303/0/5700', '/3/0/9'] });
      assert.equal(device.observationCount, 0);
    });

    it('Send (POST /dp) is a send event with decoded data', async () => {
      await start();
      const sent: Array<[RegistrationInfo, unknown]> = [];
      server.on('send', (info: RegistrationInfo, data: unknown) => sent.push([info, data]));
      const res = await device.send(['/3303/0/5700', '/3/0/9']);
      assert.equal(res.code, '2.04');
      assert.equal(sent.length, 1);
      assert.equal(sent[0][0].endpoint, endpoint);
      assert.deepEqual(sent[0][1], { '/3303/0/5700': 21.5, '/3/0/9': 87 });
    });

    it('observations end when the device de-registers or re-registers', async () => {
      await start();
      const ended: string[] = [];
      await server.request({ endpoint, operation: 'observe', path: '/3303/0/5700', onObserveEnd: (r) => ended.push(r) });
      await device.register();
      assert.deepEqual(ended, ['re-registered']);
      assert.equal(server.observations.size, 0);
      await server.request({ endpoint, operation: 'observe', path: '/3303/0/5700', onObserveEnd: (r) => ended.push(r) });
      await device.deregister();
      await waitFor(() => ended.length === 2, 2000, 'observation end');
      assert.equal(ended[1], 'de-registered');
    });

    it('queue mode: sleep/awake events, requests wait in the mailbox until the device talks, or time out', async () => {
      await start({ queueMode: true }, { queueAwakeTime: 0.3, expiryCheckInterval: 50 });
      const seen: string[] = [];
      for (const e of ['sleep', 'awake']) server.on(e, (info: RegistrationInfo) => seen.push(`${e}:${info.endpoint}`));
      assert.equal(server.registrations()[0].queueMode, true);
      // Awake right after registering: answered at once.
      assert.equal((await server.request({ endpoint, operation: 'read', path: '/3/0/0' })).code, '2.05');
      await waitFor(() => seen.includes(`sleep:${endpoint}`), 3000, 'sleep event');
      const before = device.requestsHandled;
      await assert.rejects(server.request({ endpoint, operation: 'read', path: '/3/0/0', timeout: 200 }), (e: Lwm2mRequestError) => e.kind === 'asleep' && /asleep/.test(e.message));
      assert.equal(device.requestsHandled, before, 'nothing sent to a sleeping device');
      const pending = server.request({ endpoint, operation: 'read', path: '/3303/0/5700', timeout: 5000 });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(device.requestsHandled, before);
      await device.update();
      assert.equal((await pending).payload, 21.5);
      assert.ok(seen.includes(`awake:${endpoint}`));
    });
  });
}

describe('Object model in requests', function () {
  let server: Lwm2mServer;
  let device: SimulatedDevice;
  afterEach(async () => {
    await device?.stop();
    await server?.stop();
  });

  it('names the paths of an answer, validates values before sending, loads extra DDF files from a folder', async () => {
    server = new Lwm2mServer({ bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: 0, allowNoSec: true, modelDir: `${__dirname}/fixtures/ddf-folder` });
    await server.start();
    device = new SimulatedDevice({ endpoint: 'm1', host: '127.0.0.1', port: server.ports.coap, objects: { '/3/0': { 0: 'ACME', 9: 50 }, '/1/0': { 1: 300 }, '/40010/0': { 0: 'x' } } });
    await device.start();
    const r = await server.request({ endpoint: 'm1', operation: 'read', path: '/3/0' });
    assert.equal(r.names['/3/0/0'], 'Manufacturer');
    assert.equal(r.names['/3/0/9'], 'Battery Level');
    assert.deepEqual(r.names, { '/3/0': 'Device', '/3/0/0': 'Manufacturer', '/3/0/9': 'Battery Level' });
    const one = await server.request({ endpoint: 'm1', operation: 'read', path: '/3/0/9' });
    assert.deepEqual(one.names, { '/3/0/9': 'Battery Level' });
    assert.deepEqual((await server.request({ endpoint: 'm1', operation: 'read', path: '/1/0/1' })).names, { '/1/0/1': 'Lifetime' });
    const before = device.requestsHandled;
    await assert.rejects(server.request({ endpoint: 'm1', operation: 'write', path: '/1/0/1', payload: 'abc' }), (e: Lwm2mRequestError) => e.kind === 'bad-input' && /1\/0\/1/.test(e.message));
    assert.equal(device.requestsHandled, before, 'nothing sent');
    assert.ok(server.model.get(40010), 'object 40010 loaded from the folder');
  });
});

describe('Registration edge cases', function () {
  let server: Lwm2mServer;
  afterEach(async () => server?.stop());

  it('answers 4.00 with the reason for bad parameters, 4.12 for unknown versions; Update reports what changed', async () => {
    server = new Lwm2mServer({ bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: 0, allowNoSec: true, minLifetime: 10, maxLifetime: 1000 });
    await server.start();
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const ch = { key: 'srv', address: '127.0.0.1', port: server.ports.coap, secure: false, send: (d: Buffer) => sock.send(d, server.ports.coap, '127.0.0.1') };
    const coap = new CoapEndpoint({ onRequest: () => ({ code: '4.04' }) });
    sock.on('message', (m) => coap.handle(ch, m));
    const reg = (query: string[], payload = '</3/0>') => coap.request(ch, { method: 'POST', path: ['rd'], query, contentFormat: 40, payload: Buffer.from(payload) });
    try {
      const cases: Array<[string[], string, RegExp]> = [
        [['lt=60'], '4.00', /missing endpoint name/],
        [['ep=e1', 'lt=5'], '4.00', /lifetime 5s outside the allowed range 10\.\.1000s/],
        [['ep=e1', 'lt=abc'], '4.00', /invalid lifetime/],
        [['ep=e1', 'b=X'], '4.00', /invalid binding/],
        [['ep=e1', 'lwm2m=2.0'], '4.12', /unsupported LwM2M version/],
      ];
      for (const [q, code, re] of cases) {
        const res = await reg(q);
        assert.equal(res.code, code, q.join('&'));
        assert.match(res.payload.toString(), re);
      }
      assert.equal(server.registry.size, 0);

      const updates: Array<[RegistrationInfo, string[]]> = [];
      server.on('update', (info: RegistrationInfo, changed: string[]) => updates.push([info, changed]));
      const long = Array.from({ length: 300 }, (_, i) => `</${3300 + (i % 50)}/${i}>`).join(',');
      const ok = await reg(['ep=e1', 'lt=100', 'lwm2m=1.2'], `</>;rt="oma.lwm2m";ct="60 110 112",${long}`);
      assert.equal(ok.code, '2.01');
      assert.equal(server.registrations()[0].objects.length, 300);
      const loc = ok.locationPath;
      const up = await coap.request(ch, { method: 'POST', path: loc, query: ['lt=200', 'b=UQ'], contentFormat: 40, payload: Buffer.from('</3/0>,</1/0>') });
      assert.equal(up.code, '2.04');
      assert.deepEqual(updates[0][1].sort(), ['binding', 'lifetime', 'objects', 'queueMode']);
      assert.equal(updates[0][0].lifetime, 200);
      // Duplicate endpoint name: a new registration replaces the old one.
      const again = await reg(['ep=e1', 'lt=100']);
      assert.equal(again.code, '2.01');
      assert.notDeepEqual(again.locationPath, loc);
      assert.equal(server.registry.size, 1);
      const stale = await coap.request(ch, { method: 'POST', path: loc });
      assert.equal(stale.code, '4.04');
    } finally {
      coap.close();
      await new Promise<void>((r) => sock.close(() => r()));
    }
  });

  it('reads single Resources answered as text by type, and reports a text that does not fit its type in context', async () => {
    server = new Lwm2mServer({ bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: 0, allowNoSec: true });
    await server.start();
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const ch = { key: 'srv', address: '127.0.0.1', port: server.ports.coap, secure: false, send: (d: Buffer) => sock.send(d, server.ports.coap, '127.0.0.1') };
    // a device whose answers are set per path: text/plain (no Content-Format option) unless given
    const answers: Record<string, string> = { '3/0/9': ' 87 ', '3/0/0': 'Acme', '3/0/13': 'abc', '3/0/1': '42' };
    const coap = new CoapEndpoint({ onRequest: (req) => ({ code: '2.05', payload: Buffer.from(answers[req.path.join('/')] ?? '') }) });
    sock.on('message', (m) => coap.handle(ch, m));
    try {
      const ok = await coap.request(ch, { method: 'POST', path: ['rd'], query: ['ep=text-dev', 'lt=100'], contentFormat: 40, payload: Buffer.from('</3/0>') });
      assert.equal(ok.code, '2.01');
      const read = (path: string) => server.request({ endpoint: 'text-dev', operation: 'read', path });
      assert.equal((await read('/3/0/9')).payload, 87); // Integer, surrounding blanks ignored
      assert.equal((await read('/3/0/0')).payload, 'Acme'); // String
      assert.equal((await read('/3/0/1')).payload, '42'); // a String stays a string
      await assert.rejects(read('/3/0/13'), (e: Lwm2mRequestError) => e.kind === 'decode' &&
        /^cannot decode the answer of "text-dev" to read \/3\/0\/13: \/3\/0\/13: "abc" is not a valid Time \(seconds since 1970\)$/.test(e.message));
    } finally {
      coap.close();
      await new Promise<void>((r) => sock.close(() => r()));
    }
  });
});
