import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import should from 'should';
import { CookieJar } from '../src/dtls/cookie';
import { decodeClientHello, MessageAssembler, parseHandshakeFragments } from '../src/dtls/handshake';
import { HmacSha256, prf } from '../src/dtls/prf';
import { RandomBlock } from '../src/dtls/random-block';
import { parseDatagram, readSeq, writeSeq } from '../src/dtls/record';
import { ReplayWindow } from '../src/dtls/replay';
import { SessionTable } from '../src/dtls/session-table';
import { CIPHER_SUITES, clientCiphers, deriveKeys, serverCiphers } from '../src/dtls/suites';
import { clientHelloBody, handshakeMsg, record } from './support/dtls-raw';

describe('DTLS building blocks', () => {
  describe('PRF (TLS 1.2, P_SHA256)', () => {
    const secret = Buffer.from('9bbe436ba940f017b17652849a71db35', 'hex');
    const seed = Buffer.from('a0ba9f936cda311827a6f796ffd5198c', 'hex');
    it('matches the published test vector', () => {
      const expected = 'e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af' +
        '0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66';
      prf(secret, 'test label', seed, 100).toString('hex').should.equal(expected);
    });
    it('agrees with OpenSSL TLS1-PRF for other lengths and secrets', function () {
      const probe = spawnSync('openssl', ['version']);
      if (probe.status !== 0) this.skip();
      for (const len of [1, 12, 32, 48, 104]) {
        const s = randomBytes(48);
        const sd = randomBytes(64);
        const r = spawnSync('openssl', ['kdf', '-keylen', String(len), '-kdfopt', 'digest:SHA256', '-kdfopt',
          `hexsecret:${s.toString('hex')}`, '-kdfopt', `hexseed:${Buffer.concat([Buffer.from('key expansion'), sd]).toString('hex')}`,
          'TLS1-PRF']);
        should(r.status).equal(0);
        const hex = r.stdout.toString().trim().replace(/:/g, '').toLowerCase();
        prf(s, 'key expansion', sd, len).toString('hex').should.equal(hex);
      }
    });
  });

  describe('HMAC-SHA256', () => {
    it('equals createHmac for keys shorter than, equal to and longer than a block, in both ways of computing it', () => {
      for (const oneShot of [true, false]) {
        for (const keyLength of [0, 1, 16, 32, 48, 63, 64, 65, 100, 132]) {
          const key = randomBytes(keyLength);
          const hmac = new HmacSha256(key, oneShot);
          for (const sizes of [[0], [1], [13, 0, 77], [55, 9], [64], [200, 1, 3]]) {
            const parts = sizes.map((n) => randomBytes(n));
            const expected = createHmac('sha256', key).update(Buffer.concat(parts)).digest();
            assert.deepEqual(hmac.digest(...parts), expected, `key ${keyLength} B, parts ${sizes.join('+')}, oneShot ${oneShot}`);
          }
        }
      }
    });
    it('gives the same PRF output either way (master secret and key block lengths)', () => {
      for (const len of [12, 40, 48, 104]) {
        const s = randomBytes(36);
        const sd = randomBytes(64);
        assert.deepEqual(prf(s, 'master secret', sd, len, true), prf(s, 'master secret', sd, len, false));
      }
    });
  });

  describe('random block', () => {
    it('hands out every byte once and never changes a value it handed out', () => {
      const block = new RandomBlock(100);
      const taken: Buffer[] = [];
      const copies: Buffer[] = [];
      for (let i = 0; i < 20; i++) {
        const b = block.take(32);
        assert.equal(b.length, 32);
        taken.push(b);
        copies.push(Buffer.from(b));
      }
      taken.forEach((b, i) => assert.deepEqual(b, copies[i], `value ${i} changed after later takes`));
      assert.equal(new Set(copies.map((b) => b.toString('hex'))).size, 20);
      // 3 values per block of 100 bytes: 20 values come from 7 blocks, each a different ArrayBuffer
      assert.equal(new Set(taken.map((b) => b.buffer)).size, 7);
      assert.equal(block.take(200).length, 200); // larger than a block: its own
    });
  });

  describe('replay window', () => {
    it('remembers every number within 64 of the highest, across both 32-bit halves of the bitmap', () => {
      const w = new ReplayWindow();
      for (let i = 0; i <= 36; i++) w.update(i);
      for (let i = 0; i <= 36; i++) assert.equal(w.check(i), false, `seq ${i} was seen`);
      assert.equal(w.check(37), true);
      const v = new ReplayWindow();
      for (const n of [100, 90, 60, 40]) v.update(n);
      for (const n of [100, 90, 60, 40]) assert.equal(v.check(n), false, `seq ${n} was seen`);
      for (const n of [99, 70, 45, 37]) assert.equal(v.check(n), true, `seq ${n} was not seen`);
      assert.equal(v.check(36), false, 'older than the window');
    });
    it('accepts new numbers, rejects duplicates, tracks 64 records', () => {
      const w = new ReplayWindow();
      w.check(0).should.be.true();
      w.update(0);
      w.check(0).should.be.false();
      w.check(1).should.be.true();
      w.update(100);
      w.check(100).should.be.false();
      w.check(37).should.be.true(); // 63 behind: inside the window
      w.check(36).should.be.false(); // 64 behind: outside
      w.update(37);
      w.check(37).should.be.false();
      w.check(99).should.be.true();
      w.update(99);
      w.check(99).should.be.false();
      // a jump larger than the window forgets everything older
      w.update(1000);
      w.check(999).should.be.true();
      w.check(100).should.be.false();
      w.check(936).should.be.false();
      w.check(937).should.be.true();
    });
    it('check alone does not mark a number as seen', () => {
      const w = new ReplayWindow();
      w.update(5);
      w.check(500).should.be.true();
      w.check(500).should.be.true();
      w.check(4).should.be.true();
      w.check(5).should.be.false();
    });
    it('handles shifts of exactly 63 and 64', () => {
      const w = new ReplayWindow();
      w.update(0);
      w.update(63);
      w.check(0).should.be.false();
      w.update(64);
      w.check(0).should.be.false(); // now left of the window
      w.check(1).should.be.true();
      const v = new ReplayWindow();
      v.update(10);
      v.update(74);
      v.check(10).should.be.false();
      v.check(11).should.be.true();
    });
    it('works near 2^48', () => {
      const w = new ReplayWindow();
      const top = 2 ** 48 - 1;
      w.update(top - 1);
      w.check(top).should.be.true();
      w.update(top);
      w.check(top).should.be.false();
      w.check(top - 1).should.be.false();
      w.check(top - 2).should.be.true();
    });
  });

  describe('session table', () => {
    class S {
      constructor(public address: string, readonly name: string) {}
    }
    it('finds a session by address and port, several addresses on one port included, as the keyed map does', () => {
      const t = new SessionTable<S>();
      const a = new S('127.0.0.1', 'a');
      const b = new S('127.0.0.2', 'b');
      const c = new S('::1', 'c');
      should(t.set('127.0.0.1', 5683, a)).be.undefined();
      should(t.set('127.0.0.2', 5683, b)).be.undefined();
      should(t.set('::1', 5683, c)).be.undefined();
      t.size.should.equal(3);
      should(t.get('127.0.0.1', 5683)).equal(a);
      should(t.get('127.0.0.2', 5683)).equal(b);
      should(t.get('::1', 5683)).equal(c);
      should(t.get('127.0.0.3', 5683)).be.undefined();
      should(t.get('127.0.0.1', 5684)).be.undefined();
      [...t.byKey.keys()].should.eql(['127.0.0.1:5683', '127.0.0.2:5683', '::1:5683']);
      // a new session at an address replaces the old one there (and is returned)
      const a2 = new S('127.0.0.1', 'a2');
      should(t.set('127.0.0.1', 5683, a2)).equal(a);
      should(t.get('127.0.0.1', 5683)).equal(a2);
      t.size.should.equal(3);
      // deleting needs the session that is there
      t.delete('127.0.0.1', 5683, a).should.be.false();
      should(t.get('127.0.0.1', 5683)).equal(a2);
      t.delete('127.0.0.2', 5683, b).should.be.true();
      should(t.get('127.0.0.2', 5683)).be.undefined();
      should(t.get('::1', 5683)).equal(c);
      t.delete('::1', 5683, c).should.be.true();
      t.delete('127.0.0.1', 5683, a2).should.be.true();
      t.size.should.equal(0);
      should(t.get('127.0.0.1', 5683)).be.undefined();
    });
    it('follows a session that moved once its owner deletes it under the old address and sets it under the new one', () => {
      const t = new SessionTable<S>();
      const s = new S('127.0.0.1', 's');
      const other = new S('127.0.0.1', 'other');
      t.set('127.0.0.1', 1000, s);
      t.set('127.0.0.1', 2000, other);
      s.address = '127.0.0.9';
      t.delete('127.0.0.1', 1000, s).should.be.true();
      should(t.set('127.0.0.9', 2000, s)).be.undefined();
      should(t.get('127.0.0.9', 2000)).equal(s);
      should(t.get('127.0.0.1', 2000)).equal(other);
      should(t.get('127.0.0.1', 1000)).be.undefined();
      // moving onto an address held by another session replaces it
      s.address = '127.0.0.1';
      t.delete('127.0.0.9', 2000, s).should.be.true();
      should(t.set('127.0.0.1', 2000, s)).equal(other);
      should(t.get('127.0.0.1', 2000)).equal(s);
      t.size.should.equal(1);
    });
    it('agrees with a plain map over random operations, odd ports included', () => {
      const t = new SessionTable<S>();
      const ref = new Map<string, S>();
      const rnd = (n: number): number => Math.floor(Math.random() * n);
      const addrs = ['127.0.0.1', '127.0.0.2', '10.1.1.1', 'fe80::1'];
      const ports = [0, 1, 5683, 65535, 65536, -1, 1.5, 40000];
      for (let i = 0; i < 5000; i++) {
        const address = addrs[rnd(addrs.length)];
        const port = ports[rnd(ports.length)];
        const key = `${address}:${port}`;
        if (rnd(3) === 0) {
          const cur = ref.get(key);
          if (cur) {
            t.delete(address, port, cur).should.be.true();
            ref.delete(key);
          }
        } else {
          const s = new S(address, String(i));
          should(t.set(address, port, s)).equal(ref.get(key));
          ref.set(key, s);
        }
        for (const a of addrs) for (const p of ports) should(t.get(a, p)).equal(ref.get(`${a}:${p}`));
        t.size.should.equal(ref.size);
      }
    });
  });

  describe('record framing', () => {
    it('splits several records and stops at a truncated one', () => {
      const a = record(23, 1, 7, Buffer.from('aaaa'));
      const b = record(21, 1, 8, Buffer.from([1, 0]));
      const p = parseDatagram(Buffer.concat([a, b, b.subarray(0, 10)]));
      p.records.length.should.equal(2);
      p.records[0].seq.should.equal(7);
      p.records[1].type.should.equal(21);
      p.malformed.should.equal(1);
    });
    it('rejects oversized length, unknown type and unknown version', () => {
      const big = record(23, 1, 1, Buffer.alloc(4));
      big.writeUInt16BE(0xffff, 11);
      parseDatagram(big).records.length.should.equal(0);
      parseDatagram(record(99, 1, 1, Buffer.alloc(4))).malformed.should.equal(1);
      parseDatagram(record(23, 1, 1, Buffer.alloc(4), 0x0303)).malformed.should.equal(1);
      parseDatagram(Buffer.alloc(0)).records.length.should.equal(0);
    });
    it('reads and writes epoch and 48-bit sequence numbers as Buffer.readUIntBE / writeUIntBE do, to the top of the range', () => {
      const seqs = [0, 1, 255, 256, 2 ** 24 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, 2 ** 48 - 2, 2 ** 48 - 1];
      for (let i = 0; i < 200; i++) seqs.push(Math.floor(Math.random() * 2 ** 48));
      for (const seq of seqs) {
        for (const epoch of [0, 1, 0x1234, 0xffff]) {
          const mine = Buffer.alloc(10, 0xaa);
          writeSeq(mine, 1, epoch, seq);
          const ref = Buffer.alloc(10, 0xaa);
          ref.writeUInt16BE(epoch, 1);
          ref.writeUIntBE(seq, 3, 6);
          mine.equals(ref).should.be.true(`epoch ${epoch} seq ${seq}`);
          readSeq(ref, 3).should.equal(seq);
          const rec = parseDatagram(record(23, epoch, seq, Buffer.from('x'))).records[0];
          rec.epoch.should.equal(epoch);
          rec.seq.should.equal(seq);
        }
      }
    });
  });

  describe('handshake decoding', () => {
    it('rejects truncated and inconsistent messages without throwing anything but DecodeError', () => {
      const body = clientHelloBody({ extensions: [{ type: 23, data: Buffer.alloc(0) }] });
      decodeClientHello(body).extensions[0].type.should.equal(23);
      for (let cut = 0; cut < body.length; cut++) {
        if (cut === body.length - 6) continue; // exactly without the extensions block: valid
        (() => decodeClientHello(body.subarray(0, cut))).should.throw(/truncated|bad|no compression|trailing/);
      }
      const msg = handshakeMsg(1, 0, body);
      should(parseHandshakeFragments(msg.subarray(0, 20))).be.undefined();
      const lying = Buffer.from(msg);
      lying.writeUIntBE(0xffffff, 1, 3); // length larger than any message we accept
      should(parseHandshakeFragments(lying)).be.undefined();
    });
    it('reassembles overlapping, out of order fragments', () => {
      const body = randomBytes(300);
      const a = new MessageAssembler(16, 300, 2);
      const frag = (off: number, len: number) => ({ msgType: 16, length: 300, messageSeq: 2, fragmentOffset: off,
        body: body.subarray(off, off + len) });
      a.add(frag(200, 100)).should.be.true();
      a.complete.should.be.false();
      a.add(frag(0, 120)).should.be.true();
      a.add(frag(100, 50)).should.be.true();
      a.complete.should.be.false();
      a.add(frag(150, 50)).should.be.true();
      a.complete.should.be.true();
      a.body.equals(body).should.be.true();
      a.add({ ...frag(0, 10), msgType: 20 }).should.be.false();
    });
  });

  describe('cookies', () => {
    const hello = decodeClientHello(clientHelloBody());
    it('are bound to the peer address and port and survive one rotation', () => {
      const jar = new CookieJar(60_000);
      const cookie = jar.make('127.0.0.1', 4000, hello);
      const withCookie = { ...hello, cookie };
      jar.verify('127.0.0.1', 4000, withCookie).should.be.true();
      jar.verify('127.0.0.1', 4001, withCookie).should.be.false();
      jar.verify('127.0.0.2', 4000, withCookie).should.be.false();
      jar.verify('127.0.0.1', 4000, { ...withCookie, random: randomBytes(32) }).should.be.false();
      jar.rotate();
      jar.verify('127.0.0.1', 4000, withCookie).should.be.true();
      jar.rotate();
      jar.verify('127.0.0.1', 4000, withCookie).should.be.false();
    });
    it('rotate lazily with time', () => {
      let now = 0;
      const jar = new CookieJar(1000, () => now);
      const cookie = jar.make('127.0.0.1', 4000, hello);
      now = 1500;
      jar.verify('127.0.0.1', 4000, { ...hello, cookie }).should.be.true();
      now = 2600;
      jar.verify('127.0.0.1', 4000, { ...hello, cookie }).should.be.false();
      const c2 = jar.make('127.0.0.1', 4000, hello);
      now = 10_000; // both secrets stale
      jar.verify('127.0.0.1', 4000, { ...hello, cookie: c2 }).should.be.false();
    });
  });

  describe('record protection', () => {
    for (const suite of Object.values(CIPHER_SUITES)) {
      it(`${suite.name}: round trip, and every tampered byte fails authentication`, () => {
        const keys = deriveKeys(suite, randomBytes(48), randomBytes(32), randomBytes(32));
        const client = clientCiphers(suite, keys);
        const server = serverCiphers(suite, keys);
        for (const len of [0, 1, 15, 16, 17, 31, 32, 33, 100]) {
          const pt = randomBytes(len);
          const rec = client.write.encrypt(23, 0xfefd, 1, 42, pt);
          server.read.decrypt(23, 0xfefd, 1, 42, rec)!.equals(pt).should.be.true();
          should(server.read.decrypt(23, 0xfefd, 1, 43, rec)).be.undefined(); // wrong sequence number
          should(server.read.decrypt(22, 0xfefd, 1, 42, rec)).be.undefined(); // wrong type
          should(client.read.decrypt(23, 0xfefd, 1, 42, rec)).be.undefined(); // wrong direction
          for (let i = 0; i < rec.length; i++) {
            const t = Buffer.from(rec);
            t[i] ^= 0x01;
            // For CCM the explicit nonce is authenticated through the nonce; for CBC flipping the IV changes the plaintext.
            should(server.read.decrypt(23, 0xfefd, 1, 42, t)).be.undefined();
          }
          should(server.read.decrypt(23, 0xfefd, 1, 42, rec.subarray(0, rec.length - 1))).be.undefined();
        }
        const back = server.write.encrypt(23, 0xfefd, 1, 7, Buffer.from('pong'));
        client.read.decrypt(23, 0xfefd, 1, 7, back)!.toString().should.equal('pong');
      });
    }
    it('CCM_8: an empty record with a forged tag does not authenticate', () => {
      const suite = CIPHER_SUITES.TLS_PSK_WITH_AES_128_CCM_8;
      const keys = deriveKeys(suite, randomBytes(48), randomBytes(32), randomBytes(32));
      const server = serverCiphers(suite, keys);
      for (const frag of [Buffer.alloc(16), randomBytes(16), randomBytes(0x10)]) {
        should(server.read.decrypt(23, 0xfefd, 1, 0, frag)).be.undefined();
        should(server.read.decrypt(23, 0xfefd, 1, 0, Buffer.concat([frag]).subarray(0, 16))).be.undefined();
      }
      const good = clientCiphers(suite, keys).write.encrypt(23, 0xfefd, 1, 0, randomBytes(0));
      good.length.should.equal(16);
      server.read.decrypt(23, 0xfefd, 1, 0, good)!.length.should.equal(0);
    });
    it('CBC: bad padding and bad MAC give the same result', () => {
      const suite = CIPHER_SUITES.TLS_PSK_WITH_AES_128_CBC_SHA256;
      const keys = deriveKeys(suite, randomBytes(48), randomBytes(32), randomBytes(32));
      const server = serverCiphers(suite, keys);
      // Records that are well-formed CBC but carry garbage: padding and MAC checks both fail.
      for (let i = 0; i < 200; i++) {
        const n = 16 * (4 + (i % 8));
        should(server.read.decrypt(23, 0xfefd, 1, i, randomBytes(n))).be.undefined();
      }
      should(server.read.decrypt(23, 0xfefd, 1, 0, randomBytes(47))).be.undefined();
    });
  });
});
