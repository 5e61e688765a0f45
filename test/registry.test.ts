import assert from 'node:assert/strict';
import { Registry, type Registration } from '../src/lwm2m/registry';

function reg(endpoint: string, lifetime: number, lastSeen: number): Registration {
  return {
    endpoint, registrationId: `id-${endpoint}`, lifetime, lwm2mVersion: '1.1', binding: 'U', queueMode: false, objects: [],
    objectVersions: {}, contentFormats: [], rootPath: '', address: '127.0.0.1', port: 5683, secure: false,
    channelKey: `udp:${endpoint}`, registeredAt: lastSeen, lastSeen,
  };
}

describe('Registry expiry', () => {
  const t0 = 1_000_000;

  it('expires each registration when its lifetime has passed since it was last seen, no earlier', () => {
    const r = new Registry();
    const expired: string[] = [];
    r.on('expire', (x: Registration) => expired.push(x.endpoint));
    r.add(reg('a', 1, t0));
    r.add(reg('b', 3, t0));
    r.add(reg('c', 2, t0));
    assert.deepEqual(r.expire(t0 + 999), []);
    assert.deepEqual(r.expire(t0 + 1000).map((x) => x.endpoint), ['a']);
    assert.deepEqual(r.expire(t0 + 1999), []);
    // traffic moves an expiry later
    r.touch(r.byEndpoint('c') as Registration, t0 + 1500);
    assert.deepEqual(r.expire(t0 + 3000).map((x) => x.endpoint), ['b']);
    assert.deepEqual(r.expire(t0 + 3499), []);
    assert.deepEqual(r.expire(t0 + 3500).map((x) => x.endpoint), ['c']);
    assert.deepEqual(expired, ['a', 'b', 'c']);
    assert.equal(r.size, 0);
  });

  it('an Update that shortens the lifetime, or a later registration due sooner, is expired on time', () => {
    const r = new Registry();
    r.add(reg('long', 100, t0));
    assert.deepEqual(r.expire(t0 + 10), []); // the next expiry is now t0 + 100 s
    r.update(r.byEndpoint('long') as Registration, { lifetime: 2, lastSeen: t0 + 500 });
    assert.deepEqual(r.expire(t0 + 2499), []);
    assert.deepEqual(r.expire(t0 + 2500).map((x) => x.endpoint), ['long']);
    r.add(reg('x', 50, t0 + 3000));
    assert.deepEqual(r.expire(t0 + 3100), []);
    r.restore(reg('y', 1, t0 + 3100));
    assert.deepEqual(r.expire(t0 + 4100).map((x) => x.endpoint), ['y']);
    assert.equal(r.size, 1);
  });
});
