/**
 * The CoAP encoder against an independent one: for random messages (every type, request and response codes,
 * tokens of 0-8 bytes, options in any order with values of 0-300 bytes so that every delta and length encoding
 * occurs, payloads or none) encodeMessage writes the same bytes as coap-packet's generate, and decodeMessage reads
 * them back.
 */
import assert from 'node:assert/strict';
import * as packet from 'coap-packet';
import { decodeMessage, encodeMessage, optionName, type CoapOption, type CoapType } from '../src/coap/message';
import { seededRandom } from './support/random';

describe('CoAP encoder', () => {
  it('writes what coap-packet writes for 3,000 random messages, and decodes them back', () => {
    const rnd = seededRandom(4242);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const numbers = [1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 258, 2049, 65000];
    const types: CoapType[] = ['CON', 'NON', 'ACK', 'RST'];
    const codes = ['0.01', '0.02', '0.03', '0.04', '0.05', '0.07', '2.01', '2.04', '2.05', '2.31', '4.04', '5.03'];
    for (let i = 0; i < 3000; i++) {
      const type = types[rnd(4)];
      const code = codes[rnd(codes.length)];
      const token = bytes(rnd(9));
      const options: CoapOption[] = Array.from({ length: rnd(7) }, () => {
        const len = [0, 1, 5, 12, 13, 200, 268, 269, 300][rnd(9)];
        return { name: optionName(numbers[rnd(numbers.length)]), value: bytes(len) };
      });
      const payload = rnd(3) === 0 ? Buffer.alloc(0) : bytes(1 + rnd(100));
      const messageId = rnd(65536);
      const ours = encodeMessage({ type, code, messageId, token, options, payload }, 4096);
      const theirs = packet.generate(
        {
          code, messageId, token, payload, confirmable: type === 'CON', ack: type === 'ACK', reset: type === 'RST',
          options: options.map((o) => ({ name: o.name, value: o.value })) as packet.Option[],
        },
        4096,
      );
      assert.equal(ours.toString('hex'), theirs.toString('hex'), `message ${i}`);
      const back = decodeMessage(ours);
      assert.equal(back.type, type);
      assert.equal(back.code, code);
      assert.equal(back.messageId, messageId);
      assert.ok(back.token.equals(token));
      assert.ok(back.payload.equals(payload));
      assert.equal(back.options.length, options.length);
      // the decoder reads what coap-packet's parser reads: every option's name and value in order, token, payload
      const parsed = packet.parse(ours);
      assert.deepEqual(back.options.map((o) => [o.name, o.value.toString('hex')]), parsed.options.map((o) => [String(o.name), o.value.toString('hex')]), `message ${i}`);
      assert.equal(back.token.toString('hex'), parsed.token.toString('hex'));
      assert.equal(back.payload.toString('hex'), parsed.payload.toString('hex'));
      assert.equal(back.code, parsed.code);
      assert.equal(back.messageId, parsed.messageId);
      // typed fields and the path lists come from the first / every occurrence
      const first = (n: number) => options.find((o) => o.name === optionName(n))?.value;
      const uint = (v: Buffer | undefined, max: number) => (v === undefined || v.length > max ? undefined : v.length === 0 ? 0 : v.readUIntBE(0, v.length));
      assert.equal(back.contentFormat, uint(first(12), 2));
      assert.equal(back.accept, uint(first(17), 2));
      assert.equal(back.observe, uint(first(6), 3));
      const all = (n: number) => options.filter((o) => o.name === optionName(n)).map((o) => o.value.toString('utf8'));
      assert.deepEqual(back.path, all(11));
      assert.deepEqual(back.query, all(15));
      assert.deepEqual(back.locationPath, all(8));
    }
  });

  it('decodes every cut of a valid message either as coap-packet does or with a format error, never otherwise', () => {
    const rnd = seededRandom(99);
    const msg = encodeMessage({
      type: 'CON', code: '0.02', messageId: 7, token: Buffer.from('0102030405060708', 'hex'),
      options: [{ name: 'Uri-Path', value: Buffer.from('rd') }, { name: 'Content-Format', value: Buffer.from([40]) },
        { name: 'Uri-Query', value: Buffer.alloc(20, 0x61) }, { name: 'Size1', value: Buffer.from([1, 0]) }, { name: '2049', value: Buffer.alloc(300, 1) }],
      payload: Buffer.from('</1/0>,</3/0>'),
    }, 4096);
    for (let cut = 0; cut < msg.length; cut++) {
      const part = msg.subarray(0, cut);
      let ok;
      try {
        ok = decodeMessage(part);
      } catch (err) {
        assert.equal((err as Error).name, 'CoapFormatError', `cut at ${cut}: ${(err as Error).message}`);
        continue;
      }
      const parsed = packet.parse(part);
      assert.deepEqual(ok.options.map((o) => o.value.toString('hex')), parsed.options.map((o) => o.value.toString('hex')), `cut at ${cut}`);
    }
    // garbage of every length: a format error or a message, never another exception
    for (let i = 0; i < 3000; i++) {
      const junk = Buffer.from(Array.from({ length: rnd(40) }, () => rnd(256)));
      junk[0] = (junk[0] & 0x3f) | 0x40; // version 1, so the option walk is reached
      try {
        decodeMessage(junk);
      } catch (err) {
        assert.equal((err as Error).name, 'CoapFormatError', (err as Error).message);
      }
    }
  });

  it('refuses what it cannot send, saying why', () => {
    const msg = { type: 'CON' as const, code: '0.01', messageId: 1 };
    assert.throws(() => encodeMessage({ ...msg, code: '9.99' }), /invalid CoAP code/);
    assert.throws(() => encodeMessage({ ...msg, token: Buffer.alloc(9) }), /token longer than 8 bytes/);
    assert.throws(() => encodeMessage({ ...msg, messageId: 70000 }), /message id 70000 out of range/);
    assert.throws(() => encodeMessage({ ...msg, options: [{ name: 'No-Such', value: Buffer.alloc(1) }] }), /unknown option 'No-Such'/);
    assert.throws(() => encodeMessage({ ...msg, payload: Buffer.alloc(2000) }), /Max packet size is 1152: current is 2005/);
    assert.throws(() => encodeMessage({ ...msg, code: '0.00', token: Buffer.alloc(1) }), /empty message carries no token/);
  });
});
