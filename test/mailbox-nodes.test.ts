/**
 * Queue-mode mailboxes across a Node-RED restart (node-red-node-test-helper with a user dir and a credential secret,
 * so the lwm2m-server node saves its state to disk): a request queued through an lwm2m-request node comes out of the
 * node with the same id after the restart, with the saved msg and the result, once the device talks again.
 */
import assert from 'node:assert/strict';
import helper from 'node-red-node-test-helper';
import { FileStateStore } from '../src/persist';
import { SimulatedDevice } from '../src/sim/device';
import type { Lwm2mServer } from '../src/server';
import { freeUdpPort, waitFor } from './support/ports';
import { type FlowNode, SERVER_DEFAULTS, catchAllNode, helperNodes, requestNode, serverNode, tabNode } from './support/flows';
import { usePersistFixture } from './support/red-persist';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lwm2mNodes = require('../nodes/lwm2m.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const catchNode = require('@node-red/nodes/core/common/25-catch.js');
const NODES = [lwm2mNodes, catchNode];

helper.init(require.resolve('node-red'));

const SECRET = 'mailbox-nodes-test-secret';

interface Msg {
  _msgid?: string; payload?: unknown; topic?: string; code?: string; endpoint?: string; custom?: unknown;
  mailbox?: { queuedAt: number; deliveredAt: number }; lwm2m?: unknown;
}

function flow(coapPort: number): FlowNode[] {
  return [
    tabNode('m'),
    serverNode('srv', { name: 'mailbox', ...SERVER_DEFAULTS, coapPort, coapsPort: 0, allowNoSec: true, persist: true, store: '' }),
    requestNode('req', 'srv', 'out', { operation: '', endpoint: 'mn-dev' }),
    catchAllNode('catcher', 'caught'),
    ...helperNodes('out', 'caught'),
  ];
}

/** Errors the lwm2m-request node reported since the last load, with the msg they came with. */
function requestErrors(): Array<{ msg: string }> {
  const spy = helper.log() as unknown as { getCalls(): Array<{ args: Array<{ level: number; type?: string; msg: unknown }> }>; ERROR: number };
  return spy.getCalls().map((c) => c.args[0]).filter((e) => e && e.level === spy.ERROR && e.type === 'lwm2m-request').map((e) => ({ msg: String(e.msg) }));
}

describe('Queue-mode mailbox across a Node-RED restart', function () {
  this.timeout(20000);
  let device: SimulatedDevice | undefined;
  const red = usePersistFixture(SECRET, 'lwm2m-mailbox-', async () => {
    await device?.stop();
    device = undefined;
  });
  const file = red.file;

  /** Node-RED stops as on shutdown; the process and its live callers end with it. */
  async function shutdown(): Promise<void> {
    const server = helper.getNode('srv').lwm2m as Lwm2mServer;
    await helper.unload();
    await server.stop();
  }

  /**
   * A registered queue-mode device, saved as asleep: the server node's awake window (93 s) is not configurable, so
   * the time passing is written into the saved state between two runs.
   */
  async function sleepingDevice(coapPort: number): Promise<void> {
    await helper.load(NODES, flow(coapPort));
    await helper.getNode('srv').ready;
    device = new SimulatedDevice({ endpoint: 'mn-dev', host: '127.0.0.1', port: coapPort, queueMode: true });
    await device.start();
    await shutdown();
    const store = new FileStateStore(file(), SECRET);
    const saved = await store.read();
    assert.ok(saved);
    saved.state.queue = saved.state.queue.map((q) => ({ ...q, awakeUntil: 0, asleep: true }));
    await store.save(saved.state, saved.info);
  }

  it('a request queued through lwm2m-request is delivered by the same node after a restart, with the saved msg', async () => {
    const coapPort = await freeUdpPort();
    await sleepingDevice(coapPort);
    await helper.load(NODES, flow(coapPort));
    await helper.getNode('srv').ready;
    helper.getNode('req').receive({ _msgid: 'keep-me', operation: 'read', topic: '/3/0/0', timeout: 15000, custom: { a: [1, 2] }, payload: '' });
    await waitFor(() => (helper.getNode('srv').lwm2m as Lwm2mServer).exportState().mailbox?.length === 1, 2000, 'queued');
    const before = Date.now();
    await shutdown();
    // The caller of the stopped process failed with it ('closed'); what follows is the restarted one.
    const errorsBefore = requestErrors().length;
    assert.equal(device?.requestsHandled, 0);

    await helper.load(NODES, flow(coapPort));
    await helper.getNode('srv').ready;
    const seen: Msg[] = [];
    helper.getNode('out').on('input', (m: Msg) => seen.push(m));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.length, 0, 'waits for the device');
    assert.equal((await device?.update())?.code, '2.04');
    await waitFor(() => seen.length === 1, 3000, 'the request node output');
    const m = seen[0];
    assert.equal(m._msgid, 'keep-me');
    assert.deepEqual(m.custom, { a: [1, 2] });
    assert.equal(m.payload, 'Open Mobile Alliance');
    assert.equal(m.code, '2.05');
    assert.equal(m.topic, '/3/0/0');
    assert.equal(m.endpoint, 'mn-dev');
    assert.ok(m.lwm2m);
    assert.ok(m.mailbox && m.mailbox.queuedAt <= before && m.mailbox.deliveredAt >= m.mailbox.queuedAt);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.length, 1);
    assert.equal(device?.requestsHandled, 1);
    assert.deepEqual(requestErrors().slice(errorsBefore), []);
  });

  it('an entry whose time ran out while Node-RED was down is reported by the request node (Catch nodes see it)', async () => {
    const coapPort = await freeUdpPort();
    await sleepingDevice(coapPort);
    await helper.load(NODES, flow(coapPort));
    await helper.getNode('srv').ready;
    helper.getNode('req').receive({ _msgid: 'late', operation: 'write', topic: '/1/0/1', timeout: 600, payload: 120 });
    await waitFor(() => (helper.getNode('srv').lwm2m as Lwm2mServer).exportState().mailbox?.length === 1, 2000, 'queued');
    await shutdown();
    await new Promise((r) => setTimeout(r, 700));

    await helper.load(NODES, flow(coapPort));
    const caught: Array<Msg & { error?: { message: string; source?: { id: string } } }> = [];
    helper.getNode('caught').on('input', (m: Msg) => caught.push(m));
    await helper.getNode('srv').ready;
    await waitFor(() => caught.length === 1, 2000, 'the Catch node');
    assert.match(String(caught[0].error?.message), /write \/1\/0\/1: device "mn-dev" is asleep \(queue mode\) and did not wake up within 600 ms/);
    assert.equal(caught[0].error?.source?.id, 'req');
    assert.equal(caught[0]._msgid, 'late');
    assert.equal(caught[0].payload, 120);
    assert.equal((await device?.update())?.code, '2.04');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(device?.requestsHandled, 0);
  });
});
