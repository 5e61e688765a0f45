import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import helper from 'node-red-node-test-helper';
import { SimulatedDevice } from '../src/sim/device';
import { freeTcpPort, freeUdpPort, waitFor } from './support/ports';
import { type FlowNode, SERVER_DEFAULTS, requestNode, serverNode, tabNode, useNodeRedHelper } from './support/flows';
import { linkPackage, startNodeRed, tempDir, writeSettings, type RedProcess } from './support/browser-red';

// The built runtime file, exactly what Node-RED loads (npm test builds first).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lwm2mNodes = require('../nodes/lwm2m.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { events: runtimeEvents } = require('@node-red/util') as { events: import('node:events').EventEmitter };

helper.init(require.resolve('node-red'));

const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const CREDS = { psk: JSON.stringify([{ endpoint: 'adm-dev', identity: 'adm-dev-id', key: KEY.toString('hex') }]) };

function flow(coapsPort: number): FlowNode[] {
  return [
    tabNode(),
    serverNode('srv', { name: 'admin test', ...SERVER_DEFAULTS, coapPort: 0, coapsPort, allowNoSec: false }),
    requestNode('req', 'srv', undefined),
  ];
}

interface Device { endpoint: string; address: string; port: number; secure: boolean; identity?: string; lwm2mVersion: string; binding: string; lastSeen: number; session?: { handshakes: number; requests: number } }

describe('admin HTTP endpoints', function () {
  let device: SimulatedDevice | undefined;
  useNodeRedHelper(async () => {
    await device?.stop();
    device = undefined;
  });

  it('list servers and devices, name objects from the model, read a resource; registry changes go out on comms', async () => {
    const coapsPort = await freeUdpPort();
    await helper.load([lwm2mNodes], flow(coapsPort), { srv: CREDS });
    await helper.getNode('srv').ready;
    const published: Array<{ topic: string; data: { event: string; endpoint: string } }> = [];
    const onComms = (m: { topic: string; data: { event: string; endpoint: string } }): void => { published.push(m); };
    runtimeEvents.on('comms', onComms);
    try {
      const servers = await helper.request().get('/lwm2m/servers').expect(200);
      assert.deepEqual(servers.body, [{ id: 'srv', name: 'admin test', ports: { coap: 0, coaps: coapsPort }, poolMode: 'inbound', registrations: 0 }]);
      assert.deepEqual((await helper.request().get('/lwm2m/srv/devices').expect(200)).body, []);

      device = new SimulatedDevice({ endpoint: 'adm-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'adm-dev-id', key: KEY }, lwm2mVersion: '1.1' });
      await device.start();
      await waitFor(() => published.some((m) => m.data.event === 'register'), 3000, 'comms register');
      const reg = published.find((m) => m.data.event === 'register');
      assert.equal(reg?.topic, 'lwm2m/devices/srv');
      assert.equal(reg?.data.endpoint, 'adm-dev');

      const devices = (await helper.request().get('/lwm2m/srv/devices').expect(200)).body as Device[];
      assert.equal(devices.length, 1);
      const d = devices[0];
      assert.equal(d.endpoint, 'adm-dev');
      assert.equal(d.address, '127.0.0.1');
      assert.equal(d.secure, true);
      assert.equal(d.identity, 'adm-dev-id');
      assert.equal(d.lwm2mVersion, '1.1');
      assert.equal(d.binding, 'U');
      assert.ok(d.lastSeen > Date.now() - 10000);
      assert.equal(d.session?.handshakes, 1);
      assert.equal(d.session?.requests, 0);

      const filtered = await helper.request().get('/lwm2m/srv/devices?q=ADM&limit=1').expect(200);
      assert.equal(filtered.headers['x-total-count'], '1');
      assert.deepEqual((filtered.body as Device[]).map((x) => x.endpoint), ['adm-dev']);
      const none = await helper.request().get('/lwm2m/srv/devices?q=zzz').expect(200);
      assert.equal(none.headers['x-total-count'], '0');
      assert.deepEqual(none.body, []);

      const objects = (await helper.request().get('/lwm2m/srv/devices/adm-dev/objects').expect(200)).body as Array<{ id: number; name?: string; instances: number[] }>;
      assert.deepEqual(objects.find((o) => o.id === 3), { id: 3, name: 'Device', version: '1.2', multiple: false, instances: [0] });
      assert.equal(objects.find((o) => o.id === 3303)?.name, 'Temperature');

      const read = await helper.request().post('/lwm2m/srv/devices/adm-dev/read').send({ path: '/3/0/0' }).expect(200);
      assert.equal(read.body.payload, 'Open Mobile Alliance');
      assert.equal(read.body.code, '2.05');
      assert.equal(read.body.path, '/3/0/0');
      const inst = await helper.request().post('/lwm2m/srv/devices/adm-dev/read').send({ path: '/3303/0' }).expect(200);
      assert.equal((inst.body.payload as Record<string, unknown>)['/3303/0/5700'], 21.5);
      const after = (await helper.request().get('/lwm2m/srv/devices').expect(200)).body as Device[];
      assert.equal(after[0].session?.requests, 2);
      assert.equal(after[0].session?.handshakes, 1);

      await device.deregister();
      await waitFor(() => published.some((m) => m.data.event === 'deregister'), 3000, 'comms deregister');
      assert.deepEqual((await helper.request().get('/lwm2m/srv/devices').expect(200)).body, []);
    } finally {
      runtimeEvents.off('comms', onComms);
    }
  });

  it('answers bad requests with clear errors', async () => {
    const coapsPort = await freeUdpPort();
    await helper.load([lwm2mNodes], flow(coapsPort), { srv: CREDS });
    await helper.getNode('srv').ready;
    const noServer = await helper.request().get('/lwm2m/nope/devices').expect(404);
    assert.match(noServer.body.error, /no deployed lwm2m-server with id "nope"/);
    // a node that is not an lwm2m-server is not one
    await helper.request().get('/lwm2m/req/devices').expect(404);
    const ghost = await helper.request().get('/lwm2m/srv/devices/ghost/objects').expect(404);
    assert.match(ghost.body.error, /unknown endpoint "ghost"/);
    const ghostRead = await helper.request().post('/lwm2m/srv/devices/ghost/read').send({ path: '/3/0/0' }).expect(404);
    assert.match(ghostRead.body.error, /unknown endpoint "ghost"/);
    const noPath = await helper.request().post('/lwm2m/srv/devices/ghost/read').send({}).expect(400);
    assert.match(noPath.body.error, /missing path/);
  });

  it('serves the object model for path autocomplete', async () => {
    await helper.load([lwm2mNodes], flow(await freeUdpPort()), { srv: CREDS });
    const list = (await helper.request().get('/lwm2m/model').expect(200)).body as Array<{ id: number; name: string }>;
    assert.deepEqual(list.slice(0, 2).map((o) => [o.id, o.name]), [[0, 'LWM2M Security'], [1, 'LwM2M Server']]);
    assert.ok(list.some((o) => o.id === 3303 && o.name === 'Temperature'));
    const dev = (await helper.request().get('/lwm2m/model/3').expect(200)).body as { name: string; resources: Array<{ id: number; name: string; operations: string; type: string }> };
    assert.equal(dev.name, 'Device');
    assert.deepEqual(dev.resources.find((r) => r.id === 0), { id: 0, name: 'Manufacturer', operations: 'R', type: 'String', multiple: false, mandatory: false });
    assert.equal(dev.resources.find((r) => r.id === 4)?.operations, 'E');
    await helper.request().get('/lwm2m/model/99999').expect(404);
    await helper.request().get('/lwm2m/model/abc').expect(404);
  });
});

describe('admin HTTP endpoints under Node-RED adminAuth', function () {
  this.timeout(60000);
  let red: RedProcess | undefined;
  let device: SimulatedDevice | undefined;
  let userDir = '';
  let coapsPort = 0;

  before(async () => {
    userDir = tempDir('lwm2m-admin-');
    linkPackage(userDir);
    coapsPort = await freeUdpPort();
    const uiPort = await freeTcpPort();
    const srv = { ...flow(coapsPort)[1], z: undefined };
    fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify([srv]));
    fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify({ srv: CREDS }));
    // Two users: "admin" may do everything, "viewer" has Node-RED's read-only permission.
    writeSettings(userDir, {
      uiPort,
      extra: `adminAuth: {
    type: 'credentials',
    users: function (username) {
      if (username === 'admin') return Promise.resolve({ username: 'admin', permissions: '*' });
      if (username === 'viewer') return Promise.resolve({ username: 'viewer', permissions: 'read' });
      return Promise.resolve(null);
    },
    authenticate: function (username, password) {
      var ok = (username === 'admin' || username === 'viewer') && password === username + '-pw';
      return Promise.resolve(ok ? { username: username, permissions: username === 'admin' ? '*' : 'read' } : null);
    }
  },`,
    });
    red = await startNodeRed({ userDir, uiPort });
    device = new SimulatedDevice({ endpoint: 'adm-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'adm-dev-id', key: KEY } });
    await device.start();
  });

  after(async () => {
    await device?.stop();
    await red?.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function token(username: string): Promise<string> {
    const res = await fetch(`${red?.url}/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'node-red-editor', grant_type: 'password', scope: '', username, password: `${username}-pw` }),
    });
    assert.equal(res.status, 200, `login of ${username}`);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  function call(method: 'GET' | 'POST', url: string, bearer?: string): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    return fetch(`${red?.url}${url}`, { method, headers, body: method === 'POST' ? JSON.stringify({ path: '/3/0/0' }) : undefined });
  }

  it('anonymous users get 401; read-only users can list devices but cannot read from them; admins can', async () => {
    assert.equal((await call('GET', '/lwm2m/servers')).status, 401);
    assert.equal((await call('GET', '/lwm2m/srv/devices')).status, 401);
    assert.equal((await call('POST', '/lwm2m/srv/devices/adm-dev/read')).status, 401);

    const viewer = await token('viewer');
    const list = await call('GET', '/lwm2m/srv/devices', viewer);
    assert.equal(list.status, 200);
    assert.deepEqual(((await list.json()) as Device[]).map((d) => d.endpoint), ['adm-dev']);
    assert.equal((await call('GET', '/lwm2m/model/3', viewer)).status, 200);
    assert.equal((await call('POST', '/lwm2m/srv/devices/adm-dev/read', viewer)).status, 401);

    const admin = await token('admin');
    const read = await call('POST', '/lwm2m/srv/devices/adm-dev/read', admin);
    assert.equal(read.status, 200);
    assert.equal(((await read.json()) as { payload: unknown }).payload, 'Open Mobile Alliance');
    // the viewer's refused request never reached the device: one read in total
    const devices = (await (await call('GET', '/lwm2m/srv/devices', admin)).json()) as Device[];
    assert.equal(devices[0].session?.requests, 1);
  });
});
