'use strict';
/**
 * The DTLS record-layer floor (bench/floor.js): what one read costs a server that does only what every DTLS read
 * must, with none of this package's CoAP, LwM2M or request layers. Both ends hold established DTLS 1.2 sessions
 * (TLS_PSK_WITH_AES_128_CCM_8, epoch 1) whose keys are derived from the device's index instead of a handshake, so
 * the floor measures the steady state only.
 *
 * Per read the floor server: picks the next device, writes a CoAP CON GET /3/0/0 with a fresh message ID and an
 * 8-byte random token (the same 18 bytes this package sends), seals it into a record with the package's CcmContext
 * (the AES-CCM the server itself uses), hands it to a batched send (one flush per I/O phase, as the server does), and
 * on the answer: finds the session by the sender's address and port, checks the record header and that its sequence
 * number is above the highest seen (a server keeps a 64-record window), opens it, and matches ACK 2.05, message ID
 * and token. Nothing is decoded beyond that. Where it differs from a server's record layer, it does less.
 *
 * The devices are the benchmark fleet's own DTLS client (bench/lib/dtls-client.js, the code that answers the pooled
 * reads), put into the established state with the same keys.
 */
const { createHash, randomFillSync } = require('node:crypto');
const { Ccm8, writeSeq } = require('./dtls-client');

/** Floor devices are numbered from here (their keys are derived from the number; registered fleets start at 0). */
const FLOOR_FROM = 2_000_000;
/** The floor fleet's address: a loopback address of its own, so its sockets do not take the other fleets' ports. */
const FLOOR_HOST = '127.0.0.2';

const APP_DATA = 23;
const EPOCH = 1;
/** DTLS 1.2 record header (13) + explicit nonce (8) + CCM_8 tag (8). */
const HEADER = 13;
const OVERHEAD = HEADER + 8 + 8;
const REQ_LEN = 18;
const TOKEN = 8;

/** Session keys of floor device `i`: client and server write keys (16 bytes) and fixed IVs (4 bytes). */
function floorKeys(i) {
  const h = (label) => createHash('sha256').update(`lwm2m-bench-floor:${label}:${i}`).digest();
  const c = h('client');
  const s = h('server');
  return { clientKey: c.subarray(0, 16), clientIv: c.subarray(16, 20), serverKey: s.subarray(0, 16), serverIv: s.subarray(16, 20) };
}

function readSeq(b, offset) {
  return b.readUInt16BE(offset) * 0x100000000 + b.readUInt32BE(offset + 2);
}

/**
 * The floor server's sessions with the devices at `ports` on `address` (device numbers from `fromIndex` on), kept
 * from one floorLoad to the next as a server keeps its sessions: sequence numbers go on, AES contexts stay.
 */
function floorSessions({ CcmContext, CcmScratch, address = '127.0.0.1', ports, fromIndex = 0 }) {
  const scratch = new CcmScratch();
  const sessions = ports.map((port, k) => {
    const key = floorKeys(fromIndex + k);
    return {
      port, seq: 0, readMax: -1, mid: (k * 7919) & 0xffff, pending: false, sentAt: 0,
      token: Buffer.alloc(TOKEN),
      write: new CcmContext(key.serverKey, 8, scratch, key.serverIv),
      read: new CcmContext(key.clientKey, 8, scratch, key.clientIv),
    };
  });
  return {
    address, fromIndex, sessions, byPort: new Map(sessions.map((s) => [s.port, s])), tokenPool: Buffer.alloc(4096), tokenAt: 4096,
  };
}

/**
 * Closed-loop floor reads from a process of its own (server-proc.js `floorLoad`) over `socket`: `window` requests
 * always outstanding, spread round-robin over the sessions of `floor` (floorSessions). Counted as the pooled reads
 * are (bench/server-proc.js `load`): a read sent and answered inside the measuring window; a failure: a read sent
 * inside it and given up after a second without a matching, authentic answer. CPU: this process's, from the
 * window's start to its end.
 */
async function floorLoad({ floor, socket, window, durationMs, warmupMs = 1000 }) {
  const { performance } = require('node:perf_hooks');
  const { sessions, byPort, tokenPool, address } = floor;
  if (sessions.length === 0) throw new Error('floorLoad: no devices');
  // an answer that did not come in the previous call's time is not waited for
  for (const s of sessions) s.pending = false;
  const plain = Buffer.alloc(REQ_LEN);
  // batched sends, flushed at the end of the I/O phase (the server's BatchedSender)
  const held = [];
  const heldPorts = [];
  let flushing;
  const flush = () => {
    flushing = undefined;
    for (let i = 0; i < held.length; i++) socket.send(held[i], heldPorts[i], address);
    held.length = 0;
    heldPorts.length = 0;
  };
  const send = (data, port) => {
    held.push(data);
    heldPorts.push(port);
    if (held.length >= 64) {
      if (flushing) clearImmediate(flushing);
      flush();
    } else flushing ??= setImmediate(flush);
  };

  let next = 0;
  let ok = 0;
  let failed = 0;
  let outstanding = 0;
  const t0 = performance.now();
  const mStart = t0 + warmupMs;
  const mEnd = mStart + durationMs;
  let cpu0;
  let hr0;
  let cpu;
  let wallUs;
  const armCpu = setTimeout(() => {
    cpu0 = process.cpuUsage();
    hr0 = process.hrtime.bigint();
  }, warmupMs);
  const endCpu = setTimeout(() => {
    cpu = process.cpuUsage(cpu0);
    wallUs = Number(process.hrtime.bigint() - hr0) / 1000;
  }, warmupMs + durationMs);

  const request = () => {
    let s;
    for (let tries = 0; tries < sessions.length; tries++) {
      s = sessions[next];
      next = next + 1 === sessions.length ? 0 : next + 1;
      if (!s.pending) break;
    }
    if (s.pending) return false;
    s.pending = true;
    s.sentAt = performance.now();
    s.mid = (s.mid + 1) & 0xffff;
    if (floor.tokenAt + TOKEN > tokenPool.length) {
      randomFillSync(tokenPool);
      floor.tokenAt = 0;
    }
    tokenPool.copy(s.token, 0, floor.tokenAt, floor.tokenAt + TOKEN);
    floor.tokenAt += TOKEN;
    // CON GET, token length 8, message ID, token, Uri-Path "3" "0" "0"
    plain[0] = 0x48;
    plain[1] = 0x01;
    plain[2] = s.mid >>> 8;
    plain[3] = s.mid & 0xff;
    s.token.copy(plain, 4);
    plain[12] = 0xb1;
    plain[13] = 0x33;
    plain[14] = 0x01;
    plain[15] = 0x30;
    plain[16] = 0x01;
    plain[17] = 0x30;
    const seq = s.seq++;
    const out = Buffer.allocUnsafe(OVERHEAD + REQ_LEN);
    out[0] = APP_DATA;
    out[1] = 0xfe;
    out[2] = 0xfd;
    writeSeq(out, 3, EPOCH, seq);
    out[11] = 0;
    out[12] = 8 + REQ_LEN + 8;
    writeSeq(out, 13, EPOCH, seq);
    s.write.seal(s.write.nonce(EPOCH, seq), Ccm8.aad(APP_DATA, EPOCH, seq, REQ_LEN, s.write.aadScratch), plain, out, HEADER + 8);
    send(out, s.port);
    return true;
  };

  const settle = (s, good) => {
    const now = performance.now();
    if (s.sentAt >= mStart && s.sentAt <= mEnd) {
      if (!good) failed++;
      else if (now <= mEnd) ok++;
    }
    outstanding--;
    if (now < mEnd && request()) outstanding++;
  };

  const onMessage = (msg, rinfo) => {
    const s = rinfo.address === address ? byPort.get(rinfo.port) : undefined;
    if (s === undefined || msg.length < OVERHEAD || msg[0] !== APP_DATA || msg[1] !== 0xfe || msg[2] !== 0xfd) return;
    const len = msg.readUInt16BE(11);
    if (HEADER + len !== msg.length || msg.readUInt16BE(3) !== EPOCH) return;
    const seq = readSeq(msg, 5);
    if (seq <= s.readMax) return; // replayed or reordered: dropped
    const n = len - 16;
    const nonce = s.read.nonce(EPOCH, seq);
    for (let i = 0; i < 8; i++) nonce[4 + i] = msg[HEADER + i];
    const p = s.read.openIn(nonce, Ccm8.aad(APP_DATA, EPOCH, seq, n, s.read.aadScratch), msg, HEADER + 8, msg.length);
    if (p === undefined) return; // does not authenticate: dropped, as a server drops it
    s.readMax = seq;
    if (!s.pending) return;
    let good = p.length >= 4 + TOKEN && p[0] === (0x60 | TOKEN) && p[1] === 0x45 && ((p[2] << 8) | p[3]) === s.mid;
    for (let i = 0; good && i < TOKEN; i++) good = p[4 + i] === s.token[i];
    if (!good) return;
    s.pending = false;
    settle(s, true);
  };
  socket.on('message', onMessage);
  try {
    await new Promise((resolve) => {
      // A lost datagram leaves its device pending: after a second it is given up and the window topped up.
      const topUp = setInterval(() => {
        const now = performance.now();
        for (const s of sessions) {
          if (s.pending && now - s.sentAt > 1000) {
            s.pending = false;
            settle(s, false);
          }
        }
        if (now >= mEnd + 1000 || (now >= mEnd && outstanding === 0)) {
          clearInterval(topUp);
          resolve();
          return;
        }
        while (now < mEnd && outstanding < window && request()) outstanding++;
      }, 20);
      while (outstanding < window && request()) outstanding++;
    });
  } finally {
    socket.off('message', onMessage);
    clearTimeout(armCpu);
    clearTimeout(endCpu);
  }
  if (cpu === undefined) {
    // the window closed and everything was answered before the end-of-window timer ran
    cpu = process.cpuUsage(cpu0);
    wallUs = Number(process.hrtime.bigint() - hr0) / 1000;
  }
  return {
    ok, failed, rps: ok / (durationMs / 1000), cpuPct: (100 * (cpu.user + cpu.system)) / wallUs,
    sysPct: (100 * cpu.system) / wallUs,
  };
}

module.exports = { FLOOR_FROM, FLOOR_HOST, floorKeys, floorSessions, floorLoad };
