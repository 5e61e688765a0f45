/**
 * Datagram mutation engine for the DTLS fuzz test and `npm run fuzz`: random bytes and mutations of real captured
 * records (bit flips, byte overwrites, truncation, splicing, header field changes), from a seeded PRNG.
 */
import type { DtlsServer } from '../../src/dtls';

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
}

export function mutate(src: Buffer, rnd: (n: number) => number, corpus: readonly Buffer[]): Buffer {
  const b = Buffer.from(src);
  switch (rnd(8)) {
    case 0: { // bit flips
      for (let j = 1 + rnd(4); j > 0; j--) b[rnd(b.length)] ^= 1 << rnd(8);
      return b;
    }
    case 1: { // byte overwrites
      for (let j = 1 + rnd(8); j > 0; j--) b[rnd(b.length)] = rnd(256);
      return b;
    }
    case 2: // truncation
      return b.subarray(0, rnd(b.length + 1));
    case 3: { // splice two corpus datagrams
      const other = corpus[rnd(corpus.length)];
      return Buffer.concat([b.subarray(0, rnd(b.length + 1)), other.subarray(rnd(other.length + 1))]);
    }
    case 4: { // record header fields: type, version, epoch, sequence number, length
      if (b.length < 13) return b;
      const field = rnd(5);
      if (field === 0) b[0] = [20, 21, 22, 23, 25, rnd(256)][rnd(6)];
      else if (field === 1) b.writeUInt16BE([0xfefd, 0xfeff, 0x0303, rnd(65536)][rnd(4)], 1);
      else if (field === 2) b.writeUInt16BE(rnd(3), 3);
      else if (field === 3) b.writeUIntBE(rnd(2 ** 24) * rnd(2 ** 24), 5, 6);
      else b.writeUInt16BE(rnd(65536), 11);
      return b;
    }
    case 5: { // handshake header fields (type, length, message_seq, fragment offset/length)
      if (b.length < 25) return b;
      const off = 13 + rnd(12);
      b[off] = rnd(256);
      return b;
    }
    case 6: // append garbage
      return Buffer.concat([b, Buffer.from(Array.from({ length: 1 + rnd(64) }, () => rnd(256)))]);
    default: // random bytes
      return Buffer.from(Array.from({ length: rnd(200) }, () => rnd(256)));
  }
}

export interface FuzzOptions {
  count: number;
  seed: number;
  /** Mutated application records are sent from these sources (the live peers), handshake ones from `sinkPorts`. */
  livePeers: Array<{ address: string; port: number }>;
  sinkPorts: number[];
  /** Stop early at this time (ms since epoch). */
  deadline?: number;
  onProgress?: (done: number) => void;
  progressEvery?: number;
}

export interface FuzzResult { datagrams: number; threw: number; ms: number }

/** True when an epoch 0 ClientHello record header appears anywhere in the datagram (at any offset). */
function hasEpoch0Handshake(d: Buffer): boolean {
  for (let i = 0; i + 13 < d.length; i++) {
    if (d[i] === 22 && d[i + 3] === 0 && d[i + 4] === 0 && d[i + 13] === 1) return true;
  }
  return false;
}

/**
 * Feeds `count` datagrams to the server. Datagrams holding an epoch 0 handshake record are never sent from a live
 * peer's address (a ClientHello would legitimately make the server answer that peer with a HelloVerifyRequest).
 */
export function fuzz(server: DtlsServer, corpus: { handshake: Buffer[]; app: Buffer[] }, o: FuzzOptions): FuzzResult {
  const rnd = prng(o.seed);
  const all = [...corpus.handshake, ...corpus.app];
  const start = Date.now();
  let threw = 0;
  let n = 0;
  for (; n < o.count; n++) {
    if (o.deadline && (n & 1023) === 0 && Date.now() > o.deadline) break;
    const fromLive = rnd(2) === 0;
    const src = fromLive ? corpus.app[rnd(corpus.app.length)] : all[rnd(all.length)];
    const d = mutate(src, rnd, all);
    let rinfo = { address: '127.0.0.1', port: o.sinkPorts[rnd(o.sinkPorts.length)] };
    if (fromLive && !hasEpoch0Handshake(d)) rinfo = o.livePeers[rnd(o.livePeers.length)];
    try {
      server.handleDatagram(d, rinfo);
    } catch {
      threw++;
    }
    if (o.onProgress && (n + 1) % (o.progressEvery ?? 100_000) === 0) o.onProgress(n + 1);
  }
  return { datagrams: n, threw, ms: Date.now() - start };
}
