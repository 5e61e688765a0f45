/**
 * LwM2M data types ↔ JavaScript values (LwM2M Core TS Appendix C), shared by the codecs.
 *
 * | LwM2M type        | JS value decoded                          | JS values accepted for writes                     |
 * |-------------------|-------------------------------------------|---------------------------------------------------|
 * | String, Corelnk   | string                                    | string (String also: number, bigint, boolean)     |
 * | Integer           | number (bigint beyond ±2^53)              | integer number, bigint, decimal string            |
 * | Unsigned Integer  | number (bigint beyond 2^53)               | same, ≥ 0                                         |
 * | Float             | number                                    | number, bigint, numeric string                    |
 * | Boolean           | boolean                                   | boolean, 0/1, 'true'/'false'/'1'/'0'              |
 * | Opaque            | Buffer                                    | Buffer, Uint8Array, {type:'Buffer',data}, string (UTF-8) |
 * | Time              | Date                                      | Date, seconds since 1970 (number/bigint/string), ISO 8601 string |
 * | Objlnk            | { objectId, instanceId }                  | same, or 'objectId:instanceId'                    |
 */
import { Buffer } from 'node:buffer';
import { ResourceType } from '../model/types';
import { Lwm2mContentError } from './errors';

export interface Lwm2mObjlnk {
  objectId: number;
  instanceId: number;
}

export type Lwm2mValue = string | number | bigint | boolean | Buffer | Date | Lwm2mObjlnk;

/** A value ready for an encoder: the LwM2M kind it is written as, and the canonical JS value. */
export type TypedValue =
  | { kind: 'string'; value: string }
  | { kind: 'int'; value: bigint }
  | { kind: 'uint'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'opaque'; value: Buffer }
  | { kind: 'time'; value: bigint }
  | { kind: 'objlnk'; value: Lwm2mObjlnk };

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const UINT64_MAX = 2n ** 64n - 1n;

export function isObjlnk(v: unknown): v is Lwm2mObjlnk {
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v) || v instanceof Date) return false;
  const o = v as Record<string, unknown>;
  return isU16(o['objectId']) && isU16(o['instanceId']) && Object.keys(o).length === 2;
}

function isU16(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** `'3:0'` → `{ objectId: 3, instanceId: 0 }`; undefined when the text is not an object link. */
export function parseObjlnk(s: string): Lwm2mObjlnk | undefined {
  const m = /^\s*([0-9]{1,5}):([0-9]{1,5})\s*$/.exec(s);
  if (!m) return undefined;
  const objectId = Number(m[1]);
  const instanceId = Number(m[2]);
  return isU16(objectId) && isU16(instanceId) ? { objectId, instanceId } : undefined;
}

export function formatObjlnk(o: Lwm2mObjlnk): string {
  return `${o.objectId}:${o.instanceId}`;
}

/** An integer as a number when it is exactly representable, else as a bigint. */
export function intValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Seconds since 1970 → Date (millisecond precision kept for fractional seconds). */
export function timeValue(seconds: number | bigint, where: string): Date {
  const ms = Number(seconds) * 1000;
  const d = new Date(ms);
  if (!Number.isFinite(ms) || Number.isNaN(d.getTime())) {
    throw new Lwm2mContentError(`${where}: time ${String(seconds)} s is out of range`);
  }
  return d;
}

/** Short, safe description of a value for error messages. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return `<Buffer ${v.length} bytes>`;
  if (v instanceof Date) return `Date(${Number.isNaN(v.getTime()) ? 'invalid' : v.toISOString()})`;
  if (Array.isArray(v)) return `array[${v.length}]`;
  if (typeof v === 'object') return 'object';
  return typeof v;
}

function toInteger(value: unknown, min: bigint, max: bigint, where: string, what: string): bigint {
  let n: bigint | undefined;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number' && Number.isInteger(value)) {
    if (!Number.isSafeInteger(value)) {
      throw new Lwm2mContentError(`${where}: ${value} is beyond 2^53 and not exact as a number; give it as a bigint or a decimal string`);
    }
    n = BigInt(value);
  } else if (typeof value === 'string' && /^\s*[+-]?[0-9]+\s*$/.test(value)) n = BigInt(value.trim());
  if (n === undefined) throw new Lwm2mContentError(`${where}: ${describeValue(value)} does not fit ${what}: expected an integer`);
  if (n < min || n > max) throw new Lwm2mContentError(`${where}: ${n} is out of range for ${what} (${min}..${max})`);
  return n;
}

function toBytes(value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const data = o['data'];
    if (o['type'] === 'Buffer' && Array.isArray(data) && data.every((b) => typeof b === 'number' && Number.isInteger(b) && b >= 0 && b <= 255)) {
      return Buffer.from(data as number[]);
    }
  }
  return undefined;
}

function toTimeSeconds(value: unknown, where: string): bigint {
  if (value instanceof Date) {
    const t = value.getTime();
    if (Number.isNaN(t)) throw new Lwm2mContentError(`${where}: invalid Date for Time`);
    return BigInt(Math.floor(t / 1000));
  }
  if (typeof value === 'number' && Number.isFinite(value)) return BigInt(Math.floor(value));
  if (typeof value === 'bigint') return value;
  if (typeof value === 'string') {
    if (/^\s*[+-]?[0-9]+\s*$/.test(value)) return BigInt(value.trim());
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return BigInt(Math.floor(t / 1000));
  }
  throw new Lwm2mContentError(
    `${where}: ${describeValue(value)} does not fit Time: expected a Date, seconds since 1970 or an ISO 8601 date`,
  );
}

/**
 * Converts a value a flow wants to write into the LwM2M kind for `type`; `type` undefined (Resource unknown to
 * the model) infers the kind from the JS type. Throws `Lwm2mContentError` naming `where` when it does not fit.
 */
export function toTyped(value: unknown, type: ResourceType | undefined, where: string): TypedValue {
  switch (type) {
    case undefined:
      return inferTyped(value, where);
    case 'String':
      if (typeof value === 'string') return { kind: 'string', value };
      if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
        return { kind: 'string', value: String(value) };
      }
      break;
    case 'Corelnk':
      if (typeof value === 'string') return { kind: 'string', value };
      break;
    case 'Integer':
      return { kind: 'int', value: toInteger(value, INT64_MIN, INT64_MAX, where, 'Integer') };
    case 'Unsigned Integer':
      return { kind: 'uint', value: toInteger(value, 0n, UINT64_MAX, where, 'Unsigned Integer') };
    case 'Float':
      if (typeof value === 'number') return { kind: 'float', value };
      if (typeof value === 'bigint') return { kind: 'float', value: Number(value) };
      if (typeof value === 'string' && /^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$/.test(value)) {
        return { kind: 'float', value: Number(value) };
      }
      break;
    case 'Boolean':
      if (typeof value === 'boolean') return { kind: 'bool', value };
      if (value === 0 || value === 1) return { kind: 'bool', value: value === 1 };
      if (typeof value === 'string') {
        const s = value.trim().toLowerCase();
        if (s === 'true' || s === '1') return { kind: 'bool', value: true };
        if (s === 'false' || s === '0') return { kind: 'bool', value: false };
      }
      break;
    case 'Opaque': {
      const b = toBytes(value);
      if (b !== undefined) return { kind: 'opaque', value: b };
      break;
    }
    case 'Time':
      return { kind: 'time', value: toTimeSeconds(value, where) };
    case 'Objlnk': {
      if (isObjlnk(value)) return { kind: 'objlnk', value: { objectId: value.objectId, instanceId: value.instanceId } };
      const o = typeof value === 'string' ? parseObjlnk(value) : undefined;
      if (o !== undefined) return { kind: 'objlnk', value: o };
      throw new Lwm2mContentError(
        `${where}: ${describeValue(value)} does not fit Objlnk: expected { objectId, instanceId } or 'objectId:instanceId' (IDs 0..65535)`,
      );
    }
    case 'none':
      throw new Lwm2mContentError(`${where}: the Resource is executable and has no value to write`);
  }
  throw new Lwm2mContentError(`${where}: ${describeValue(value)} does not fit ${type}`);
}

function inferTyped(value: unknown, where: string): TypedValue {
  if (typeof value === 'string') return { kind: 'string', value };
  if (typeof value === 'boolean') return { kind: 'bool', value };
  if (typeof value === 'bigint') return { kind: 'int', value: toInteger(value, INT64_MIN, INT64_MAX, where, 'Integer') };
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return { kind: 'int', value: BigInt(value) };
    return { kind: 'float', value };
  }
  if (value instanceof Date) return { kind: 'time', value: toTimeSeconds(value, where) };
  if (isObjlnk(value)) return { kind: 'objlnk', value: { objectId: value.objectId, instanceId: value.instanceId } };
  const b = toBytes(value);
  if (b !== undefined) return { kind: 'opaque', value: b };
  throw new Lwm2mContentError(
    `${where}: cannot write ${describeValue(value)}: expected a string, number, boolean, Buffer, Date or { objectId, instanceId }`,
  );
}

/** The JS value a `TypedValue` decodes back to (used by round-trips and by the text codec). */
export function typedToValue(t: TypedValue, where: string): Lwm2mValue {
  switch (t.kind) {
    case 'int':
    case 'uint':
      return intValue(t.value);
    case 'time':
      return timeValue(t.value, where);
    default:
      return t.value;
  }
}
