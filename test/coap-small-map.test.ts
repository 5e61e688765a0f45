/**
 * SmallMap (the CoAP layer's map of pending exchanges per channel) behaves like a Map for every sequence of
 * operations: checked against a real Map over random operations, with few keys so that entries move between the
 * two fields and the overflow Map.
 */
import assert from 'node:assert/strict';
import { SmallMap } from '../src/coap/small-map';
import { seededRandom } from './support/random';

describe('SmallMap', () => {
  it('matches Map over 20,000 random set/delete/get/has/clear operations', () => {
    const rnd = seededRandom(12345);
    for (const keys of [[0, 1, 2, 3, 4, 5], ['a', 'b', 'c', 'd']] as Array<Array<number | string>>) {
      const small = new SmallMap<number | string, number>();
      const ref = new Map<number | string, number>();
      for (let i = 0; i < 10000; i++) {
        const k = keys[rnd(keys.length)];
        const op = rnd(20);
        if (op < 8) {
          small.set(k, i);
          ref.set(k, i);
        } else if (op < 15) {
          assert.equal(small.delete(k), ref.delete(k), `delete ${String(k)} at step ${i}`);
        } else if (op === 19) {
          small.clear();
          ref.clear();
        }
        assert.equal(small.get(k), ref.get(k));
        assert.equal(small.has(k), ref.has(k));
        assert.equal(small.size, ref.size);
        assert.deepEqual(small.values().sort((a, b) => a - b), [...ref.values()].sort((a, b) => a - b));
      }
    }
  });

  it('returns a copy from values() that stays valid while entries are deleted', () => {
    const m = new SmallMap<string, number>();
    for (const [i, k] of ['x', 'y', 'z', 'w'].entries()) m.set(k, i);
    const seen: number[] = [];
    for (const v of m.values()) {
      seen.push(v);
      m.delete(['x', 'y', 'z', 'w'][v]);
    }
    assert.deepEqual(seen.sort(), [0, 1, 2, 3]);
    assert.equal(m.size, 0);
  });
});
