/**
 * A lossy UDP relay on 127.0.0.1 for one client: datagrams from the client go to the server from the relay's
 * upstream socket and back; each direction drops `lossRate` of the datagrams, decided by a seeded PRNG.
 */
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { prng } from './dtls-fuzz';

export interface LossyRelay {
  /** Port the client connects to. */
  port: number;
  stats: { up: number; upDropped: number; down: number; downDropped: number };
  close(): Promise<void>;
}

export async function startLossyRelay(serverPort: number, lossRate: number, seed: number): Promise<LossyRelay> {
  const rnd = prng(seed);
  const lose = (): boolean => rnd(1_000_000) < lossRate * 1_000_000;
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  const stats = { up: 0, upDropped: 0, down: 0, downDropped: 0 };
  let client: { address: string; port: number } | undefined;
  front.on('message', (m, rinfo) => {
    client = { address: rinfo.address, port: rinfo.port };
    stats.up++;
    if (lose()) {
      stats.upDropped++;
      return;
    }
    back.send(m, serverPort, '127.0.0.1');
  });
  back.on('message', (m) => {
    if (!client) return;
    stats.down++;
    if (lose()) {
      stats.downDropped++;
      return;
    }
    front.send(m, client.port, client.address);
  });
  await Promise.all([front, back].map((s) => new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))));
  return {
    port: (front.address() as AddressInfo).port,
    stats,
    close: async () => {
      await Promise.all([front, back].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
