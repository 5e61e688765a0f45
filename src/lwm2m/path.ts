/**
 * LwM2M paths: `/{Object ID}/{Object Instance ID}/{Resource ID}/{Resource Instance ID}`.
 *
 * Every level is optional from the right, so a path addresses the root (`/`), an Object (`/3`), an Object
 * Instance (`/3/0`), a Resource (`/3/0/1`) or a Resource Instance (`/3/0/6/1`). IDs are decimal integers
 * 0..65535 (LwM2M Core TS §6.1: 16-bit unsigned identifiers).
 *
 * The root is represented by the empty object `{}` (all IDs undefined, level 0). It is only meaningful for
 * the few operations that target the whole client (composite operations, Discover/Delete in bootstrap);
 * callers that need at least an Object check `pathLevel(p) >= 1`.
 */

export interface Lwm2mPath {
  /** Undefined only for the root path `/`. */
  objectId?: number;
  instanceId?: number;
  resourceId?: number;
  resourceInstanceId?: number;
}

/** Level of a path: 0 root, 1 Object, 2 Object Instance, 3 Resource, 4 Resource Instance. */
export type PathLevel = 0 | 1 | 2 | 3 | 4;

export const MAX_ID = 65535;

/** Thrown for a string that is not an LwM2M path; the message says which part is wrong and why. */
export class Lwm2mPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Lwm2mPathError';
  }
}

const LEVEL_NAMES = ['Object ID', 'Object Instance ID', 'Resource ID', 'Resource Instance ID'] as const;
const KEYS = ['objectId', 'instanceId', 'resourceId', 'resourceInstanceId'] as const;

function describe(input: unknown): string {
  if (typeof input === 'string') return JSON.stringify(input.length > 80 ? input.slice(0, 80) + '…' : input);
  return String(input);
}

/**
 * Parses `'/3/0/1'`, `'3/0/1'`, `'/3'`, `'/'` (root) and `''` (root). Surrounding white space and one trailing
 * `/` (as in a SenML base name `"/3/0/"`) are accepted. IDs are canonical decimals (no sign, no leading zero, so
 * a SenML base name missing its trailing `/`, `"/3/0" + "1"`, is refused instead of read as `/3/1`).
 * Anything else throws `Lwm2mPathError`.
 */
export function parsePath(s: string): Lwm2mPath {
  if (typeof s !== 'string') throw new Lwm2mPathError(`LwM2M path must be a string, got ${describe(s)}`);
  let body = s.trim();
  if (body.startsWith('/')) body = body.slice(1);
  if (body === '') return {};
  if (body.endsWith('/')) body = body.slice(0, -1);
  const parts = body.split('/');
  if (parts.length > 4) {
    throw new Lwm2mPathError(
      `bad LwM2M path ${describe(s)}: at most 4 levels (/object/instance/resource/resource-instance), got ${parts.length}`,
    );
  }
  const path: Lwm2mPath = {};
  parts.forEach((part, i) => {
    const what = LEVEL_NAMES[i];
    if (part === '') throw new Lwm2mPathError(`bad LwM2M path ${describe(s)}: empty ${what} (double '/')`);
    if (!/^[0-9]+$/.test(part)) {
      throw new Lwm2mPathError(`bad LwM2M path ${describe(s)}: ${what} ${describe(part)} is not a decimal integer`);
    }
    if (part.length > 1 && part.startsWith('0')) {
      throw new Lwm2mPathError(`bad LwM2M path ${describe(s)}: ${what} ${describe(part)} has a leading zero`);
    }
    const n = Number(part);
    if (n > MAX_ID) throw new Lwm2mPathError(`bad LwM2M path ${describe(s)}: ${what} ${part} is out of range 0..${MAX_ID}`);
    path[KEYS[i]] = n;
  });
  return path;
}

function validId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

/**
 * The ID at level `i` (0: object … 3: resource instance), read by its name: reading `p[KEYS[i]]`, a property whose
 * name changes from call to call, is a generic lookup in optimised code.
 */
function idAt(p: Lwm2mPath, i: number): number | undefined {
  return i === 0 ? p.objectId : i === 1 ? p.instanceId : i === 2 ? p.resourceId : p.resourceInstanceId;
}

/**
 * Checks that a path object is well formed (IDs in range, no gap such as a Resource ID without an Instance ID)
 * and returns its level. Throws `Lwm2mPathError` otherwise.
 */
export function pathLevel(p: Lwm2mPath): PathLevel {
  if (p === null || typeof p !== 'object') throw new Lwm2mPathError(`LwM2M path must be an object, got ${describe(p)}`);
  let level = 0;
  for (let i = 0; i < 4; i++) {
    const v = idAt(p, i);
    if (v === undefined) continue;
    if (!validId(v)) throw new Lwm2mPathError(`bad LwM2M path: ${LEVEL_NAMES[i]} ${describe(v)} is not an integer 0..${MAX_ID}`);
    if (level !== i) throw new Lwm2mPathError(`bad LwM2M path: ${LEVEL_NAMES[i]} is set but ${LEVEL_NAMES[level]} is missing`);
    level = i + 1;
  }
  return level as PathLevel;
}

/** `'/3/0/1'`; the root is `'/'`. Throws `Lwm2mPathError` for a malformed path object. */
export function pathToString(p: Lwm2mPath): string {
  const level = pathLevel(p);
  if (level === 0) return '/';
  let out = '';
  for (let i = 0; i < level; i++) out += '/' + String(idAt(p, i));
  return out;
}

/** The IDs of a path as an array, outermost first (`/3/0/1` → `[3, 0, 1]`). */
export function pathIds(p: Lwm2mPath): number[] {
  const level = pathLevel(p);
  const ids: number[] = [];
  for (let i = 0; i < level; i++) ids.push(idAt(p, i) as number);
  return ids;
}

/** Builds a path from IDs, outermost first (`[3, 0, 1]` → `/3/0/1`). */
export function pathFromIds(ids: readonly number[]): Lwm2mPath {
  if (ids.length > 4) throw new Lwm2mPathError(`bad LwM2M path: at most 4 levels, got ${ids.length}`);
  const p: Lwm2mPath = {};
  ids.forEach((id, i) => {
    p[KEYS[i]] = id;
  });
  pathLevel(p);
  return p;
}

/** True when `p` equals `prefix` or lies below it (`/3/0/1` starts with `/3/0`, `/3` and `/`). */
export function pathStartsWith(p: Lwm2mPath, prefix: Lwm2mPath): boolean {
  const a = pathIds(p);
  const b = pathIds(prefix);
  if (b.length > a.length) return false;
  return b.every((id, i) => a[i] === id);
}

/** True when both paths address the same node. */
export function pathEquals(a: Lwm2mPath, b: Lwm2mPath): boolean {
  return pathLevel(a) === pathLevel(b) && pathStartsWith(a, b);
}
