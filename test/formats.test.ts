import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Lwm2mServer } from '../src/server';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort } from './support/ports';

const KEY = Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex');

/** Every content format, read and written end to end against the simulated device, over DTLS and plain CoAP. */
for (const transport of ['dtls', 'coap'] as const) {
  describe(`content formats end to end over ${transport === 'dtls' ? 'DTLS' : 'plain CoAP'}`, function () {
    let server: Lwm2mServer;
    let device: SimulatedDevice;
    const big = randomBytes(64 * 1024);
    before(async () => {
      server = new Lwm2mServer({
        bind: '127.0.0.1', coapPort: await freeUdpPort(), coapsPort: await freeUdpPort(), allowNoSec: true,
        psk: [{ endpoint: 'fmt-dtls', identity: 'fmt-dtls-id', key: KEY.toString('hex') }],
      });
      await server.start();
      device = new SimulatedDevice({
        endpoint: transport === 'dtls' ? 'fmt-dtls' : 'fmt-plain',
        host: '127.0.0.1',
        port: transport === 'dtls' ? server.ports.coaps : server.ports.coap,
        psk: transport === 'dtls' ? { identity: 'fmt-dtls-id', key: KEY } : undefined,
        objects: {
          '/1/0': { 0: 1, 1: 300, 6: false, 7: 'U' },
          '/3/0': { 0: 'Open Mobile Alliance', 9: 87, 11: [0, 3], 13: new Date(1764000000000) },
          '/3303/0': { 5700: 21.5, 5701: 'Cel' },
          '/5/0': { 0: Buffer.alloc(0), 3: 0 },
          '/33000/0': { 0: big },
        },
      });
      await device.start();
    });
    after(async () => {
      await device?.stop();
      await server?.stop();
    });
    const endpoint = (): string => (transport === 'dtls' ? 'fmt-dtls' : 'fmt-plain');

    for (const format of ['tlv', 'senml-json', 'senml-cbor', 'lwm2m-cbor', 'json'] as const) {
      it(`${format}: read an instance, write it back, read a multiple-instance resource`, async () => {
        const r = await server.request({ endpoint: endpoint(), operation: 'read', path: '/3/0', format });
        assert.equal(r.format, format);
        const v = r.payload as Record<string, unknown>;
        assert.equal(v['/3/0/0'], 'Open Mobile Alliance');
        assert.equal(v['/3/0/9'], 87);
        assert.equal(v['/3/0/11/1'], 3);
        assert.equal((v['/3/0/13'] as Date).getTime(), 1764000000000);
        const m = await server.request({ endpoint: endpoint(), operation: 'read', path: '/3/0/11', format });
        assert.deepEqual(m.payload, { '/3/0/11/0': 0, '/3/0/11/1': 3 });
        await server.request({ endpoint: endpoint(), operation: 'write', path: '/1/0', payload: { 1: 77, 6: true, 7: 'UQ' }, format });
        assert.equal(device.get('/1/0/1'), 77);
        assert.equal(device.get('/1/0/6'), true);
        assert.equal(device.get('/1/0/7'), 'UQ');
        const f = await server.request({ endpoint: endpoint(), operation: 'read', path: '/3303/0/5700', format });
        assert.equal(f.payload, 21.5);
      });
    }

    for (const format of ['text', 'cbor'] as const) {
      it(`${format}: single resources of each type`, async () => {
        for (const [path, value] of [['/3/0/0', 'Open Mobile Alliance'], ['/3/0/9', 87], ['/3303/0/5700', 21.5]] as const) {
          const r = await server.request({ endpoint: endpoint(), operation: 'read', path, format });
          assert.equal(r.format, format);
          assert.equal(r.payload, value);
        }
        await server.request({ endpoint: endpoint(), operation: 'write', path: '/1/0/6', payload: false, format });
        assert.equal(device.get('/1/0/6'), false);
        await server.request({ endpoint: endpoint(), operation: 'write', path: '/1/0/1', payload: 88, format });
        assert.equal(device.get('/1/0/1'), 88);
      });
    }

    it('opaque: a 512 KB firmware image written to /5/0/0 block-wise, a 64 KB opaque read', async () => {
      const image = randomBytes(512 * 1024);
      const w = await server.request({ endpoint: endpoint(), operation: 'write', path: '/5/0/0', payload: image, format: 'opaque', timeout: 60000 });
      assert.equal(w.code, '2.04');
      assert.ok(image.equals(device.get('/5/0/0') as Buffer), 'device got the whole image');
      const r = await server.request({ endpoint: endpoint(), operation: 'read', path: '/33000/0/0', format: 'opaque' });
      assert.ok(Buffer.isBuffer(r.payload));
      assert.ok(big.equals(r.payload as Buffer));
    });
  });
}
