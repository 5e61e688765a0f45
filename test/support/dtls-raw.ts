import { randomBytes } from 'node:crypto';

/** Hand-built DTLS records for adversarial tests (independent of the server's encoders). */
export function record(type: number, epoch: number, seq: number, body: Buffer, version = 0xfefd): Buffer {
  const h = Buffer.alloc(13);
  h[0] = type;
  h.writeUInt16BE(version, 1);
  h.writeUInt16BE(epoch, 3);
  h.writeUIntBE(seq, 5, 6);
  h.writeUInt16BE(body.length, 11);
  return Buffer.concat([h, body]);
}

export function handshakeMsg(type: number, seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h[0] = type;
  h.writeUIntBE(body.length, 1, 3);
  h.writeUInt16BE(seq, 4);
  h.writeUIntBE(0, 6, 3);
  h.writeUIntBE(body.length, 9, 3);
  return Buffer.concat([h, body]);
}

export interface HelloOptions {
  random?: Buffer;
  cookie?: Buffer;
  suites?: number[];
  extensions?: Array<{ type: number; data: Buffer }>;
  version?: number;
}

export function clientHelloBody(o: HelloOptions = {}): Buffer {
  const suites = o.suites ?? [0xc0a8];
  const cookie = o.cookie ?? Buffer.alloc(0);
  const parts = [Buffer.from([(o.version ?? 0xfefd) >> 8, (o.version ?? 0xfefd) & 0xff]), o.random ?? randomBytes(32),
    Buffer.from([0]), Buffer.from([cookie.length]), cookie];
  const cs = Buffer.alloc(2 + suites.length * 2);
  cs.writeUInt16BE(suites.length * 2, 0);
  suites.forEach((s, i) => cs.writeUInt16BE(s, 2 + 2 * i));
  parts.push(cs, Buffer.from([1, 0]));
  if (o.extensions) {
    const ext = Buffer.concat(o.extensions.map((e) => {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(e.type, 0);
      h.writeUInt16BE(e.data.length, 2);
      return Buffer.concat([h, e.data]);
    }));
    const len = Buffer.alloc(2);
    len.writeUInt16BE(ext.length, 0);
    parts.push(len, ext);
  }
  return Buffer.concat(parts);
}

export function clientHelloDatagram(recordSeq: number, messageSeq: number, o: HelloOptions = {}): Buffer {
  return record(22, 0, recordSeq, handshakeMsg(1, messageSeq, clientHelloBody(o)), 0xfeff);
}

/** Splits a datagram into [type, epoch, seq, body] without validation (test-side parser). */
export function splitRecords(d: Buffer): Array<{ type: number; epoch: number; seq: number; body: Buffer }> {
  const out: Array<{ type: number; epoch: number; seq: number; body: Buffer }> = [];
  let off = 0;
  while (off + 13 <= d.length) {
    const len = d.readUInt16BE(off + 11);
    out.push({ type: d[off], epoch: d.readUInt16BE(off + 3), seq: d.readUIntBE(off + 5, 6),
      body: d.subarray(off + 13, off + 13 + len) });
    off += 13 + len;
  }
  return out;
}

/** Cookie from a HelloVerifyRequest datagram, or undefined. */
export function hvrCookie(d: Buffer): Buffer | undefined {
  const r = splitRecords(d)[0];
  if (!r || r.type !== 22 || r.body[0] !== 3) return undefined;
  const body = r.body.subarray(12);
  return Buffer.from(body.subarray(3, 3 + body[2]));
}
