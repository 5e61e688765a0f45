/**
 * CBOR (RFC 8949) for the LwM2M content formats, and the plain CBOR format itself (Content-Format 60, one
 * Resource value; LwM2M Core TS 1.1+ §7.4.x "CBOR").
 *
 * Decoding uses cbor-x (its pure-JavaScript build without `eval`, so the optional native accelerator is never
 * loaded) with maps kept as `Map`, so integer and array keys survive. Encoding is done here, because the LwM2M
 * formats need control cbor-x does not give: integers in their shortest form (also bigints), and a value of a
 * Float Resource sent as a float even when it is integral (`1` → `fa 3f800000`).
 *
 * Value representation (LwM2M Core TS, CBOR data types):
 *
 * | LwM2M type        | written as                                   | read from                                   |
 * |-------------------|----------------------------------------------|---------------------------------------------|
 * | String, Corelnk   | text string                                  | text string                                 |
 * | Integer, Unsigned | integer (major type 0/1), shortest form      | integer (any width)                         |
 * | Float             | float32 when exact, else float64             | half, single or double float, or integer    |
 * | Boolean           | simple value true/false                      | same                                        |
 * | Opaque            | byte string                                  | byte string                                 |
 * | Time              | integer, seconds since 1970                  | integer, float, or tag 1 / tag 0 date       |
 * | Objlnk            | text string `"3:0"`                          | text string                                 |
 */
import { Buffer } from 'node:buffer';
import type * as CborX from 'cbor-x';
import { Lwm2mPath, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { ResourceType } from '../model/types';
import { Lwm2mContentError } from './errors';
import { Lwm2mValue, TypedValue, describeValue, formatObjlnk, intValue, parseObjlnk, timeValue, toTyped } from './values';
import { isContainer } from './write-values';

// The no-eval build is a plain CommonJS file reached through the package's `exports` map; its API is the
// package's main one.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const cborX = require('cbor-x/index-no-eval') as typeof CborX;

/** Decodes one CBOR data item (maps as `Map`). Throws `Lwm2mContentError` for malformed CBOR or trailing bytes. */
export function decodeCbor(payload: Buffer, what: string): unknown {
  if (payload.length === 0) throw new Lwm2mContentError(`invalid ${what}: empty payload`);
  const decoder = new cborX.Decoder({ mapsAsObjects: false, useRecords: false });
  try {
    return decoder.decode(payload);
  } catch (e) {
    throw new Lwm2mContentError(`invalid ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Minimal CBOR writer: definite lengths, shortest integer and length heads (RFC 8949 §4.2.1). */
export class CborWriter {
  private readonly parts: Buffer[] = [];

  private head(major: number, n: number | bigint): this {
    const v = BigInt(n);
    if (v < 0n || v > 0xffffffffffffffffn) throw new Lwm2mContentError(`CBOR argument ${v} is out of range`);
    let b: Buffer;
    if (v < 24n) b = Buffer.from([(major << 5) | Number(v)]);
    else if (v <= 0xffn) b = Buffer.from([(major << 5) | 24, Number(v)]);
    else if (v <= 0xffffn) {
      b = Buffer.alloc(3);
      b[0] = (major << 5) | 25;
      b.writeUInt16BE(Number(v), 1);
    } else if (v <= 0xffffffffn) {
      b = Buffer.alloc(5);
      b[0] = (major << 5) | 26;
      b.writeUInt32BE(Number(v), 1);
    } else {
      b = Buffer.alloc(9);
      b[0] = (major << 5) | 27;
      b.writeBigUInt64BE(v, 1);
    }
    this.parts.push(b);
    return this;
  }

  /** An integer, -2^64 .. 2^64-1. */
  int(v: number | bigint): this {
    const n = BigInt(v);
    return n >= 0n ? this.head(0, n) : this.head(1, -1n - n);
  }

  /** A float: single precision when that keeps the value exactly (also NaN and ±Infinity), else double. */
  float(v: number): this {
    if (Number.isNaN(v) || Object.is(Math.fround(v), v)) {
      const b = Buffer.alloc(5);
      b[0] = 0xfa;
      b.writeFloatBE(v, 1);
      this.parts.push(b);
    } else {
      const b = Buffer.alloc(9);
      b[0] = 0xfb;
      b.writeDoubleBE(v, 1);
      this.parts.push(b);
    }
    return this;
  }

  text(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.head(3, b.length);
    this.parts.push(b);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.head(2, b.length);
    this.parts.push(Buffer.from(b));
    return this;
  }

  bool(v: boolean): this {
    this.parts.push(Buffer.from([v ? 0xf5 : 0xf4]));
    return this;
  }

  array(length: number): this {
    return this.head(4, length);
  }

  map(pairs: number): this {
    return this.head(5, pairs);
  }

  /** A text key or an integer key (SenML labels, LwM2M CBOR IDs). */
  key(k: string | number): this {
    return typeof k === 'string' ? this.text(k) : this.int(k);
  }

  /** One LwM2M value in the representation of the table above. */
  typed(t: TypedValue): this {
    switch (t.kind) {
      case 'string':
        return this.text(t.value);
      case 'int':
      case 'uint':
      case 'time':
        return this.int(t.value);
      case 'float':
        return this.float(t.value);
      case 'bool':
        return this.bool(t.value);
      case 'opaque':
        return this.bytes(t.value);
      case 'objlnk':
        return this.text(formatObjlnk(t.value));
    }
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** True for a decoded CBOR item that carries one scalar value (not a map, array, null or unknown tag). */
export function isCborScalar(item: unknown): item is string | number | bigint | boolean | Uint8Array | Date {
  return (
    typeof item === 'string' ||
    typeof item === 'number' ||
    typeof item === 'bigint' ||
    typeof item === 'boolean' ||
    item instanceof Uint8Array ||
    item instanceof Date
  );
}

/**
 * Converts a decoded CBOR item to the JS value of a Resource of `type` (undefined: unknown Resource, the item
 * is kept as its natural JS value). An item whose kind does not match the type is kept as sent, as SenML does.
 */
export function cborItemToValue(item: unknown, type: ResourceType | undefined, where: string): Lwm2mValue {
  if (!isCborScalar(item)) {
    throw new Lwm2mContentError(`${where}: expected a Resource value, got ${item instanceof Map ? 'a map' : describeValue(item)}`);
  }
  let v: Lwm2mValue;
  if (typeof item === 'bigint') v = intValue(item);
  else if (item instanceof Uint8Array) v = Buffer.from(item);
  else if (item instanceof Date) {
    if (Number.isNaN(item.getTime())) throw new Lwm2mContentError(`${where}: invalid date`);
    v = item;
  } else v = item;
  switch (type) {
    case 'Time':
      if (typeof v === 'number' || typeof v === 'bigint') return timeValue(v, where);
      return v;
    case 'Objlnk':
      if (typeof v === 'string') return parseObjlnk(v) ?? v;
      return v;
    default:
      return v;
  }
}

function requireSingle(path: Lwm2mPath): string {
  if (pathLevel(path) < 3) {
    throw new Lwm2mContentError(`cbor carries one Resource value; the path ${pathToString(path)} is not a Resource`);
  }
  return pathToString(path);
}

/** Content-Format 60: one Resource (Instance) value. */
export function decodeCborValue(payload: Buffer, path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  const key = requireSingle(path);
  const def = model.resource(path.objectId as number, path.resourceId as number);
  return { [key]: cborItemToValue(decodeCbor(payload, 'CBOR'), def?.type, key) };
}

/** Content-Format 60: encodes one value for a Resource or Resource Instance path. */
export function encodeCborValue(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const key = requireSingle(path);
  const def = model.resource(path.objectId as number, path.resourceId as number);
  if (isContainer(value)) throw new Lwm2mContentError(`${key}: cbor carries one value, got ${describeValue(value)}`);
  if (def?.multiple && path.resourceInstanceId === undefined) {
    throw new Lwm2mContentError(
      `${key}: Resource ${def.name} is multiple-instance; cbor carries one value, so write a Resource Instance (${key}/0) or use senml-cbor, lwm2m-cbor or tlv`,
    );
  }
  if (def !== undefined && def.multiple === false && path.resourceInstanceId !== undefined) {
    throw new Lwm2mContentError(`${key}: Resource ${def.name} is single-instance and has no Resource Instances`);
  }
  return new CborWriter().typed(toTyped(value, def?.type, def ? `${key} (${def.type})` : key)).toBuffer();
}
