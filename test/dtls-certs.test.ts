import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import should from 'should';
import { type DtlsSession, DtlsServer, type HandshakeFailedInfo } from '../src/dtls';
import { verifyClientChain } from '../src/dtls/certs';
import { TestPki } from './support/pki';
import { type Harness, sClient, type SClient, startHarness, waitFor } from './support/dtls-harness';

/** A throw-away PKI made with the openssl command line: CA, intermediate, server, devices. */
const pki = new TestPki();
const { file, read } = pki;

before(function () {
  this.timeout(20000);
  pki.open('dtls-pki-');
  for (const ca of ['ca', 'otherca']) pki.rootCa(ca);
  pki.issue('server', 'lwm2m-server', 'ca');
  pki.issue('dev1', 'urn:dev:1', 'ca');
  pki.issue('inter', 'intermediate', 'ca', true);
  pki.issue('dev2', 'urn:dev:2', 'inter');
  pki.issue('rogue', 'urn:dev:1', 'otherca');
  pki.ecKey('stranger');
  pki.ecPrivateKeyPem('dev1');
  pki.ecPrivateKeyPem('stranger');
});

after(() => pki.remove());

let harnesses: Harness[] = [];
let sclients: SClient[] = [];
afterEach(async () => {
  await Promise.all(sclients.map((s) => s.stop()));
  await Promise.all(harnesses.map((h) => h.close()));
  harnesses = [];
  sclients = [];
});

const spki = pki.spki;

async function harness(extra: Partial<Parameters<typeof startHarness>[0]> = {}): Promise<Harness & { got: DtlsSession[]; failed: HandshakeFailedInfo[] }> {
  const dev1Spki = spki('dev1.key');
  const h = await startHarness({
    pskLookup: undefined,
    certificate: { key: read('server.key'), chain: [read('server.pem')] },
    trustedCAs: [read('ca.pem')],
    rpkLookup: (k) => (k.equals(dev1Spki) ? { identity: 'urn:dev:rpk1' } : undefined),
    ...extra,
  });
  harnesses.push(h);
  const got: DtlsSession[] = [];
  const failed: HandshakeFailedInfo[] = [];
  h.server.on('session', (s: DtlsSession) => {
    got.push(s);
    // Answers CoAP requests with a piggybacked 2.05 "ok", anything else with an echo.
    s.on('data', (d: Buffer) => {
      if (d.length >= 4 && d[0] >> 6 === 1 && d[1] >= 1 && d[1] <= 4) {
        const tkl = d[0] & 0x0f;
        s.send(Buffer.concat([Buffer.from([0x60 | tkl, 0x45, d[2], d[3]]), d.subarray(4, 4 + tkl), Buffer.from([0xff]), Buffer.from('ok')]));
      } else {
        s.send(d);
      }
    });
  });
  h.server.on('handshakeFailed', (i: HandshakeFailedInfo) => failed.push(i));
  return Object.assign(h, { got, failed });
}

function certClient(h: Harness, cipher: string, args: string[]): SClient {
  const s = sClient(h.port, 'unused', '00', cipher, ['-CAfile', file('ca.pem'), '-verify_return_error', ...args]);
  sclients.push(s);
  return s;
}

function runCoap(bin: string, args: string[], port: number): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(bin, ['-B', '5', ...args, `coaps://127.0.0.1:${port}/x`]);
    let out = '';
    p.stdout.on('data', (x: Buffer) => { out += x.toString(); });
    p.stderr.on('data', (x: Buffer) => { out += x.toString(); });
    p.on('exit', () => resolve(out));
  });
}

describe('DTLS ECDHE_ECDSA with X.509 (openssl s_client)', function () {
  this.timeout(20000);

  for (const [cipher, suite] of [['ECDHE-ECDSA-AES128-CCM8', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'],
    ['ECDHE-ECDSA-AES128-GCM-SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256']]) {
    it(`${cipher}: server chain verified by the client, client chain verified by the server, identity = CN`, async () => {
      const h = await harness();
      const s = certClient(h, cipher, ['-cert', file('dev1.pem'), '-key', file('dev1.key')]);
      (await waitFor(() => /Cipher is/.test(s.output()), 8000)).should.be.true(s.output());
      s.output().should.match(/Verify return code: 0 \(ok\)/);
      s.output().should.match(new RegExp(`Cipher is ${cipher}`));
      s.proc.stdin.write('cert data\n');
      (await waitFor(() => s.output().split('cert data').length > 1 && h.got.length === 1, 3000)).should.be.true();
      h.got[0].identity.should.equal('urn:dev:1');
      h.got[0].authType.should.equal('x509');
      h.got[0].cipherSuite.should.equal(suite);
      h.server.stats.handshakes.should.equal(1);
    });
  }

  it('accepts a chain through an intermediate CA sent by the client', async () => {
    const h = await harness();
    const s = certClient(h, 'ECDHE-ECDSA-AES128-CCM8', ['-cert', file('dev2.pem'), '-key', file('dev2.key'), '-cert_chain', file('inter.pem')]);
    (await waitFor(() => h.got.length === 1 || h.failed.length > 0, 8000)).should.be.true(s.output());
    h.failed.should.eql([]);
    h.got[0].identity.should.equal('urn:dev:2');
  });

  it('refuses a certificate from an untrusted CA (unknown_ca), and a client without a certificate', async () => {
    const h = await harness();
    certClient(h, 'ECDHE-ECDSA-AES128-CCM8', ['-cert', file('rogue.pem'), '-key', file('rogue.key')]);
    (await waitFor(() => h.failed.length === 1, 8000)).should.be.true();
    h.failed[0].alert.should.equal('unknown_ca');
    const s = certClient(h, 'ECDHE-ECDSA-AES128-CCM8', []);
    (await waitFor(() => h.failed.length === 2, 8000)).should.be.true(s.output());
    h.failed[1].alert.should.equal('handshake_failure');
    h.got.length.should.equal(0);
    h.server.sessions.size.should.equal(0);
  });

  it('an X.509 session resumes with its identity (-sess_out / -sess_in)', async () => {
    const h = await harness();
    const args = ['-cert', file('dev1.pem'), '-key', file('dev1.key')];
    const a = certClient(h, 'ECDHE-ECDSA-AES128-CCM8', [...args, '-sess_out', file('x509.sess')]);
    (await waitFor(() => /Cipher is/.test(a.output()), 8000)).should.be.true();
    a.proc.stdin.write('Q\n');
    await Promise.race([a.exited, new Promise((r) => setTimeout(r, 3000))]);
    const b = certClient(h, 'ECDHE-ECDSA-AES128-CCM8', [...args, '-sess_in', file('x509.sess')]);
    (await waitFor(() => /Reused/.test(b.output()), 8000)).should.be.true(b.output());
    (await waitFor(() => h.got.length === 2)).should.be.true();
    h.got[1].resumed.should.be.true();
    h.got[1].identity.should.equal('urn:dev:1');
    h.got[1].authType.should.equal('x509');
  });

  it('expired or not-yet-valid chains are refused (certificate_expired)', () => {
    const dev = new X509Certificate(read('dev1.pem'));
    const ca = [new X509Certificate(read('ca.pem'))];
    const ok = verifyClientChain([dev.raw], ca);
    ('error' in ok).should.be.false();
    const later = verifyClientChain([dev.raw], ca, Date.now() + 10 * 86_400_000);
    should('error' in later && later.alert).equal('certificate_expired');
    const earlier = verifyClientChain([dev.raw], ca, Date.now() - 10 * 86_400_000);
    should('error' in earlier && earlier.alert).equal('certificate_expired');
    const rogue = verifyClientChain([new X509Certificate(read('rogue.pem')).raw], ca);
    should('error' in rogue && rogue.alert).equal('unknown_ca');
  });

  it('rejects a server key that does not match the chain, or is not P-256', () => {
    (() => new DtlsServer({ send: () => undefined,
      certificate: { key: read('dev1.key'), chain: [read('server.pem')] } })).should.throw(/does not match/);
    (() => new DtlsServer({ send: () => undefined,
      certificate: { key: 'not a key', chain: [] } })).should.throw(/PEM private key/);
  });
});

describe('DTLS ECDHE_ECDSA with libcoap clients', function () {
  this.timeout(20000);

  it('coap-client-openssl with PKI (-c/-j/-C): X.509 identity', async () => {
    const h = await harness();
    const out = await runCoap('coap-client-openssl', ['-c', file('dev1.pem'), '-j', file('dev1.key'), '-C', file('ca.pem')], h.port);
    out.trim().should.equal('ok');
    h.got[0].identity.should.equal('urn:dev:1');
    h.got[0].authType.should.equal('x509');
  });

  it('coap-client-gnutls with a raw public key (-M): identity from rpkLookup; an unknown key is refused', async () => {
    const h = await harness();
    // -n: libcoap offers X.509 first for the server certificate type, so the server sends its X.509 chain.
    const out = await runCoap('coap-client-gnutls', ['-M', file('dev1-ec.key'), '-n'], h.port);
    out.trim().should.equal('ok');
    h.got[0].identity.should.equal('urn:dev:rpk1');
    h.got[0].authType.should.equal('rpk');
    const out2 = await runCoap('coap-client-gnutls', ['-M', file('stranger-ec.key'), '-n'], h.port);
    out2.should.not.match(/^ok/);
    (await waitFor(() => h.failed.length === 1)).should.be.true();
    h.failed[0].alert.should.equal('certificate_unknown');
    h.got.length.should.equal(1);
  });

  it('a server with both PSK and certificates serves both kinds of client', async () => {
    const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const h = await harness({ pskLookup: (id) => (id === 'psk1' ? key : undefined) });
    const s = sClient(h.port, 'psk1', key.toString('hex'), 'PSK-AES128-CCM8');
    sclients.push(s);
    (await waitFor(() => /Cipher is/.test(s.output()), 8000)).should.be.true(s.output());
    const pki = await runCoap('coap-client-openssl', ['-c', file('dev1.pem'), '-j', file('dev1.key'), '-C', file('ca.pem')], h.port);
    pki.trim().should.equal('ok');
    (await waitFor(() => h.got.length === 2)).should.be.true();
    h.got.map((s) => s.authType).sort().should.eql(['psk', 'x509']);
  });
});
