/**
 * Scale-out: a request waiting in a sleeping device's mailbox on instance A travels in A's hand-over state through
 * a real redis-server; B re-queues it and delivers the result as a 'mailbox-result' event once the device wakes.
 */
import assert from 'node:assert/strict';
import { Lwm2mServer, Lwm2mRequestError, type Lwm2mResult, type MailboxEntry } from '../src/server';
import { RedisClusterStore } from '../src/cluster';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, startUdpFrontDoor, waitFor } from './support/ports';
import { startRedisServer, type RedisServer } from './support/redis-server';

const KEY = Buffer.from('101112131415161718191a1b1c1d1e1f', 'hex');
const PSK = [{ endpoint: 'mc-dev', identity: 'mc-dev-id', key: KEY.toString('hex') }];

describe('Queue-mode mailbox in a Redis hand-over', function () {
  this.timeout(20000);
  let redis: RedisServer | undefined;

  before(async function () {
    this.timeout(15000);
    redis = await startRedisServer();
  });
  after(async () => {
    await redis?.stop();
  });

  it('an entry queued on A survives A\'s clean close and is delivered on B', async () => {
    const url = (redis as RedisServer).url;
    const store = (id: string): RedisClusterStore => new RedisClusterStore({ url, prefix: 'mbx:', instanceId: id, heartbeatMs: 200, takeoverDelayMs: 100 });
    const opts = { bind: '127.0.0.1', coapPort: 0, psk: PSK, queueAwakeTime: 0.3, expiryCheckInterval: 50 };
    const a = new Lwm2mServer({ ...opts, coapsPort: await freeUdpPort(), cluster: store('a') });
    const storeB = store('b');
    const b = new Lwm2mServer({ ...opts, coapsPort: await freeUdpPort(), cluster: storeB });
    const door = await startUdpFrontDoor(0);
    const dev = new SimulatedDevice({ endpoint: 'mc-dev', host: '127.0.0.1', port: door.port, queueMode: true, psk: { identity: 'mc-dev-id', key: KEY } });
    try {
      await a.start();
      await b.start();
      door.target = a.ports.coaps;
      const results: Array<[Lwm2mResult, MailboxEntry]> = [];
      b.on('mailbox-result', (r: Lwm2mResult, e: MailboxEntry) => results.push([r, e]));
      let slept = false;
      a.once('sleep', () => (slept = true));
      await dev.start();
      await waitFor(() => slept, 3000, 'device asleep on A');

      const waiting = a.request({ endpoint: 'mc-dev', operation: 'read', path: '/3/0/0', timeout: 10000, owner: 'req-node', msg: { _msgid: 'c-1', topic: 'x' } });
      const onA = waiting.then(() => undefined, (err: Error) => err);
      const adopted = new Promise((r) => storeB.once('adopted', r));
      await a.stop();
      const err = await onA;
      assert.ok(err instanceof Lwm2mRequestError && err.kind === 'closed');
      assert.match(err.message, /handed over/);
      await adopted;
      assert.equal(b.exportState().mailbox?.length, 1);
      door.target = b.ports.coaps;
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(dev.requestsHandled, 0);
      assert.equal((await dev.update()).code, '2.04');
      await waitFor(() => results.length === 1, 3000, 'mailbox-result on B');
      assert.equal(results[0][0].payload, 'Open Mobile Alliance');
      assert.equal(results[0][1].owner, 'req-node');
      assert.deepEqual(results[0][1].msg, { _msgid: 'c-1', topic: 'x' });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(dev.requestsHandled, 1);
      assert.equal(results.length, 1);
    } finally {
      await dev.stop();
      await a.stop();
      await b.stop();
      await door.close();
    }
  });
});
