/**
 * Scale-out through Node-RED: two lwm2m-server config nodes (two cluster instances, own ports) with the same
 * `store` = a throw-away redis-server. A device registers through server A; a flow's lwm2m-request node that uses
 * server B reads it.
 */
import assert from 'node:assert/strict';
import helper from 'node-red-node-test-helper';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, waitFor } from './support/ports';
import { catchAllNode, collect, eventsNode, helperNodes, requestNode, serverNode, tabNode } from './support/flows';
import { startRedisServer, type RedisServer } from './support/redis-server';

// The built runtime file, exactly what Node-RED loads (npm test builds first).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lwm2mNodes = require('../nodes/lwm2m.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const catchNode = require('@node-red/nodes/core/common/25-catch.js');

helper.init(require.resolve('node-red'));

const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const CREDS = { psk: JSON.stringify([{ endpoint: 'node-dev', identity: 'node-dev-id', key: KEY.toString('hex') }]) };

interface Msg { payload?: unknown; topic?: string; endpoint?: string; code?: string; error?: { message: string } }

describe('Node-RED nodes with a shared Redis store', function () {
  this.timeout(20000);
  let redis: RedisServer | undefined;
  let device: SimulatedDevice | undefined;
  before(async function () {
    this.timeout(15000);
    redis = await startRedisServer();
    await helper.startServer();
  });
  after(async () => {
    await helper.stopServer();
    await redis?.stop();
  });
  afterEach(async () => {
    await device?.stop();
    device = undefined;
    await helper.unload();
  });

  it('a device registered through server A is read by a request node on server B', async () => {
    const [portA, portB] = [await freeUdpPort(), await freeUdpPort()];
    const store = `${redis?.url}/0`;
    const common = { bind: '127.0.0.1', coapPort: 0, allowNoSec: false, poolMode: 'inbound', persist: false, store };
    await helper.load([lwm2mNodes, catchNode], [
      tabNode(),
      serverNode('srvA', { name: 'A', coapsPort: portA, ...common }),
      // B has no PSK table: it takes A's from the store.
      serverNode('srvB', { name: 'B', coapsPort: portB, ...common }),
      requestNode('req', 'srvB', 'out'),
      eventsNode('evB', 'srvB', 'register', '', 'evOut'),
      catchAllNode('catcher', 'caught'),
      ...helperNodes('out', 'evOut', 'caught'),
    ], { srvA: CREDS });
    const a = helper.getNode('srvA');
    const b = helper.getNode('srvB');
    await a.ready;
    await b.ready;
    const seen = (id: string): Msg[] => collect<Msg>(id);
    const out = seen('out');
    const caught = seen('caught');
    const evOut = seen('evOut');
    device = new SimulatedDevice({ endpoint: 'node-dev', host: '127.0.0.1', port: portA, psk: { identity: 'node-dev-id', key: KEY } });
    await device.start();
    await waitFor(() => b.lwm2m.registrations().some((r: { endpoint: string }) => r.endpoint === 'node-dev'), 3000, 'B lists the device');

    helper.getNode('req').receive({ endpoint: 'node-dev', topic: '/3/0/0', payload: '' });
    await waitFor(() => out.length === 1 || caught.length > 0, 5000, 'answer through B');
    assert.equal(caught.length, 0, JSON.stringify(caught[0]?.error));
    assert.equal(out[0].payload, 'Open Mobile Alliance');
    assert.equal(out[0].code, '2.05');
    assert.equal(out[0].endpoint, 'node-dev');
    // Events fire on the instance that holds the device (A), not on B.
    assert.equal(evOut.length, 0);
    assert.equal(b.lwm2m.stats().requests.total, 0);
    assert.equal(a.lwm2m.stats().requests.total, 1);

    helper.getNode('req').receive({ endpoint: 'ghost', topic: '/3/0/0', payload: '' });
    await waitFor(() => caught.length === 1, 5000, 'error for an unknown endpoint');
    assert.match(caught[0].error?.message ?? '', /unknown endpoint "ghost"/);
  });
});
