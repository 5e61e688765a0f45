import assert from 'node:assert/strict';
import type { Channel } from '../src/channel';
import { SessionPool } from '../src/pool/pool';

function channel(key: string): Channel {
  return { key, address: '127.0.0.1', port: 5684, secure: true, send: () => undefined };
}

function newPool(): SessionPool {
  return new SessionPool({ mode: 'inbound', idleTimeoutMs: 60_000, maxSessions: 100, dial: () => Promise.reject(new Error('inbound only')) });
}

describe('SessionPool (sessions by channel)', () => {
  it('unbinds every endpoint a closed session served, and only those', () => {
    const pool = newPool();
    const a = channel('dtls:a');
    const b = channel('dtls:b');
    pool.bindInbound('ep1', a, true);
    pool.bindInbound('ep2', a, true); // a second endpoint registered over the same session
    pool.bindInbound('ep3', b, true);
    const hit = pool.unbindChannel('dtls:a').map((e) => e.endpoint).sort();
    assert.deepEqual(hit, ['ep1', 'ep2']);
    assert.equal(pool.readyEntry('ep1'), undefined);
    assert.equal(pool.readyEntry('ep2'), undefined);
    assert.equal(pool.readyEntry('ep3')?.channel, b);
    assert.deepEqual(pool.unbindChannel('dtls:a'), []);
    assert.equal(pool.countSessions().active, 1);
  });

  it('follows an endpoint to its new session', () => {
    const pool = newPool();
    const a = channel('dtls:a');
    const c = channel('dtls:c');
    pool.bindInbound('ep1', a, true);
    pool.bindInbound('ep2', a, true);
    pool.bindInbound('ep1', c, true); // ep1 handshook again
    assert.deepEqual(pool.unbindChannel('dtls:a').map((e) => e.endpoint), ['ep2']);
    assert.equal(pool.readyEntry('ep1')?.channel, c);
    assert.deepEqual(pool.unbindChannel('dtls:c').map((e) => e.endpoint), ['ep1']);
    assert.equal(pool.countSessions().active, 0);
  });

  it('forgets a removed endpoint', () => {
    const pool = newPool();
    const a = channel('dtls:a');
    pool.bindInbound('ep1', a, true);
    pool.remove('ep1');
    assert.deepEqual(pool.unbindChannel('dtls:a'), []);
    pool.bindInbound('ep1', a, true);
    assert.deepEqual(pool.unbindChannel('dtls:a').map((e) => e.endpoint), ['ep1']);
    pool.closeAll();
    assert.deepEqual(pool.unbindChannel('dtls:a'), []);
  });
});
