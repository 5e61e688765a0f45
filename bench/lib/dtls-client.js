'use strict';
/**
 * A deliberately small DTLS 1.2 PSK client (TLS_PSK_WITH_AES_128_CCM_8 only) used as the load generator of the
 * benchmark: many of them share one process, each on its own UDP socket. Written from RFC 6347 (DTLS 1.2),
 * RFC 5246 (TLS 1.2 PRF, Finished), RFC 4279 (PSK) and RFC 6655 (CCM_8).
 *
 * It implements only what the benchmark needs: full handshake with the HelloVerifyRequest cookie exchange,
 * flight retransmission, application data both ways and close_notify. No extensions (no extended master secret),
 * no fragmentation, no replay window on received records. It is not meant for anything but load generation.
 */
const crypto = require('node:crypto');

const CT = { ccs: 20, alert: 21, handshake: 22, app: 23 };
const HS = { client_hello: 1, server_hello: 2, hello_verify_request: 3, server_hello_done: 14, client_key_exchange: 16, finished: 20 };
const DTLS12 = 0xfefd;
const SUITE_CCM8 = 0xc0a8;

function hmac(key, ...parts) {
  const h = crypto.createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** TLS 1.2 PRF with P_SHA256 (RFC 5246 §5). */
function prf(secret, label, seed, length) {
  const fullSeed = Buffer.concat([Buffer.from(label, 'ascii'), seed]);
  const out = Buffer.alloc(length);
  let a = fullSeed;
  let off = 0;
  while (off < length) {
    a = hmac(secret, a);
    off += hmac(secret, a, fullSeed).copy(out, off);
  }
  return out;
}

function record(type, epoch, seq, fragment) {
  const r = Buffer.allocUnsafe(13 + fragment.length);
  r[0] = type;
  r.writeUInt16BE(DTLS12, 1);
  r.writeUInt16BE(epoch, 3);
  r.writeUIntBE(seq, 5, 6);
  r.writeUInt16BE(fragment.length, 11);
  fragment.copy(r, 13);
  return r;
}

/** Handshake message with the DTLS header, unfragmented (RFC 6347 §4.2.2). */
function handshake(type, messageSeq, body) {
  const h = Buffer.allocUnsafe(12 + body.length);
  h[0] = type;
  h.writeUIntBE(body.length, 1, 3);
  h.writeUInt16BE(messageSeq, 4);
  h.writeUIntBE(0, 6, 3);
  h.writeUIntBE(body.length, 9, 3);
  body.copy(h, 12);
  return h;
}

function* records(datagram) {
  let off = 0;
  while (off + 13 <= datagram.length) {
    const len = datagram.readUInt16BE(off + 11);
    if (off + 13 + len > datagram.length) return;
    yield {
      type: datagram[off], epoch: datagram.readUInt16BE(off + 3), seq: datagram.readUIntBE(off + 5, 6),
      fragment: datagram.subarray(off + 13, off + 13 + len),
    };
    off += 13 + len;
  }
}

function* handshakeMessages(fragment) {
  let off = 0;
  while (off + 12 <= fragment.length) {
    const len = fragment.readUIntBE(off + 9, 3);
    if (off + 12 + len > fragment.length) return;
    yield { type: fragment[off], seq: fragment.readUInt16BE(off + 4), full: fragment.subarray(off, off + 12 + len), body: fragment.subarray(off + 12, off + 12 + len) };
    off += 12 + len;
  }
}

/**
 * AES-128-CCM with an 8-byte tag; nonce = fixed IV (4) ‖ epoch (2) ‖ seq (6) (RFC 6655 §3). The first records go
 * through Node's one-shot aes-128-ccm; from the third on, when `Context` is given (the package's CcmContext, two
 * long-lived AES contexts per key), through that, so a busy simulated device costs the load generator less CPU.
 * `scratch` (the package's CcmScratch): per-record buffers shared by every context of the process, as the server's
 * contexts share theirs.
 */
/** Writes the 16-bit epoch and 48-bit sequence number at `offset` (byte writes: no Buffer method per call). */
function writeSeq(b, offset, epoch, seq) {
  const hi = Math.floor(seq / 0x100000000);
  const lo = seq >>> 0;
  b[offset] = epoch >>> 8;
  b[offset + 1] = epoch & 0xff;
  b[offset + 2] = hi >>> 8;
  b[offset + 3] = hi & 0xff;
  b[offset + 4] = lo >>> 24;
  b[offset + 5] = (lo >>> 16) & 0xff;
  b[offset + 6] = (lo >>> 8) & 0xff;
  b[offset + 7] = lo & 0xff;
}

class Ccm8 {
  constructor(key, iv, Context, scratch) {
    this.key = key;
    this.iv = iv;
    this.Context = Context;
    this.scratch = scratch;
    this.uses = 0;
    this.ctx = undefined;
  }

  context() {
    if (this.ctx) return this.ctx;
    if (!this.Context || ++this.uses <= 2) return undefined;
    this.ctx = new this.Context(this.key, 8, this.scratch, this.iv);
    return this.ctx;
  }

  nonce(explicit) {
    return Buffer.concat([this.iv, explicit]);
  }

  static aad(type, epoch, seq, length, into = Buffer.allocUnsafe(13)) {
    writeSeq(into, 0, epoch, seq);
    into[8] = type;
    into[9] = DTLS12 >>> 8;
    into[10] = DTLS12 & 0xff;
    into[11] = length >>> 8;
    into[12] = length & 0xff;
    return into;
  }

  /** The whole record (header, explicit nonce, ciphertext, tag) in one buffer. */
  sealRecord(type, epoch, seq, plain) {
    const ctx = this.context();
    if (!ctx) return record(type, epoch, seq, this.encrypt(type, epoch, seq, plain));
    const out = Buffer.allocUnsafe(13 + 8 + plain.length + 8);
    const length = 8 + plain.length + 8;
    out[0] = type;
    out[1] = DTLS12 >>> 8;
    out[2] = DTLS12 & 0xff;
    writeSeq(out, 3, epoch, seq);
    out[11] = length >>> 8;
    out[12] = length & 0xff;
    writeSeq(out, 13, epoch, seq);
    ctx.seal(ctx.nonce(epoch, seq), Ccm8.aad(type, epoch, seq, plain.length, ctx.aadScratch), plain, out, 21);
    return out;
  }

  /** The one-shot path (sealRecord's, before the context): explicit nonce ‖ ciphertext ‖ tag. */
  encrypt(type, epoch, seq, plain) {
    const explicit = Buffer.allocUnsafe(8);
    explicit.writeUInt16BE(epoch, 0);
    explicit.writeUIntBE(seq, 2, 6);
    const c = crypto.createCipheriv('aes-128-ccm', this.key, this.nonce(explicit), { authTagLength: 8 });
    c.setAAD(Ccm8.aad(type, epoch, seq, plain.length), { plaintextLength: plain.length });
    const ct = c.update(plain);
    c.final();
    return Buffer.concat([explicit, ct, c.getAuthTag()]);
  }

  decrypt(type, epoch, seq, fragment) {
    if (fragment.length < 16) return undefined;
    const ctx = this.context();
    if (ctx) {
      const nonce = ctx.nonce(epoch, seq);
      for (let i = 0; i < 8; i++) nonce[4 + i] = fragment[i];
      return ctx.openIn(nonce, Ccm8.aad(type, epoch, seq, fragment.length - 16, ctx.aadScratch), fragment, 8, fragment.length);
    }
    const ct = fragment.subarray(8, fragment.length - 8);
    try {
      const d = crypto.createDecipheriv('aes-128-ccm', this.key, this.nonce(fragment.subarray(0, 8)), { authTagLength: 8 });
      d.setAuthTag(fragment.subarray(fragment.length - 8));
      d.setAAD(Ccm8.aad(type, epoch, seq, ct.length), { plaintextLength: ct.length });
      const pt = d.update(ct);
      d.final();
      return pt;
    } catch {
      return undefined;
    }
  }
}

/**
 * One client connection over a bound dgram socket that it owns (the caller routes the socket's 'message' events
 * to onDatagram). connect() resolves when the handshake completes. Options for a load generator: `CcmContext`
 * (long-lived AES contexts for busy sessions, see Ccm8), `ccmScratch` (their shared scratch) and `sendVia(socket, data, port, host)` (application data
 * goes out through the caller, e.g. in batches).
 */
class DtlsClient {
  constructor({ socket, host, port, identity, key, retransmitMs = 1000, maxRetransmits = 4, onData, CcmContext, ccmScratch, sendVia }) {
    Object.assign(this, { socket, host, port, identity: Buffer.from(identity, 'utf8'), psk: key, retransmitMs, maxRetransmits,
      CcmContext, ccmScratch, sendVia });
    this.onData = onData || (() => undefined);
    this.clientRandom = crypto.randomBytes(32);
    this.epoch0Seq = 0;
    this.epoch1Seq = 0;
    this.state = 'idle';
    this.transcript = [];
    this.timer = undefined;
    this.tries = 0;
    this.closed = false;
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.state = 'wait_hvr';
      const hello = this.clientHello(Buffer.alloc(0), 0);
      this.sendFlight(() => record(CT.handshake, 0, this.epoch0Seq++, hello));
    });
  }

  clientHello(cookie, messageSeq) {
    const body = Buffer.concat([
      Buffer.from([0xfe, 0xfd]), this.clientRandom, Buffer.from([0]), Buffer.from([cookie.length]), cookie,
      Buffer.from([0, 2, SUITE_CCM8 >> 8, SUITE_CCM8 & 0xff, 1, 0]),
    ]);
    return handshake(HS.client_hello, messageSeq, body);
  }

  /** Builds a flight with fresh record sequence numbers each time it is (re)sent, and arms the retransmit timer. */
  sendFlight(build) {
    this.flight = build;
    this.tries = 0;
    this.transmit();
  }

  transmit() {
    clearTimeout(this.timer);
    const out = this.flight();
    this.socket.send(out, this.port, this.host);
    this.timer = setTimeout(() => {
      if (++this.tries > this.maxRetransmits) return this.fail(new Error(`DTLS handshake timed out in state ${this.state}`));
      this.transmit();
    }, this.retransmitMs * 2 ** this.tries);
  }

  fail(err) {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.state = 'failed';
    if (this.reject) this.reject(err);
    this.resolve = this.reject = undefined;
  }

  onDatagram(msg) {
    if (this.state === 'established') {
      // records read in place (no iterator): the busy path of a load generator
      let off = 0;
      while (off + 13 <= msg.length) {
        const len = msg.readUInt16BE(off + 11);
        if (off + 13 + len > msg.length) return;
        const type = msg[off];
        const epoch = msg.readUInt16BE(off + 3);
        if (epoch === 1 && this.read) {
          const plain = this.read.decrypt(type, epoch, msg.readUIntBE(off + 5, 6), msg.subarray(off + 13, off + 13 + len));
          if (plain) {
            if (type === CT.app) this.onData(plain);
            else if (type === CT.alert && plain[1] === 0) this.closed = true;
          }
        }
        off += 13 + len;
      }
      return;
    }
    for (const rec of records(msg)) {
      if (this.state === 'established') {
        if (rec.epoch !== 1 || !this.read) continue;
        const plain = this.read.decrypt(rec.type, rec.epoch, rec.seq, rec.fragment);
        if (!plain) continue;
        if (rec.type === CT.app) this.onData(plain);
        else if (rec.type === CT.alert && plain[1] === 0) this.closed = true;
        continue;
      }
      this.onHandshakeRecord(rec);
    }
  }

  onHandshakeRecord(rec) {
    if (rec.type === CT.alert && rec.epoch === 0) return this.fail(new Error(`DTLS alert ${rec.fragment[1]} from server`));
    if (rec.type === CT.ccs) {
      if (this.state === 'wait_ccs') this.state = 'wait_finished';
      return;
    }
    if (rec.type !== CT.handshake) return;
    let fragment = rec.fragment;
    if (rec.epoch === 1) {
      if (!this.read) return;
      fragment = this.read.decrypt(rec.type, rec.epoch, rec.seq, rec.fragment);
      if (!fragment) return this.fail(new Error('server Finished failed authentication'));
    }
    for (const m of handshakeMessages(fragment)) {
      if (this.state === 'wait_hvr' && m.type === HS.hello_verify_request) {
        const cookieLen = m.body[2];
        const cookie = Buffer.from(m.body.subarray(3, 3 + cookieLen));
        const hello = this.clientHello(cookie, 1);
        this.transcript = [hello];
        this.state = 'wait_sh';
        this.sendFlight(() => record(CT.handshake, 0, this.epoch0Seq++, hello));
      } else if (this.state === 'wait_sh' && m.type === HS.server_hello) {
        this.serverRandom = Buffer.from(m.body.subarray(2, 34));
        const sidLen = m.body[34];
        const suite = m.body.readUInt16BE(35 + sidLen);
        if (suite !== SUITE_CCM8) return this.fail(new Error(`server chose suite ${suite}`));
        this.transcript.push(Buffer.from(m.full));
        this.state = 'wait_shd';
      } else if (this.state === 'wait_shd' && m.type === HS.server_hello_done) {
        this.transcript.push(Buffer.from(m.full));
        this.finishHandshake();
      } else if (this.state === 'wait_finished' && m.type === HS.finished) {
        const expected = prf(this.master, 'server finished', this.hash(), 12);
        if (!expected.equals(m.body)) return this.fail(new Error('server Finished does not verify'));
        clearTimeout(this.timer);
        this.timer = undefined;
        this.state = 'established';
        this.transcript = undefined;
        const resolve = this.resolve;
        this.resolve = this.reject = undefined;
        resolve();
      }
    }
  }

  hash() {
    const h = crypto.createHash('sha256');
    for (const m of this.transcript) h.update(m);
    return h.digest();
  }

  finishHandshake() {
    const cke = handshake(HS.client_key_exchange, 2, Buffer.concat([Buffer.from([this.identity.length >> 8, this.identity.length & 0xff]), this.identity]));
    this.transcript.push(cke);
    // RFC 4279 §2: premaster = uint16(N) ‖ N zero bytes ‖ uint16(N) ‖ PSK
    const n = this.psk.length;
    const pms = Buffer.alloc(4 + 2 * n);
    pms.writeUInt16BE(n, 0);
    pms.writeUInt16BE(n, 2 + n);
    this.psk.copy(pms, 4 + n);
    this.master = prf(pms, 'master secret', Buffer.concat([this.clientRandom, this.serverRandom]), 48);
    const kb = prf(this.master, 'key expansion', Buffer.concat([this.serverRandom, this.clientRandom]), 40);
    this.write = new Ccm8(kb.subarray(0, 16), kb.subarray(32, 36), this.CcmContext, this.ccmScratch);
    this.read = new Ccm8(kb.subarray(16, 32), kb.subarray(36, 40), this.CcmContext, this.ccmScratch);
    const finished = handshake(HS.finished, 3, prf(this.master, 'client finished', this.hash(), 12));
    this.transcript.push(finished);
    this.state = 'wait_ccs';
    this.sendFlight(() => Buffer.concat([
      record(CT.handshake, 0, this.epoch0Seq++, cke),
      record(CT.ccs, 0, this.epoch0Seq++, Buffer.from([1])),
      this.protect(CT.handshake, finished),
    ]));
  }

  /**
   * Puts the client straight into the established state (epoch 1) with the given session keys, without a handshake:
   * the record-layer floor's devices (bench/lib/floor.js).
   */
  establish({ writeKey, writeIv, readKey, readIv }) {
    this.write = new Ccm8(writeKey, writeIv, this.CcmContext, this.ccmScratch);
    this.read = new Ccm8(readKey, readIv, this.CcmContext, this.ccmScratch);
    this.epoch1Seq = 0;
    this.state = 'established';
  }

  protect(type, plain) {
    const seq = this.epoch1Seq++;
    return this.write.sealRecord(type, 1, seq, plain);
  }

  /** Sends one application_data record. */
  send(data) {
    if (this.state !== 'established') return;
    const rec = this.protect(CT.app, data);
    if (this.sendVia) this.sendVia(this.socket, rec, this.port, this.host);
    else this.socket.send(rec, this.port, this.host);
  }

  /** Sends close_notify (when established) and stops the timers; the caller closes the socket. */
  close() {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state === 'established') this.socket.send(this.protect(CT.alert, Buffer.from([1, 0])), this.port, this.host);
    if (this.state !== 'established' && this.reject) this.fail(new Error('closed'));
    this.state = 'closed';
  }
}

module.exports = { DtlsClient, Ccm8, prf, writeSeq };
