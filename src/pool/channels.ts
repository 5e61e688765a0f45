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
