import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { BatchedSender } from '../src/pool/batched-sender';

function bound(): Promise<dgram.Socket> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => resolve(s));
  });
}

describe('BatchedSender (datagrams sent once per I/O phase)', () => {
  let tx: dgram.Socket;
  let rx: dgram.Socket;
  let received: string[];
  beforeEach(async () => {
    tx = await bound();
    rx = await bound();
    received = [];
    rx.on('message', (m) => received.push(m.toString()));
  });
  afterEach(() => {
    for (const s of [tx, rx]) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  });

  async function until(n: number, ms = 2000): Promise<void> {
    const end = Date.now() + ms;
    while (received.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  }

  it('holds datagrams until the end of the current phase and sends them in order', async () => {
    const errors: Error[] = [];
    const sender = new BatchedSender(() => tx, (e) => errors.push(e));
    const port = rx.address().port;
    for (let i = 0; i < 10; i++) sender.send(Buffer.from(`d${i}`), port, '127.0.0.1');
    await until(10);
    assert.deepEqual(received, Array.from({ length: 10 }, (_, i) => `d${i}`));
    assert.deepEqual(errors, []);
  });

  it('flushes at once when 64 are held, without waiting for the phase to end', async () => {
    const sent: number[] = [];
    const socket = {
      send: (d: Buffer) => {
        sent.push(Number(d.toString()));
      },
    } as unknown as dgram.Socket;
    const sender = new BatchedSender(() => socket, () => undefined);
    for (let i = 0; i < 63; i++) sender.send(Buffer.from(String(i)), 1, '127.0.0.1');
    assert.equal(sent.length, 0);
    sender.send(Buffer.from('63'), 1, '127.0.0.1');
    assert.deepEqual(sent, Array.from({ length: 64 }, (_, i) => i)); // synchronously, in order
    sender.send(Buffer.from('64'), 1, '127.0.0.1');
    await new Promise((r) => setImmediate(r));
    assert.equal(sent.length, 65);
  });

  it('an urgent datagram (e.g. a DTLS handshake flight) goes out at once, after what was held, in order', () => {
    const sent: string[] = [];
    const socket = { send: (d: Buffer) => { sent.push(d.toString()); } } as unknown as dgram.Socket;
    const sender = new BatchedSender(() => socket, () => undefined, (d) => d[0] === 0x48 /* 'H' */);
    sender.send(Buffer.from('a1'), 1, '127.0.0.1');
    sender.send(Buffer.from('a2'), 1, '127.0.0.1');
    assert.deepEqual(sent, []);
    sender.send(Buffer.from('H3'), 1, '127.0.0.1');
    assert.deepEqual(sent, ['a1', 'a2', 'H3']);
  });

  it('clear() drops what is held; a closed socket reports an error instead of throwing', async () => {
    const errors: Error[] = [];
    const sender = new BatchedSender(() => tx, (e) => errors.push(e));
    const port = rx.address().port;
    sender.send(Buffer.from('dropped'), port, '127.0.0.1');
    sender.clear();
    sender.send(Buffer.from('kept'), port, '127.0.0.1');
    await until(1);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(received, ['kept']);
    tx.close();
    sender.send(Buffer.from('late'), port, '127.0.0.1');
    sender.flush();
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /not running|closed/i);
  });

  it('drops datagrams when the socket is gone (server stopped)', async () => {
    const errors: Error[] = [];
    const sender = new BatchedSender(() => undefined, (e) => errors.push(e));
    sender.send(Buffer.from('x'), rx.address().port, '127.0.0.1');
    sender.flush();
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(received, []);
    assert.deepEqual(errors, []);
  });
});
