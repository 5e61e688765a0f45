import assert from 'node:assert/strict';
import { TimerLists, type TimerEntry } from '../src/coap/timer-lists';

interface E extends TimerEntry {
  name: string;
  added: number;
  ms: number;
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Active Node timers, counted after an await (so mocha's own per-test timer is already there). */
const timers = async (): Promise<number> => {
  await delay(1);
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
};

describe('TimerLists (retransmission timers)', () => {
  it('fires each entry once, no earlier than its length, in due order across lengths; cancelled ones never', async () => {
    const fired: Array<{ name: string; late: number }> = [];
    const t = new TimerLists<E>((e) => fired.push({ name: e.name, late: performance.now() - (e.added + e.ms) }));
    const add = (name: string, ms: number): E => {
      const e: E = { name, added: performance.now(), ms };
      t.add(e, ms);
      return e;
    };
    add('a80', 80);
    add('b20', 20);
    const c = add('c50', 50);
    add('d20', 20);
    add('e120', 120);
    const f = add('f30', 30);
    assert.equal(t.size, 6);
    t.remove(c);
    t.remove(c); // twice: nothing
    t.remove(f);
    assert.equal(t.size, 4);
    await delay(200);
    assert.deepEqual(fired.map((x) => x.name), ['b20', 'd20', 'a80', 'e120']);
    // Node's timers may run up to a millisecond before performance.now() gets there
    for (const x of fired) assert.ok(x.late > -1.01 && x.late < 150, `${x.name} fired ${x.late.toFixed(2)} ms after its time`);
    assert.equal(t.size, 0);
  });

  it('holds one Node timer while entries wait and none once the last is cancelled or fired', async () => {
    const before = await timers();
    const t = new TimerLists<E>(() => undefined);
    const entries = Array.from({ length: 50 }, (_, i): E => ({ name: `e${i}`, added: 0, ms: 1000 + (i % 5) * 100 }));
    for (const e of entries) t.add(e, e.ms);
    assert.equal(await timers(), before + 1);
    for (const e of entries) t.remove(e);
    assert.equal(await timers(), before);
    const x: E = { name: 'x', added: 0, ms: 10 };
    t.add(x, 10);
    assert.equal(await timers(), before + 1);
    await delay(40);
    assert.equal(await timers(), before);
  });

  it('restarts an entry added again, lets a firing entry add itself back (doubled), and clear() cancels all', async () => {
    const fired: string[] = [];
    const again: E = { name: 'again', added: 0, ms: 45 };
    const t: TimerLists<E> = new TimerLists<E>((e) => {
      fired.push(e.name);
      if (e === again && e.ms < 180) {
        e.ms *= 2;
        t.add(e, e.ms); // like a retransmission
      }
    });
    const r: E = { name: 'restarted', added: 0, ms: 90 };
    t.add(r, 90);
    await delay(45);
    t.add(r, 180); // restarted at ~45 ms: due at ~225, not 90
    t.add(again, 45); // fires at ~90, ~180, ~360
    await delay(90);
    assert.deepEqual(fired, ['again']); // ~135 ms
    await delay(135);
    assert.deepEqual(fired, ['again', 'again', 'restarted']); // ~270 ms
    await delay(150);
    assert.deepEqual(fired, ['again', 'again', 'restarted', 'again']); // ~420 ms
    const y: E = { name: 'y', added: 0, ms: 20 };
    const z: E = { name: 'z', added: 0, ms: 30 };
    t.add(y, 20);
    t.add(z, 30);
    t.clear();
    assert.equal(t.size, 0);
    await delay(50);
    assert.equal(fired.length, 4);
  });

  it('an entry that throws does not keep the others from firing; the error surfaces', async () => {
    const fired: string[] = [];
    const t = new TimerLists<E>((e) => {
      fired.push(e.name);
      if (e.name === 'bad') throw new Error('boom');
    });
    const errors: Error[] = [];
    const onUncaught = (err: Error): void => {
      errors.push(err);
    };
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      t.add({ name: 'bad', added: 0, ms: 10 }, 10);
      t.add({ name: 'good', added: 0, ms: 10 }, 10);
      t.add({ name: 'later', added: 0, ms: 40 }, 40);
      await delay(80);
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      for (const l of listeners) process.on('uncaughtException', l);
    }
    assert.deepEqual(fired, ['bad', 'good', 'later']);
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /boom/);
  });
});
