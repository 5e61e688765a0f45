/** Test helpers for the CoAP layer: a UDP host that feeds a CoapEndpoint, raw peers, libcoap processes. */
import { ChildProcess, spawn } from 'child_process';
import * as dgram from 'dgram';
import * as net from 'net';
import type { Channel } from '../../src/channel';
import { CoapEndpoint, CoapEndpointOptions } from '../../src/coap';

export const LIBCOAP_SERVER = 'coap-server-openssl';
export const LIBCOAP_CLIENT = 'coap-client-openssl';

/** A UDP socket on 127.0.0.1 that turns each datagram into (channel, bytes). */
export class UdpTestHost {
  readonly channels = new Map<string, Channel>();
  readonly sent: { to: number; data: Buffer }[] = [];
  private constructor(
    readonly socket: dgram.Socket,
    readonly port: number,
  ) {}

  static open(onDatagram: (channel: Channel, data: Buffer) => void): Promise<UdpTestHost> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket('udp4');
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        const host = new UdpTestHost(socket, socket.address().port);
        socket.on('message', (data, rinfo) => onDatagram(host.channelTo(rinfo.address, rinfo.port), data));
        resolve(host);
      });
    });
  }

  channelTo(address: string, port: number): Channel {
    const key = `udp:${address}:${port}`;
    let ch = this.channels.get(key);
    if (!ch) {
      const socket = this.socket;
      const sent = this.sent;
      ch = {
        key,
        address,
        port,
        secure: false,
        send(data: Buffer): void {
          sent.push({ to: port, data: Buffer.from(data) });
          socket.send(data, port, address);
        },
      };
      this.channels.set(key, ch);
    }
    return ch;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

export interface Received {
  data: Buffer;
  port: number;
  at: number;
}

/** A raw UDP peer that records what it receives and lets the test script its answers. */
export class RawPeer {
  readonly received: Received[] = [];
  onMessage?: (data: Buffer, port: number) => void;
  private constructor(
    readonly socket: dgram.Socket,
    readonly port: number,
  ) {}

  static open(): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket('udp4');
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        const peer = new RawPeer(socket, socket.address().port);
        socket.on('message', (data, rinfo) => {
          peer.received.push({ data, port: rinfo.port, at: performance.now() });
          peer.onMessage?.(data, rinfo.port);
        });
        resolve(peer);
      });
    });
  }

  send(data: Buffer, port: number): void {
    this.socket.send(data, port, '127.0.0.1');
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/** Resolves after ms (timer cleared by firing). */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` every 10 ms up to `timeoutMs`; rejects with `what` when it never holds. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

function udpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function tcpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** An ephemeral port free for UDP and TCP, together with port + 1 (libcoap also listens there for (D)TLS). */
export async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (port >= 65535) continue;
    if ((await tcpPortFree(port)) && (await udpPortFree(port + 1)) && (await tcpPortFree(port + 1))) return port;
  }
  throw new Error('no free port pair found');
}

/** A spawned process whose output is collected; stop() kills exactly this child and waits for it. */
export class Proc {
  stdout = '';
  stderr = '';
  exitCode: number | null = null;
  readonly exited: Promise<number | null>;
  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      });
      child.once('error', () => resolve(null));
    });
  }

  static run(cmd: string, args: string[]): Proc {
    return new Proc(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  get running(): boolean {
    return this.exitCode === null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    const killTimer = setTimeout(() => {
      if (this.running) this.child.kill('SIGKILL');
    }, 2000);
    await this.exited;
    clearTimeout(killTimer);
  }

  /** Waits for exit, at most timeoutMs (then kills). */
  async finish(timeoutMs: number): Promise<number | null> {
    const timer = setTimeout(() => {
      if (this.running) this.child.kill('SIGKILL');
    }, timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** A CoapEndpoint wired to a UdpTestHost; close() closes both. */
export interface UdpEndpoint {
  ep: CoapEndpoint;
  host: UdpTestHost;
  close: () => Promise<void>;
}

/** An endpoint on a real UDP socket on 127.0.0.1 (requests without a handler answer 4.04). */
export async function openEndpoint(opts: Partial<CoapEndpointOptions> = {}): Promise<UdpEndpoint> {
  let ep: CoapEndpoint | undefined;
  const host = await UdpTestHost.open((ch, data) => ep?.handle(ch, data));
  ep = new CoapEndpoint({ onRequest: () => ({ code: '4.04' }), ...opts });
  const e = ep;
  return {
    ep: e,
    host,
    close: async () => {
      e.close();
      await host.close();
    },
  };
}

/** Active timers in the process. Called after an await so mocha's own per-test timer is already counted. */
export async function countTimers(): Promise<number> {
  await delay(1);
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

/**
 * Starts libcoap's coap-server on a free port pair and waits until it answers a CoAP ping with RST.
 * Retries a few times in case another process grabs the port between the check and the spawn.
 */
export async function startLibcoapServer(verbosity: number): Promise<{ server: Proc; port: number }> {
  let server: Proc | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5; attempt++) {
    port = await freePortPair();
    server = Proc.run(LIBCOAP_SERVER, ['-A', '127.0.0.1', '-p', String(port), '-v', String(verbosity)]);
    const probe = await RawPeer.open();
    try {
      let up = false;
      for (let i = 0; i < 60 && server.running && !up; i++) {
        probe.send(Buffer.from([0x40, 0, 0x12, 0x34]), port); // CoAP ping
        await delay(50);
        up = probe.received.some((r) => ((r.data[0] >> 4) & 3) === 3); // RST
      }
      if (up) break;
    } finally {
      await probe.close();
    }
    await server.stop();
  }
  if (!server?.running) throw new Error(`libcoap server did not start: ${server?.stderr.slice(-500)}`);
  return { server, port };
}
