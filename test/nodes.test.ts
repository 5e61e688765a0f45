import assert from 'node:assert/strict';
import helper from 'node-red-node-test-helper';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, udpPortIsFree, waitFor } from './support/ports';
import { type FlowNode, SERVER_DEFAULTS, catchAllNode, collect as collectInputs, eventsNode, helperNodes, requestNode, serverNode, statsNode, tabNode, useNodeRedHelper } from './support/flows';

// The built runtime file, exactly what Node-RED loads (npm test builds first).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lwm2mNodes = require('../nodes/lwm2m.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const catchNode = require('@node-red/nodes/core/common/25-catch.js');

helper.init(require.resolve('node-red'));

const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const CREDS = { psk: JSON.stringify([{ endpoint: 'node-dev', identity: 'node-dev-id', key: KEY.toString('hex') }]) };

interface Msg { payload?: unknown; topic?: string; endpoint?: string; code?: string; lwm2m?: Record<string, unknown>; error?: { message: string } }

function flow(coapPort: number, coapsPort: number, extra: Record<string, unknown> = {}): FlowNode[] {
  return [
    tabNode(),
    serverNode('srv', { name: 'test server', ...SERVER_DEFAULTS, coapPort, coapsPort, allowNoSec: false, ...extra }),
    requestNode('req', 'srv', 'out'),
    eventsNode('ev', 'srv', 'register,deregister', 'node-*', 'evOut'),
    statsNode('stats', 'srv', 'statsOut'),
    catchAllNode('catcher', 'caught'),
    ...helperNodes('out', 'evOut', 'statsOut', 'caught'),
  ];
}

const collect = (id: string): Msg[] => collectInputs<Msg>(id);

describe('Node-RED nodes', function () {
  let device: SimulatedDevice | undefined;
  useNodeRedHelper(async () => {
    await device?.stop();
    device = undefined;
  });

  it('registers a DTLS device, 100 reads through lwm2m-request, stats show 1 handshake and 100 requests', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    await helper.load([lwm2mNodes, catchNode], flow(coapPort, coapsPort), { srv: CREDS });
    // The ports are bound asynchronously after the flow starts.
    await helper.getNode('srv').ready;
    const out = collect('out');
    const ev = collect('evOut');
    const statsOut = collect('statsOut');
    const caught = collect('caught');
    device = new SimulatedDevice({ endpoint: 'node-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'node-dev-id', key: KEY } });
    await device.start();
    await waitFor(() => ev.length === 1, 3000, 'register event');
    assert.equal(ev[0].topic, 'register');
    assert.equal(ev[0].endpoint, 'node-dev');
    assert.equal((ev[0].payload as { secure: boolean }).secure, true);

    const req = helper.getNode('req');
    for (let i = 0; i < 100; i++) {
      req.receive({ endpoint: 'node-dev', topic: '/3/0/0', payload: '' });
      await waitFor(() => out.length === i + 1 || caught.length > 0, 5000, `read ${i + 1}`);
      assert.equal(caught.length, 0, JSON.stringify(caught[0]?.error));
    }
    assert.equal(out.length, 100);
    for (const m of out) {
      assert.equal(m.payload, 'Open Mobile Alliance');
      assert.equal(m.code, '2.05');
      assert.equal(m.topic, '/3/0/0');
      assert.equal(m.lwm2m?.secure, true);
      assert.equal(m.lwm2m?.sessionReused, true);
      assert.equal(m.lwm2m?.handshakes, 1);
    }
    helper.getNode('stats').receive({});
    await waitFor(() => statsOut.length === 1, 2000, 'stats output');
    const stats = statsOut[0].payload as { handshakes: { total: number }; requests: { total: number }; perSession: Array<{ endpoint: string; handshakes: number; requests: number }> };
    assert.equal(stats.handshakes.total, 1);
    assert.equal(stats.requests.total, 100);
    const mine = stats.perSession.find((s) => s.endpoint === 'node-dev');
    assert.equal(mine?.handshakes, 1);
    assert.equal(mine?.requests, 100);
  });

  it('observe: each notification leaves the lwm2m-request node that started it; send events come out of lwm2m-events', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    const f = flow(coapPort, coapsPort);
    (f.find((n) => n.id === 'ev') as Record<string, unknown>).events = 'send';
    (f.find((n) => n.id === 'req') as Record<string, unknown>).operation = '';
    await helper.load([lwm2mNodes, catchNode], f, { srv: CREDS });
    const out = collect('out');
    const ev = collect('evOut');
    await helper.getNode('srv').ready;
    device = new SimulatedDevice({ endpoint: 'node-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'node-dev-id', key: KEY } });
    await device.start();
    helper.getNode('req').receive({ endpoint: 'node-dev', topic: '/3303/0/5700', operation: 'observe' } as object);
    await waitFor(() => out.length === 1, 3000, 'first observe answer');
    assert.equal(out[0].payload, 21.5);
    assert.equal(typeof (out[0] as { observe?: number }).observe, 'number');
    device.set('/3303/0/5700', 25.5);
    await waitFor(() => out.length === 2, 3000, 'notification');
    assert.equal(out[1].payload, 25.5);
    assert.equal(out[1].topic, '/3303/0/5700');
    assert.equal(out[1].endpoint, 'node-dev');
    assert.ok(((out[1] as { observe?: number }).observe ?? 0) > ((out[0] as { observe?: number }).observe ?? 0));

    await device.send(['/3/0/9']);
    await waitFor(() => ev.length === 1, 3000, 'send event');
    assert.equal(ev[0].topic, 'send');
    assert.deepEqual(ev[0].payload, { '/3/0/9': 87 });
  });

  it('sends errors to Catch nodes with a clear message and the original msg', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    await helper.load([lwm2mNodes, catchNode], flow(coapPort, coapsPort), { srv: CREDS });
    const caught = collect('caught');
    helper.getNode('req').receive({ endpoint: 'ghost', topic: '/3/0/0', _marker: 42 } as object);
    await waitFor(() => caught.length === 1, 3000, 'catch');
    assert.match(caught[0].error?.message ?? '', /unknown endpoint "ghost"/);
    assert.equal((caught[0] as { _marker?: number })._marker, 42);
  });

  it('full and modified-nodes redeploys rebind the same ports; unload frees them', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    const f = flow(coapPort, coapsPort);
    await helper.load([lwm2mNodes, catchNode], f, { srv: CREDS });
    await waitFor(() => !!helper.getNode('srv')?.lwm2m?.ports.coaps, 3000, 'listening');
    assert.equal(await udpPortIsFree(coapsPort), false);

    for (const type of ['full', 'nodes', 'flows'] as const) {
      const changed = flow(coapPort, coapsPort, { name: `server after ${type} deploy`, idleTimeout: 301 });
      await helper.setFlows(changed, type, { srv: CREDS });
      const srv = helper.getNode('srv');
      await srv.ready;
      assert.equal(srv.startError, undefined, `${type} deploy: ${srv.startError?.message}`);
      assert.equal(srv.lwm2m.ports.coaps, coapsPort);
      assert.equal(srv.lwm2m.ports.coap, coapPort);
    }
    // The new server works: a device registers and is read through the flow.
    const out = collect('out');
    device = new SimulatedDevice({ endpoint: 'node-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'node-dev-id', key: KEY } });
    await device.start();
    helper.getNode('req').receive({ endpoint: 'node-dev', topic: '/3303/0/5700' });
    await waitFor(() => out.length === 1, 3000, 'read after redeploy');
    assert.equal(out[0].payload, 21.5);
    await device.stop();
    device = undefined;

    await helper.unload();
    assert.equal(await udpPortIsFree(coapsPort), true);
    assert.equal(await udpPortIsFree(coapPort), true);
  });

  it('redeploying the config node hands registrations, the DTLS session and observations over: devices notice nothing', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    const f = flow(coapPort, coapsPort);
    (f.find((n) => n.id === 'req') as Record<string, unknown>).operation = '';
    await helper.load([lwm2mNodes, catchNode], f, { srv: CREDS });
    await helper.getNode('srv').ready;
    device = new SimulatedDevice({ endpoint: 'node-dev', host: '127.0.0.1', port: coapsPort, psk: { identity: 'node-dev-id', key: KEY } });
    let disconnected = false;
    device.on('disconnected', () => (disconnected = true));
    await device.start();
    let out = collect('out');
    helper.getNode('req').receive({ endpoint: 'node-dev', topic: '/3303/0/5700', operation: 'observe' } as object);
    await waitFor(() => out.length === 1, 3000, 'observe answer');

    for (const type of ['nodes', 'full'] as const) {
      const changed = flow(coapPort, coapsPort, { name: `after ${type}`, idleTimeout: type === 'full' ? 302 : 301 });
      (changed.find((n) => n.id === 'req') as Record<string, unknown>).operation = '';
      await helper.setFlows(changed, type, { srv: CREDS });
      const srv = helper.getNode('srv');
      await srv.ready;
      assert.equal(srv.lwm2m.registrations().length, 1, `${type}: registration kept`);
      out = collect('out');
      helper.getNode('req').receive({ endpoint: 'node-dev', topic: '/3/0/0', operation: 'read' } as object);
      await waitFor(() => out.length === 1, 3000, `${type}: read after redeploy`);
      assert.equal(out[0].payload, 'Open Mobile Alliance');
      assert.equal(out[0].lwm2m?.sessionReused, true);
      assert.equal(out[0].lwm2m?.handshakes, 1);
      assert.equal(srv.lwm2m.stats().handshakes.total, 1, `${type}: no new handshake`);
      // The observation started before the redeploy still reports through the (new) request node.
      device.set('/3303/0/5700', type === 'nodes' ? 30 : 31);
      await waitFor(() => out.length === 2, 3000, `${type}: notification after redeploy`);
      assert.equal(out[1].payload, type === 'nodes' ? 30 : 31);
    }
    assert.equal(disconnected, false, 'the device never saw its session close');
  });

  it('a port in use shows a red status and does not crash the runtime', async () => {
    const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
    const dgram = await import('node:dgram');
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(coapsPort, '127.0.0.1', () => r()));
    try {
      await helper.load([lwm2mNodes, catchNode], flow(coapPort, coapsPort), { srv: CREDS });
      const srv = helper.getNode('srv');
      await srv.ready.catch(() => undefined);
      assert.match(srv.startError?.message ?? '', /already in use/);
      const caught = collect('caught');
      helper.getNode('req').receive({ endpoint: 'x', topic: '/3/0/0' });
      await waitFor(() => caught.length === 1, 2000, 'catch');
      assert.match(caught[0].error?.message ?? '', /not started.*already in use/);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });
});
