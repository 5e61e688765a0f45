/**
 * Run as a child process by the tests: builds a server with a live session and a handshake in progress
 * (default 30 s timeout, 1 s retransmission), closes everything, and must then exit on its own.
 */
import { nodeClient, startHarness, waitFor } from './dtls-harness';
import { clientHelloDatagram, hvrCookie } from './dtls-raw';
import * as dgram from 'node:dgram';

async function main(): Promise<void> {
  const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const h = await startHarness({ pskLookup: (id) => (id === 'dev1' ? key : undefined) });
  const c = nodeClient(h.port, 'dev1', key, 'TLS_PSK_WITH_AES_128_CCM_8');
  await c.connected;
  const raw = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => raw.bind(0, '127.0.0.1', () => resolve()));
  const replies: Buffer[] = [];
  raw.on('message', (m) => replies.push(m));
  const random = Buffer.alloc(32, 3);
  raw.send(clientHelloDatagram(0, 0, { random }), h.port, '127.0.0.1');
  await waitFor(() => replies.length === 1);
  raw.send(clientHelloDatagram(1, 1, { random, cookie: hvrCookie(replies[0]) }), h.port, '127.0.0.1');
  await waitFor(() => h.server.pendingHandshakes === 1);
  const pending = h.server.pendingHandshakes;
  const sessions = h.server.sessions.size;
  h.server.close();
  // The client closes itself when it gets the server's close_notify.
  await waitFor(() => c.isClosed());
  const clientClosed = c.isClosed();
  await c.kill();
  await h.close();
  raw.close();
  process.stdout.write(`DONE ${JSON.stringify({ pending, sessions, clientClosed })}\n`);
}

main().catch((e: unknown) => {
  process.stdout.write(`FAIL ${String(e)}\n`);
  process.exitCode = 1;
});
