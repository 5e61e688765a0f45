/**
 * RFC 7959 block-wise transfers through CoapEndpoint: against libcoap (server and client), over DTLS
 * (DtlsServer on one side, node-dtls-client on the other), and against a scripted raw UDP peer for the
 * negotiation and error paths.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as packet from 'coap-packet';
import type { Channel } from '../src/channel';
import {
  CoapBodyTooLargeError,
  CoapEndpoint,
  CoapEndpointOptions,
  CoapMessage,
  CoapResponseInit,
  CoapTimeoutError,
  decodeBlock,
  decodeMessage,
  decodeUint,
  encodeBlock,
  encodeUint,
  getOption,
} from '../src/coap';
import type { DtlsSession } from '../src/dtls';
import { nodeClient } from './support/dtls-harness';
import { startHarness } from './support/dtls-harness';
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

/** Block option of a datagram (decoded with coap-packet, independent of our decoder). */
function blockIn(data: Buffer, name: 'Block1' | 'Block2'): { num: number; more: boolean; szx: number } | undefined {
  const opt = packet.parse(data).options.find((o) => o.name === name);
  return opt ? decodeBlock(Buffer.from(opt.value)) : undefined;
}

function optIn(data: Buffer, name: string): Buffer | undefined {
  const opt = packet.parse(data).options.find((o) => o.name === name);
  return opt ? Buffer.from(opt.value) : undefined;
}

function isRequest(data: Buffer): boolean {
  return data[1] >= 1 && data[1] <= 31;
}

describe('block-wise against libcoap coap-server', function () {
  this.timeout(30000);
  let server: Proc;
  let port: number;
  let env: Awaited<ReturnType<typeof openEndpoint>>;
  let target: Channel;

  before(async () => {
    ({ server, port } = await startLibcoapServer(3));
    env = await openEndpoint({ ackTimeoutMs: 500 });
    target = env.host.channelTo('127.0.0.1', port);
  });

  after(async () => {
    await env?.close();
    await server?.stop();
  });

  it('PUTs 64 KB with Block1 and GETs it back with Block2, byte for byte', async () => {
    const body = randomBytes(64 * 1024);
    const sentBefore = env.host.sent.length;
    const put = await env.ep.request(target, { method: 'PUT', path: ['example_data'], contentFormat: 42, payload: body });
    assert.ok(['2.01', '2.04'].includes(put.code), `PUT answered ${put.code}`);
    const putBlocks = env.host.sent.slice(sentBefore).filter((s) => isRequest(s.data));
    assert.equal(putBlocks.length, 64, '64 blocks of 1024 bytes');
    const first = putBlocks[0].data;
    assert.deepEqual(blockIn(first, 'Block1'), { num: 0, more: true, szx: 6 });
    assert.equal(decodeUint(optIn(first, 'Size1') as Buffer), body.length, 'Size1 on the first block');
    assert.equal(optIn(putBlocks[1].data, 'Size1'), undefined);
    assert.deepEqual(blockIn(putBlocks[63].data, 'Block1'), { num: 63, more: false, szx: 6 });

    const get = await env.ep.request(target, { method: 'GET', path: ['example_data'] });
    assert.equal(get.code, '2.05');
    assert.equal(get.payload.length, body.length);
    assert.ok(get.payload.equals(body), 'same bytes back');
    assert.equal(getOption(get.options, 'Block2'), undefined, 'Block2 removed from the reassembled response');
  });

  it('uses a per-request Block1 size and negotiates a smaller Block2 size up front', async () => {
    const body = randomBytes(3000);
    const sentBefore = env.host.sent.length;
    // (libcoap's example resource answers 4.08 when the Content-Format changes between PUTs.)
    const put = await env.ep.request(target, { method: 'PUT', path: ['example_data'], contentFormat: 42, payload: body, blockSize: 256 });
    assert.ok(put.code.startsWith('2.'), put.code);
    const putBlocks = env.host.sent.slice(sentBefore).filter((s) => isRequest(s.data));
    assert.equal(putBlocks.length, Math.ceil(3000 / 256));
    assert.equal(blockIn(putBlocks[0].data, 'Block1')?.szx, 4);

    const mid = env.host.sent.length;
    const get = await env.ep.request(target, { method: 'GET', path: ['example_data'], block2Size: 128 });
    assert.ok(get.payload.equals(body));
    const gets = env.host.sent.slice(mid).filter((s) => isRequest(s.data));
    assert.equal(gets.length, Math.ceil(3000 / 128));
    assert.deepEqual(blockIn(gets[0].data, 'Block2'), { num: 0, more: false, szx: 3 }, 'early negotiation');
    // Follow-ups repeat the request with the same token (one token per transfer).
    const tokens = new Set(gets.map((g) => packet.parse(g.data).token.toString('hex')));
    assert.equal(tokens.size, 1);
  });

  it('rejects a response larger than maxBodySize with CoapBodyTooLargeError', async () => {
    const small = await openEndpoint({ ackTimeoutMs: 500, maxBodySize: 10000 });
    try {
      const ch = small.host.channelTo('127.0.0.1', port);
      await small.ep.request(ch, { method: 'PUT', path: ['example_data'], contentFormat: 42, payload: randomBytes(20000) });
      await assert.rejects(small.ep.request(ch, { method: 'GET', path: ['example_data'] }), (err: unknown) => {
        assert.ok(err instanceof CoapBodyTooLargeError);
        assert.equal(err.limit, 10000);
        assert.match(err.message, /exceeds the limit of 10000/);
        return true;
      });
      assert.equal(small.ep.stats.blockTransferErrors, 1);
    } finally {
      await small.close();
    }
  });
});

describe('block-wise with libcoap coap-client as the peer', function () {
  this.timeout(30000);
  let env: Awaited<ReturnType<typeof openEndpoint>>;
  let dir: string;
  const seen: CoapMessage[] = [];
  const big = randomBytes(20000);

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'coap-bw-'));
    env = await openEndpoint({
      onRequest: (req): CoapResponseInit => {
        seen.push(req);
        if (req.code === '0.02' && req.path.join('/') === 'rd') return { code: 'Created', locationPath: ['rd', 'x1'] };
        if (req.code === '0.01' && req.path.join('/') === 'big') return { code: '2.05', contentFormat: 42, payload: big };
        return { code: '4.04' };
      },
    });
  });
  after(async () => {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reassembles a Block1 POST /rd (long link format) and calls onRequest once with the whole payload', async () => {
    const links = Array.from({ length: 400 }, (_, i) => `</${3300 + (i % 40)}/${i}>`).join(',');
    const file = path.join(dir, 'links.txt');
    writeFileSync(file, links);
    const before = seen.length;
    const received = env.ep.stats.blocksReceived;
    const p = Proc.run(LIBCOAP_CLIENT, [
      '-B', '10', '-b', '64', '-m', 'post', '-t', '40', '-f', file,
      `coap://127.0.0.1:${env.host.port}/rd?ep=long-device&lt=300`,
    ]);
    assert.equal(await p.finish(15000), 0, p.stderr);
    assert.equal(seen.length, before + 1, 'onRequest called once');
    const req = seen[seen.length - 1];
    assert.equal(req.payload.toString(), links);
    assert.deepEqual(req.path, ['rd']);
    assert.deepEqual(req.query, ['ep=long-device', 'lt=300']);
    assert.equal(req.contentFormat, 40);
    assert.equal(getOption(req.options, 'Block1'), undefined);
    assert.equal(env.ep.stats.blocksReceived - received, Math.ceil(links.length / 64));
    // The 2.31 answers echo Block1; the final one is 2.01 with the last block echoed.
    const answers = env.host.sent.map((s) => s.data).filter((d) => (d[1] >> 5) === 2);
    const conts = answers.filter((d) => d[1] === ((2 << 5) | 31));
    assert.equal(conts.length, Math.ceil(links.length / 64) - 1);
    assert.deepEqual(blockIn(conts[0], 'Block1'), { num: 0, more: true, szx: 2 });
    const final = decodeMessage(answers[answers.length - 1]);
    assert.equal(final.code, '2.01');
    assert.deepEqual(final.locationPath, ['rd', 'x1']);
    assert.equal(decodeBlock(getOption(final.options, 'Block1') as Buffer)?.more, false);
  });

  it('serves a 20 KB response in Block2 blocks from its cache (onRequest called once)', async () => {
    const out = path.join(dir, 'big.out');
    const before = seen.length;
    const p = Proc.run(LIBCOAP_CLIENT, ['-B', '10', '-m', 'get', '-o', out, `coap://127.0.0.1:${env.host.port}/big`]);
    assert.equal(await p.finish(15000), 0, p.stderr);
    assert.ok(readFileSync(out).equals(big), 'libcoap got the same bytes');
    assert.equal(seen.length, before + 1, 'later blocks came from the cache');
    assert.equal(env.ep.stats.blocksServed, Math.ceil(big.length / 1024));
  });

  it('serves the block size libcoap asks for (-b 256)', async () => {
    const out = path.join(dir, 'big256.out');
    const served = env.ep.stats.blocksServed;
    const p = Proc.run(LIBCOAP_CLIENT, ['-B', '10', '-b', '256', '-m', 'get', '-o', out, `coap://127.0.0.1:${env.host.port}/big`]);
    assert.equal(await p.finish(15000), 0, p.stderr);
    assert.ok(readFileSync(out).equals(big));
    assert.equal(env.ep.stats.blocksServed - served, Math.ceil(big.length / 256));
  });
});

describe('block-wise over DTLS (DtlsServer and node-dtls-client)', function () {
  this.timeout(30000);
  const IDENTITY = 'blockwise-device';
  const KEY = randomBytes(16);

  it('writes 512 KB (Block1) and reads 64 KB (Block2) through one DTLS session', async () => {
    const firmware = randomBytes(512 * 1024);
    const resource = randomBytes(64 * 1024);
    const writes: CoapMessage[] = [];
    // Device side: a CoapEndpoint on the node-dtls-client socket.
    const device = new CoapEndpoint({
      onRequest: (req): CoapResponseInit => {
        if (req.code === '0.03' && req.path.join('/') === '5/0/0') {
          writes.push(req);
          return { code: '2.04' };
        }
        if (req.code === '0.01' && req.path.join('/') === '3/0/9999') return { code: '2.05', contentFormat: 42, payload: resource };
        return { code: '4.04' };
      },
    });
    // Server side: a CoapEndpoint on DtlsServer sessions, wired as Lwm2mServer does.
    const server = new CoapEndpoint({ onRequest: () => ({ code: '4.04' }) });
    const h = await startHarness({ pskLookup: (id) => (id === IDENTITY ? KEY : undefined) });
    const sessions: Channel[] = [];
    h.server.on('session', (s: DtlsSession) => {
      const ch: Channel = { key: `dtls:${s.address}:${s.port}`, address: s.address, port: s.port, secure: true, identity: s.identity, send: (d) => s.send(d) };
      sessions.push(ch);
      s.on('data', (d: Buffer) => server.handle(ch, d));
      s.on('close', () => server.forgetChannel(ch.key));
    });
    const c = nodeClient(h.port, IDENTITY, KEY, 'TLS_PSK_WITH_AES_128_CCM_8');
    const toServer: Channel = { key: 'dtls-server', address: '127.0.0.1', port: h.port, secure: true, send: (d) => c.socket.send(d) };
    c.socket.on('message', (m: Buffer) => device.handle(toServer, m));
    try {
      await c.connected;
      // The device speaks first (as a registration would), so the session exists on the server side.
      const ping = device.request(toServer, { method: 'GET', path: ['ping'] }, { timeoutMs: 5000 });
      assert.equal((await ping).code, '4.04');
      assert.equal(sessions.length, 1);
      const toDevice = sessions[0];

      const t0 = performance.now();
      const write = await server.request(toDevice, { method: 'PUT', path: ['5', '0', '0'], contentFormat: 42, payload: firmware });
      const writeMs = performance.now() - t0;
      assert.equal(write.code, '2.04');
      assert.equal(writes.length, 1, 'onRequest saw the write once');
      assert.ok(writes[0].payload.equals(firmware), '512 KB arrived intact');
      assert.equal(device.stats.blocksReceived, 512);
      assert.equal(server.stats.blocksSent, 512);

      const t1 = performance.now();
      const read = await server.request(toDevice, { method: 'GET', path: ['3', '0', '9999'] });
      const readMs = performance.now() - t1;
      assert.equal(read.code, '2.05');
      assert.ok(read.payload.equals(resource), '64 KB read intact');
      assert.equal(device.stats.blocksServed, 64);
      // Every datagram stayed within one 1280-byte IPv6 MTU including IPv6 (40) and UDP (8) headers.
      const largest = Math.max(...h.sent.map((d) => d.data.length), ...h.received.map((d) => d.data.length));
      assert.ok(largest + 48 <= 1280, `largest DTLS datagram ${largest} bytes`);
      if (process.env.COAP_BLOCKWISE_TIMING) console.log(`      512 KB write ${Math.round(writeMs)} ms, 64 KB read ${Math.round(readMs)} ms`);
    } finally {
      server.close();
      device.close();
      await c.close();
      await h.close();
    }
  });
});

describe('block-wise negotiation and errors (scripted raw UDP peer)', function () {
  this.timeout(15000);
  let peer: RawPeer;
  let env: Awaited<ReturnType<typeof openEndpoint>>;

  afterEach(async () => {
    await env?.close();
    await peer?.close();
  });

  async function setup(opts: Partial<CoapEndpointOptions> = {}): Promise<Channel> {
    peer = await RawPeer.open();
    env = await openEndpoint({ ackTimeoutMs: 100, ackRandomFactor: 1, ...opts });
    return env.host.channelTo('127.0.0.1', peer.port);
  }

  function answer(req: packet.ParsedPacket, from: number, p: Partial<packet.Packet>): void {
    peer.send(packet.generate({ ack: true, messageId: req.messageId, token: req.token, code: '2.05', ...p }), from);
  }

  it('honours a smaller SZX the peer answers a Block1 block with', async () => {
    const ch = await setup();
    const body = randomBytes(5000);
    const got: Buffer[] = [];
    peer.onMessage = (data, from) => {
      const req = packet.parse(data);
      const b = blockIn(data, 'Block1') as { num: number; more: boolean; szx: number };
      got.push(Buffer.from(req.payload));
      // Ask for 256-byte blocks after the first 1024.
      const szx = Math.min(b.szx, 4);
      const opts = [{ name: 'Block1', value: encodeBlock({ num: b.num, more: b.more, szx }) }];
      answer(req, from, { code: b.more ? '2.31' : '2.04', options: opts as packet.Option[] });
    };
    const res = await env.ep.request(ch, { method: 'PUT', path: ['fw'], payload: body });
    assert.equal(res.code, '2.04');
    assert.equal(got[0].length, 1024);
    assert.ok(got.slice(1, -1).every((b) => b.length === 256));
    assert.equal(got.length, 1 + Math.ceil((5000 - 1024) / 256));
    assert.ok(Buffer.concat(got).equals(body));
    const nums = peer.received.map((r) => blockIn(r.data, 'Block1')?.num);
    assert.deepEqual(nums.slice(0, 3), [0, 4, 5], 'block 1 of 1024 bytes is block 4 of 256');
  });

  it('returns the peer\'s error answer to a middle block as the response', async () => {
    const ch = await setup();
    peer.onMessage = (data, from) => {
      const req = packet.parse(data);
      const b = blockIn(data, 'Block1') as { num: number; more: boolean; szx: number };
      if (b.num === 2) answer(req, from, { code: '4.13', payload: Buffer.from('too big') });
      else answer(req, from, { code: '2.31', options: [{ name: 'Block1', value: encodeBlock(b) }] as packet.Option[] });
    };
    const res = await env.ep.request(ch, { method: 'PUT', path: ['fw'], payload: randomBytes(8000) });
    assert.equal(res.code, '4.13');
    assert.equal(res.payload.toString(), 'too big');
    assert.equal(peer.received.length, 3, 'no block after the error');
  });

  // the second variant's clock runs at 90 % speed, so a block's deadline timer fires before the clock reaches the
  // transfer's deadline, as when the event loop's cached time was behind the clock when the timer was armed
  for (const slow of [false, true]) {
    it(`caps the whole transfer with timeoutMs${slow ? ' (timers running ahead of the clock)' : ''}`, async () => {
      const t0 = performance.now();
      const ch = await setup({ ackTimeoutMs: 2000, ...(slow ? { now: () => t0 + (performance.now() - t0) * 0.9 } : {}) });
      const pending = new Set<NodeJS.Timeout>();
      peer.onMessage = (data, from) => {
        const req = packet.parse(data);
        const b = blockIn(data, 'Block1') as { num: number; more: boolean; szx: number };
        // Slow peer: 150 ms per block; the 20 blocks would take 3 s.
        const t = setTimeout(() => {
          pending.delete(t);
          answer(req, from, { code: '2.31', options: [{ name: 'Block1', value: encodeBlock(b) }] as packet.Option[] });
        }, 150);
        pending.add(t);
      };
      try {
        await assert.rejects(env.ep.request(ch, { method: 'PUT', path: ['fw'], payload: randomBytes(20 * 1024) }, { timeoutMs: 400 }), (err: unknown) => {
          assert.ok(err instanceof CoapTimeoutError);
          assert.match(err.message, /block-wise transfer not finished within 400 ms/);
          return true;
        });
        assert.ok(peer.received.length >= 2 && peer.received.length <= 4, `${peer.received.length} blocks sent`);
        assert.equal(env.ep.stats.timeouts, 1);
        assert.equal(env.ep.stats.blockTransferErrors, 1);
      } finally {
        for (const t of pending) clearTimeout(t);
      }
    });
  }

  it('fetches the rest of a Block2 notification with a GET without Observe and a new token', async () => {
    const ch = await setup();
    const full = randomBytes(2500);
    let observeToken: Buffer | undefined;
    let seq = 2;
    peer.onMessage = (data, from) => {
      const req = packet.parse(data);
      if (req.code === '0.00') return;
      const obs = optIn(data, 'Observe');
      const b2 = blockIn(data, 'Block2');
      const num = b2?.num ?? 0;
      const block = full.subarray(num * 1024, num * 1024 + 1024);
      const more = (num + 1) * 1024 < full.length;
      const options: packet.Option[] = [{ name: 'Block2', value: encodeBlock({ num, more, szx: 6 }) }];
      if (obs !== undefined) {
        observeToken = req.token;
        options.unshift({ name: 'Observe', value: encodeUint(1) });
      } else {
        assert.ok(observeToken && !req.token.equals(observeToken), 'follow-ups use another token');
      }
      answer(req, from, { options, payload: block });
    };
    const notes: CoapMessage[] = [];
    const first = await env.ep.request(ch, { method: 'GET', path: ['3', '0', '9'], observe: 0 }, { onNotification: (m) => notes.push(m) });
    assert.ok(first.payload.equals(full), 'initial response reassembled');
    assert.equal(first.observe, 1);
    assert.ok(first.token.equals(observeToken as Buffer), 'resolved with the observation token');
    // A notification whose first block arrives as a separate CON.
    const note = packet.generate({
      confirmable: true, messageId: 777, token: observeToken, code: '2.05',
      options: [{ name: 'Observe', value: encodeUint(seq++) }, { name: 'Block2', value: encodeBlock({ num: 0, more: true, szx: 6 }) }] as packet.Option[],
      payload: full.subarray(0, 1024),
    });
    peer.send(note, env.host.port);
    await waitFor(() => notes.length === 1, 3000, 'the reassembled notification');
    assert.ok(notes[0].payload.equals(full));
    assert.equal(notes[0].observe, 2);
    const followUps = peer.received.filter((r) => isRequest(r.data) && optIn(r.data, 'Observe') === undefined);
    assert.equal(followUps.length, 4, 'two follow-ups for the response and two for the notification');
    env.ep.cancelObservation(ch, first.token);
  });

  it('refuses a Block2 response announcing (Size2) more than maxBodySize before fetching more', async () => {
    const ch = await setup({ maxBodySize: 4096 });
    peer.onMessage = (data, from) => {
      const req = packet.parse(data);
      answer(req, from, {
        options: [{ name: 'Block2', value: encodeBlock({ num: 0, more: true, szx: 6 }) }, { name: 'Size2', value: encodeUint(100000) }] as packet.Option[],
        payload: Buffer.alloc(1024),
      });
    };
    await assert.rejects(env.ep.request(ch, { method: 'GET', path: ['x'] }), CoapBodyTooLargeError);
    assert.equal(peer.received.length, 1);
  });

  it('answers incoming Block1 errors: 4.08 out of order, 4.13 over maxBodySize, 4.08 after the transfer timed out', async () => {
    const requests: CoapMessage[] = [];
    const ch = await setup({ maxBodySize: 2048, blockTransferTimeoutMs: 200, onRequest: (req) => (requests.push(req), { code: '2.04' }) });
    void ch;
    let mid = 100;
    const send = (num: number, more: boolean, size: number, extra: packet.Option[] = []): void => {
      peer.send(packet.generate({
        confirmable: true, messageId: mid++, token: Buffer.from([num]), code: 'PUT',
        options: [{ name: 'Uri-Path', value: Buffer.from('fw') }, { name: 'Block1', value: encodeBlock({ num, more, szx: 6 }) }, ...extra] as packet.Option[],
        payload: Buffer.alloc(size, num),
      }), env.host.port);
    };
    const lastCode = (): string => packet.parse(peer.received[peer.received.length - 1].data).code;
    send(0, true, 1024);
    await waitFor(() => peer.received.length === 1, 2000, '2.31');
    assert.equal(lastCode(), '2.31');
    send(2, true, 1024); // skips block 1
    await waitFor(() => peer.received.length === 2, 2000, '4.08');
    assert.equal(lastCode(), '4.08');
    send(0, true, 1024, [{ name: 'Size1', value: encodeUint(5000) } as packet.Option]);
    await waitFor(() => peer.received.length === 3, 2000, '4.13');
    assert.equal(lastCode(), '4.13');
    assert.equal(decodeUint(optIn(peer.received[2].data, 'Size1') as Buffer), 2048);
    send(0, true, 1024);
    send(1, true, 1024);
    send(2, false, 10); // 2058 > 2048
    await waitFor(() => peer.received.length === 6, 2000, 'answers');
    assert.equal(lastCode(), '4.13');
    send(0, true, 1024);
    await waitFor(() => peer.received.length === 7, 2000, '2.31');
    await delay(400); // the reassembly expires
    send(1, false, 5);
    await waitFor(() => peer.received.length === 8, 2000, '4.08');
    assert.equal(lastCode(), '4.08');
    assert.equal(requests.length, 0, 'onRequest never saw a partial body');
    // A complete transfer still works.
    send(0, true, 1024);
    send(1, false, 5);
    await waitFor(() => requests.length === 1, 2000, 'the whole request');
    assert.equal(requests[0].payload.length, 1029);
  });

  it('keeps at most maxBlockTransfersPerChannel reassemblies and clears everything in close()', async () => {
    const requests: CoapMessage[] = [];
    await setup({ maxBlockTransfersPerChannel: 2, onRequest: (req) => (requests.push(req), { code: '2.04' }) });
    let mid = 1;
    const send = (p: string, num: number, more: boolean): void => {
      peer.send(packet.generate({
        confirmable: true, messageId: mid++, token: Buffer.from([mid]), code: 'POST',
        options: [{ name: 'Uri-Path', value: Buffer.from(p) }, { name: 'Block1', value: encodeBlock({ num, more, szx: 0 }) }] as packet.Option[],
        payload: Buffer.alloc(more ? 16 : 3, 0x61),
      }), env.host.port);
    };
    const timersBefore = await countTimers();
    send('a', 0, true);
    send('b', 0, true);
    send('c', 0, true); // drops 'a'
    await waitFor(() => peer.received.length === 3, 2000, 'three 2.31');
    send('a', 1, false);
    send('c', 1, false);
    await waitFor(() => peer.received.length === 5, 2000, 'answers');
    const codes = peer.received.slice(3).map((r) => ({ code: packet.parse(r.data).code, token: packet.parse(r.data).token[0] }));
    assert.deepEqual(codes.map((c) => c.code).sort(), ['2.04', '4.08']);
    assert.equal(requests.length, 1);
    assert.deepEqual(requests[0].path, ['c']);
    env.ep.close();
    assert.equal(env.ep.channelCount, 0);
    assert.ok((await countTimers()) <= timersBefore, 'no timer left after close()');
  });
});
