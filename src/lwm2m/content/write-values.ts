/**
 * Normalises the value a flow gives for a write into a flat list of Resource / Resource Instance values.
 *
 * Accepted shapes, by level of the target path:
 * - Resource Instance `/3/0/6/1`: a single value.
 * - Resource `/1/0/1`: a single value; for a multiple-instance Resource an array (index = instance ID) or an
 *   object keyed by instance ID (`{"0": 1, "1": 5}`) or by full path (`{"/3/0/6/0": 1}`); `{}`/`[]` writes the
 *   Resource with no instances.
 * - Object Instance `/1/0`: an object keyed by full path (`{"/1/0/1": 600}`), Resource ID (`{"1": 600}`) or
 *   `resource/instance` (`{"6/0": 1}`); values of multiple-instance Resources as above.
 * - Object `/31024` (Create): keys are full paths including the instance (`{"/31024/7/1": 42}`), or Resource IDs
 *   without instance (`{"1": 42}`: the device picks the instance); not both.
 * - Root `/` (composite): an object keyed by full paths.
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, parsePath, pathIds, pathLevel, pathStartsWith, pathToString, Lwm2mPathError } from '../path';
import { Lwm2mContentError } from './errors';
import { describeValue, isObjlnk } from './values';

export interface WriteEntry {
  objectId: number;
  /** Undefined only for a Create on an Object path with Resource-ID keys (the device picks the instance). */
  instanceId?: number;
  resourceId: number;
  resourceInstanceId?: number;
  /** The value; undefined when `emptyMultiple` is set. */
  value: unknown;
  /** A multiple-instance Resource written with no instances. */
  emptyMultiple?: true;
}

/** True for values that hold several entries (plain objects and arrays), as opposed to one Resource value. */
export function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  if (Array.isArray(v)) return true;
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v) || v instanceof Date || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  if (isObjlnk(v)) return false;
  const o = v as Record<string, unknown>;
  if (o['type'] === 'Buffer' && Array.isArray(o['data'])) return false;
  return true;
}

function entriesOf(v: Record<string, unknown> | unknown[]): Array<[string, unknown]> {
  if (Array.isArray(v)) return v.map((x, i) => [String(i), x]);
  return Object.entries(v);
}

function childPath(parent: Lwm2mPath, key: string, where: string): { path?: Lwm2mPath; relIds?: number[] } {
  if (key.startsWith('/')) {
    let p: Lwm2mPath;
    try {
      p = parsePath(key);
    } catch (e) {
      throw new Lwm2mContentError(`${where}: key ${JSON.stringify(key)}: ${(e as Error).message}`);
    }
    if (!pathStartsWith(p, parent) || pathLevel(p) <= pathLevel(parent)) {
      throw new Lwm2mContentError(`${where}: key ${key} is not below ${pathToString(parent)}`);
    }
    return { path: p };
  }
  if (!/^[0-9]{1,5}(\/[0-9]{1,5})?$/.test(key)) {
    throw new Lwm2mContentError(
      `${where}: key ${JSON.stringify(key)} is neither a full path ('/1/0/1') nor a Resource ID ('1' or '6/0')`,
    );
  }
  const rel = key.split('/').map(Number);
  if (rel.some((n) => n > 65535)) throw new Lwm2mContentError(`${where}: key ${key}: IDs are 0..65535`);
  return { relIds: rel };
}

/** Flattens `value` written to `path` into Resource / Resource Instance entries. */
export function flattenWrite(path: Lwm2mPath, value: unknown): WriteEntry[] {
  let level: number;
  try {
    level = pathLevel(path);
  } catch (e) {
    throw new Lwm2mContentError((e as Lwm2mPathError).message);
  }
  const out: WriteEntry[] = [];
  walk(path, level, value, out);
  return out;
}

function walk(path: Lwm2mPath, level: number, value: unknown, out: WriteEntry[]): void {
  const where = `write to ${pathToString(path)}`;
  if (value === undefined) return;
  if (level === 4) {
    if (isContainer(value)) throw new Lwm2mContentError(`${where}: a Resource Instance takes a single value, got ${describeValue(value)}`);
    const [o, i, r, ri] = pathIds(path) as [number, number, number, number];
    out.push({ objectId: o, instanceId: i, resourceId: r, resourceInstanceId: ri, value });
    return;
  }
  if (level === 3) {
    const [o, i, r] = pathIds(path) as [number, number, number];
    if (!isContainer(value)) {
      out.push({ objectId: o, instanceId: i, resourceId: r, value });
      return;
    }
    const items = entriesOf(value);
    if (items.length === 0) {
      out.push({ objectId: o, instanceId: i, resourceId: r, value: undefined, emptyMultiple: true });
      return;
    }
    for (const [key, v] of items) {
      const c = childPath(path, key, where);
      if (c.relIds !== undefined && c.relIds.length !== 1) {
        throw new Lwm2mContentError(`${where}: key ${key} must be a Resource Instance ID`);
      }
      const p = c.path ?? { objectId: o, instanceId: i, resourceId: r, resourceInstanceId: (c.relIds as number[])[0] };
      walk(p, 4, v, out);
    }
    return;
  }
  if (!isContainer(value) || Array.isArray(value)) {
    throw new Lwm2mContentError(
      `${where}: expected an object keyed by path or Resource ID (e.g. {"/1/0/1": 600} or {"1": 600}), got ${describeValue(value)}`,
    );
  }
  let bare = 0;
  let full = 0;
  for (const [key, v] of Object.entries(value)) {
    const c = childPath(path, key, where);
    if (c.path !== undefined) {
      full++;
      walk(c.path, pathLevel(c.path), v, out);
      continue;
    }
    const rel = c.relIds as number[];
    if (level === 0) throw new Lwm2mContentError(`${where}: keys of a composite write must be full paths, got ${JSON.stringify(key)}`);
    bare++;
    if (level === 2) {
      walk({ ...path, resourceId: rel[0], resourceInstanceId: rel[1] }, rel.length === 2 ? 4 : 3, v, out);
    } else {
      // Object level, no instance: the device chooses the instance (Create).
      const objectId = path.objectId as number;
      const sub: WriteEntry[] = [];
      walk({ objectId, instanceId: 0, resourceId: rel[0], resourceInstanceId: rel[1] }, rel.length === 2 ? 4 : 3, v, sub);
      for (const e of sub) {
        delete e.instanceId;
        out.push(e);
      }
    }
  }
  if (level === 1 && bare > 0 && full > 0) {
    throw new Lwm2mContentError(
      `${where}: mix of Resource-ID keys (device picks the instance) and full-path keys (instance given); use one form`,
    );
  }
}

/** Key of an entry as a full path, e.g. `/3/0/6/1` (`/31024/?/1` for an instance-less Create entry). */
export function entryKey(e: WriteEntry): string {
  let s = `/${e.objectId}/${e.instanceId ?? '?'}/${e.resourceId}`;
  if (e.resourceInstanceId !== undefined) s += `/${e.resourceInstanceId}`;
  return s;
}
