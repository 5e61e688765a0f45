import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import 'should';
import { CcmContext, CcmScratch, CipherContexts, type ContextHolder } from '../src/dtls/ccm';
import { encodeRecord, parseDatagram } from '../src/dtls/record';
import { CIPHER_SUITES, clientCiphers, deriveKeys, serverCiphers } from '../src/dtls/suites';
import { seededRandom } from './support/random';

/** Node's (OpenSSL's) one-shot AES-128-CCM: ciphertext ‖ tag. */
function opensslSeal(key: Buffer, nonce: Buffer, aad: Buffer, pt: Buffer, tagLength: number): Buffer {
  const c = createCipheriv('aes-128-ccm', key, nonce, { authTagLength: tagLength });
  c.setAAD(aad, { plaintextLength: pt.length });
  const ct = Buffer.concat([c.update(pt.length ? pt : Buffer.alloc(1).subarray(0, 0)), c.final()]);
  return Buffer.concat([ct, c.getAuthTag()]);
}

function opensslOpen(key: Buffer, nonce: Buffer, aad: Buffer, sealed: Buffer, tagLength: number): Buffer | undefined {
  const ct = sealed.subarray(0, sealed.length - tagLength);
  try {
    const d = createDecipheriv('aes-128-ccm', key, nonce, { authTagLength: tagLength });
    d.setAuthTag(sealed.subarray(sealed.length - tagLength));
    d.setAAD(aad, { plaintextLength: ct.length });
    const pt = d.update(ct.length ? ct : Buffer.alloc(1).subarray(0, 0));
    d.final();
    return pt;
  } catch {
    return undefined;
  }
}

function seal(ctx: CcmContext, nonce: Buffer, aad: Buffer, pt: Buffer, tagLength: number): Buffer {
  const out = Buffer.alloc(pt.length + tagLength);
  ctx.seal(nonce, aad, pt, out, 0);
  return out;
}

describe('AES-128-CCM over long-lived AES contexts (CcmContext)', () => {
  it('gives the NIST SP 800-38C example 3 bytes (12-byte nonce, 8-byte tag)', () => {
    const key = Buffer.from('404142434445464748494a4b4c4d4e4f', 'hex');
    const nonce = Buffer.from('101112131415161718191a1b', 'hex');
    const aad = Buffer.from('000102030405060708090a0b0c0d0e0f10111213', 'hex');
    const pt = Buffer.from('202122232425262728292a2b2c2d2e2f3031323334353637', 'hex');
    const expected = 'e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951';
    const ctx = new CcmContext(key, 8);
    seal(ctx, nonce, aad, pt, 8).toString('hex').should.equal(expected);
    // the same context again (its CBC chain has moved on) and then opening it
    seal(ctx, nonce, aad, pt, 8).toString('hex').should.equal(expected);
    const sealed = Buffer.from(expected, 'hex');
    ctx.open(nonce, aad, sealed.subarray(0, 24), sealed.subarray(24))!.equals(pt).should.be.true();
  });

  for (const tagLength of [8, 16]) {
    it(`matches OpenSSL's aes-128-ccm byte for byte on 3,000 random records in a row (tag ${tagLength})`, () => {
      const rnd = seededRandom(tagLength);
      const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
      const key = bytes(16);
      const ctx = new CcmContext(key, tagLength);
      for (let i = 0; i < 3000; i++) {
        // lengths around block boundaries and up to a large CoAP payload; AAD of DTLS (13) and DTLS CID (23 + cid) sizes
        const len = i < 100 ? i : rnd(1400);
        const aad = bytes([13, 24, 31, 2, 14][i % 5]);
        const nonce = bytes(12);
        const pt = bytes(len);
        const expected = opensslSeal(key, nonce, aad, pt, tagLength);
        const got = seal(ctx, nonce, aad, pt, tagLength);
        assert.ok(got.equals(expected), `record ${i} (${len} bytes) differs`);
        // every other record is opened by the same context, so sealing and opening interleave on its CBC chain
        if (i % 2 === 0) {
          const opened = ctx.open(nonce, aad, got.subarray(0, len), got.subarray(len));
          assert.ok(opened && opened.equals(pt), `record ${i} does not open`);
        } else if (i % 3 === 0) {
          // in place inside a larger buffer, as the record layer opens a fragment of a datagram
          const framed = Buffer.concat([bytes(5), got, bytes(7)]);
          const opened = ctx.openIn(nonce, aad, framed, 5, 5 + got.length);
          assert.ok(opened && opened.equals(pt), `record ${i} does not open in place`);
          framed[5 + rnd(got.length)] ^= 1 << rnd(8);
          assert.equal(ctx.openIn(nonce, aad, framed, 5, 5 + got.length), undefined, `tampered record ${i} opens`);
        }
      }
    });
  }

  it('matches OpenSSL when nonces count up as DTLS sequence numbers (key stream made in batches), in and out of order', () => {
    const rnd = seededRandom(77);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const key = bytes(16);
    const sealer = new CcmContext(key, 8);
    const opener = new CcmContext(key, 8);
    const iv = bytes(4);
    const nonceOf = (epoch: number, seq: number): Buffer => {
      const n = Buffer.alloc(12);
      iv.copy(n, 0);
      n.writeUInt16BE(epoch, 4);
      n.writeUIntBE(seq, 6, 6);
      return n;
    };
    // in order, lengths mostly within a batch's 64 bytes and sometimes beyond; a new epoch; a skip back and ahead;
    // the top of the 48-bit sequence space
    const seqs: Array<[number, number]> = [];
    for (let s = 0; s < 40; s++) seqs.push([1, s]);
    for (let s = 0; s < 12; s++) seqs.push([2, s]);
    seqs.push([2, 5], [2, 3], [2, 30], [2, 31], [2, 29], [2, 40]);
    for (let s = 2 ** 48 - 5; s < 2 ** 48; s++) seqs.push([2, s]);
    // a batch across a carry into the sequence number's top 16 bits, with every byte of the epoch and IV in play
    for (let s = 2 ** 32 - 4; s < 2 ** 32 + 6; s++) seqs.push([0xa5c3, s]);
    for (let s = 2 ** 40 + 0xfffffd; s < 2 ** 40 + 0x1000003; s++) seqs.push([0x5a3c, s]);
    for (const [i, [epoch, seq]] of seqs.entries()) {
      const len = i % 7 === 0 ? 65 + rnd(200) : rnd(65);
      const nonce = nonceOf(epoch, seq);
      const aad = bytes(13);
      const pt = bytes(len);
      const expected = opensslSeal(key, nonce, aad, pt, 8);
      assert.ok(seal(sealer, nonce, aad, pt, 8).equals(expected), `epoch ${epoch} seq ${seq} (${len} bytes) differs`);
      const opened = opener.open(nonce, aad, expected.subarray(0, len), expected.subarray(len));
      assert.ok(opened && opened.equals(pt), `epoch ${epoch} seq ${seq} does not open`);
      // the same record under a neighbouring sequence number (its key stream in the same batch) must not open
      const other = seq === 2 ** 48 - 1 ? seq - 1 : seq + 1;
      assert.equal(opener.open(nonceOf(epoch, other), aad, expected.subarray(0, len), expected.subarray(len)), undefined);
    }
  });

  it('grows its key-stream batch from 4 to 16 records while records follow in order, starts at 4 again after a jump', () => {
    const rnd = seededRandom(5);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const key = bytes(16);
    const iv = bytes(4);
    const sealer = new CcmContext(key, 8, new CcmScratch(), iv);
    const opener = new CcmContext(key, 8, new CcmScratch(), iv);
    // the AES-ECB calls that make key stream, counted on both contexts
    let calls = 0;
    for (const ctx of [sealer, opener]) {
      const ecb = (ctx as unknown as { ecb: { update(b: Buffer): Buffer } }).ecb;
      const update = ecb.update.bind(ecb);
      ecb.update = (b: Buffer): Buffer => {
        calls++;
        return update(b);
      };
    }
    const run = (from: number, to: number): void => {
      for (let seq = from; seq < to; seq++) {
        const nonce = Buffer.from(sealer.nonce(1, seq));
        const aad = bytes(13);
        const pt = bytes(rnd(65)); // within the 64 bytes a batch keeps per record
        const expected = opensslSeal(key, nonce, aad, pt, 8);
        assert.ok(seal(sealer, nonce, aad, pt, 8).equals(expected), `seq ${seq} differs`);
        const opened = opener.open(nonce, aad, expected.subarray(0, pt.length), expected.subarray(pt.length));
        assert.ok(opened && opened.equals(pt), `seq ${seq} does not open`);
      }
    };
    // 100 records in order: batches from 0 (4 records), 4 (8), 12, 28, 44, 60, 76, 92 (16 each): 8 calls a context
    run(0, 100);
    calls.should.equal(16);
    // a jump ahead: 1000 (4), 1004 (8), 1012 (16)
    run(1000, 1020);
    calls.should.equal(22);
    // back to 500: a batch of 4 in the larger buffer, then 504 follows it and gets 8
    run(500, 505);
    calls.should.equal(26);
  });

  it('contexts sharing one scratch, used in turn with records of every size, match OpenSSL; nonce() lays out IV, epoch, seq', () => {
    const rnd = seededRandom(99);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const scratch = new CcmScratch();
    const peers = Array.from({ length: 4 }, () => {
      const key = bytes(16);
      const iv = bytes(4);
      return { key, iv, sealer: new CcmContext(key, 8, scratch, iv), opener: new CcmContext(key, 8, scratch, iv), seq: rnd(1000) };
    });
    for (let i = 0; i < 2000; i++) {
      const p = peers[rnd(peers.length)];
      const seq = p.seq++;
      const nonce = p.sealer.nonce(1, seq);
      assert.ok(nonce.equals(Buffer.concat([p.iv, Buffer.from([0, 1]), Buffer.from(seq.toString(16).padStart(12, '0'), 'hex')])));
      const expectedNonce = Buffer.from(nonce);
      const len = [0, 1, 15, 16, 17, 30, 48, 64, 65, 200, 1100][rnd(11)];
      const aad = bytes(13);
      const pt = bytes(len);
      const expected = opensslSeal(p.key, expectedNonce, aad, pt, 8);
      assert.ok(seal(p.sealer, nonce, aad, pt, 8).equals(expected), `record ${i} (${len} bytes) differs`);
      const opened = p.opener.open(p.opener.nonce(1, seq), aad, expected.subarray(0, len), expected.subarray(len));
      assert.ok(opened && opened.equals(pt), `record ${i} does not open`);
    }
  });

  it('opens what OpenSSL sealed, and refuses every tampered byte, a wrong nonce, AAD or tag length', () => {
    const key = randomBytes(16);
    const ctx = new CcmContext(key, 8);
    for (const len of [0, 1, 15, 16, 17, 33, 200]) {
      const nonce = randomBytes(12);
      const aad = randomBytes(13);
      const pt = randomBytes(len);
      const sealed = opensslSeal(key, nonce, aad, pt, 8);
      const open = (s: Buffer, n = nonce, a = aad): Buffer | undefined => ctx.open(n, a, s.subarray(0, s.length - 8), s.subarray(s.length - 8));
      open(sealed)!.equals(pt).should.be.true();
      for (let i = 0; i < sealed.length; i++) {
        const t = Buffer.from(sealed);
        t[i] ^= 0x80;
        assert.equal(open(t), undefined, `flipped byte ${i} of ${len}`);
        assert.equal(opensslOpen(key, nonce, aad, t, 8), undefined); // OpenSSL agrees
      }
      const otherNonce = Buffer.from(nonce);
      otherNonce[11] ^= 1;
      assert.equal(open(sealed, otherNonce), undefined);
      const otherAad = Buffer.from(aad);
      otherAad[0] ^= 1;
      assert.equal(open(sealed, nonce, otherAad), undefined);
      assert.equal(ctx.open(nonce, aad, sealed.subarray(0, len), sealed.subarray(len, len + 4)), undefined); // short tag
      open(sealed)!.equals(pt).should.be.true(); // failures leave the context usable
    }
  });

  it('refuses a nonce that is not 12 bytes', () => {
    const ctx = new CcmContext(randomBytes(16), 8);
    assert.throws(() => seal(ctx, randomBytes(13), randomBytes(13), randomBytes(5), 8), /12 bytes/);
  });
});

describe('CCM record ciphers and their contexts (CipherContexts)', () => {
  const suite = CIPHER_SUITES.TLS_PSK_WITH_AES_128_CCM_8;

  const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  /** The CcmContext a record cipher holds (AeadCipher is a ContextHolder). */
  const contextOf = (c: unknown): CcmContext | undefined => (c as ContextHolder).context;
  /** `n` holders with a live context each, tracked by `contexts`; each pushes its id to `released` when released. */
  const trackedHolders = (contexts: CipherContexts, n: number, released: number[]) => {
    const holders = Array.from({ length: n }, (_, id) => {
      const h = {
        id,
        context: new CcmContext(randomBytes(16), 8, contexts.scratch) as CcmContext | undefined,
        releaseContext(): void {
          if (!h.context) return;
          h.context.wipe();
          h.context = undefined;
          released.push(id);
        },
      };
      return h;
    });
    for (const h of holders) contexts.track(h);
    return holders;
  };

  it('a session makes its contexts only after the first two records each way; the sweep takes idle ones back', async () => {
    const contexts = new CipherContexts(60_000);
    try {
      const keys = deriveKeys(suite, randomBytes(48), randomBytes(32), randomBytes(32));
      const client = clientCiphers(suite, keys);
      const server = serverCiphers(suite, keys, contexts);
      const exchange = (seq: number): void => {
        const req = client.write.encrypt(23, 0xfefd, 1, seq, Buffer.from(`ping ${seq}`));
        server.read.decrypt(23, 0xfefd, 1, seq, req)!.toString().should.equal(`ping ${seq}`);
        const res = server.write.encrypt(23, 0xfefd, 1, seq, Buffer.from(`pong ${seq}`));
        client.read.decrypt(23, 0xfefd, 1, seq, res)!.toString().should.equal(`pong ${seq}`);
      };
      exchange(1); // the handshake's Finished
      exchange(2); // Register
      contexts.size.should.equal(0);
      assert.equal(server.write.sealRecord!(23, 0xfefd, 1, 3, Buffer.from('x')), undefined); // no context yet
      exchange(3);
      contexts.size.should.equal(2); // read and write
      contexts.sweep(); // used since the last sweep: kept, marked unused
      contexts.size.should.equal(2);
      exchange(4);
      contexts.sweep();
      contexts.size.should.equal(2);
      const before = contextOf(server.write)!;
      contexts.sweep(); // a whole period unused: released on the next turn of the event loop
      contexts.size.should.equal(0);
      contexts.releasePending.should.equal(2);
      await nextTurn();
      contexts.releasePending.should.equal(0);
      assert.equal(contextOf(server.write), undefined);
      // its OpenSSL contexts were freed at release, not left to the garbage collector: it cannot seal any more
      assert.throws(() => before.seal(before.nonce(1, 99), before.aadScratch, Buffer.from('x'), Buffer.alloc(64), 0));
      exchange(5); // made again on the next use, same keys
      contexts.size.should.equal(2);
      // the one-buffer record (header included) is the same bytes as framing encrypt's output, and opens
      assert.equal(server.write.sealRecord!(23, 0xfefd, 1, 9, Buffer.from('x')) === undefined, false);
      for (const len of [0, 1, 16, 40, 300]) {
        const pt = randomBytes(len);
        const whole = server.write.sealRecord!(23, 0xfefd, 1, 100 + len, pt)!;
        const framed = encodeRecord(23, 0xfefd, 1, 100 + len, server.write.encrypt(23, 0xfefd, 1, 100 + len, pt));
        assert.ok(whole.equals(framed), `record of ${len} bytes`);
        const rec = parseDatagram(whole, 0).records[0];
        client.read.decrypt(rec.type, rec.version, rec.epoch, rec.seq, rec.fragment)!.equals(pt).should.be.true();
      }
      // a forged record still fails on the context path
      const forged = client.write.encrypt(23, 0xfefd, 1, 6, Buffer.from('x'));
      forged[forged.length - 1] ^= 1;
      assert.equal(server.read.decrypt(23, 0xfefd, 1, 6, forged), undefined);
      server.read.dispose!();
      server.write.dispose!();
      contexts.size.should.equal(0);
    } finally {
      contexts.close();
    }
  });

  it('at most `max` ciphers hold a context; the others keep working on the one-shot path', async () => {
    const contexts = new CipherContexts(60_000, 3);
    try {
      const sessions = Array.from({ length: 4 }, () => {
        const keys = deriveKeys(suite, randomBytes(48), randomBytes(32), randomBytes(32));
        return { client: clientCiphers(suite, keys), server: serverCiphers(suite, keys, contexts) };
      });
      for (let seq = 1; seq <= 5; seq++) {
        for (const { client, server } of sessions) {
          const req = client.write.encrypt(23, 0xfefd, 1, seq, Buffer.from(`q${seq}`));
          server.read.decrypt(23, 0xfefd, 1, seq, req)!.toString().should.equal(`q${seq}`);
          const res = server.write.encrypt(23, 0xfefd, 1, seq, Buffer.from(`r${seq}`));
          client.read.decrypt(23, 0xfefd, 1, seq, res)!.toString().should.equal(`r${seq}`);
        }
      }
      contexts.size.should.equal(3);
      contexts.hasRoom.should.be.false();
      contexts.sweep();
      contexts.sweep(); // all idle now: taken out; room again once they are released
      contexts.size.should.equal(0);
      contexts.hasRoom.should.be.false();
      await nextTurn();
      contexts.hasRoom.should.be.true();
      for (const { server } of sessions) assert.equal(contextOf(server.read) ?? contextOf(server.write), undefined);
    } finally {
      contexts.close();
    }
  });

  it('a sweep releases idle contexts 512 per turn of the event loop; one used again before its turn keeps its context', async () => {
    const contexts = new CipherContexts(60_000);
    const released: number[] = [];
    const holders = trackedHolders(contexts, 1200, released);
    try {
      contexts.size.should.equal(1200);
      contexts.sweep(); // each used since it was made: kept, marked unused
      contexts.sweep(); // idle for a whole period: taken out, none released yet
      contexts.size.should.equal(0);
      contexts.releasePending.should.equal(1200);
      released.length.should.equal(0);
      await nextTurn();
      released.length.should.equal(512);
      // a holder still waiting for its turn is used again: it keeps its context and is tracked again
      const waiting = holders.find((h) => h.context !== undefined)!;
      const ctx = waiting.context!;
      const out = Buffer.alloc(64);
      ctx.seal(ctx.nonce(1, 1), ctx.aadScratch, Buffer.from('still in use'), out, 0);
      await nextTurn();
      released.length.should.equal(1024);
      await nextTurn();
      released.length.should.equal(1199);
      contexts.releasePending.should.equal(0);
      released.includes(waiting.id).should.be.false();
      waiting.context!.should.equal(ctx);
      contexts.size.should.equal(1);
      new Set(released).size.should.equal(1199);
    } finally {
      contexts.close();
    }
    released.length.should.equal(1200); // close releases the one tracked again
  });

  it('a sweep during a release, a holder dropped while waiting, and close() before the release is done', async () => {
    const contexts = new CipherContexts(60_000);
    const released: number[] = [];
    const holders = trackedHolders(contexts, 1100, released);
    contexts.sweep();
    contexts.sweep();
    contexts.releasePending.should.equal(1100);
    await nextTurn();
    released.length.should.equal(512);
    contexts.sweep(); // nothing is live: the holders still waiting are neither counted twice nor released early
    contexts.releasePending.should.equal(1100 - 512);
    released.length.should.equal(512);
    // a session that ends while its holder waits (dispose: release, then forget) is released once
    const dropped = holders.find((h) => h.context !== undefined)!;
    dropped.releaseContext();
    contexts.forget(dropped);
    contexts.close(); // the rest at once, and no turn of the event loop releases anything after it
    released.length.should.equal(1100);
    new Set(released).size.should.equal(1100);
    contexts.releasePending.should.equal(0);
    await nextTurn();
    await nextTurn();
    released.length.should.equal(1100);
  });
});
