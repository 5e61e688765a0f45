/**
 * Queue-mode mailboxes that outlive their server instance: entries saved in the state (through JSON, as a restart
 * reads them from disk), queued again by the next instance and executed once when the device wakes, with the
 * outcome as a 'mailbox-result' / 'mailbox-error' event. Real simulated devices over plain CoAP and DTLS.
 */
import assert from 'node:assert/strict';
import { Lwm2mServer, Lwm2mRequestError, type Lwm2mResult, type Lwm2mServerState, type MailboxEntry } from '../src/server';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, waitFor } from './support/ports';

const KEY = Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex');
const PSK = [{ endpoint: 'mb-sec', identity: 'mb-sec-id', key: KEY.toString('hex') }];

interface Outcomes {
  results: Array<[Lwm2mResult, MailboxEntry]>;
  errors: Array<[Error, MailboxEntry]>;
}

function outcomes(server: Lwm2mServer): Outcomes {
  const o: Outcomes = { results: [], errors: [] };
  server.on('mailbox-result', (r: Lwm2mResult, e: MailboxEntry) => o.results.push([r, e]));
  server.on('mailbox-error', (err: Error, e: MailboxEntry) => o.errors.push([err, e]));
  return o;
}

/** What a restart reads back from disk (the file store leaves the in-process `handover` out). */
const throughJson = ({ handover: _handover, ...state }: Lwm2mServerState): Lwm2mServerState => JSON.parse(JSON.stringify(state)) as Lwm2mServerState;

describe('Queue-mode mailbox across restarts and hand-overs', function () {
  this.timeout(15000);
  const servers: Lwm2mServer[] = [];
  const devices: SimulatedDevice[] = [];

  afterEach(async () => {
    for (const d of devices.splice(0)) await d.stop();
    for (const s of servers.splice(0)) await s.stop();
  });

  async function server(coapPort: number, state?: Lwm2mServerState, extra: ConstructorParameters<typeof Lwm2mServer>[0] = {}): Promise<[Lwm2mServer, Outcomes]> {
    const s = new Lwm2mServer({ bind: '127.0.0.1', coapPort, coapsPort: 0, allowNoSec: true, queueAwakeTime: 0.3, expiryCheckInterval: 50, ...extra });
    servers.push(s);
    const o = outcomes(s);
    await s.start(state);
    return [s, o];
  }

  async function sleepingDevice(port: number, extra: Partial<ConstructorParameters<typeof SimulatedDevice>[0]> = {}): Promise<SimulatedDevice> {
    const d = new SimulatedDevice({ endpoint: 'mb-dev', host: '127.0.0.1', port, queueMode: true, ...extra });
    devices.push(d);
    await d.start();
    return d;
  }

  async function asleep(s: Lwm2mServer): Promise<void> {
    let slept = false;
    s.once('sleep', () => (slept = true));
    await waitFor(() => slept, 3000, 'device asleep');
  }

  it('a queued request is saved with its msg, re-queued after a restart and runs once when the device updates', async () => {
    const port = await freeUdpPort();
    const [a] = await server(port);
    const dev = await sleepingDevice(port);
    await asleep(a);
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    const msg = {
      _msgid: 'm-1', topic: '/3/0/0', payload: 'ignored', bytes: Buffer.from('0a0b', 'hex'), when: new Date(1700000000000), big: 12345678901234567890n,
      fn: () => 1, circular, instance: new (class Thing { x = 1 })(), huge: 'x'.repeat(70 * 1024), nested: { ok: [1, 'two'] },
    };
    const waiting = a.request({ endpoint: 'mb-dev', operation: 'read', path: '/3/0/0', timeout: 10000, owner: 'node-1', msg, payload: 'ignored' });
    const lost = waiting.then(() => undefined, (err: Error) => err);
    const state = a.exportState();
    assert.equal(state.mailbox?.length, 1);
    const saved = state.mailbox?.[0];
    assert.equal(saved?.owner, 'node-1');
    assert.ok(saved && saved.deadline > Date.now() + 8000 && saved.deadline <= Date.now() + 10000);
    // The process "dies": its caller is gone with it.
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    const err = await lost;
    assert.ok(err instanceof Lwm2mRequestError && err.kind === 'closed');
    assert.equal(dev.requestsHandled, 0);

    const [b, out] = await server(port, throughJson(state));
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(dev.requestsHandled, 0, 'still asleep: nothing sent');
    assert.equal((await dev.update()).code, '2.04');
    await waitFor(() => out.results.length === 1, 3000, 'mailbox-result');
    const [result, entry] = out.results[0];
    assert.equal(result.payload, 'Open Mobile Alliance');
    assert.equal(result.code, '2.05');
    assert.equal(entry.owner, 'node-1');
    assert.equal(entry.endpoint, 'mb-dev');
    const m = entry.msg as Record<string, unknown>;
    assert.equal(m._msgid, 'm-1');
    assert.equal(m.topic, '/3/0/0');
    assert.ok(Buffer.isBuffer(m.bytes) && m.bytes.equals(Buffer.from('0a0b', 'hex')));
    assert.ok(m.when instanceof Date && m.when.getTime() === 1700000000000);
    assert.equal(m.big, 12345678901234567890n);
    assert.deepEqual(m.nested, { ok: [1, 'two'] });
    for (const k of ['fn', 'circular', 'instance', 'huge', 'payload']) assert.ok(!(k in m), `${k} left out`);
    assert.equal(entry.payload, 'ignored');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(dev.requestsHandled, 1);
    assert.equal(out.results.length, 1);
    assert.equal(out.errors.length, 0);
    assert.equal(b.exportState().mailbox?.length, 0);
  });

  it('an entry whose deadline passes while no server runs fails at restore with "did not wake up"', async () => {
    const port = await freeUdpPort();
    const [a] = await server(port);
    const dev = await sleepingDevice(port);
    await asleep(a);
    const waiting = a.request({ endpoint: 'mb-dev', operation: 'write', path: '/1/0/1', payload: 90, timeout: 400, owner: 'node-2', msg: { _msgid: 'm-2' } });
    const lost = waiting.then(() => undefined, (err: Error) => err);
    const state = throughJson(a.exportState());
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    await lost;
    await new Promise((r) => setTimeout(r, 500));
    const [, out] = await server(port, state);
    assert.equal(out.errors.length, 1);
    const [err, entry] = out.errors[0];
    assert.ok(err instanceof Lwm2mRequestError);
    assert.equal(err.kind, 'asleep');
    assert.match(err.message, /write \/1\/0\/1: device "mb-dev" is asleep \(queue mode\) and did not wake up within 400 ms/);
    assert.equal(entry.owner, 'node-2');
    assert.deepEqual(entry.msg, { _msgid: 'm-2' });
    assert.equal(entry.payload, 90);
    assert.equal((await dev.update()).code, '2.04');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(dev.requestsHandled, 0, 'an expired entry is never sent');
    assert.equal(out.results.length, 0);
  });

  it('a restored entry that times out while the device sleeps gives mailbox-error; one for a device gone gives unknown-endpoint', async () => {
    const port = await freeUdpPort();
    const [a] = await server(port);
    await sleepingDevice(port);
    await asleep(a);
    void a.request({ endpoint: 'mb-dev', operation: 'read', path: '/3/0/9', timeout: 1200, owner: 'n' }).catch(() => undefined);
    const state = throughJson(a.exportState());
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    // A second, made-up entry for a device that is not registered any more.
    state.mailbox?.push({ ...(state.mailbox[0] as MailboxEntry), id: 'other', endpoint: 'gone-dev' });
    const [, out] = await server(port, state);
    await waitFor(() => out.errors.length === 1, 1000, 'unknown endpoint error');
    assert.equal((out.errors[0][0] as Lwm2mRequestError).kind, 'unknown-endpoint');
    await waitFor(() => out.errors.length === 2, 3000, 'timeout error');
    assert.match(out.errors[1][0].message, /did not wake up within 1200 ms/);
    assert.equal(out.errors[1][1].endpoint, 'mb-dev');
  });

  it('in-process hand-over: live and restored entries move to the successor and each runs exactly once', async () => {
    const port = await freeUdpPort();
    const [a] = await server(port);
    const dev = await sleepingDevice(port);
    await asleep(a);
    // One entry restored from a saved state (no caller)…
    void a.request({ endpoint: 'mb-dev', operation: 'read', path: '/3/0/1', timeout: 10000, owner: 'restored' }).catch(() => undefined);
    const saved = throughJson(a.exportState());
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    const [b, outB] = await server(port, saved);
    // …and one with a live caller on the restored instance.
    const live = b.request({ endpoint: 'mb-dev', operation: 'read', path: '/3/0/0', timeout: 10000, owner: 'live' });
    assert.equal(b.exportState().mailbox?.length, 2);
    const handed = await b.detach();
    assert.equal(handed.mailbox?.length, 2);
    const [c, outC] = await server(port, handed);
    assert.equal(c.exportState().mailbox?.length, 2, 'moved over, not duplicated');
    assert.equal((await dev.update()).code, '2.04');
    assert.equal((await live).payload, 'Open Mobile Alliance');
    await waitFor(() => outC.results.length === 1, 3000, 'restored entry result on the successor');
    assert.equal(outC.results[0][0].payload, 'Lightweight M2M Client');
    assert.equal(outC.results[0][1].owner, 'restored');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(dev.requestsHandled, 2);
    assert.equal(outB.results.length + outB.errors.length + outC.errors.length, 0);
    assert.equal(outC.results.length, 1);
  });

  it('a cancel-observe queued while the device sleeps is restored after a restart and cancels that observation', async () => {
    const port = await freeUdpPort();
    const [a] = await server(port);
    const dev = await sleepingDevice(port);
    await a.request({ endpoint: 'mb-dev', operation: 'observe', path: '/3303/0/5700', owner: 'obs' });
    assert.equal(dev.observationCount, 1);
    await asleep(a);
    void a.request({ endpoint: 'mb-dev', operation: 'cancel-observe', path: '/3303/0/5700', timeout: 10000, owner: 'obs' }).catch(() => undefined);
    const state = throughJson(a.exportState());
    assert.equal(state.mailbox?.length, 1);
    assert.equal(state.observations.length, 0, 'the observation left the table when its cancel was queued');
    await a.stop();
    servers.splice(servers.indexOf(a), 1);

    const [b, out] = await server(port, state);
    assert.equal(dev.observationCount, 1, 'nothing sent while the device sleeps');
    assert.equal((await dev.update()).code, '2.04');
    await waitFor(() => out.results.length + out.errors.length === 1, 3000, 'mailbox outcome');
    assert.equal(out.errors.length, 0, out.errors.map(([e]) => e.message).join());
    const [result, entry] = out.results[0];
    assert.equal(result.code, '2.05');
    assert.equal(entry.operation, 'cancel-observe');
    assert.ok(!('cancelToken' in entry), 'the token stays internal');
    assert.equal(dev.observationCount, 0, 'the device dropped the observation (active cancel with its token)');
    assert.equal(b.exportState().observations.length, 0);
  });

  it('a cancel-observe waiting with a live caller moves over on an in-process hand-over and completes there', async () => {
    const port = await freeUdpPort();
    const [a] = await server(port);
    const dev = await sleepingDevice(port);
    await a.request({ endpoint: 'mb-dev', operation: 'observe-composite', path: ['/3303/0/5700', '/3/0/9'], owner: 'obs' });
    assert.equal(dev.observationCount, 1);
    await asleep(a);
    const live = a.request({ endpoint: 'mb-dev', operation: 'cancel-observe-composite', path: ['/3303/0/5700', '/3/0/9'], timeout: 10000, owner: 'obs' });
    const handed = await a.detach();
    const [b] = await server(port, handed);
    assert.equal((await dev.update()).code, '2.04');
    assert.equal((await live).code, '2.05');
    assert.equal(dev.observationCount, 0);
    assert.equal(b.exportState().observations.length, 0);
    await a.stop();
  });

  it('over DTLS: the restarted server resumes the session and delivers the queued write', async () => {
    const coapsPort = await freeUdpPort();
    const [a] = await server(0, undefined, { coapsPort, psk: PSK, allowNoSec: false });
    const dev = new SimulatedDevice({ endpoint: 'mb-sec', host: '127.0.0.1', port: coapsPort, queueMode: true, psk: { identity: 'mb-sec-id', key: KEY } });
    devices.push(dev);
    await dev.start();
    await asleep(a);
    void a.request({ endpoint: 'mb-sec', operation: 'write', path: '/1/0/1', payload: 777, timeout: 10000, owner: 'w', msg: { _msgid: 'w-1' } }).catch(() => undefined);
    const state = throughJson(await a.detach());
    assert.equal(state.mailbox?.length, 1);
    const [b, out] = await server(0, state, { coapsPort, psk: PSK, allowNoSec: false });
    assert.equal((await dev.update()).code, '2.04');
    await waitFor(() => out.results.length === 1, 3000, 'mailbox-result');
    assert.equal(out.results[0][0].code, '2.04');
    assert.equal(dev.get('/1/0/1'), 777);
    assert.equal(b.stats().handshakes.total, 1, 'no new handshake');
    // The detached instance still holds its live caller: settle it the way a process exit would.
    await a.stop();
  });
});
