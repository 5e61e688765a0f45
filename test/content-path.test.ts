import assert from 'node:assert/strict';
import {
  Lwm2mPathError,
  parsePath,
  pathEquals,
  pathFromIds,
  pathIds,
  pathLevel,
  pathStartsWith,
  pathToString,
} from '../src/lwm2m/path';
import { TargetCache } from '../src/lwm2m/operations';

describe('LwM2M path', () => {
  it('parses paths with and without the leading slash', () => {
    assert.deepEqual(parsePath('/3/0/1'), { objectId: 3, instanceId: 0, resourceId: 1 });
    assert.deepEqual(parsePath('3/0/1'), { objectId: 3, instanceId: 0, resourceId: 1 });
    assert.deepEqual(parsePath('/3'), { objectId: 3 });
    assert.deepEqual(parsePath('/3/0/6/1'), { objectId: 3, instanceId: 0, resourceId: 6, resourceInstanceId: 1 });
    assert.deepEqual(parsePath('/65535/65535'), { objectId: 65535, instanceId: 65535 });
  });

  it('represents the root as {} (level 0)', () => {
    assert.deepEqual(parsePath('/'), {});
    assert.deepEqual(parsePath(''), {});
    assert.equal(pathLevel({}), 0);
    assert.equal(pathToString({}), '/');
  });

  it('accepts a trailing slash (SenML base names) and surrounding white space', () => {
    assert.deepEqual(parsePath('/3/0/'), { objectId: 3, instanceId: 0 });
    assert.deepEqual(parsePath('  /3/0/1 '), { objectId: 3, instanceId: 0, resourceId: 1 });
  });

  const bad: Array<[string, RegExp]> = [
    ['/3//1', /empty Object Instance ID/],
    ['/3/a', /Object Instance ID "a" is not a decimal integer/],
    ['/3/-1', /not a decimal integer/],
    ['/3/0/1.5', /Resource ID "1.5" is not a decimal integer/],
    ['/65536', /Object ID 65536 is out of range 0..65535/],
    ['/3/0/1/2/3', /at most 4 levels/],
    ['//', /empty Object ID/],
    ['/3/0 /1', /not a decimal integer/],
    ['/3/01', /Object Instance ID "01" has a leading zero/],
  ];
  for (const [input, why] of bad) {
    it(`rejects ${JSON.stringify(input)} saying why`, () => {
      assert.throws(() => parsePath(input), (e: unknown) => e instanceof Lwm2mPathError && why.test((e as Error).message));
    });
  }

  it('rejects a non-string', () => {
    assert.throws(() => parsePath(3 as unknown as string), Lwm2mPathError);
  });

  it('formats, measures and compares paths', () => {
    for (const s of ['/3', '/3/0', '/3/0/1', '/3/0/6/1']) assert.equal(pathToString(parsePath(s)), s);
    assert.equal(pathLevel(parsePath('/3/0/6/1')), 4);
    assert.equal(pathLevel(parsePath('/3/0')), 2);
    assert.deepEqual(pathIds(parsePath('/3/0/6')), [3, 0, 6]);
    assert.deepEqual(pathFromIds([3, 0, 6]), { objectId: 3, instanceId: 0, resourceId: 6 });
    assert.equal(pathStartsWith(parsePath('/3/0/1'), parsePath('/3/0')), true);
    assert.equal(pathStartsWith(parsePath('/3/0/1'), {}), true);
    assert.equal(pathStartsWith(parsePath('/3/1/1'), parsePath('/3/0')), false);
    assert.equal(pathStartsWith(parsePath('/3'), parsePath('/3/0')), false);
    assert.equal(pathEquals(parsePath('3/0'), parsePath('/3/0/')), true);
    assert.equal(pathEquals(parsePath('/3/0'), parsePath('/3/0/1')), false);
  });

  it('rejects malformed path objects', () => {
    assert.throws(() => pathLevel({ objectId: 3, resourceId: 1 }), /Resource ID is set but Object Instance ID is missing/);
    assert.throws(() => pathToString({ objectId: 70000 }), /Object ID 70000 is not an integer 0..65535/);
    assert.throws(() => pathLevel({ objectId: 1.5 }), Lwm2mPathError);
  });
});

describe('TargetCache (parsed request paths shared by a server)', () => {
  it('parses each path text once, hands out frozen targets, never caches a bad path, and stays bounded', () => {
    const cache = new TargetCache(4);
    const a = cache.get('/3/0/0');
    assert.equal(cache.get('/3/0/0'), a, 'the same text gives the same target');
    assert.equal(a.pathString, '/3/0/0');
    assert.deepEqual(a.segments, ['3', '0', '0']);
    assert.deepEqual(a.paths, ['/3/0/0']);
    assert.ok(Object.isFrozen(a) && Object.isFrozen(a.path) && Object.isFrozen(a.paths) && Object.isFrozen(a.segments));
    assert.throws(() => (a.paths as string[]).push('/1'), TypeError);
    // ' 3/0/0/ ' is the same resource, parsed on its own text
    assert.equal(cache.get(' 3/0/0/ ').pathString, '/3/0/0');
    for (let i = 0; i < 3; i++) assert.throws(() => cache.get('/3/x'), /bad path/);
    // past `max` texts the cache starts over: an old text is parsed again (a new, equal target)
    for (const t of ['/1/0', '/1/0/1', '/4/0', '/5/0']) cache.get(t);
    const again = cache.get('/3/0/0');
    assert.notEqual(again, a);
    assert.deepEqual(again, a);
  });
});
