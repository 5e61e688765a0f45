import type { Lwm2mServerState } from '../../src/server';

/** A synthetic server state with `registrations` DTLS registrations; `marker` goes into savedAt and the counters. */
export function bigState(marker: number, registrations: number): Lwm2mServerState {
  const regs = [];
  for (let i = 0; i < registrations; i++) {
    regs.push({
      endpoint: `dev-${i}`, registrationId: `r${i}`, lifetime: 300, lwm2mVersion: '1.1', binding: 'U', queueMode: false,
      objects: ['/1/0', '/3/0', '/3303/0', '/3303/1'], objectVersions: {}, contentFormats: [60, 110], rootPath: '',
      address: '127.0.0.1', port: 10000 + (i % 50000), secure: true, identity: `id-${i}`,
      channelKey: `dtls:127.0.0.1:${10000 + (i % 50000)}#${i}`, registeredAt: marker, lastSeen: marker,
    });
  }
  return {
    version: 1, savedAt: marker, registrations: regs, sessions: [], observations: [], queue: [], pool: [],
    counters: { requests: { total: marker, overPooledSession: 0, timeouts: 0 }, handshakes: marker, handshakesFailed: 0 },
  };
}
