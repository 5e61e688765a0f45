/**
 * The lwm2m-server config node's persistence inside Node-RED (node-red-node-test-helper with a user dir and a
 * credential secret): save on close and restore on load, the hand-over on redeploy, sessions taken up once,
 * corrupt files, no secret, persistence turned off, node removed, ports changed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import helper from 'node-red-node-test-helper';
import { FileStateStore } from '../src/persist';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, waitFor } from './support/ports';
import { type FlowNode, SERVER_DEFAULTS, helperNodes, requestNode, serverNode, tabNode } from './support/flows';
import { usePersistFixture } from './support/red-persist';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lwm2mNodes = require('../nodes/lwm2m.js');

helper.init(require.resolve('node-red'));

const SECRET = 'persist-nodes-test-secret';
const KEY = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', 'hex');
const CREDS = { psk: JSON.stringify([{ endpoint: 'pn-dev', identity: 'pn-dev-id', key: KEY.toString('hex') }]) };

interface Msg { payload?: unknown; lwm2m?: { handshakes: number; sessionReused: boolean } }

function flow(coapsPort: number, extra: Record<string, unknown> = {}): FlowNode[] {
  return [
    tabNode('p'),
    serverNode('srv', { name: 'persist', ...SERVER_DEFAULTS, coapPort: 0, coapsPort, allowNoSec: false, persist: true, store: '', ...extra }),
    requestNode('req', 'srv', 'out', { endpoint: 'pn-dev', path: '/3/0/0' }),
    requestNode('obs', 'srv', 'obsOut', { operation: 'observe', endpoint: 'pn-dev', path: '/3303/0/5700' }),
    ...helperNodes('out', 'obsOut'),
  ];
}

/** Warnings of the lwm2m-server node since the last load. */
function warnings(): string[] {
  const spy = helper.log() as unknown as { getCalls(): Array<{ args: Array<{ level: number; type?: string; msg: unknown }> }>; WARN: number };
  return spy.getCalls().map((c) => c.args[0]).filter((e) => e && e.level === spy.WARN && e.type === 'lwm2m-server').map((e) => String(e.msg));
}

async function readOnce(): Promise<Msg> {
  const seen: Msg[] = [];
  helper.getNode('out').on('input', (m: Msg) => seen.push(m));
  helper.getNode('req').receive({ payload: '' });
  await waitFor(() => seen.length === 1, 3000, 'read answer');
  return seen[0];
}

describe('lwm2m-server persistence in Node-RED', function () {
  this.timeout(20000);
  let device: SimulatedDevice | undefined;
  const red = usePersistFixture(SECRET, 'lwm2m-pnodes-', async () => {
    await device?.stop();
    device = undefined;
  });
  const file = red.file;
  const saved = () => new FileStateStore(file(), SECRET).read();

  it('saves on close and restores on load (observations too); a redeploy hands over in-process and the file never keeps used sessions', async () => {
    const coapsPort = await freeUdpPort();
    await helper.load(lwm2mNodes, flow(coapsPort), { srv: CREDS });
    await helper.getNode('srv').ready;
    device = new SimulatedDevice({ endpoint: 'pn-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'pn-dev-id', key: KEY } });
    let disconnected = false;
    device.on('disconnected', () => (disconnected = true));
    await device.start();
    assert.equal((await readOnce()).payload, 'Open Mobile Alliance');
    helper.getNode('obs').receive({ payload: '' });
    await waitFor(() => device?.observationCount === 1, 3000, 'observation');

    // Redeploy: the hand-over is the fast path; the file written at close is rewritten without sessions at start.
    await helper.setFlows(flow(coapsPort, { name: 'renamed' }), 'nodes', { srv: CREDS });
    await helper.getNode('srv').ready;
    const afterRedeploy = await saved();
    assert.deepEqual(afterRedeploy?.state.registrations.map((r) => r.endpoint), ['pn-dev']);
    assert.equal(afterRedeploy?.state.sessions.length, 0);
    assert.equal((await readOnce()).lwm2m?.handshakes, 1);

    // Stop (as on shutdown): the close saves the sessions too.
    await helper.unload();
    const atClose = await saved();
    assert.equal(atClose?.state.sessions.length, 1);
    assert.equal(fs.statSync(file()).mode & 0o777, 0o600);

    // Load again (a restart of the runtime): restored from the file, no new handshake.
    await helper.load(lwm2mNodes, flow(coapsPort), { srv: CREDS });
    const srv = helper.getNode('srv');
    await srv.ready;
    assert.deepEqual(srv.lwm2m.registrations().map((r: { endpoint: string }) => r.endpoint), ['pn-dev']);
    const res = await readOnce();
    assert.equal(res.payload, 'Open Mobile Alliance');
    assert.equal(res.lwm2m?.handshakes, 1);
    assert.equal(srv.lwm2m.stats().handshakes.total, 1);
    assert.equal((await saved())?.state.sessions.length, 0);
    // The observation started before the restart still reports through the request node with the same id.
    const notes: Msg[] = [];
    helper.getNode('obsOut').on('input', (m: Msg) => notes.push(m));
    device.set('/3303/0/5700', 42.5);
    await waitFor(() => notes.length === 1, 3000, 'notification after the restart');
    assert.equal(notes[0].payload, 42.5);
    assert.equal(disconnected, false);
    assert.deepEqual(warnings(), []);
  });

  it('a corrupt state file is reported and moved aside; the server starts anyway', async () => {
    fs.writeFileSync(file(), Buffer.from('LWM2MSTA\x01 this is not a complete state file'));
    const coapsPort = await freeUdpPort();
    await helper.load(lwm2mNodes, flow(coapsPort), { srv: CREDS });
    await helper.getNode('srv').ready;
    assert.equal(helper.getNode('srv').lwm2m.ports.coaps, coapsPort);
    await waitFor(() => warnings().length > 0, 2000, 'warning');
    assert.match(warnings()[0], /lwm2m-srv\.state is unusable: truncated .*moved to .*lwm2m-srv\.state\.corrupt-/);
    assert.equal(fs.readdirSync(red.userDir).filter((n) => n.includes('.corrupt-')).length, 1);
  });

  it('without a credential secret nothing is written, with a clear warning', async () => {
    helper.settings({ userDir: red.userDir, credentialSecret: false });
    const coapsPort = await freeUdpPort();
    await helper.load(lwm2mNodes, flow(coapsPort), { srv: CREDS });
    await helper.getNode('srv').ready;
    await waitFor(() => warnings().length > 0, 2000, 'warning');
    assert.match(warnings()[0], /persistence is off: Node-RED has no credential secret/);
    await helper.unload();
    assert.deepEqual(fs.readdirSync(red.userDir), []);
  });

  it('turning persistence off removes the file; removing the node removes it too', async () => {
    const coapsPort = await freeUdpPort();
    await helper.load(lwm2mNodes, flow(coapsPort), { srv: CREDS });
    await helper.getNode('srv').ready;
    await helper.setFlows(flow(coapsPort, { name: 'again' }), 'nodes', { srv: CREDS });
    await helper.getNode('srv').ready;
    assert.ok(fs.existsSync(file()));
    await helper.setFlows(flow(coapsPort, { persist: false }), 'nodes', { srv: CREDS });
    await helper.getNode('srv').ready;
    assert.equal(fs.existsSync(file()), false);

    await helper.setFlows(flow(coapsPort, { persist: true }), 'nodes', { srv: CREDS });
    await helper.getNode('srv').ready;
    await helper.setFlows(flow(coapsPort, { name: 'x' }), 'nodes', { srv: CREDS });
    await helper.getNode('srv').ready;
    assert.ok(fs.existsSync(file()));
    await helper.setFlows([{ id: 'tab', type: 'tab', label: 'p' }], 'full', {});
    assert.equal(fs.existsSync(file()), false);
  });

  it('a state saved for other ports is not restored', async () => {
    const [p1, p2] = [await freeUdpPort(), await freeUdpPort()];
    await helper.load(lwm2mNodes, flow(p1), { srv: CREDS });
    await helper.getNode('srv').ready;
    device = new SimulatedDevice({ endpoint: 'pn-dev', host: '127.0.0.1', port: p1, psk: { identity: 'pn-dev-id', key: KEY } });
    await device.start();
    await helper.unload();
    assert.equal((await saved())?.state.registrations.length, 1);
    await helper.load(lwm2mNodes, flow(p2), { srv: CREDS });
    const srv = helper.getNode('srv');
    await srv.ready;
    assert.equal(srv.lwm2m.registrations().length, 0);
  });
});
