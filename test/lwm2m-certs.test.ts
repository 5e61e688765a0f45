/**
 * LwM2M registration with certificates: X.509 (libcoap coap-client-openssl, CN = endpoint name) and raw public
 * keys (libcoap coap-client-gnutls), next to a PSK device (node-dtls-client), against one Lwm2mServer.
 */
import assert from 'node:assert/strict';
import helper from 'node-red-node-test-helper';
import { spawn } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import type { HandshakeFailedInfo } from '../src/dtls';
import { SecurityError, SecurityStore } from '../src/lwm2m/security';
import { Lwm2mServer, type Lwm2mServerOptions, type RegistrationInfo } from '../src/server';
import { SimulatedDevice } from '../src/sim/device';
import { freeUdpPort, waitFor } from './support/ports';
import { TestPki } from './support/pki';
import { type FlowNode, SERVER_DEFAULTS, serverNode } from './support/flows';

// The built runtime file, exactly what Node-RED loads (npm test builds first).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lwm2mNodes = require('../nodes/lwm2m.js');
helper.init(require.resolve('node-red'));

const pki = new TestPki();
const { file, read, ossl, spki: spkiOf } = pki;

const X509_EP = 'urn:dev:x509-1';
const RPK_EP = 'urn:dev:rpk-1';
const PSK_KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
// libcoap's -k takes the key as text.
const PSK_TEXT_KEY = 'secret-key-psk-2';

before(function () {
  this.timeout(20000);
  pki.open('lwm2m-pki-');
  for (const ca of ['ca', 'otherca']) pki.rootCa(ca);
  pki.issue('server', 'lwm2m-server', 'ca');
  pki.issue('dev', X509_EP, 'ca');
  pki.issue('pskname', 'urn:dev:psk-1', 'ca');
  pki.issue('rogue', X509_EP, 'otherca');
  pki.ecKey('rpk');
  pki.ecKey('stranger');
  pki.ecPrivateKeyPem('rpk');
  pki.ecPrivateKeyPem('stranger');
});

after(() => pki.remove());

interface Run { code: number | null; out: string; err: string }

/** One libcoap request; resolves when the client exits (it waits at most `-B` seconds for the answer). */
function coapClient(bin: string, args: string[], uri: string): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(bin, ['-B', '5', ...args, uri]);
    let out = '';
    let err = '';
    p.stdout.on('data', (x: Buffer) => { out += x.toString(); });
    p.stderr.on('data', (x: Buffer) => { err += x.toString(); });
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}

const x509Args = (name: string): string[] => ['-c', file(`${name}.pem`), '-j', file(`${name}.key`), '-C', file('ca.pem')];
// -n: libcoap offers X.509 first for the server certificate type, so the server sends its X.509 chain.
const rpkArgs = (name: string): string[] => ['-M', file(`${name}-ec.key`), '-n'];
const registerArgs = ['-m', 'post', '-t', '40', '-e', '</3/0>,</3303/0>'];

describe('Lwm2mServer with certificates and raw public keys', function () {
  this.timeout(30000);
  let server: Lwm2mServer | undefined;
  let device: SimulatedDevice | undefined;
  let registered: RegistrationInfo[] = [];
  let failed: HandshakeFailedInfo[] = [];

  async function start(extra: Lwm2mServerOptions = {}): Promise<Lwm2mServer> {
    const s = new Lwm2mServer({
      bind: '127.0.0.1',
      coapPort: 0,
      coapsPort: await freeUdpPort(),
      certificate: { key: read('server.key'), chain: [read('server.pem')] },
      trustedCAs: [read('ca.pem')],
      psk: [
        { endpoint: 'urn:dev:psk-1', identity: 'psk-1', key: PSK_KEY.toString('hex') },
        // A PSK identity equal to the X.509 device's CN, for another endpoint.
        { endpoint: 'urn:dev:psk-2', identity: X509_EP, key: Buffer.from(PSK_TEXT_KEY).toString('hex') },
        // The device's public key as PEM, as an operator would paste it.
        { endpoint: RPK_EP, rpk: createPublicKey(read('rpk.key')).export({ type: 'spki', format: 'pem' }).toString() },
      ],
      ...extra,
    });
    registered = [];
    failed = [];
    s.on('register', (r: RegistrationInfo) => registered.push(r));
    s.on('handshakeFailed', (i: HandshakeFailedInfo) => failed.push(i));
    await s.start();
    server = s;
    return s;
  }
  const uri = (s: Lwm2mServer, p: string): string => `coaps://127.0.0.1:${s.ports.coaps}/${p}`;

  afterEach(async () => {
    await device?.stop();
    device = undefined;
    await server?.stop();
    server = undefined;
  });

  it('X.509 (coap-client-openssl -c/-j/-C): registers the endpoint named by the certificate CN', async () => {
    const s = await start();
    const run = await coapClient('coap-client-openssl', [...x509Args('dev'), ...registerArgs], uri(s, `rd?ep=${X509_EP}&lt=300&lwm2m=1.1`));
    assert.equal(run.err.trim(), '', run.err);
    await waitFor(() => registered.length === 1, 3000, 'register event');
    assert.equal(registered[0].endpoint, X509_EP);
    assert.equal(registered[0].identity, X509_EP);
    assert.equal(registered[0].secure, true);
    assert.deepEqual(registered[0].objects, ['/3/0', '/3303/0']);
    // The same device updates its registration from a new session.
    const reg = s.registry.byEndpoint(X509_EP);
    assert.ok(reg);
    const upd = await coapClient('coap-client-openssl', [...x509Args('dev'), '-m', 'post'], uri(s, `rd/${reg.registrationId}?lt=600`));
    assert.equal(upd.err.trim(), '', upd.err);
    assert.equal(s.registry.byEndpoint(X509_EP)?.lifetime, 600);
  });

  it('X.509: a certificate whose CN is not the endpoint name gets 4.03 with the reason, and no registration', async () => {
    const s = await start();
    const run = await coapClient('coap-client-openssl', [...x509Args('dev'), ...registerArgs], uri(s, 'rd?ep=urn:dev:someone-else'));
    assert.match(run.err, /^4\.03 certificate CN "urn:dev:x509-1" does not match endpoint name "urn:dev:someone-else"/);
    assert.equal(s.registry.size, 0);
    assert.equal(registered.length, 0);
  });

  it('X.509: refused for an endpoint that has a PSK entry; a certificate from another CA fails the handshake', async () => {
    const s = await start();
    const run = await coapClient('coap-client-openssl', [...x509Args('pskname'), ...registerArgs], uri(s, 'rd?ep=urn:dev:psk-1'));
    assert.match(run.err, /^4\.03 endpoint "urn:dev:psk-1" has a PSK configured: a certificate is not accepted for it/);
    const rogue = await coapClient('coap-client-openssl', [...x509Args('rogue'), ...registerArgs], uri(s, `rd?ep=${X509_EP}`));
    assert.doesNotMatch(rogue.err, /^2\./);
    await waitFor(() => failed.length === 1, 3000, 'handshakeFailed');
    assert.equal(failed[0].alert, 'unknown_ca');
    assert.equal(s.registry.size, 0);
  });

  it('identities of different credential kinds never stand for each other (PSK identity = a certificate CN)', async () => {
    const s = await start();
    const pskArgs = ['-u', X509_EP, '-k', PSK_TEXT_KEY];
    const a = await coapClient('coap-client-openssl', [...pskArgs, ...registerArgs], uri(s, 'rd?ep=urn:dev:psk-2'));
    assert.equal(a.err.trim(), '', a.err);
    const b = await coapClient('coap-client-openssl', [...x509Args('dev'), ...registerArgs], uri(s, `rd?ep=${X509_EP}`));
    assert.equal(b.err.trim(), '', b.err);
    await waitFor(() => registered.length === 2, 3000, 'two registrations');
    assert.equal(s.registry.byEndpoint('urn:dev:psk-2')?.identity, X509_EP);
    assert.equal(s.registry.byEndpoint(X509_EP)?.identity, X509_EP);
    // The PSK device cannot update or de-register the certificate device's registration (same identity text).
    const x509Reg = s.registry.byEndpoint(X509_EP);
    assert.ok(x509Reg);
    const upd = await coapClient('coap-client-openssl', [...pskArgs, '-m', 'delete'], uri(s, `rd/${x509Reg.registrationId}`));
    assert.match(upd.err, /^4\.03 not the device that registered urn:dev:x509-1/);
    assert.ok(s.registry.byEndpoint(X509_EP));
    // A Send from the certificate device is attributed to its own endpoint.
    const sent: Array<{ endpoint: string; values: Record<string, unknown> }> = [];
    s.on('send', (info: RegistrationInfo, values: Record<string, unknown>) => sent.push({ endpoint: info.endpoint, values }));
    const dp = await coapClient('coap-client-openssl', [...x509Args('dev'), '-m', 'post', '-t', '110', '-e', '[{"n":"/3303/0/5700","v":21.5}]'], uri(s, 'dp'));
    assert.equal(dp.err.trim(), '', dp.err);
    await waitFor(() => sent.length === 1, 3000, 'send event');
    assert.equal(sent[0].endpoint, X509_EP);
    assert.deepEqual(sent[0].values, { '/3303/0/5700': 21.5 });
  });

  it('RPK (coap-client-gnutls -M): registers the endpoint of its key; another endpoint name gets 4.03', async () => {
    const s = await start();
    const run = await coapClient('coap-client-gnutls', [...rpkArgs('rpk'), ...registerArgs], uri(s, `rd?ep=${RPK_EP}&lt=120`));
    assert.equal(run.err.trim(), '', run.err);
    await waitFor(() => registered.length === 1, 3000, 'register event');
    assert.equal(registered[0].endpoint, RPK_EP);
    assert.equal(registered[0].identity, RPK_EP);
    assert.equal(registered[0].secure, true);
    const other = await coapClient('coap-client-gnutls', [...rpkArgs('rpk'), ...registerArgs], uri(s, 'rd?ep=urn:dev:psk-1'));
    assert.match(other.err, /^4\.03 this raw public key belongs to endpoint "urn:dev:rpk-1", not "urn:dev:psk-1"/);
    assert.equal(s.registry.size, 1);
  });

  it('RPK: an unknown key is refused in the handshake (certificate_unknown), nothing registers', async () => {
    const s = await start();
    const run = await coapClient('coap-client-gnutls', [...rpkArgs('stranger'), ...registerArgs], uri(s, `rd?ep=${RPK_EP}`));
    assert.doesNotMatch(run.err, /^2\./);
    await waitFor(() => failed.length === 1, 3000, 'handshakeFailed');
    assert.equal(failed[0].alert, 'certificate_unknown');
    assert.equal(s.registry.size, 0);
    assert.equal(s.stats().sessions.inbound, 0);
  });

  it('a PSK device (node-dtls-client) registers and is read next to X.509 and RPK devices', async () => {
    const s = await start();
    const [x, r] = await Promise.all([
      coapClient('coap-client-openssl', [...x509Args('dev'), ...registerArgs], uri(s, `rd?ep=${X509_EP}`)),
      coapClient('coap-client-gnutls', [...rpkArgs('rpk'), ...registerArgs], uri(s, `rd?ep=${RPK_EP}`)),
    ]);
    assert.equal(x.err.trim() + r.err.trim(), '');
    device = new SimulatedDevice({ endpoint: 'urn:dev:psk-1', host: '127.0.0.1', port: s.ports.coaps, psk: { identity: 'psk-1', key: PSK_KEY } });
    await device.start();
    await waitFor(() => registered.length === 3, 3000, 'three registrations');
    assert.deepEqual(registered.map((g) => g.endpoint).sort(), ['urn:dev:psk-1', RPK_EP, X509_EP].sort());
    const res = await s.request({ endpoint: 'urn:dev:psk-1', operation: 'read', path: '/3/0/0' });
    assert.equal(res.payload, 'Open Mobile Alliance');
    assert.equal(s.registry.byEndpoint('urn:dev:psk-1')?.identity, 'psk-1');
  });

  it('a bad server key is refused at construction with a message that does not contain the key', () => {
    const key = read('dev.key');
    assert.throws(() => new Lwm2mServer({ coapPort: 0, coapsPort: 0, certificate: { key, chain: [read('server.pem')] } }), (err: Error) => {
      assert.match(err.message, /does not match/);
      assert.ok(!err.message.includes('PRIVATE KEY') && !err.message.includes(key.split('\n')[1]));
      return true;
    });
  });
});

describe('SecurityStore raw public keys', () => {
  it('accepts SPKI DER (Buffer or hex, with spaces or colons) and PEM (line breaks optional), all as one key', () => {
    const der = spkiOf('rpk.key');
    const pem = createPublicKey(read('rpk.key')).export({ type: 'spki', format: 'pem' }).toString();
    const forms: Array<string | Buffer> = [der, der.toString('hex'), der.toString('hex').toUpperCase().replace(/(..)/g, '$1:').slice(0, -1),
      pem, pem.replace(/\n/g, '')];
    for (const rpk of forms) {
      const store = new SecurityStore();
      const entry = store.add({ endpoint: 'e', rpk });
      assert.deepEqual(entry.rpk, der);
      assert.equal(store.byPublicKey(der)?.endpoint, 'e');
      assert.deepEqual(store.rpkLookup(der), { identity: 'e' });
      assert.equal(store.byEndpoint('e'), undefined, 'byEndpoint is the PSK entry only');
      assert.equal(store.entryOf('e')?.endpoint, 'e');
    }
  });

  it('maps peers to endpoints by credential kind', () => {
    const store = new SecurityStore();
    store.replaceAll([
      { endpoint: 'ep-psk', identity: 'same', key: '0102' },
      { endpoint: 'ep-rpk', rpk: spkiOf('rpk.key') },
    ]);
    assert.equal(store.endpointOf({ identity: 'same' }), 'ep-psk');
    assert.equal(store.endpointOf({ identity: 'same', authType: 'psk' }), 'ep-psk');
    assert.equal(store.endpointOf({ identity: 'same', authType: 'x509' }), 'same');
    assert.equal(store.endpointOf({ identity: 'ep-psk', authType: 'x509' }), undefined, 'endpoint with a PSK entry');
    assert.equal(store.endpointOf({ identity: 'ep-rpk', authType: 'x509' }), undefined, 'endpoint with an RPK entry');
    assert.equal(store.endpointOf({ identity: 'ep-rpk', authType: 'rpk' }), 'ep-rpk');
    assert.equal(store.endpointOf({ identity: 'ep-psk', authType: 'rpk' }), undefined);
    assert.equal(store.endpointOf({ identity: '', authType: 'x509' }), undefined);
    assert.equal(store.refusal({ identity: 'same', authType: 'x509' }, 'same'), undefined);
    assert.equal(store.keyFor('ep-rpk'), undefined);
    assert.deepEqual(store.list(), [
      { endpoint: 'ep-psk', identity: 'same' },
      { endpoint: 'ep-rpk', rpk: spkiOf('rpk.key').toString('hex') },
    ]);
  });

  it('refuses bad keys, non-P-256 keys, a key given twice, and entries with both kinds of credential', () => {
    const store = new SecurityStore();
    assert.throws(() => store.add({ endpoint: 'e', rpk: 'zz' }), /RPK entry 1 \(e\): "rpk" must be a P-256 public key/);
    assert.throws(() => store.add({ endpoint: 'e', rpk: '3059' }), SecurityError);
    ossl('genpkey', '-algorithm', 'ed25519', '-out', 'ed.key');
    assert.throws(() => store.add({ endpoint: 'e', rpk: spkiOf('ed.key') }), /P-256/);
    assert.throws(() => store.add({ endpoint: 'e', rpk: spkiOf('rpk.key'), identity: 'x', key: '01' } as never), /not both/);
    store.add({ endpoint: 'a', rpk: spkiOf('rpk.key') });
    assert.throws(() => store.add({ endpoint: 'b', rpk: spkiOf('rpk.key') }), /already used by endpoint "a"/);
    assert.throws(() => store.replaceAll([{ endpoint: 'a', rpk: spkiOf('rpk.key') }, { endpoint: 'b', rpk: spkiOf('rpk.key') }]),
      /RPK entry 2 \(b\): the same public key is already given for endpoint "a"/);
    assert.throws(() => store.replaceAll([{ endpoint: 'a', rpk: spkiOf('rpk.key') }, { endpoint: 'a', identity: 'i', key: '01' }]),
      /PSK entry 2: endpoint "a" appears twice/);
    // Replacing an endpoint's entry with another kind frees the old key and identity.
    store.add({ endpoint: 'a', identity: 'ia', key: '01' });
    assert.equal(store.byPublicKey(spkiOf('rpk.key')), undefined);
    store.add({ endpoint: 'b', rpk: spkiOf('rpk.key') });
    assert.equal(store.size, 2);
    assert.ok(store.remove('a'));
    assert.equal(store.keyFor('ia'), undefined);
  });
});

describe('lwm2m-server config node with certificate credentials', function () {
  this.timeout(30000);
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(() => helper.unload());

  const flow = (coapsPort: number): FlowNode[] => [serverNode('srv', { ...SERVER_DEFAULTS, coapPort: 0, coapsPort, allowNoSec: false })];
  type ServerNode = { ready: Promise<void>; lwm2m: Lwm2mServer };
  type LogSpy = { getCalls(): Array<{ args: Array<{ level: number; msg: unknown }> }>; ERROR: number; WARN: number };
  const logged = (level: 'ERROR' | 'WARN'): string[] => {
    const spy = helper.log() as unknown as LogSpy;
    return spy.getCalls().map((c) => c.args[0]).filter((e) => e.level === spy[level]).map((e) => String(e.msg));
  };

  it('serverKey/serverCert/trustedCAs and an RPK row (PEM on one line, as the editor stores it): X.509 and RPK devices register', async () => {
    const port = await freeUdpPort();
    const rpkPemOneLine = createPublicKey(read('rpk.key')).export({ type: 'spki', format: 'pem' }).toString().replace(/\n/g, '');
    await helper.load([lwm2mNodes], flow(port), {
      srv: {
        psk: JSON.stringify([{ endpoint: 'urn:dev:psk-1', identity: 'psk-1', key: PSK_KEY.toString('hex') }, { endpoint: RPK_EP, rpk: rpkPemOneLine }]),
        serverKey: read('server.key'),
        // A chain pasted with surrounding text and blank lines.
        serverCert: `Server certificate\n\n${read('server.pem')}\n`,
        trustedCAs: read('otherca.pem') + read('ca.pem'),
      },
    });
    const srv = helper.getNode('srv') as unknown as ServerNode;
    await srv.ready;
    const x = await coapClient('coap-client-openssl', [...x509Args('dev'), ...registerArgs], `coaps://127.0.0.1:${port}/rd?ep=${X509_EP}`);
    assert.equal(x.err.trim(), '', x.err);
    const r = await coapClient('coap-client-gnutls', [...rpkArgs('rpk'), ...registerArgs], `coaps://127.0.0.1:${port}/rd?ep=${RPK_EP}`);
    assert.equal(r.err.trim(), '', r.err);
    assert.deepEqual(srv.lwm2m.registrations().map((g) => `${g.endpoint}=${g.identity}`).sort(), [`${RPK_EP}=${RPK_EP}`, `${X509_EP}=${X509_EP}`]);
    assert.deepEqual(logged('ERROR'), []);
  });

  it('a server certificate that does not match the key is reported without key material; PSK devices still connect', async () => {
    const port = await freeUdpPort();
    const key = read('dev.key');
    await helper.load([lwm2mNodes], flow(port), {
      srv: {
        psk: JSON.stringify([{ endpoint: 'urn:dev:psk-1', identity: 'psk-1', key: PSK_KEY.toString('hex') }]),
        serverKey: key,
        serverCert: read('server.pem'),
      },
    });
    const srv = helper.getNode('srv') as unknown as ServerNode;
    await srv.ready;
    const errors = logged('ERROR');
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0], /certificates: server certificate: certificate\.chain\[0\] does not match certificate\.key/);
    const keyBody = key.split('\n')[1];
    for (const m of [...errors, ...logged('WARN')]) assert.ok(!m.includes(keyBody) && !m.includes('PRIVATE KEY'), m);
    const device = new SimulatedDevice({ endpoint: 'urn:dev:psk-1', host: '127.0.0.1', port, psk: { identity: 'psk-1', key: PSK_KEY } });
    try {
      await device.start();
      assert.equal(srv.lwm2m.registrations()[0]?.endpoint, 'urn:dev:psk-1');
    } finally {
      await device.stop();
    }
    // Without the certificate suites a certificate device cannot connect.
    const x = await coapClient('coap-client-openssl', [...x509Args('dev'), ...registerArgs], `coaps://127.0.0.1:${port}/rd?ep=${X509_EP}`);
    assert.doesNotMatch(x.err, /^2\./);
    assert.equal(srv.lwm2m.registrations().length, 1);
  });
});
