import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { dtls } from 'node-dtls-client';
import { DtlsServer, type DtlsServerOptions } from '../../src/dtls';

export interface Datagram { data: Buffer; port: number; address: string }

export interface Harness {
  server: DtlsServer;
  socket: dgram.Socket;
  port: number;
  /** Every datagram the server wrote, in order (including dropped ones). */
  sent: Datagram[];
  /** Every datagram the socket received, in order (including held ones). */
  received: Datagram[];
  logs: string[];
  /** When set and returning true, the received datagram is not passed to the server (the test may feed it later). */
  holdIncoming?: (d: Datagram) => boolean;
  /** When set and returning true, the datagram the server wants to send is not written to the socket. */
  dropOutgoing?: (d: Datagram) => boolean;
  close(): Promise<void>;
  /** Stops the server without close_notify (server.detach()) and closes the socket. */
  detach(): Promise<void>;
}

/** A DtlsServer wired to a real UDP socket on 127.0.0.1 (ephemeral port unless `bindPort` is given). */
export async function startHarness(
  opts: Partial<DtlsServerOptions> & Pick<DtlsServerOptions, 'pskLookup'>, bindPort = 0,
): Promise<Harness> {
  const socket = dgram.createSocket('udp4');
  const logs: string[] = [];
  let h: Harness;
  const server = new DtlsServer({
    ...opts,
    send: (data, port, address) => {
      const d = { data: Buffer.from(data), port, address };
      h.sent.push(d);
      if (h.dropOutgoing?.(d)) return;
      socket.send(data, port, address);
    },
    log: (level, msg) => {
      logs.push(`${level}: ${msg}`);
      opts.log?.(level, msg);
    },
  });
  socket.on('message', (data, rinfo) => {
    const d = { data: Buffer.from(data), port: rinfo.port, address: rinfo.address };
    h.received.push(d);
    if (h.holdIncoming?.(d)) return;
    server.handleDatagram(data, rinfo);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(bindPort, '127.0.0.1', () => resolve());
  });
  const port = (socket.address() as AddressInfo).port;
  let closed = false;
  h = {
    server, socket, port, sent: [], received: [], logs,
    close: async () => {
      if (closed) return;
      closed = true;
      server.close();
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
    detach: async () => {
      if (closed) return;
      closed = true;
      server.detach();
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
  return h;
}

export type NodeSuite = 'TLS_PSK_WITH_AES_128_CCM_8' | 'TLS_PSK_WITH_AES_128_CCM' | 'TLS_PSK_WITH_AES_128_CBC_SHA256' |
  'TLS_PSK_WITH_AES_128_GCM_SHA256';

export interface NodeClient {
  socket: dtls.Socket;
  /** Local UDP port of the client. */
  localPort: number;
  messages: Buffer[];
  /** Resolves on 'connected', rejects with the client's error otherwise. */
  connected: Promise<void>;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Closes the UDP socket without sending anything (a device losing power). */
  kill(): Promise<void>;
  close(): Promise<void>;
}

interface DtlsSocketInternals { udp: dgram.Socket; _isClosed: boolean }

/** A node-dtls-client socket to the harness. */
export function nodeClient(
  port: number, identity: string, key: Buffer, suite: NodeSuite, listenPort?: number,
): NodeClient {
  const socket = dtls.createSocket({
    type: 'udp4', address: '127.0.0.1', port, psk: { [identity]: key }, ciphers: [suite], timeout: 3000,
    ...(listenPort ? { listenPort } : {}),
  });
  const internals = socket as unknown as DtlsSocketInternals;
  const messages: Buffer[] = [];
  let localPort = 0;
  internals.udp.once('listening', () => { localPort = (internals.udp.address() as AddressInfo).port; });
  socket.on('message', (m: Buffer) => messages.push(Buffer.from(m)));
  let closedFlag = false;
  const closed = new Promise<void>((resolve) => {
    socket.on('close', () => { closedFlag = true; resolve(); });
    socket.on('error', () => { closedFlag = true; resolve(); });
  });
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connected', () => resolve());
    socket.once('error', (e: Error) => reject(e));
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
  connected.catch(() => undefined);
  const client: NodeClient = {
    socket,
    get localPort(): number {
      return localPort;
    },
    messages,
    connected,
    closed,
    isClosed: () => closedFlag || internals._isClosed,
    kill: async () => {
      if (client.isClosed()) return;
      internals._isClosed = true;
      closedFlag = true;
      internals.udp.removeAllListeners('message');
      await new Promise<void>((resolve) => internals.udp.close(() => resolve()));
    },
    close: async () => {
      if (client.isClosed()) return;
      try {
        socket.close();
      } catch {
        await client.kill();
        return;
      }
      await Promise.race([closed, delay(1000)]);
      if (!client.isClosed()) await client.kill();
    },
  };
  return client;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` every 10 ms until true or `ms` elapsed; returns its final value. */
export async function waitFor(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await delay(10);
  }
  return true;
}

export interface SClient {
  proc: ChildProcessWithoutNullStreams;
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** `openssl s_client -dtls1_2` with PSK; stdin stays open. */
export function sClient(port: number, identity: string, keyHex: string, cipher: string, extra: string[] = []): SClient {
  const proc = spawn('openssl', [
    's_client', '-dtls1_2', '-connect', `127.0.0.1:${port}`, '-psk', keyHex, '-psk_identity', identity,
    '-cipher', cipher, ...extra,
  ]);
  let out = '';
  proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stdin.on('error', () => undefined);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    output: () => out,
    exited,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await Promise.race([exited, delay(2000)]);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}
