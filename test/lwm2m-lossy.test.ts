/**
 * LwM2M over DTLS through a lossy loopback relay (seeded, 20% of the datagrams dropped in each direction):
 * the DTLS handshake, the CoAP registration and 20 server reads complete.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Lwm2mServer, type RegistrationInfo } from '../src/server';
import { SimulatedDevice } from '../src/sim/device';
import { type LossyRelay, startLossyRelay } from './support/dtls-relay';
import { freeUdpPort, waitFor } from './support/ports';

const SIM_KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
// libcoap's -k takes the key as text.
const LIBCOAP_KEY = 'lossy-libcoap-key';
const LOSS = 0.2;

describe('LwM2M through a lossy relay (20% loss both ways)', function () {
  this.timeout(60000);
  let server: Lwm2mServer | undefined;
  let relays: LossyRelay[] = [];
  let devices: SimulatedDevice[] = [];
  let registered: RegistrationInfo[] = [];

  beforeEach(async () => {
    server = new Lwm2mServer({
      bind: '127.0.0.1',
      coapPort: 0,
      coapsPort: await freeUdpPort(),
      psk: [
        { endpoint: 'lossy-libcoap', identity: 'lossy-libcoap-id', key: Buffer.from(LIBCOAP_KEY).toString('hex') },
        { endpoint: 'lossy-sim', identity: 'lossy-sim-id', key: SIM_KEY.toString('hex') },
      ],
      // Short timers so that losses cost little time: CoAP retransmits after 200-300 ms, DTLS flights after 200 ms.
      coap: { ackTimeoutMs: 200, maxRetransmit: 8 },
      dtls: { retransmitInitialMs: 200 },
    });
    registered = [];
    server.on('register', (r: RegistrationInfo) => registered.push(r));
    await server.start();
  });

  afterEach(async () => {
    await Promise.all(devices.map((d) => d.stop()));
    devices = [];
    await server?.stop();
    server = undefined;
    await Promise.all(relays.map((r) => r.close()));
    relays = [];
  });

  async function relay(seed: number): Promise<LossyRelay> {
    assert.ok(server);
    const r = await startLossyRelay(server.ports.coaps, LOSS, seed);
    relays.push(r);
    return r;
  }

  it('libcoap coap-client-openssl (PSK) registers: it retransmits both handshake flights and the CoAP request', async () => {
    const r = await relay(11);
    const run = await new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn('coap-client-openssl', ['-B', '40', '-u', 'lossy-libcoap-id', '-k', LIBCOAP_KEY, '-m', 'post', '-t', '40',
        '-e', '</3/0>', `coaps://127.0.0.1:${r.port}/rd?ep=lossy-libcoap&lt=300`]);
      let err = '';
      p.stdout.resume();
      p.stderr.on('data', (x: Buffer) => { err += x.toString(); });
      p.on('exit', (code) => resolve({ code, err }));
    });
    await waitFor(() => registered.length === 1, 5000, `register event (client: ${run.err.trim()})`);
    assert.equal(registered[0].endpoint, 'lossy-libcoap');
    assert.equal(registered[0].identity, 'lossy-libcoap-id');
    assert.ok(r.stats.upDropped > 0 || r.stats.downDropped > 0, `nothing was dropped: ${JSON.stringify(r.stats)}`);
  });

  it('SimulatedDevice (node-dtls-client): handshake retried until it passes, then register and 20 reads', async () => {
    const r = await relay(5);
    // node-dtls-client does not retransmit its handshake flights: a lost one fails the attempt, so start again.
    let device: SimulatedDevice | undefined;
    for (let attempt = 0; attempt < 10 && !device; attempt++) {
      const candidate = new SimulatedDevice({
        endpoint: 'lossy-sim', host: '127.0.0.1', port: r.port, psk: { identity: 'lossy-sim-id', key: SIM_KEY },
        coap: { ackTimeoutMs: 200, maxRetransmit: 8 },
      });
      devices.push(candidate);
      try {
        await candidate.start();
        device = candidate;
      } catch {
        await candidate.stop();
      }
    }
    assert.ok(device, 'no handshake and registration passed the relay in 10 attempts');
    await waitFor(() => registered.some((g) => g.endpoint === 'lossy-sim'), 5000, 'register event');
    const s = server as Lwm2mServer;
    for (let i = 0; i < 20; i++) {
      const res = await s.request({ endpoint: 'lossy-sim', operation: 'read', path: '/3/0/0', timeout: 20000 });
      assert.equal(res.code, '2.05');
      assert.equal(res.payload, 'Open Mobile Alliance');
    }
    assert.ok(r.stats.upDropped > 0 && r.stats.downDropped > 0, `drops: ${JSON.stringify(r.stats)}`);
    assert.equal(s.stats().requests.timeouts, 0);
  });
});
