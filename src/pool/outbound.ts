import { isIPv6 } from 'node:net';
import type { Channel, LogFn } from '../channel';
import { sessionChannel } from './channels';
import type { OutboundSession } from './pool';

/** Where and how to dial one device's own DTLS server. */
export interface OutboundTarget {
  host: string;
  port: number;
  identity: string;
  key: Buffer;
}

export interface OutboundDialOptions {
  timeoutMs: number;
  /** Datagrams received on the session go to the CoAP layer. */
  onMessage: (channel: Channel, data: Buffer) => void;
  log?: LogFn;
}

type DtlsClientModule = typeof import('node-dtls-client');

/**
 * Dials a device as a DTLS client with that device's own PSK (node-dtls-client). node-dtls-client is an ES module,
 * so it is loaded with a dynamic import on first use. `loader` holds that one import per server instance.
 */
export class OutboundDialler {
  private serial = 0;
  private loader?: Promise<DtlsClientModule>;

  constructor(private readonly opts: OutboundDialOptions) {}

  private load(): Promise<DtlsClientModule> {
    this.loader ??= import('node-dtls-client');
    return this.loader;
  }

  async dial(target: OutboundTarget): Promise<OutboundSession> {
    const { dtls } = await this.load();
    const serial = ++this.serial;
    return new Promise<OutboundSession>((resolve, reject) => {
      let settled = false;
      let closed = false;
      const closeHandlers: Array<() => void> = [];
      const socket = dtls.createSocket({
        type: isIPv6(target.host) ? 'udp6' : 'udp4',
        address: target.host,
        port: target.port,
        psk: { [target.identity]: target.key },
        timeout: this.opts.timeoutMs,
        ciphers: ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_CBC_SHA256'],
      });
      const channel = sessionChannel(
        'out',
        { send: (d) => socket.send(d), close: () => socket.close() },
        target.host,
        target.port,
        target.identity,
        serial,
      );
      const markClosed = (): void => {
        if (closed) return;
        closed = true;
        for (const cb of closeHandlers) cb();
      };
      const session: OutboundSession = {
        channel,
        close: () => {
          if (closed) return;
          try {
            socket.close();
          } catch {
            /* already closed */
          }
          markClosed();
        },
        onClose: (cb) => closeHandlers.push(cb),
      };
      socket.on('connected', () => {
        settled = true;
        resolve(session);
      });
      socket.on('message', (msg: Buffer) => this.opts.onMessage(channel, msg));
      socket.on('error', (err: Error) => {
        if (!settled) {
          settled = true;
          closed = true;
          try {
            socket.close();
          } catch {
            /* the socket may already be gone */
          }
          reject(new Error(`DTLS handshake with ${target.host}:${target.port} as "${target.identity}" failed: ${err.message}`));
          return;
        }
        this.opts.log?.('debug', `outbound DTLS session ${target.host}:${target.port} error: ${err.message}`);
        markClosed();
      });
      socket.on('close', () => {
        if (!settled) {
          settled = true;
          reject(new Error(`DTLS handshake with ${target.host}:${target.port} as "${target.identity}" failed: connection closed`));
        }
        markClosed();
      });
    });
  }
}
