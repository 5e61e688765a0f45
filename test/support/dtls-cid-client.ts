/**
 * A minimal DTLS 1.2 PSK client with Connection ID support (RFC 9146), for tests only: none of the installed real
 * clients (openssl 3.0 s_client, libcoap 4.3.1 with openssl, node-dtls-client) implements RFC 9146.
 * It is written independently of src/dtls (own PRF, record format and additional data) so that it checks the
 * server against the RFC rather than against itself. Suite: TLS_PSK_WITH_AES_128_CCM_8 only; no retransmission.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

function hmac(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function prf(secret: Buffer, label: string, seed: Buffer, n: number): Buffer {
  const s = Buffer.concat([Buffer.from(label), seed]);
  const out: Buffer[] = [];
  let a: Buffer = s;
  let len = 0;
  while (len < n) {
    a = hmac(secret, a);
    const b = hmac(secret, Buffer.concat([a, s]));
    out.push(b);
    len += b.length;
  }
  return Buffer.concat(out).subarray(0, n);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function seq48(epoch: number, seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(epoch, 0);
  b.writeUIntBE(seq, 2, 6);
  return b;
}

function hsMsg(type: number, msgSeq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h[0] = type;
  h.writeUIntBE(body.length, 1, 3);
  h.writeUInt16BE(msgSeq, 4);
  h.writeUIntBE(body.length, 9, 3);
  return Buffer.concat([h, body]);
}

interface Rec { type: number; epoch: number; seq: number; cid?: Buffer; body: Buffer }

export interface CidClientOptions {
  port: number;
  identity: string;
  key: Buffer;
  /** The CID the client wants to receive in the server's records; empty = the client sends CIDs but wants none. */
  clientCid?: Buffer;
  /** false = no connection_id extension at all. */
  offerCid?: boolean;
}

export class CidClient {
  socket!: dgram.Socket;
  /** CID the server issued (the client puts it in its records); undefined when not negotiated. */
  serverCid: Buffer | undefined;
  readonly clientCid: Buffer;
  readonly inbox: Buffer[] = [];
  private writeSeq = 0;
  private epoch = 0;
  private established = false;
  private clientWrite!: { key: Buffer; iv: Buffer };
  private serverWrite!: { key: Buffer; iv: Buffer };
  private pending: ((d: Buffer) => void) | undefined;
  private raw: Buffer[] = [];
  private rawWaiter: (() => void) | undefined;
  /** Every datagram sent, for replay tests. */
  readonly sent: Buffer[] = [];

  constructor(private readonly o: CidClientOptions) {
    this.clientCid = o.clientCid ?? Buffer.alloc(0);
  }

  get localPort(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  private async bind(): Promise<void> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    s.on('message', (m) => this.onDatagram(m));
    this.socket = s;
  }

  /** Moves to a new local UDP port (a NAT rebinding), closing the old socket. */
  async rebind(): Promise<void> {
    const old = this.socket;
    await this.bind();
    await new Promise<void>((r) => old.close(() => r()));
  }

  async close(): Promise<void> {
    if (!this.socket) return;
    await new Promise<void>((r) => { try { this.socket.close(() => r()); } catch { r(); } });
  }

  private onDatagram(m: Buffer): void {
    if (!this.established) {
      this.raw.push(m);
      this.rawWaiter?.();
      return;
    }
    for (const r of this.parse(m)) {
      const p = this.open(r);
      if (p && p.type === 23) {
        this.inbox.push(p.content);
        const cb = this.pending;
        this.pending = undefined;
        cb?.(p.content);
      }
    }
  }

  private async nextRaw(ms = 3000): Promise<Buffer> {
    const end = Date.now() + ms;
    while (this.raw.length === 0) {
      if (Date.now() > end) throw new Error('no datagram from server');
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.rawWaiter = () => { clearTimeout(t); r(); };
      });
    }
    return this.raw.shift()!;
  }

  private parse(d: Buffer): Rec[] {
    const out: Rec[] = [];
    let off = 0;
    while (off + 13 <= d.length) {
      const type = d[off];
      const epoch = d.readUInt16BE(off + 3);
      const seq = d.readUIntBE(off + 5, 6);
      const cidLen = type === 25 && this.serverCid ? this.clientCid.length : 0;
      const cid = type === 25 ? d.subarray(off + 11, off + 11 + cidLen) : undefined;
      const len = d.readUInt16BE(off + 11 + cidLen);
      const start = off + 13 + cidLen;
      out.push({ type, epoch, seq, cid, body: d.subarray(start, start + len) });
      off = start + len;
    }
    return out;
  }

  /** RFC 9146 §5.3 additional data, or the RFC 5246 one. */
  private aad(type: number, epoch: number, seq: number, len: number, cid?: Buffer): Buffer {
    if (cid && cid.length > 0) {
      return Buffer.concat([Buffer.alloc(8, 0xff), Buffer.from([25, cid.length, 25, 0xfe, 0xfd]), seq48(epoch, seq), cid,
        u16(len)]);
    }
    return Buffer.concat([seq48(epoch, seq), Buffer.from([type, 0xfe, 0xfd]), u16(len)]);
  }

  private open(r: Rec): { type: number; content: Buffer } | undefined {
    if (r.epoch !== 1) return { type: r.type, content: r.body };
    const nonce = Buffer.concat([this.serverWrite.iv, r.body.subarray(0, 8)]);
    const ct = r.body.subarray(8, r.body.length - 8);
    const tag = r.body.subarray(r.body.length - 8);
    const cidMode = this.serverCid !== undefined && this.clientCid.length > 0;
    if ((r.type === 25) !== cidMode) return undefined;
    try {
      const d = createDecipheriv('aes-128-ccm', this.serverWrite.key, nonce, { authTagLength: 8 });
      d.setAuthTag(tag);
      d.setAAD(this.aad(r.type, 1, r.seq, ct.length, cidMode ? r.cid : undefined), { plaintextLength: ct.length });
      const pt = d.update(ct.length ? ct : Buffer.alloc(1).subarray(0, 0));
      d.final();
      if (!cidMode) return { type: r.type, content: pt };
      let i = pt.length - 1;
      while (i >= 0 && pt[i] === 0) i--;
      return i < 0 ? undefined : { type: pt[i], content: pt.subarray(0, i) };
    } catch {
      return undefined;
    }
  }

  /** Encodes one record of the current epoch (with the server's CID in epoch 1 when negotiated). */
  record(type: number, content: Buffer, epoch = this.epoch, seq = this.writeSeq++): Buffer {
    if (epoch === 0) {
      return Buffer.concat([Buffer.from([type, 0xfe, 0xfd]), seq48(0, seq), u16(content.length), content]);
    }
    const cid = this.serverCid && this.serverCid.length > 0 ? this.serverCid : undefined;
    const outerType = cid ? 25 : type;
    const plain = cid ? Buffer.concat([content, Buffer.from([type])]) : content;
    const explicit = seq48(1, seq);
    const c = createCipheriv('aes-128-ccm', this.clientWrite.key, Buffer.concat([this.clientWrite.iv, explicit]),
      { authTagLength: 8 });
    c.setAAD(this.aad(outerType, 1, seq, plain.length, cid), { plaintextLength: plain.length });
    const body = Buffer.concat([explicit, c.update(plain), c.final(), c.getAuthTag()]);
    return Buffer.concat([Buffer.from([outerType, 0xfe, 0xfd]), seq48(1, seq), cid ?? Buffer.alloc(0), u16(body.length), body]);
  }

  private write(d: Buffer): void {
    this.sent.push(d);
    this.socket.send(d, this.o.port, '127.0.0.1');
  }

  private hello(random: Buffer, cookie: Buffer): Buffer {
    const exts: Buffer[] = [];
    if (this.o.offerCid !== false) {
      const data = Buffer.concat([Buffer.from([this.clientCid.length]), this.clientCid]);
      exts.push(u16(54), u16(data.length), data);
    }
    const ext = Buffer.concat(exts);
    return Buffer.concat([Buffer.from([0xfe, 0xfd]), random, Buffer.from([0, cookie.length]), cookie,
      u16(2), u16(0xc0a8), Buffer.from([1, 0]), u16(ext.length), ext]);
  }

  async connect(): Promise<void> {
    await this.bind();
    const clientRandom = randomBytes(32);
    this.write(this.record(22, hsMsg(1, 0, this.hello(clientRandom, Buffer.alloc(0)))));
    const hvr = this.parse(await this.nextRaw())[0].body;
    if (hvr[0] !== 3) throw new Error('expected HelloVerifyRequest');
    const cookie = hvr.subarray(12 + 3, 12 + 3 + hvr[12 + 2]);
    const ch = hsMsg(1, 1, this.hello(clientRandom, cookie));
    const transcript = createHash('sha256');
    transcript.update(ch);
    this.write(this.record(22, ch));
    const flight = this.parse(await this.nextRaw());
    const sh = flight[0].body;
    if (sh[0] !== 2) throw new Error(`expected ServerHello, got ${sh[0]}`);
    const shb = sh.subarray(12);
    const serverRandom = shb.subarray(2, 34);
    const sidLen = shb[34];
    let off = 35 + sidLen + 3;
    if (off < shb.length) {
      const extEnd = off + 2 + shb.readUInt16BE(off);
      off += 2;
      while (off < extEnd) {
        const t = shb.readUInt16BE(off);
        const l = shb.readUInt16BE(off + 2);
        const d = shb.subarray(off + 4, off + 4 + l);
        if (t === 54) this.serverCid = Buffer.from(d.subarray(1, 1 + d[0]));
        off += 4 + l;
      }
    }
    for (const r of flight) transcript.update(r.body);
    const id = Buffer.from(this.o.identity);
    const cke = hsMsg(16, 2, Buffer.concat([u16(id.length), id]));
    transcript.update(cke);
    const n = this.o.key.length;
    const pre = Buffer.concat([u16(n), Buffer.alloc(n), u16(n), this.o.key]);
    const master = prf(pre, 'master secret', Buffer.concat([clientRandom, serverRandom]), 48);
    const kb = prf(master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), 40);
    this.clientWrite = { key: kb.subarray(0, 16), iv: kb.subarray(32, 36) };
    this.serverWrite = { key: kb.subarray(16, 32), iv: kb.subarray(36, 40) };
    const verify = prf(master, 'client finished', transcript.copy().digest(), 12);
    const fin = hsMsg(20, 3, verify);
    transcript.update(fin);
    const d1 = Buffer.concat([this.record(22, cke), this.record(20, Buffer.from([1]))]);
    this.epoch = 1;
    this.writeSeq = 0;
    this.write(Buffer.concat([d1, this.record(22, fin)]));
    // Server: ChangeCipherSpec (epoch 0) + Finished (epoch 1).
    const last = this.parse(await this.nextRaw());
    const finRec = last.find((r) => r.epoch === 1);
    if (!finRec) throw new Error('no server Finished');
    const opened = this.open(finRec);
    if (!opened || opened.type !== 22) throw new Error('server Finished does not decrypt');
    const expected = prf(master, 'server finished', transcript.digest(), 12);
    if (!opened.content.subarray(12).equals(expected)) throw new Error('server Finished does not verify');
    this.established = true;
  }

  send(data: Buffer): void {
    this.write(this.record(23, data));
  }

  /** Sends and waits for the next application record from the server. */
  async roundTrip(text: string, ms = 2000): Promise<string> {
    const p = new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => { this.pending = undefined; reject(new Error('no answer')); }, ms);
      this.pending = (d) => { clearTimeout(t); resolve(d); };
    });
    this.send(Buffer.from(text));
    return (await p).toString();
  }
}
