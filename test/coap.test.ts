import assert from 'node:assert/strict';
import * as packet from 'coap-packet';
import type { Channel } from '../src/channel';
import {
  ChannelClosedError,
  CoapEndpoint,
  CoapEndpointOptions,
  CoapMessage,
  CoapResetError,
  CoapResponseInit,
  CoapTimeoutError,
  EndpointClosedError,
  type ExchangeSink,
  RequestAbortedError,
  blockSize,
  codeName,
  decodeBlock,
  decodeMessage,
  decodeUint,
  encodeBlock,
  encodeMessage,
  encodeUint,
  findUnrecognisedCritical,
  isFresherNotification,
  normaliseCode,
  szxForSize,
} from '../src/coap';
import {
  LIBCOAP_CLIENT,
  Proc,
  RawPeer,
  countTimers,
  delay,
  openEndpoint,
  startLibcoapServer,
  waitFor,
} from './support/coap-udp';

function parse(data: Buffer): packet.ParsedPacket {
  return packet.parse(data);
}

function typeOf(data: Buffer): string {
  return ['CON', 'NON', 'ACK', 'RST'][(data[0] >> 4) & 3];
}

/** Builds a datagram with coap-packet (independent of our encoder). */
function gen(p: packet.Packet): Buffer {
  return packet.generate(p);
}

function obsValue(n: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUIntBE(n, 0, 3);
  return b;
}

describe('coap message helpers', () => {
  it('encodes and decodes unsigned option values minimally', () => {
    assert.equal(encodeUint(0).length, 0);
    assert.deepEqual(encodeUint(40), Buffer.from([40]));
    assert.deepEqual(encodeUint(11542), Buffer.from([0x2d, 0x16]));
    assert.deepEqual(encodeUint(0x1000000), Buffer.from([1, 0, 0, 0]));
    assert.equal(decodeUint(Buffer.from([0, 0, 1, 2])), 258);
    assert.throws(() => encodeUint(-1), RangeError);
  });

  it('encodes and decodes Block1/Block2 values (RFC 7959 §2.2)', () => {
    assert.deepEqual(encodeBlock({ num: 0, more: true, szx: 6 }), Buffer.from([0x0e]));
    assert.deepEqual(encodeBlock({ num: 0, more: false, szx: 0 }), Buffer.alloc(0));
    assert.deepEqual(encodeBlock({ num: 1, more: false, szx: 2 }), Buffer.from([0x12]));
    const big = { num: 0xfffff, more: true, szx: 5 };
    assert.deepEqual(decodeBlock(encodeBlock(big)), big);
    assert.deepEqual(decodeBlock(Buffer.from([0x12])), { num: 1, more: false, szx: 2 });
    assert.equal(decodeBlock(Buffer.from([0x0f])), undefined, 'SZX 7 is reserved');
    assert.equal(decodeBlock(Buffer.from([1, 2, 3, 4])), undefined);
    assert.equal(blockSize(0), 16);
    assert.equal(blockSize(6), 1024);
    assert.equal(szxForSize(512), 5);
    assert.equal(szxForSize(1000), 5);
    assert.equal(szxForSize(4096), 6);
    assert.throws(() => encodeBlock({ num: 0x100000, more: false, szx: 0 }), RangeError);
    assert.throws(() => encodeBlock({ num: 0, more: false, szx: 7 }), RangeError);
  });

  it('maps code numbers and names both ways', () => {
    assert.equal(codeName('2.05'), 'Content');
    assert.equal(codeName('4.04'), 'Not Found');
    assert.equal(codeName('2.07'), '2.07');
    assert.equal(normaliseCode('Content'), '2.05');
    assert.equal(normaliseCode('created'), '2.01');
    assert.equal(normaliseCode('205'), '2.05');
    assert.equal(normaliseCode('GET'), '0.01');
    assert.equal(normaliseCode('2.32'), undefined);
    assert.equal(normaliseCode('nonsense'), undefined);
  });

  it('round-trips a request through coap-packet, keeping option order', () => {
    const bytes = encodeMessage({
      type: 'CON',
      code: 'POST',
      messageId: 0x1234,
      token: Buffer.from('a1b2c3d4', 'hex'),
      options: [
        { name: 'Uri-Query', value: Buffer.from('ep=x') },
        { name: 'Uri-Path', value: Buffer.from('rd') },
        { name: 'Uri-Path', value: Buffer.from('abc') },
        { name: 'Content-Format', value: encodeUint(40) },
        { name: '2000', value: Buffer.from([1]) },
      ],
      payload: Buffer.from('</3/0>'),
    });
    const p = parse(bytes);
    assert.equal(p.code, '0.02');
    assert.equal(p.messageId, 0x1234);
    assert.equal(p.confirmable, true);
    const msg = decodeMessage(bytes);
    assert.deepEqual(msg.path, ['rd', 'abc']);
    assert.deepEqual(msg.query, ['ep=x']);
    assert.equal(msg.contentFormat, 40);
    assert.equal(msg.type, 'CON');
    assert.equal(msg.payload.toString(), '</3/0>');
    assert.deepEqual(
      msg.options.find((o) => o.name === '2000')?.value,
      Buffer.from([1]),
      'unknown elective option kept under its number',
    );
  });

  it('rejects what RFC 7252 calls message format errors', () => {
    const ok = encodeMessage({ type: 'CON', code: 'GET', messageId: 1, token: Buffer.from([1, 2]) });
    assert.doesNotThrow(() => decodeMessage(ok));
    const bad: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from([0x40, 1, 0]),
      Buffer.from([0x49, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]), // token length 9
      Buffer.from([0x42, 1, 0, 1, 1]), // truncated token
      Buffer.from([0x40, 1, 0, 1, 0xff]), // payload marker, no payload
      Buffer.from([0x40, 1, 0, 1, 0xb5, 0x61]), // truncated option value
      Buffer.from([0x40, 1, 0, 1, 0xf0]), // delta 15
      Buffer.from([0x40, 1, 0, 1, 0xd0]), // truncated extended delta
      Buffer.from([0x40, 0, 0, 1, 0x00]), // empty message with a byte
      Buffer.from([0x41, 0, 0, 1, 0x00]), // empty message with a token
    ];
    for (const b of bad) assert.throws(() => decodeMessage(b), /./, b.toString('hex'));
  });

  it('finds unrecognised critical options', () => {
    assert.equal(findUnrecognisedCritical([{ name: 'Uri-Path', value: Buffer.from('x') }]), undefined);
    assert.equal(findUnrecognisedCritical([{ name: '2001', value: Buffer.alloc(0) }]), 2001);
    assert.equal(findUnrecognisedCritical([{ name: '2000', value: Buffer.alloc(0) }]), undefined, 'elective');
    assert.equal(
      findUnrecognisedCritical([
        { name: 'Accept', value: Buffer.from([0]) },
        { name: 'Accept', value: Buffer.from([40]) },
      ]),
      17,
      'repeated non-repeatable critical option',
    );
    // out of number order (a hand-built list): a repeat that does not follow its first occurrence is still found
    assert.equal(
      findUnrecognisedCritical([
        { name: 'Accept', value: Buffer.from([0]) },
        { name: 'Uri-Path', value: Buffer.from('x') },
        { name: 'Accept', value: Buffer.from([40]) },
      ]),
      17,
    );
    assert.equal(
      findUnrecognisedCritical([
        { name: 'Uri-Path', value: Buffer.from('x') },
        { name: 'Observe', value: Buffer.from([1]) },
        { name: 'Uri-Path', value: Buffer.from('y') },
      ]),
      undefined,
      'Uri-Path repeats',
    );
    // codes: the fast 'c.dd' path agrees with the general one
    for (const c of ['0.00', '2.05', '4.04', '7.31', '1.31']) assert.equal(normaliseCode(c), c);
    for (const c of ['2.32', '8.00', '2.4x', 'a.05', '2-05']) assert.equal(normaliseCode(c), undefined, c);
  });

  it('implements the RFC 7641 §3.4 freshness rule', () => {
    assert.equal(isFresherNotification(5, 6, 0), true);
    assert.equal(isFresherNotification(6, 5, 0), false);
    assert.equal(isFresherNotification(6, 6, 0), false);
    assert.equal(isFresherNotification(2 ** 24 - 2, 1, 0), true, 'wrap-around');
    assert.equal(isFresherNotification(1, 1 + 2 ** 23, 0), false, 'too far ahead is old');
    assert.equal(isFresherNotification(1, 2 ** 23, 0), true);
    assert.equal(isFresherNotification(6, 5, 128001), true, '128 s passed');
  });
});

describe('CoapEndpoint against libcoap coap-server', function () {
  this.timeout(30000);
  let server: Proc;
  let port: number;
  let env: Awaited<ReturnType<typeof openEndpoint>>;
  let target: Channel;

  before(async () => {
    ({ server, port } = await startLibcoapServer(7));
    env = await openEndpoint({ ackTimeoutMs: 500 });
    target = env.host.channelTo('127.0.0.1', port);
  });

  after(async () => {
    await env?.close();
    await server?.stop();
  });

  it('GETs /.well-known/core in link format', async () => {
    const res = await env.ep.request(target, { method: 'GET', path: ['.well-known', 'core'] });
    assert.equal(res.code, '2.05');
    assert.equal(res.type, 'ACK', 'piggybacked');
    assert.equal(res.contentFormat, 40);
    assert.match(res.payload.toString(), /<\/time>/);
  });

  it('PUTs /example_data and reads it back', async () => {
    const value = `lwm2m-${Date.now()}`;
    const put = await env.ep.request(target, {
      method: 'PUT',
      path: ['example_data'],
      contentFormat: 0,
      payload: Buffer.from(value),
    });
    assert.ok(['2.01', '2.04'].includes(put.code), `PUT answered ${put.code}`);
    const get = await env.ep.request(target, { method: 'GET', path: ['example_data'] });
    assert.equal(get.code, '2.05');
    assert.equal(get.payload.toString(), value);
  });

  it('answers 4.04 for an unknown resource, over NON too', async () => {
    const con = await env.ep.request(target, { method: 'GET', path: ['no', 'such'] });
    assert.equal(con.code, '4.04');
    const non = await env.ep.request(target, { method: 'GET', path: ['no', 'such'], confirmable: false }, { timeoutMs: 3000 });
    assert.equal(non.code, '4.04');
    assert.equal(non.type, 'NON');
  });

  it('observes /time, ACKs its CON notifications, and cancels actively', async () => {
    const notes: CoapMessage[] = [];
    const first = await env.ep.request(
      target,
      { method: 'GET', path: ['time'], observe: 0 },
      { onNotification: (m) => notes.push(m) },
    );
    assert.equal(first.code, '2.05');
    assert.equal(typeof first.observe, 'number');
    await waitFor(() => notes.length >= 2, 5000, 'two /time notifications');
    const seqs = [first.observe as number, ...notes.map((n) => n.observe as number)];
    for (let i = 1; i < seqs.length; i++) assert.ok(isFresherNotification(seqs[i - 1], seqs[i], 0), `${seqs}`);
    // Every CON notification was ACKed: libcoap logs no retransmission of them.
    const conNotes = notes.filter((n) => n.type === 'CON');
    assert.ok(conNotes.length >= 1, 'libcoap sends CON notifications by default');
    const acks = env.host.sent.filter((s) => typeOf(s.data) === 'ACK' && s.data.length === 4);
    for (const n of conNotes) {
      assert.ok(acks.some((a) => a.data.readUInt16BE(2) === n.messageId), `ACK for mid ${n.messageId}`);
    }
    // Active cancel: GET with Observe 1 and the same token.
    const cancel = await env.ep.request(target, { method: 'GET', path: ['time'], observe: 1, token: first.token });
    assert.equal(cancel.code, '2.05');
    assert.equal(cancel.observe, undefined);
    const count = notes.length;
    await delay(2200);
    assert.equal(notes.length, count, 'no notifications after cancel');
  });

  it('cancels an observation passively (RST on the next notification)', async () => {
    const notes: CoapMessage[] = [];
    const first = await env.ep.request(
      target,
      { method: 'GET', path: ['time'], observe: 0 },
      { onNotification: (m) => notes.push(m) },
    );
    assert.equal(typeof first.observe, 'number');
    const resetsBefore = env.ep.stats.resetsSent;
    env.ep.cancelObservation(target, first.token);
    await waitFor(() => env.ep.stats.resetsSent > resetsBefore, 4000, 'RST for a cancelled notification');
    const resets = env.ep.stats.resetsSent;
    await delay(2200);
    assert.equal(notes.length, 0, 'nothing delivered after cancel');
    assert.ok(env.ep.stats.resetsSent - resets <= 1, 'libcoap stopped notifying after the RST');
  });
});

describe('CoapEndpoint as server for libcoap coap-client', function () {
  this.timeout(20000);
  let env: Awaited<ReturnType<typeof openEndpoint>>;
  const seen: CoapMessage[] = [];

  before(async () => {
    env = await openEndpoint({
      onRequest: (req): CoapResponseInit => {
        seen.push(req);
        if (req.code === '0.01' && req.path.join('/') === 'hello') {
          return { code: '2.05', contentFormat: 0, payload: Buffer.from('hello') };
        }
        if (req.code === '0.02' && req.path.join('/') === 'rd') return { code: 'Created', locationPath: ['rd', 'abc'] };
        return { code: '4.04' };
      },
    });
  });
  after(() => env.close());

  it('answers a CON GET with a piggybacked 2.05', async () => {
    const p = Proc.run(LIBCOAP_CLIENT, ['-B', '5', '-m', 'get', `coap://127.0.0.1:${env.host.port}/hello`]);
    assert.equal(await p.finish(10000), 0, p.stderr);
    assert.equal(p.stdout.trim(), 'hello');
    const req = seen[seen.length - 1];
    assert.equal(req.type, 'CON');
    assert.deepEqual(req.path, ['hello']);
  });

  it('answers a NON GET with a NON response', async () => {
    const p = Proc.run(LIBCOAP_CLIENT, ['-B', '5', '-N', '-m', 'get', `coap://127.0.0.1:${env.host.port}/hello`]);
    assert.equal(await p.finish(10000), 0, p.stderr);
    assert.equal(p.stdout.trim(), 'hello');
    assert.equal(seen[seen.length - 1].type, 'NON');
  });

  it('passes query, content format and payload of a POST, answers 2.01 with Location-Path', async () => {
    const before = env.ep.stats.requestsReceived;
    const p = Proc.run(LIBCOAP_CLIENT, [
      '-B', '5', '-v', '6', '-m', 'post', '-t', '40', '-e', '</3/0>',
      `coap://127.0.0.1:${env.host.port}/rd?ep=x&lt=300`,
    ]);
    assert.equal(await p.finish(10000), 0, p.stderr);
    assert.equal(env.ep.stats.requestsReceived, before + 1);
    const req = seen[seen.length - 1];
    assert.equal(req.code, '0.02');
    assert.deepEqual(req.path, ['rd']);
    assert.deepEqual(req.query, ['ep=x', 'lt=300']);
    assert.equal(req.contentFormat, 40);
    assert.equal(req.payload.toString(), '</3/0>');
    // libcoap prints what it received at this verbosity.
    assert.match(p.stdout + p.stderr, /t:ACK c:2\.01 .*Location-Path:rd, Location-Path:abc/);
  });
});

describe('CoapEndpoint reliability with a raw UDP peer', function () {
  this.timeout(15000);
  let peer: RawPeer;
  let env: Awaited<ReturnType<typeof openEndpoint>>;

  afterEach(async () => {
    await env?.close();
    await peer?.close();
  });

  async function setup(opts: Partial<CoapEndpointOptions> = {}): Promise<Channel> {
    peer = await RawPeer.open();
    env = await openEndpoint({ ackTimeoutMs: 40, ackRandomFactor: 1, ...opts });
    return env.host.channelTo('127.0.0.1', peer.port);
  }

  it('retransmits a CON until answered: exactly 3 transmissions when the first 2 are dropped', async () => {
    const ch = await setup();
    peer.onMessage = (data, from) => {
      if (peer.received.length < 3) return; // drop first two copies
      const p = parse(data);
      peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: Buffer.from('ok') }), from);
    };
    const res = await env.ep.request(ch, { method: 'GET', path: ['3', '0', '0'] });
    assert.equal(res.payload.toString(), 'ok');
    await delay(300);
    assert.equal(peer.received.length, 3);
    const mids = new Set(peer.received.map((r) => parse(r.data).messageId));
    assert.equal(mids.size, 1, 'retransmissions reuse the message id');
    assert.ok(peer.received.every((r) => r.data.equals(peer.received[0].data)), 'identical bytes');
    assert.equal(env.ep.stats.retransmissions, 2);
    assert.equal(env.ep.stats.responsesReceived, 1);
  });

  it('a frozen path shares its Uri-Path options, and options added to one request never reach the next', async () => {
    const ch = await setup();
    peer.onMessage = (data, from) => {
      const p = parse(data);
      peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: Buffer.from('ok') }), from);
    };
    const path = Object.freeze(['3', '0', '0']);
    await env.ep.request(ch, { method: 'GET', path, query: ['a=1'], accept: 0 });
    await env.ep.request(ch, { method: 'GET', path });
    await env.ep.request(ch, { method: 'PUT', path, contentFormat: 0, payload: Buffer.from('x') });
    await env.ep.request(ch, { method: 'GET', path: ['3', '0', '1'] });
    const seen = peer.received.map((r) => parse(r.data).options.map((o) => `${o.name}=${o.value.toString('hex')}`));
    assert.deepEqual(seen, [
      ['Uri-Path=33', 'Uri-Path=30', 'Uri-Path=30', 'Uri-Query=613d31', 'Accept='],
      ['Uri-Path=33', 'Uri-Path=30', 'Uri-Path=30'],
      ['Uri-Path=33', 'Uri-Path=30', 'Uri-Path=30', 'Content-Format='],
      ['Uri-Path=33', 'Uri-Path=30', 'Uri-Path=31'],
    ]);
  });

  it('gives up after maxRetransmit + 1 transmissions at exponentially growing spacing', async () => {
    const ch = await setup({ ackTimeoutMs: 50, maxRetransmit: 3 });
    const started = performance.now();
    const err = await env.ep.request(ch, { method: 'GET', path: ['silent'] }).then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    const took = performance.now() - started;
    assert.ok(err instanceof CoapTimeoutError, String(err));
    assert.equal(err.transmissions, 4);
    assert.match(err.message, /4 transmissions/);
    assert.equal(peer.received.length, 4);
    const gaps = peer.received.slice(1).map((r, i) => r.at - peer.received[i].at);
    // Timers never fire early, so each gap is at least its nominal 50 * 2^i ms (constant spacing would fail).
    gaps.forEach((g, i) => assert.ok(g >= 50 * 2 ** i * 0.9, `gaps ${gaps.map(Math.round)}`));
    assert.ok(took >= 50 * 15 * 0.9, `gave up after ${Math.round(took)} ms, expected ~750`);
    assert.equal(env.ep.stats.timeouts, 1);
    assert.equal(env.ep.stats.retransmissions, 3);
  });

  it('a CON timeoutMs longer than the first ACK timeout: retransmits until the deadline, then rejects at the deadline', async () => {
    const ch = await setup({ ackTimeoutMs: 40, maxRetransmit: 4 });
    const started = performance.now();
    const err = await env.ep.request(ch, { method: 'GET', path: ['silent'] }, { timeoutMs: 200 }).then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    const took = performance.now() - started;
    assert.ok(err instanceof CoapTimeoutError, String(err));
    // sent at 0, 40 and 120 ms; the next would go at 280 ms, after the 200 ms deadline
    assert.match(err.message, /no response within 200 ms \(3 transmissions\)/);
    assert.equal(peer.received.length, 3);
    assert.ok(took >= 190 && took < 270, `rejected after ${Math.round(took)} ms`);
    // a deadline inside the first ACK timeout: one transmission, rejected at the deadline
    const err2 = await env.ep.request(ch, { method: 'GET', path: ['silent'] }, { timeoutMs: 25 }).catch((e: unknown) => e);
    assert.match(String((err2 as Error).message), /no response within 25 ms \(1 transmission\)/);
  });

  it('an empty ACK stops retransmission; the caller\'s deadline (still waiting behind the retransmissions) then ends the wait', async () => {
    const ch = await setup({ ackTimeoutMs: 40, separateResponseTimeoutMs: 5000 });
    peer.onMessage = (data, from) => {
      const p = parse(data);
      if (p.code === '0.01') peer.send(gen({ ack: true, code: '0.00', messageId: p.messageId }), from);
    };
    const started = performance.now();
    const err = await env.ep.request(ch, { method: 'GET', path: ['slow'] }, { timeoutMs: 300 }).catch((e: unknown) => e);
    const took = performance.now() - started;
    assert.ok(err instanceof CoapTimeoutError, String(err));
    assert.match((err as Error).message, /no response within 300 ms \(1 transmission\)/);
    assert.ok(took >= 290 && took < 1000, `rejected after ${Math.round(took)} ms (not the 5 s separate-response wait)`);
    assert.equal(peer.received.length, 1);
  });

  it('does not retransmit NON requests; timeoutMs bounds them', async () => {
    const ch = await setup();
    const err = await env.ep
      .request(ch, { method: 'GET', path: ['x'], confirmable: false }, { timeoutMs: 250 })
      .catch((e: unknown) => e);
    assert.ok(err instanceof CoapTimeoutError);
    assert.equal(peer.received.length, 1);
    assert.equal(typeOf(peer.received[0].data), 'NON');
  });

  it('resolves a separate response (empty ACK, then CON response) and ACKs it', async () => {
    const ch = await setup({ ackTimeoutMs: 100 });
    let responseMid = -1;
    peer.onMessage = (data, from) => {
      const p = parse(data);
      if (p.code !== '0.01') return;
      peer.send(gen({ ack: true, code: '0.00', messageId: p.messageId }), from);
      responseMid = (p.messageId + 1000) & 0xffff;
      setTimeout(() => {
        peer.send(
          gen({ confirmable: true, code: '2.05', messageId: responseMid, token: p.token, payload: Buffer.from('late') }),
          from,
        );
      }, 400); // longer than several ACK timeouts: the empty ACK must have stopped retransmission
    };
    const res = await env.ep.request(ch, { method: 'GET', path: ['slow'] });
    assert.equal(res.payload.toString(), 'late');
    assert.equal(res.type, 'CON');
    await waitFor(() => peer.received.some((r) => typeOf(r.data) === 'ACK'), 1000, 'ACK of the separate response');
    const ack = peer.received.find((r) => typeOf(r.data) === 'ACK') as { data: Buffer };
    assert.equal(ack.data.length, 4, 'empty ACK');
    assert.equal(ack.data.readUInt16BE(2), responseMid);
    assert.equal(peer.received.filter((r) => typeOf(r.data) === 'CON').length, 1, 'no retransmission after empty ACK');
    assert.equal(env.ep.stats.retransmissions, 0);
  });


  it('tells apart pending requests whose tokens differ in one byte (8 bytes and shorter), answered out of order', async () => {
    const ch = await setup({ ackTimeoutMs: 200 });
    const pending: { token: Buffer; from: number }[] = [];
    let mid = 5000;
    peer.onMessage = (data, from) => {
      const p = parse(data);
      if (p.code !== '0.01') return;
      peer.send(gen({ ack: true, code: '0.00', messageId: p.messageId }), from);
      pending.push({ token: p.token, from });
      // once all four wait: separate responses, last request first, each carrying its token's hex as payload
      if (pending.length === 4) {
        for (const { token, from: to } of pending.reverse()) {
          peer.send(gen({ confirmable: true, code: '2.05', messageId: mid++, token, payload: Buffer.from(token.toString('hex')) }), to);
        }
      }
    };
    const tokens = ['0102030405060708', '0102030405060709', 'a1a2a3a4', 'a1a2a3a5'].map((h) => Buffer.from(h, 'hex'));
    const results = await Promise.all(tokens.map((token) => env.ep.request(ch, { method: 'GET', path: ['t'], token })));
    assert.deepEqual(results.map((r) => r.payload.toString()), tokens.map((t) => t.toString('hex')));
  });
  it('requestWith hands each outcome to its sink exactly once, with the caller\'s context', async () => {
    const ch = await setup({ ackTimeoutMs: 60, maxRetransmit: 1 });
    const body = Buffer.from('a body of forty bytes, in three blocks!!');
    peer.onMessage = (data, from) => {
      const p = parse(data);
      const path = p.options.filter((o) => o.name === 'Uri-Path').map((o) => o.value.toString()).join('/');
      if (path === 'a') peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: Buffer.from('A') }), from);
      if (path === 'big') {
        const b2 = p.options.find((o) => o.name === 'Block2');
        const num = b2 ? decodeBlock(b2.value)!.num : 0;
        const more = (num + 1) * 16 < body.length;
        peer.send(gen({
          ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: body.subarray(num * 16, num * 16 + 16),
          options: [{ name: 'Block2', value: encodeBlock({ num, more, szx: 0 }) }] as packet.Option[],
        }), from);
      }
      // 'silent' gets no answer
    };
    const calls: { kind: string; ctx: object; value: CoapMessage | Error }[] = [];
    const sink: ExchangeSink<object> = {
      answered: (ctx, msg) => calls.push({ kind: 'answered', ctx, value: msg }),
      failed: (ctx, err) => calls.push({ kind: 'failed', ctx, value: err }),
    };
    const [a, big, silent, refused] = [{ n: 'a' }, { n: 'big' }, { n: 'silent' }, { n: 'refused' }];
    env.ep.requestWith(ch, { method: 'GET', path: ['a'] }, {}, sink, a);
    env.ep.requestWith(ch, { method: 'GET', path: ['big'] }, {}, sink, big);
    env.ep.requestWith(ch, { method: 'GET', path: ['silent'] }, { timeoutMs: 150 }, sink, silent);
    assert.equal(calls.length, 0, 'nothing settles before an answer comes');
    env.ep.requestWith(ch, { method: 'GET', path: 'not-a-list' as unknown as string[] }, {}, sink, refused);
    assert.equal(calls.length, 1, 'a request refused at once fails before requestWith returns');
    assert.equal(calls[0].ctx, refused);
    assert.ok(calls[0].value instanceof TypeError);
    await waitFor(() => calls.length === 4, 3000, 'every request settled');
    await delay(300); // past the silent request's retransmission and any late duplicate
    assert.equal(calls.length, 4, 'each outcome is handed over once');
    const of = (ctx: object) => calls.filter((c) => c.ctx === ctx);
    assert.deepEqual(of(a).map((c) => [c.kind, (c.value as CoapMessage).payload.toString()]), [['answered', 'A']]);
    assert.deepEqual(of(big).map((c) => [c.kind, (c.value as CoapMessage).payload.toString()]), [['answered', body.toString()]],
      'the Block2 transfer is completed before the sink hears of it');
    assert.equal(of(silent).length, 1);
    assert.equal(of(silent)[0].kind, 'failed');
    assert.ok(of(silent)[0].value instanceof CoapTimeoutError);
  });

  it('completes a Block2 answer to a FETCH by repeating its body and options in each follow-up (RFC 8132 §2.3.2)', async () => {
    const ch = await setup({ ackTimeoutMs: 200 });
    const whole = Buffer.from('0123456789abcdef0123456789abcdef0123456789');
    const query = Buffer.from('["/3/0/0","/3/0/1"]');
    peer.onMessage = (data, from) => {
      const p = parse(data);
      const b2 = p.options.find((o) => o.name === 'Block2');
      const num = b2 ? decodeBlock(b2.value)!.num : 0;
      peer.send(gen({
        ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: whole.subarray(num * 16, num * 16 + 16),
        options: [{ name: 'Block2', value: encodeBlock({ num, more: (num + 1) * 16 < whole.length, szx: 0 }) }] as packet.Option[],
      }), from);
    };
    const res = await env.ep.request(ch, { method: 'FETCH', path: ['3', '0'], contentFormat: 112, accept: 112, payload: query });
    assert.equal(res.payload.toString(), whole.toString());
    const sent = peer.received.map((r) => parse(r.data));
    assert.equal(sent.length, 3, 'the first request and two follow-ups');
    for (const [i, p] of sent.entries()) {
      assert.equal(p.code, '0.05', `request ${i} is a FETCH`);
      assert.equal(p.payload.toString(), query.toString(), `request ${i} carries the body`);
      const names = p.options.filter((o) => o.name !== 'Block2').map((o) => `${o.name}=${o.value.toString('hex')}`);
      assert.deepEqual(names, ['Uri-Path=33', 'Uri-Path=30', 'Content-Format=70', 'Accept=70'], `request ${i}'s options`);
      const b2 = p.options.find((o) => o.name === 'Block2');
      assert.equal(b2 ? decodeBlock(b2.value)!.num : 0, i, `request ${i} asks for block ${i}`);
    }
  });

  it('times out a separate response that never comes', async () => {
    const ch = await setup({ separateResponseTimeoutMs: 200 });
    peer.onMessage = (data, from) => peer.send(gen({ ack: true, code: '0.00', messageId: parse(data).messageId }), from);
    const err = await env.ep.request(ch, { method: 'GET', path: ['x'] }).catch((e: unknown) => e);
    assert.ok(err instanceof CoapTimeoutError);
    assert.match(err.message, /empty ACK/);
  });

  it('rejects with CoapResetError when the peer answers RST', async () => {
    const ch = await setup();
    peer.onMessage = (data, from) => peer.send(gen({ reset: true, code: '0.00', messageId: parse(data).messageId }), from);
    await assert.rejects(env.ep.request(ch, { method: 'POST', path: ['1', '0', '8'] }), CoapResetError);
    assert.equal(env.ep.stats.resetsReceived, 1);
  });

  it('ignores a piggybacked response whose token does not match', async () => {
    const ch = await setup({ ackTimeoutMs: 60, maxRetransmit: 1 });
    peer.onMessage = (data, from) => {
      const p = parse(data);
      peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: Buffer.from('ffffffff', 'hex') }), from);
    };
    await assert.rejects(env.ep.request(ch, { method: 'GET', path: ['x'] }), CoapTimeoutError);
    assert.ok(env.ep.stats.malformed >= 1);
  });

  it('uses distinct tokens and incrementing message ids per channel', async () => {
    const ch = await setup({ ackTimeoutMs: 1000 });
    peer.onMessage = (data, from) => {
      const p = parse(data);
      peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token }), from);
    };
    await Promise.all(Array.from({ length: 20 }, () => env.ep.request(ch, { method: 'GET', path: ['a'] })));
    const ps = peer.received.map((r) => parse(r.data));
    assert.equal(new Set(ps.map((p) => p.token.toString('hex'))).size, 20);
    const mids = ps.map((p) => p.messageId);
    for (let i = 1; i < mids.length; i++) assert.equal(mids[i], (mids[i - 1] + 1) & 0xffff);
    assert.ok(ps.every((p) => p.token.length >= 4 && p.token.length <= 8));
  });

  it('overall timeoutMs caps a CON request and abort signals reject', async () => {
    const ch = await setup({ ackTimeoutMs: 1000 });
    const t0 = performance.now();
    const err = await env.ep.request(ch, { method: 'GET', path: ['x'] }, { timeoutMs: 150 }).catch((e: unknown) => e);
    assert.ok(err instanceof CoapTimeoutError);
    assert.ok(performance.now() - t0 < 900);
    const ac = new AbortController();
    const p = env.ep.request(ch, { method: 'GET', path: ['y'] }, { signal: ac.signal });
    ac.abort();
    await assert.rejects(p, RequestAbortedError);
    await assert.rejects(env.ep.request(ch, { method: 'GET', path: ['y'] }, { signal: ac.signal }), RequestAbortedError);
  });

  it('forgetChannel rejects pending requests with ChannelClosedError', async () => {
    const ch = await setup({ ackTimeoutMs: 1000 });
    const a = env.ep.request(ch, { method: 'GET', path: ['a'] });
    const b = env.ep.request(ch, { method: 'GET', path: ['b'], confirmable: false });
    env.ep.forgetChannel(ch.key, 'device de-registered');
    await assert.rejects(a, (e: unknown) => e instanceof ChannelClosedError && /de-registered/.test(e.message));
    await assert.rejects(b, ChannelClosedError);
  });

  it('keeps its state in a channel object\'s coapState slot, drops it with the state, and never reuses a dropped one', async () => {
    const ch = await setup({ ackTimeoutMs: 1000 });
    // a channel like the pool's: one object carries the requests and (through handle) their answers
    const slotted: Channel = { key: ch.key, address: ch.address, port: ch.port, secure: false, send: (d) => ch.send(d), coapState: undefined };
    const pathOf = (p: packet.ParsedPacket): string => p.options.filter((o) => o.name === 'Uri-Path').map((o) => o.value.toString()).join('/');
    const answer = async (path: string): Promise<void> => {
      await waitFor(() => peer.received.some((r) => pathOf(parse(r.data)) === path), 1000, 'request sent');
      const p = parse(peer.received.find((r) => pathOf(parse(r.data)) === path)!.data);
      env.ep.handle(slotted, gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: Buffer.from('ok') }));
    };
    const first = env.ep.request(slotted, { method: 'GET', path: ['a'] });
    await answer('a');
    assert.equal((await first).payload.toString(), 'ok');
    assert.ok(slotted.coapState !== undefined, 'state kept in the slot');
    const pending = env.ep.request(slotted, { method: 'GET', path: ['b'] });
    env.ep.forgetChannel(slotted.key, 'gone');
    await assert.rejects(pending, ChannelClosedError);
    assert.equal(slotted.coapState, undefined, 'slot cleared with the state');
    assert.equal(env.ep.channelCount, 0);
    // a new state, in the map and in the slot: the answer finds its request whether it comes through the slotted
    // object or through another object for the same peer (the socket's)
    const again = env.ep.request(slotted, { method: 'GET', path: ['c'] });
    await answer('c');
    assert.equal((await again).payload.toString(), 'ok');
    assert.equal(env.ep.channelCount, 1);
    peer.onMessage = (data, from) => {
      const p = parse(data);
      peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, payload: Buffer.from('via socket') }), from);
    };
    assert.equal((await env.ep.request(slotted, { method: 'GET', path: ['d'] })).payload.toString(), 'via socket');
    // a state dropped while the slot still holds it (another object was the last to carry it) is not used again
    const stale = slotted.coapState;
    env.ep.forgetChannel(slotted.key);
    slotted.coapState = stale;
    assert.equal((await env.ep.request(slotted, { method: 'GET', path: ['e'] }, { timeoutMs: 2000 })).payload.toString(), 'via socket');
    assert.notEqual(slotted.coapState, stale);
  });

  it('close() rejects pending requests with EndpointClosedError and leaves no timers', async () => {
    const timersBefore = await countTimers();
    const ch = await setup({ ackTimeoutMs: 1000 });
    peer.onMessage = (data, from) => {
      const p = parse(data);
      if (p.code === '0.01' && p.options.some((o) => o.name === 'Observe')) {
        peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, options: [{ name: 'Observe', value: obsValue(1) }] }), from);
      }
    };
    // An observation, a pending CON, a pending NON, and a dedup entry (incoming request).
    await env.ep.request(ch, { method: 'GET', path: ['obs'], observe: 0 }, { onNotification: () => undefined });
    const con = env.ep.request(ch, { method: 'GET', path: ['a'] });
    const non = env.ep.request(ch, { method: 'GET', path: ['b'], confirmable: false });
    const sep = env.ep.request(ch, { method: 'GET', path: ['c'] }, { timeoutMs: 10000 });
    peer.send(gen({ confirmable: true, code: '0.02', messageId: 7, token: Buffer.from([1]) }), env.host.port);
    await waitFor(() => env.ep.stats.requestsReceived === 1, 1000, 'incoming request');
    assert.ok((await countTimers()) > timersBefore, 'the endpoint has timers running');
    env.ep.close();
    await assert.rejects(con, EndpointClosedError);
    await assert.rejects(non, EndpointClosedError);
    await assert.rejects(sep, EndpointClosedError);
    await assert.rejects(env.ep.request(ch, { method: 'GET', path: ['d'] }), EndpointClosedError);
    assert.equal(await countTimers(), timersBefore, 'no endpoint timer left');
    assert.doesNotThrow(() => env.ep.handle(ch, Buffer.from([0x40, 1, 0, 1])));
  });

  it('the dedup sweep expires entries and stops itself when idle', async () => {
    const timersBefore = await countTimers();
    const calls: number[] = [];
    await setup({
      exchangeLifetimeMs: 120,
      onRequest: (req) => {
        calls.push(req.messageId);
        return { code: '2.04' };
      },
    });
    const req = gen({ confirmable: true, code: '0.03', messageId: 99, token: Buffer.from([9]), options: [{ name: 'Uri-Path', value: Buffer.from('x') }] });
    peer.send(req, env.host.port);
    await waitFor(() => peer.received.length === 1, 1000, 'first reply');
    assert.equal(await countTimers(), timersBefore + 1, 'one sweep interval');
    await waitFor(() => env.ep.channelCount === 0, 2000, 'state swept');
    assert.equal(await countTimers(), timersBefore, 'sweep timer stopped when nothing is left');
    peer.send(req, env.host.port);
    await waitFor(() => peer.received.length === 2, 1000, 'second reply');
    assert.equal(calls.length, 2, 'after the exchange lifetime the same message id is a new request');
  });
});

describe('CoapEndpoint incoming requests from a raw UDP peer', function () {
  this.timeout(10000);
  let peer: RawPeer;
  let env: Awaited<ReturnType<typeof openEndpoint>>;
  let calls: CoapMessage[];

  afterEach(async () => {
    await env?.close();
    await peer?.close();
  });

  async function setup(onRequest: CoapEndpointOptions['onRequest']): Promise<void> {
    calls = [];
    peer = await RawPeer.open();
    env = await openEndpoint({
      onRequest: (req, ch) => {
        calls.push(req);
        return onRequest(req, ch);
      },
    });
  }

  const register = (mid: number, type: 'CON' | 'NON' = 'CON'): Buffer =>
    gen({
      confirmable: type === 'CON',
      code: 'POST',
      messageId: mid,
      token: Buffer.from('0a0b0c0d', 'hex'),
      options: [
        { name: 'Uri-Path', value: Buffer.from('rd') },
        { name: 'Uri-Query', value: Buffer.from('ep=dev1') },
        { name: 'Content-Format', value: Buffer.from([40]) },
      ],
      payload: Buffer.from('</1/0>,</3/0>'),
    });

  it('answers a duplicate CON with the same response bytes and calls onRequest once', async () => {
    await setup(() => ({ code: '2.01', locationPath: ['rd', 'abc'] }));
    peer.send(register(4242), env.host.port);
    await waitFor(() => peer.received.length === 1, 1000, 'first response');
    peer.send(register(4242), env.host.port);
    await waitFor(() => peer.received.length === 2, 1000, 'second response');
    assert.equal(calls.length, 1);
    assert.deepEqual(peer.received[0].data, peer.received[1].data);
    const res = parse(peer.received[0].data);
    assert.equal(typeOf(peer.received[0].data), 'ACK');
    assert.equal(res.code, '2.01');
    assert.equal(res.messageId, 4242);
    assert.equal(res.token.toString('hex'), '0a0b0c0d');
    assert.deepEqual(
      res.options.filter((o) => o.name === 'Location-Path').map((o) => o.value.toString()),
      ['rd', 'abc'],
    );
    assert.equal(env.ep.stats.duplicates, 1);
    assert.equal(env.ep.stats.requestsReceived, 1);
    assert.deepEqual(calls[0].query, ['ep=dev1']);
    assert.equal(calls[0].contentFormat, 40);
  });

  it('sends nothing for a duplicate that arrives while the handler is still working', async () => {
    let release: (r: CoapResponseInit) => void = () => undefined;
    await setup(() => new Promise<CoapResponseInit>((resolve) => (release = resolve)));
    peer.send(register(7), env.host.port);
    await waitFor(() => calls.length === 1, 1000, 'handler call');
    peer.send(register(7), env.host.port);
    await waitFor(() => env.ep.stats.duplicates === 1, 1000, 'duplicate counted');
    assert.equal(peer.received.length, 0);
    release({ code: '2.01' });
    await waitFor(() => peer.received.length === 1, 1000, 'response');
    await delay(50);
    assert.equal(peer.received.length, 1);
    assert.equal(calls.length, 1);
  });

  it('still answers when the handler outlives the dedup sweep', async () => {
    calls = [];
    peer = await RawPeer.open();
    env = await openEndpoint({
      exchangeLifetimeMs: 40,
      onRequest: (req) => {
        calls.push(req);
        return delay(300).then(() => ({ code: '2.04' }));
      },
    });
    peer.send(register(77), env.host.port);
    await waitFor(() => peer.received.length === 1, 2000, 'late response');
    assert.equal(parse(peer.received[0].data).code, '2.04');
    assert.equal(parse(peer.received[0].data).messageId, 77);
  });

  it('answers a NON request with a NON response', async () => {
    await setup(() => ({ code: '2.04' }));
    peer.send(register(100, 'NON'), env.host.port);
    await waitFor(() => peer.received.length === 1, 1000, 'response');
    const res = parse(peer.received[0].data);
    assert.equal(typeOf(peer.received[0].data), 'NON');
    assert.equal(res.code, '2.04');
    assert.equal(res.token.toString('hex'), '0a0b0c0d');
  });

  it('answers 5.00 with a diagnostic when onRequest throws or rejects', async () => {
    let n = 0;
    await setup(() => {
      n++;
      if (n === 1) throw new Error('boom');
      return Promise.reject(new Error('async boom'));
    });
    peer.send(register(1), env.host.port);
    peer.send(register(2), env.host.port);
    await waitFor(() => peer.received.length === 2, 1000, 'responses');
    for (const r of peer.received) {
      const p = parse(r.data);
      assert.equal(p.code, '5.00');
      assert.ok(p.payload.length > 0 && p.payload.length < 64);
    }
  });

  it('answers 4.02 for an unrecognised critical option and 4.05 for an unknown method', async () => {
    await setup(() => ({ code: '2.05' }));
    peer.send(gen({ confirmable: true, code: '0.01', messageId: 1, options: [{ name: '2001', value: Buffer.from([1]) }] }), env.host.port);
    peer.send(gen({ confirmable: true, code: '0.09', messageId: 2 }), env.host.port);
    await waitFor(() => peer.received.length === 2, 1000, 'responses');
    const codes = peer.received.map((r) => parse(r.data)).sort((a, b) => a.messageId - b.messageId).map((p) => p.code);
    assert.deepEqual(codes, ['4.02', '4.05']);
    assert.equal(calls.length, 0);
  });

  it('answers a CoAP ping (empty CON) with RST', async () => {
    await setup(() => ({ code: '2.05' }));
    peer.send(Buffer.from([0x40, 0x00, 0xbe, 0xef]), env.host.port);
    await waitFor(() => peer.received.length === 1, 1000, 'RST');
    assert.deepEqual(peer.received[0].data, Buffer.from([0x70, 0x00, 0xbe, 0xef]));
  });

  it('RSTs an unknown-token CON response and ignores an unknown NON one', async () => {
    await setup(() => ({ code: '2.05' }));
    peer.send(gen({ confirmable: false, code: '2.05', messageId: 11, token: Buffer.from([1, 2, 3, 4]) }), env.host.port);
    peer.send(gen({ confirmable: true, code: '2.05', messageId: 12, token: Buffer.from([1, 2, 3, 4]) }), env.host.port);
    await waitFor(() => peer.received.length === 1, 1000, 'RST');
    await delay(50);
    assert.equal(peer.received.length, 1);
    assert.equal(typeOf(peer.received[0].data), 'RST');
    assert.equal(parse(peer.received[0].data).messageId, 12);
  });

  it('turns an invalid response init into 5.00', async () => {
    await setup(() => ({ code: '0.01' }));
    peer.send(register(5), env.host.port);
    await waitFor(() => peer.received.length === 1, 1000, 'response');
    assert.equal(parse(peer.received[0].data).code, '5.00');
  });
});

describe('CoapEndpoint observe freshness (raw UDP peer)', function () {
  this.timeout(10000);
  let peer: RawPeer;
  let env: Awaited<ReturnType<typeof openEndpoint>>;
  let clock = 0;

  afterEach(async () => {
    await env?.close();
    await peer?.close();
  });

  async function observe(): Promise<{ ch: Channel; token: Buffer; first: CoapMessage; notes: CoapMessage[] }> {
    peer = await RawPeer.open();
    clock = 1_000_000;
    env = await openEndpoint({ ackTimeoutMs: 200, now: () => clock });
    const ch = env.host.channelTo('127.0.0.1', peer.port);
    peer.onMessage = (data, from) => {
      const p = parse(data);
      if (p.code === '0.01') {
        peer.send(
          gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, options: [{ name: 'Observe', value: obsValue(10) }], payload: Buffer.from('v10') }),
          from,
        );
      }
    };
    const notes: CoapMessage[] = [];
    const first = await env.ep.request(ch, { method: 'GET', path: ['3', '0', '9'], observe: 0 }, { onNotification: (m) => notes.push(m) });
    peer.onMessage = undefined;
    peer.received.length = 0;
    return { ch, token: first.token, first, notes };
  }

  let mid = 500;
  function notify(token: Buffer, seq: number | undefined, type: 'CON' | 'NON' = 'NON', code = '2.05'): void {
    mid++;
    peer.send(
      gen({
        confirmable: type === 'CON',
        code,
        messageId: mid,
        token,
        options: seq === undefined ? [] : [{ name: 'Observe', value: obsValue(seq) }],
        payload: Buffer.from(`v${seq ?? 'end'}`),
      }),
      env.host.port,
    );
  }

  it('drops out-of-order notifications and keeps fresh ones', async () => {
    const { token, first, notes } = await observe();
    assert.equal(first.observe, 10);
    for (const seq of [11, 13, 12, 13, 14]) {
      notify(token, seq);
      await delay(15); // keep the order on the wire
    }
    await waitFor(() => notes.length + env.ep.stats.staleNotifications === 5, 1000, 'all notifications processed');
    assert.deepEqual(notes.map((n) => n.observe), [11, 13, 14]);
    assert.equal(env.ep.stats.staleNotifications, 2);
  });

  it('handles wrap-around, the 2^23 window and the 128 s rule', async () => {
    const { token, notes } = await observe();
    const seqs: [number, boolean][] = [
      [10 + 2 ** 23 + 1, false], // too far ahead: older by the window
      [2 ** 24 - 3, false], // same
    ];
    for (const [seq] of seqs) {
      notify(token, seq);
      await delay(15);
    }
    await waitFor(() => env.ep.stats.staleNotifications === 2, 1000, 'two stale');
    assert.equal(notes.length, 0);
    notify(token, 11);
    await waitFor(() => notes.length === 1, 1000, 'fresh 11');
    notify(token, 5); // older
    await delay(30);
    assert.equal(notes.length, 1);
    clock += 128_001; // more than 128 s later anything is fresher
    notify(token, 5);
    await waitFor(() => notes.length === 2, 1000, '5 accepted after 128 s');
    assert.equal(notes[1].observe, 5);
  });

  it('ACKs CON notifications, even stale ones, and ends the observation on a response without Observe', async () => {
    const { ch, token, notes } = await observe();
    notify(token, 12, 'CON');
    notify(token, 11, 'CON'); // stale but still ACKed
    await waitFor(() => peer.received.length === 2, 1000, 'two ACKs');
    assert.ok(peer.received.every((r) => typeOf(r.data) === 'ACK' && r.data.length === 4));
    assert.deepEqual(notes.map((n) => n.observe), [12]);
    // Duplicate CON notification (same mid) → ACK again, not delivered again.
    peer.send(
      gen({ confirmable: true, code: '2.05', messageId: mid, token, options: [{ name: 'Observe', value: obsValue(11) }] }),
      env.host.port,
    );
    await waitFor(() => peer.received.length === 3, 1000, 'ACK for duplicate');
    assert.equal(env.ep.stats.duplicates, 1);
    notify(token, undefined, 'NON', '4.04');
    await waitFor(() => notes.length === 2, 1000, 'final response delivered');
    assert.equal(notes[1].code, '4.04');
    notify(token, 20, 'CON');
    await waitFor(() => peer.received.length === 4, 1000, 'RST for an ended observation');
    assert.equal(typeOf(peer.received[3].data), 'RST');
    assert.equal(notes.length, 2);
    void ch;
  });

  it('cancelObservation makes the next notification (even NON) get RST', async () => {
    const { ch, token, notes } = await observe();
    env.ep.cancelObservation(ch, token);
    notify(token, 11, 'NON');
    await waitFor(() => peer.received.length === 1, 1000, 'RST');
    assert.equal(typeOf(peer.received[0].data), 'RST');
    assert.equal(parse(peer.received[0].data).messageId, mid);
    assert.equal(notes.length, 0);
  });

  it('aborting the signal of an established observation cancels it passively', async () => {
    peer = await RawPeer.open();
    env = await openEndpoint({ ackTimeoutMs: 200 });
    const ch = env.host.channelTo('127.0.0.1', peer.port);
    peer.onMessage = (data, from) => {
      const p = parse(data);
      peer.send(gen({ ack: true, code: '2.05', messageId: p.messageId, token: p.token, options: [{ name: 'Observe', value: obsValue(1) }] }), from);
    };
    const ac = new AbortController();
    const notes: CoapMessage[] = [];
    const first = await env.ep.request(ch, { method: 'GET', path: ['x'], observe: 0 }, { onNotification: (m) => notes.push(m), signal: ac.signal });
    peer.onMessage = undefined;
    peer.received.length = 0;
    ac.abort();
    notify(first.token, 2, 'CON');
    await waitFor(() => peer.received.length === 1, 1000, 'RST');
    assert.equal(typeOf(peer.received[0].data), 'RST');
    assert.equal(notes.length, 0);
  });
});

describe('CoapEndpoint garbage input', () => {
  function captureChannel(): Channel & { out: Buffer[] } {
    const out: Buffer[] = [];
    return { key: 'test:garbage', address: '127.0.0.1', port: 1, secure: false, out, send: (d: Buffer) => void out.push(d) };
  }

  it('never throws on random datagrams and counts them', () => {
    const ep = new CoapEndpoint({ onRequest: () => ({ code: '2.05' }) });
    const ch = captureChannel();
    let seed = 12345;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    try {
      for (let i = 0; i < 5000; i++) {
        const len = Math.floor(rnd() * 40);
        const b = Buffer.alloc(len);
        for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
        if (len > 0 && rnd() < 0.5) b[0] = (b[0] & 0x3f) | 0x40; // version 1 half the time
        assert.doesNotThrow(() => ep.handle(ch, b));
      }
      for (const odd of [null, undefined, 'text', 42, {}] as unknown[]) {
        assert.doesNotThrow(() => ep.handle(ch, odd as Buffer));
      }
      assert.ok(ep.stats.malformed > 1000, `malformed ${ep.stats.malformed}`);
    } finally {
      ep.close();
    }
  });

  it('survives a throwing channel and a throwing logger', () => {
    const ep = new CoapEndpoint({
      onRequest: () => ({ code: '2.05' }),
      log: () => {
        throw new Error('logger broke');
      },
    });
    const bad: Channel = { key: 'x', address: '127.0.0.1', port: 1, secure: false, send: () => { throw new Error('send broke'); } };
    try {
      assert.doesNotThrow(() => ep.handle(bad, Buffer.from([0x40, 0x01, 0, 1])));
      assert.doesNotThrow(() => ep.handle(bad, Buffer.from([0x40, 0x00, 0, 2])));
      assert.equal(ep.stats.requestsReceived, 1);
    } finally {
      ep.close();
    }
  });

  it('builds trace messages only for a logger that wants them (log.trace !== false)', () => {
    const run = (wantTrace: boolean | undefined): string[] => {
      const seen: string[] = [];
      const log = Object.assign((level: string) => {
        seen.push(level);
      }, wantTrace === undefined ? {} : { trace: wantTrace });
      const ep = new CoapEndpoint({ onRequest: () => ({ code: '2.05' }), log });
      try {
        ep.handle(captureChannel(), Buffer.from([0x40, 0x01, 0, 7])); // a CON GET: received and answered
        ep.handle(captureChannel(), Buffer.from([0x40, 0x01])); // too short: dropped (debug)
      } finally {
        ep.close();
      }
      return seen;
    };
    const all = run(undefined);
    assert.ok(all.includes('trace') && all.includes('debug'), all.join());
    assert.deepEqual(run(true), all);
    const quiet = run(false);
    assert.ok(!quiet.includes('trace') && quiet.includes('debug'), quiet.join());
  });

  it('RSTs a malformed CON whose header is readable, drops everything else silently', () => {
    const ep = new CoapEndpoint({ onRequest: () => ({ code: '2.05' }) });
    const ch = captureChannel();
    try {
      ep.handle(ch, Buffer.from([0x49, 0x01, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9])); // CON, token length 9
      ep.handle(ch, Buffer.from([0x40, 0x01, 0x12, 0x35, 0xff])); // CON, marker without payload
      ep.handle(ch, Buffer.from([0x59, 0x01, 0x12, 0x36, 1, 2, 3, 4, 5, 6, 7, 8, 9])); // NON: no reply
      ep.handle(ch, Buffer.from([0x80, 0x01, 0x12, 0x37])); // version 2: silently ignored
      ep.handle(ch, Buffer.from([0x40, 0x21])); // too short
      assert.deepEqual(ch.out.map((b) => b.toString('hex')), ['70001234', '70001235']);
      assert.equal(ep.stats.malformed, 5);
      assert.equal(ep.stats.requestsReceived, 0);
    } finally {
      ep.close();
    }
  });

  it('rejects bad request input without sending anything', async () => {
    const ep = new CoapEndpoint({ onRequest: () => ({ code: '2.05' }) });
    const ch = captureChannel();
    try {
      await assert.rejects(ep.request(ch, { method: 'BREW' as never, path: [] }), TypeError);
      await assert.rejects(ep.request(ch, { method: 'GET', path: ['x'.repeat(300)] }), RangeError);
      await assert.rejects(ep.request(ch, { method: 'GET', path: [], contentFormat: 70000 }), RangeError);
      // A large payload goes block-wise; with the caller's own Block1 option it must fit one message.
      const ownBlock1 = [{ name: 'Block1', value: encodeBlock({ num: 0, more: false, szx: 6 }) }];
      await assert.rejects(
        ep.request(ch, { method: 'PUT', path: [], payload: Buffer.alloc(5000), options: ownBlock1 }),
        /Max packet size/,
      );
      await assert.rejects(ep.request(ch, { method: 'PUT', path: [], payload: Buffer.alloc(5000), blockSize: 1000 }), RangeError);
      assert.equal(ch.out.length, 0);
    } finally {
      ep.close();
    }
  });
});
