import type { Socket } from 'node:dgram';
import type { BatchedSender } from './batched-sender';
import type { Channel } from '../channel';

/** A plain (NoSec) CoAP peer on the server's UDP socket; its datagrams leave through the socket's sender. */
export function udpChannel(sender: BatchedSender, address: string, port: number): Channel {
  return {
    key: `udp:${address}:${port}`,
    address,
    port,
    secure: false,
    send(data: Buffer): void {
      sender.send(data, port, address);
    },
  };
}

/** Receive/send buffer asked for on the server's sockets (Linux caps it at net.core.rmem_max / wmem_max). */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * Enlarges a bound socket's kernel buffers so a burst from many peers (or a short stall of the event loop) does not
 * overflow the receive queue: every datagram lost there costs the peer a CoAP or DTLS retransmission (seconds).
 * Linux silently caps the request at the system maximum; systems that refuse a too-large size get the largest of
 * 4 MiB, 2 MiB, ... 256 KiB they accept, and the default otherwise. Never throws.
 */
export function growSocketBuffers(socket: Socket, bytes = SOCKET_BUFFER_BYTES): void {
  for (const set of [(n: number) => socket.setRecvBufferSize(n), (n: number) => socket.setSendBufferSize(n)]) {
    for (let n = bytes; n >= 256 * 1024; n >>= 1) {
      try {
        set(n);
        break;
      } catch {
        // too large for this system: try half
      }
    }
  }
}

/** The DTLS session side of a SessionChannel. */
export interface ChannelSession {
  readonly address: string;
  readonly port: number;
  readonly identity: string;
  readonly authType: 'psk' | 'rpk' | 'x509';
  send(data: Buffer): void;
}

/** Address change of a session (RFC 9146 connection ID). */
export interface ChannelMigration {
  oldAddress: string;
  oldPort: number;
  address: string;
  port: number;
}

/** Receives what happens on every SessionChannel of one owner (one object for all sessions). */
export interface SessionChannelHost<S extends ChannelSession> {
  channelData(channel: SessionChannel<S>, data: Buffer): void;
  channelClosed(channel: SessionChannel<S>): void;
  channelMigrated(channel: SessionChannel<S>, info: ChannelMigration): void;
}

/**
 * A channel over a server-side DTLS session, following the session's address (it can move with a connection ID)
 * and counting the bytes it carries. It is also the session's owner (DtlsSessionOwner): data, close and migration
 * reach the host through it. A class, so a session costs one small object here rather than an object with its own
 * getters, closures and counters object.
 */
export class SessionChannel<S extends ChannelSession = ChannelSession> implements Channel {
  readonly secure = true;
  bytesIn = 0;
  bytesOut = 0;
  /** The CoAP endpoint's state for this channel (Channel.coapState). */
  coapState: unknown = undefined;

  constructor(readonly key: string, readonly session: S, private readonly host?: SessionChannelHost<S>) {}

  /** The channel itself (so it can stand where a `{ channel, session }` pair is expected). */
  get channel(): this {
    return this;
  }

  get address(): string {
    return this.session.address;
  }

  get port(): number {
    return this.session.port;
  }

  get identity(): string {
    return this.session.identity;
  }

  get authType(): 'psk' | 'rpk' | 'x509' {
    return this.session.authType;
  }

  send(data: Buffer): void {
    this.bytesOut += data.length;
    this.session.send(data);
  }

  onSessionData(data: Buffer): void {
    this.bytesIn += data.length;
    this.host?.channelData(this, data);
  }

  onSessionClose(): void {
    this.host?.channelClosed(this);
  }

  onSessionMigrated(info: ChannelMigration): void {
    this.host?.channelMigrated(this, info);
  }
}

/** What the pool needs from a DTLS session, whichever side opened it. */
export interface SessionLike {
  send(data: Buffer): void;
  close(): void;
}

/** A channel over an authenticated DTLS session. `serial` tells successive sessions from one address apart. */
export function sessionChannel(
  prefix: 'dtls' | 'out',
  session: SessionLike,
  address: string,
  port: number,
  identity: string,
  serial: number,
): Channel {
  return {
    key: `${prefix}:${address}:${port}#${serial}`,
    address,
    port,
    secure: true,
    identity,
    send(data: Buffer): void {
      session.send(data);
    },
  };
}
