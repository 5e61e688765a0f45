/**
 * Persistence across real Node-RED restarts (a child process with its own user dir): DTLS devices registered before
 * a normal stop are still listed after the restart, a read through a flow works with no new handshake, lifetime
 * expiry resumes from the saved last-seen time, and after a kill -9 the last periodic save is loaded.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FileStateStore } from '../src/persist';
import { SimulatedDevice } from '../src/sim/device';
import { errorLines, linkPackage, startNodeRed, tempDir, writeSettings, type RedProcess } from './support/browser-red';
import { freeTcpPort, freeUdpPort } from './support/ports';

const SECRET = 'persist-restart-test-secret';
const DEVICES = {
  long: { endpoint: 'keep-dev', identity: 'keep-dev-id', key: Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex') },
  short: { endpoint: 'short-dev', identity: 'short-dev-id', key: Buffer.from('00112233445566778899aabbccddeeff', 'hex') },
  late: { endpoint: 'late-dev', identity: 'late-dev-id', key: Buffer.from('ffeeddccbbaa99887766554433221100', 'hex') },
};
const SHORT_LIFETIME = 12;

interface DeviceRow { endpoint: string; lastSeen: number; lifetime: number; session?: { handshakes: number } }
interface ReadAnswer { value?: unknown; code?: string; lwm2m?: { handshakes: number; sessionReused: boolean }; error?: string }
interface Stats { handshakes: { total: number }; registrations: number }

function flows(coapsPort: number): unknown[] {
  return [
    { id: 'tab', type: 'tab', label: 'persist' },
    {
      id: 'srv', type: 'lwm2m-server', name: 'persist test', bind: '127.0.0.1', coapPort: 0, coapsPort, allowNoSec: false,
      poolMode: 'inbound', idleTimeout: 300, maxSessions: 100, minLifetime: 1, maxLifetime: 86400, persist: true, store: '',
    },
    { id: 'readIn', type: 'http in', z: 'tab', url: '/read', method: 'get', wires: [['readPrep']] },
    { id: 'readPrep', type: 'function', z: 'tab', func: 'msg.endpoint = msg.req.query.ep;\nmsg.topic = msg.req.query.path;\nmsg.payload = "";\nreturn msg;', outputs: 1, wires: [['req']] },
    { id: 'req', type: 'lwm2m-request', z: 'tab', server: 'srv', operation: 'read', endpoint: '', path: '', format: 'auto', timeout: '3000', wires: [['readOk']] },
    { id: 'readOk', type: 'function', z: 'tab', func: 'msg.payload = { value: msg.payload, code: msg.code, lwm2m: msg.lwm2m };\nreturn msg;', outputs: 1, wires: [['readOut']] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: ['req'], uncaught: false, wires: [['readErr']] },
    { id: 'readErr', type: 'function', z: 'tab', func: 'msg.statusCode = 502;\nmsg.payload = { error: msg.error.message };\nreturn msg;', outputs: 1, wires: [['readOut']] },
    { id: 'readOut', type: 'http response', z: 'tab', statusCode: '', headers: {}, wires: [] },
    { id: 'statsIn', type: 'http in', z: 'tab', url: '/stats', method: 'get', wires: [['stats']] },
    { id: 'stats', type: 'lwm2m-stats', z: 'tab', server: 'srv', interval: 0, wires: [['statsOut']] },
    { id: 'statsOut', type: 'http response', z: 'tab', statusCode: '', headers: {}, wires: [] },
  ];
}

describe('persistence across Node-RED restarts', function () {
  this.timeout(90000);
  let userDir = '';
  let uiPort = 0;
  let coapsPort = 0;
  let red: RedProcess | undefined;
  const devices: SimulatedDevice[] = [];
  const logs: string[] = [];

  before(async () => {
    userDir = tempDir('lwm2m-persist-');
    linkPackage(userDir);
    uiPort = await freeTcpPort();
    coapsPort = await freeUdpPort();
    fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows(coapsPort)));
    const psk = Object.values(DEVICES).map((d) => ({ endpoint: d.endpoint, identity: d.identity, key: d.key.toString('hex') }));
    fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify({ srv: { psk: JSON.stringify(psk) } }));
    writeSettings(userDir, { uiPort, extra: `credentialSecret: '${SECRET}',` });
  });

  after(async () => {
    for (const d of devices) await d.stop();
    await red?.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function start(): Promise<void> {
    red = await startNodeRed({ userDir, uiPort });
    // The config node binds its ports asynchronously after "Started flows".
    const until = Date.now() + 10000;
    while (Date.now() < until) {
      const list = (await get<Array<{ id: string; ports: { coaps: number } }>>('/lwm2m/servers')).find((s) => s.id === 'srv');
      if (list?.ports.coaps === coapsPort) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the server did not listen:\n${red.log()}`);
  }

  async function get<T>(url: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${uiPort}${url}`);
    return (await res.json()) as T;
  }

  const list = (): Promise<DeviceRow[]> => get<DeviceRow[]>('/lwm2m/srv/devices');
  const read = (ep: string, p: string): Promise<ReadAnswer> => get<ReadAnswer>(`/read?ep=${encodeURIComponent(ep)}&path=${encodeURIComponent(p)}`);
  const stats = (): Promise<Stats> => get<Stats>('/stats');
  const stateFile = (): string => path.join(userDir, 'lwm2m-srv.state');
  const saved = () => new FileStateStore(stateFile(), SECRET).read();

  async function device(which: keyof typeof DEVICES, lifetime = 300): Promise<{ sim: SimulatedDevice; events: string[] }> {
    const d = DEVICES[which];
    const sim = new SimulatedDevice({ endpoint: d.endpoint, host: '127.0.0.1', port: coapsPort, psk: { identity: d.identity, key: d.key }, lifetime });
    const events: string[] = [];
    sim.on('disconnected', () => events.push('disconnected'));
    sim.on('transportError', (e: Error) => events.push(`error ${e.message}`));
    devices.push(sim);
    await sim.start();
    return { sim, events };
  }

  async function stop(how: 'SIGINT' | 'SIGKILL'): Promise<void> {
    if (!red) return;
    logs.push(red.log());
    if (how === 'SIGINT') await red.stop();
    else {
      const exited = new Promise<void>((r) => red?.child.once('exit', () => r()));
      red.child.kill('SIGKILL');
      await exited;
    }
    red = undefined;
  }

  it('a normal stop and start keeps devices, sessions (0 new handshakes) and expiry times; a kill -9 loads the last periodic save', async () => {
    // 1. First run: two DTLS devices register; one has a short lifetime.
    await start();
    const keep = await device('long');
    const short = await device('short', SHORT_LIFETIME);
    const first = await read(DEVICES.long.endpoint, '/3/0/0');
    assert.equal(first.code, '2.05', JSON.stringify(first));
    assert.equal(first.value, 'Open Mobile Alliance');
    assert.equal((await stats()).handshakes.total, 2);
    const before = await list();
    const shortBefore = before.find((d) => d.endpoint === DEVICES.short.endpoint);
    assert.ok(shortBefore);

    // 2. Normal stop (SIGINT): the state with its DTLS sessions is saved, encrypted, mode 0600.
    await stop('SIGINT');
    const raw = fs.readFileSync(stateFile());
    assert.equal(fs.statSync(stateFile()).mode & 0o777, 0o600);
    for (const plain of [DEVICES.long.endpoint, DEVICES.long.identity, DEVICES.long.key.toString('hex')]) {
      assert.ok(!raw.includes(Buffer.from(plain)), `${plain.slice(0, 4)}… readable in the state file`);
    }
    const atStop = await saved();
    assert.equal(atStop?.state.sessions.length, 2);
    assert.deepEqual(atStop?.info, { bind: '127.0.0.1', coapPort: 0, coapsPort });

    // 3. Restart on the same port and user dir: both devices are listed, with the same last-seen times.
    await start();
    const after = await list();
    assert.deepEqual(after.map((d) => d.endpoint).sort(), [DEVICES.long.endpoint, DEVICES.short.endpoint].sort());
    assert.equal(after.find((d) => d.endpoint === DEVICES.short.endpoint)?.lastSeen, shortBefore.lastSeen);
    // The sessions were taken up once: the file no longer holds them.
    assert.equal((await saved())?.state.sessions.length, 0);

    // A read through the flow works over the restored session: no new handshake anywhere.
    const again = await read(DEVICES.long.endpoint, '/3/0/1');
    assert.equal(again.code, '2.05', JSON.stringify(again));
    assert.equal(again.value, 'Lightweight M2M Client');
    assert.equal(again.lwm2m?.handshakes, 1);
    assert.equal(again.lwm2m?.sessionReused, true);
    assert.equal((await stats()).handshakes.total, 2);
    assert.deepEqual(keep.events, [], 'the device noticed the restart');
    assert.deepEqual(short.events, []);

    // 4. A third device registers after the restart; the periodic save (every 10 s) picks it up.
    await device('late');
    // 5. Meanwhile the short-lifetime device expires at its saved last-seen time + lifetime.
    let goneAt = 0;
    const expireBy = shortBefore.lastSeen + SHORT_LIFETIME * 1000 + 5000;
    while (Date.now() < expireBy) {
      if (!(await list()).some((d) => d.endpoint === DEVICES.short.endpoint)) {
        goneAt = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(goneAt > 0, 'the short-lifetime device did not expire');
    const expectedAt = shortBefore.lastSeen + SHORT_LIFETIME * 1000;
    assert.ok(goneAt >= expectedAt && goneAt <= expectedAt + 2500, `expired ${goneAt - expectedAt} ms after lastSeen + lifetime`);

    const saveBy = Date.now() + 15000;
    let periodic = await saved();
    while (!periodic?.state.registrations.some((r) => r.endpoint === DEVICES.late.endpoint) && Date.now() < saveBy) {
      await new Promise((r) => setTimeout(r, 250));
      periodic = await saved();
    }
    assert.ok(periodic?.state.registrations.some((r) => r.endpoint === DEVICES.late.endpoint), 'no periodic save with the third device');
    assert.equal(periodic?.state.sessions.length, 0, 'a periodic save holds no DTLS sessions');

    // 6. kill -9 and start again: the last periodic save is loaded.
    await stop('SIGKILL');
    await start();
    // (The save may predate the short device's expiry: a registration whose lifetime ran out while Node-RED was
    // down expires at the first check after the start.)
    const listedBy = Date.now() + 3000;
    let afterCrash = (await list()).map((d) => d.endpoint).sort();
    while (afterCrash.includes(DEVICES.short.endpoint) && Date.now() < listedBy) {
      await new Promise((r) => setTimeout(r, 100));
      afterCrash = (await list()).map((d) => d.endpoint).sort();
    }
    assert.deepEqual(afterCrash, [DEVICES.long.endpoint, DEVICES.late.endpoint].sort());
    assert.equal((await stats()).handshakes.total, 3);
    // DTLS sessions do not survive a crash: a request says so clearly until the device handshakes again.
    const noSession = await read(DEVICES.late.endpoint, '/3/0/0');
    assert.match(noSession.error ?? '', /cannot reach "late-dev"/);
    const back = await device('late');
    assert.deepEqual(back.events, []);
    const fresh = await read(DEVICES.late.endpoint, '/3/0/0');
    assert.equal(fresh.code, '2.05', JSON.stringify(fresh));
    assert.equal((await stats()).handshakes.total, 4);

    await stop('SIGINT');
    for (const log of logs) assert.deepEqual(errorLines(log), [], log);
  });

  it('without credentialSecret in settings.js, the secret Node-RED generated for the credentials file is used; SIGTERM saves', async () => {
    const dir = tempDir('lwm2m-persist-gen-');
    let node: RedProcess | undefined;
    let sim: SimulatedDevice | undefined;
    try {
      linkPackage(dir);
      const port = await freeTcpPort();
      const udp = await freeUdpPort();
      fs.writeFileSync(path.join(dir, 'flows.json'), JSON.stringify(flows(udp).slice(0, 2)));
      const d = DEVICES.long;
      fs.writeFileSync(path.join(dir, 'flows_cred.json'), JSON.stringify({ srv: { psk: JSON.stringify([{ endpoint: d.endpoint, identity: d.identity, key: d.key.toString('hex') }]) } }));
      writeSettings(dir, { uiPort: port, extra: 'credentialSecret: undefined,' });
      node = await startNodeRed({ userDir: dir, uiPort: port });
      const until = Date.now() + 10000;
      for (;;) {
        const list = (await (await fetch(`http://127.0.0.1:${port}/lwm2m/servers`)).json()) as Array<{ id: string; ports: { coaps: number } }>;
        if (list.find((x) => x.id === 'srv')?.ports.coaps === udp) break;
        assert.ok(Date.now() < until, 'the server did not listen');
        await new Promise((r) => setTimeout(r, 50));
      }
      sim = new SimulatedDevice({ endpoint: d.endpoint, host: '127.0.0.1', port: udp, psk: { identity: d.identity, key: d.key } });
      await sim.start();
      // SIGTERM (what service managers send) closes the flows like Ctrl-C: the state is saved.
      const exited = new Promise<void>((r) => node?.child.once('exit', () => r()));
      node.child.kill('SIGTERM');
      await exited;
      const generated = (JSON.parse(fs.readFileSync(path.join(dir, '.config.runtime.json'), 'utf8')) as { _credentialSecret?: string })._credentialSecret;
      assert.ok(generated, 'Node-RED generated no secret');
      const state = await new FileStateStore(path.join(dir, 'lwm2m-srv.state'), generated).load();
      assert.deepEqual(state?.registrations.map((r) => r.endpoint), [d.endpoint]);
      assert.deepEqual(errorLines(node.log()), [], node.log());
    } finally {
      await sim?.stop();
      await node?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
