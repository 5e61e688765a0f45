import type { Socket } from 'node:dgram';
import type { Channel } from '../channel';

/** A plain (NoSec) CoAP peer on the server's UDP socket. */
export function udpChannel(socket: Socket, address: string, port: number, onError: (err: Error) => void): Channel {
  return {
    key: `udp:${address}:${port}`,
    address,
    port,
    secure: false,
    send(data: Buffer): void {
      try {
        socket.send(data, port, address, (err) => {
          if (err) onError(err);
        });
      } catch (err) {
        onError(err as Error);
      }
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

/**
 * A channel over a server-side DTLS session, following the session's address (it can move with a connection ID)
 * and counting the bytes it sends. A class, so a session costs one small object here rather than an object
 * with its own getter and send closures.
 */
export class SessionChannel implements Channel {
  readonly secure = true;

  constructor(readonly key: string, private readonly session: ChannelSession,
      private readonly counters: { bytesOut: number }) {}

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
    this.counters.bytesOut += data.length;
    this.session.send(data);
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
