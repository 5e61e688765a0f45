/**
 * OMA-TLV, `application/vnd.oma.lwm2m+tlv` (Content-Format 11542), LwM2M Core TS §7.4.3.
 *
 * Each entry: a type octet (bits 7-6 identifier type: 00 Object Instance, 01 Resource Instance,
 * 10 Multiple Resource, 11 Resource with value; bit 5 identifier is 16 bits; bits 4-3 length field of 0..3
 * octets; bits 2-0 the length itself when bits 4-3 are 00), the identifier, the length, then the value
 * (nested entries for Object Instances and Multiple Resources).
 *
 * Values are typed by the Object model. A Resource the model does not know is decoded as a Buffer (the
 * raw value octets): TLV does not say what the octets are, and guessing (text? integer?) would silently
 * give wrong values; load the Object's DDF to get typed values.
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { ResourceType } from '../model/types';
import { Lwm2mContentError } from './errors';
import { Lwm2mValue, TypedValue, intValue, timeValue, toTyped } from './values';
import { WriteEntry, entryKey, flattenWrite } from './write-values';

export const TlvType = {
  OBJECT_INSTANCE: 0,
  RESOURCE_INSTANCE: 1,
  MULTIPLE_RESOURCE: 2,
  RESOURCE: 3,
} as const;
export type TlvTypeValue = (typeof TlvType)[keyof typeof TlvType];

const TYPE_NAMES = ['Object Instance', 'Resource Instance', 'Multiple Resource', 'Resource'] as const;

export interface TlvEntry {
  type: TlvTypeValue;
  id: number;
  /** Value octets of a Resource or Resource Instance entry. */
  value?: Buffer;
  /** Nested entries of an Object Instance or Multiple Resource entry. */
  children?: TlvEntry[];
}

const MAX_LENGTH = 0xffffff;

/** Parses TLV octets into entries (Object Instances and Multiple Resources with their nested entries). */
export function readTlv(buf: Buffer): TlvEntry[] {
  return readLevel(buf, 0, buf.length, 0, undefined);
}

function readLevel(buf: Buffer, start: number, end: number, depth: number, parent: TlvTypeValue | undefined): TlvEntry[] {
  const entries: TlvEntry[] = [];
  let pos = start;
  while (pos < end) {
    const at = pos;
    const head = buf[pos++] as number;
    const type = (head >> 6) as TlvTypeValue;
    const idLen = head & 0x20 ? 2 : 1;
    const lenLen = (head >> 3) & 0x03;
    if (pos + idLen + lenLen > end) {
      throw new Lwm2mContentError(`truncated TLV: ${TYPE_NAMES[type]} header at byte ${at} needs ${1 + idLen + lenLen} bytes, ${end - at} left`);
    }
    const id = idLen === 2 ? buf.readUInt16BE(pos) : (buf[pos] as number);
    pos += idLen;
    let len: number;
    if (lenLen === 0) len = head & 0x07;
    else {
      len = buf.readUIntBE(pos, lenLen);
      pos += lenLen;
    }
    if (pos + len > end) {
      throw new Lwm2mContentError(
        `truncated TLV: ${TYPE_NAMES[type]} ${id} at byte ${at} declares ${len} value bytes, ${end - pos} left`,
      );
    }
    if (parent === TlvType.OBJECT_INSTANCE && type !== TlvType.RESOURCE && type !== TlvType.MULTIPLE_RESOURCE) {
      throw new Lwm2mContentError(`bad TLV: ${TYPE_NAMES[type]} ${id} at byte ${at} inside an Object Instance`);
    }
    if (parent === TlvType.MULTIPLE_RESOURCE && type !== TlvType.RESOURCE_INSTANCE) {
      throw new Lwm2mContentError(`bad TLV: ${TYPE_NAMES[type]} ${id} at byte ${at} inside a Multiple Resource`);
    }
    if (type === TlvType.OBJECT_INSTANCE || type === TlvType.MULTIPLE_RESOURCE) {
      if (depth >= 2) throw new Lwm2mContentError(`bad TLV: ${TYPE_NAMES[type]} ${id} at byte ${at} nested too deep`);
      entries.push({ type, id, children: readLevel(buf, pos, pos + len, depth + 1, type) });
    } else {
      entries.push({ type, id, value: buf.subarray(pos, pos + len) });
    }
    pos += len;
  }
  return entries;
}

/** Serialises entries to TLV octets (shortest identifier and length fields). */
export function writeTlv(entries: readonly TlvEntry[]): Buffer {
  return Buffer.concat(entries.map(writeEntry));
}

function writeEntry(e: TlvEntry): Buffer {
  const body =
    e.type === TlvType.OBJECT_INSTANCE || e.type === TlvType.MULTIPLE_RESOURCE
      ? writeTlv(e.children ?? [])
      : (e.value ?? Buffer.alloc(0));
  if (body.length > MAX_LENGTH) {
    throw new Lwm2mContentError(`TLV ${TYPE_NAMES[e.type]} ${e.id}: value of ${body.length} bytes exceeds the TLV limit of ${MAX_LENGTH}`);
  }
  if (!Number.isInteger(e.id) || e.id < 0 || e.id > 0xffff) throw new Lwm2mContentError(`TLV identifier ${e.id} is not 0..65535`);
  const idLen = e.id > 0xff ? 2 : 1;
  const lenLen = body.length <= 7 ? 0 : body.length <= 0xff ? 1 : body.length <= 0xffff ? 2 : 3;
  const head = Buffer.alloc(1 + idLen + lenLen);
  head[0] = (e.type << 6) | (idLen === 2 ? 0x20 : 0) | (lenLen << 3) | (lenLen === 0 ? body.length : 0);
  if (idLen === 2) head.writeUInt16BE(e.id, 1);
  else head[1] = e.id;
  if (lenLen > 0) head.writeUIntBE(body.length, 1 + idLen, lenLen);
  return Buffer.concat([head, body]);
}

// ---------------------------------------------------------------------------------------------------------
// Values

/** Decodes the value octets of one Resource (Instance) by its type; `type` undefined → Buffer. */
export function decodeTlvValue(bytes: Buffer, type: ResourceType | undefined, where: string): Lwm2mValue {
  const len = bytes.length;
  const intLen = (): void => {
    if (len !== 1 && len !== 2 && len !== 4 && len !== 8) {
      throw new Lwm2mContentError(`${where}: ${type} value must be 1, 2, 4 or 8 bytes in TLV, got ${len}`);
    }
  };
  switch (type) {
    case 'String':
    case 'Corelnk':
      return bytes.toString('utf8');
    case 'Integer':
    case 'Time': {
      intLen();
      const v = len === 8 ? bytes.readBigInt64BE(0) : BigInt(bytes.readIntBE(0, len));
      return type === 'Time' ? timeValue(v, where) : intValue(v);
    }
    case 'Unsigned Integer': {
      intLen();
      return intValue(len === 8 ? bytes.readBigUInt64BE(0) : BigInt(bytes.readUIntBE(0, len)));
    }
    case 'Float':
      if (len === 4) return bytes.readFloatBE(0);
      if (len === 8) return bytes.readDoubleBE(0);
      throw new Lwm2mContentError(`${where}: Float value must be 4 or 8 bytes in TLV, got ${len}`);
    case 'Boolean':
      if (len !== 1) throw new Lwm2mContentError(`${where}: Boolean value must be 1 byte in TLV, got ${len}`);
      if (bytes[0] !== 0 && bytes[0] !== 1) throw new Lwm2mContentError(`${where}: Boolean value must be 0 or 1, got ${bytes[0]}`);
      return bytes[0] === 1;
    case 'Objlnk':
      if (len !== 4) throw new Lwm2mContentError(`${where}: Objlnk value must be 4 bytes in TLV, got ${len}`);
      return { objectId: bytes.readUInt16BE(0), instanceId: bytes.readUInt16BE(2) };
    default:
      // Opaque, 'none' and Resources unknown to the model: the raw octets (copied, not a view of the datagram).
      return Buffer.from(bytes);
  }
}

function intBytes(v: bigint, signed: boolean): Buffer {
  for (const n of [1, 2, 4, 8]) {
    const bits = BigInt(n * 8);
    const fits = signed ? v >= -(1n << (bits - 1n)) && v < 1n << (bits - 1n) : v >= 0n && v < 1n << bits;
    if (!fits) continue;
    const b = Buffer.alloc(n);
    if (n === 8) {
      if (signed) b.writeBigInt64BE(v);
      else b.writeBigUInt64BE(v);
    } else if (signed) b.writeIntBE(Number(v), 0, n);
    else b.writeUIntBE(Number(v), 0, n);
    return b;
  }
  throw new Lwm2mContentError(`integer ${v} does not fit in 64 bits`);
}

/**
 * Encodes one typed value. Integers (and Time) take the smallest of 1, 2, 4, 8 bytes; a Float Resource takes
 * 4 bytes when the value is exact in single precision, else 8; a number written to a Resource the model does
 * not know takes 8 (`knownType` false).
 */
export function encodeTlvValue(t: TypedValue, knownType: boolean): Buffer {
  switch (t.kind) {
    case 'string':
      return Buffer.from(t.value, 'utf8');
    case 'int':
    case 'time':
      return intBytes(t.value, true);
    case 'uint':
      return intBytes(t.value, false);
    case 'float': {
      if (knownType && (Object.is(Math.fround(t.value), t.value) || Number.isNaN(t.value))) {
        const b = Buffer.alloc(4);
        b.writeFloatBE(t.value);
        return b;
      }
      const b = Buffer.alloc(8);
      b.writeDoubleBE(t.value);
      return b;
    }
    case 'bool':
      return Buffer.from([t.value ? 1 : 0]);
    case 'opaque':
      return Buffer.from(t.value);
    case 'objlnk': {
      const b = Buffer.alloc(4);
      b.writeUInt16BE(t.value.objectId, 0);
      b.writeUInt16BE(t.value.instanceId, 2);
      return b;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Payload ↔ values keyed by path

/**
 * Decodes a TLV payload answering a request on `path` into values keyed by full path. Accepts what clients
 * send in practice: an Object Instance wrapper around a single instance's Resources or not, a Multiple Resource
 * wrapper around Resource Instances or not.
 */
export function decodeTlv(payload: Buffer, path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  const level = pathLevel(path);
  const here = pathToString(path);
  if (level === 0) throw new Lwm2mContentError('TLV payload needs a request path with at least an Object ID');
  const objectId = path.objectId as number;
  const out: Record<string, Lwm2mValue> = {};
  const put = (key: string, v: Lwm2mValue): void => {
    if (Object.prototype.hasOwnProperty.call(out, key)) throw new Lwm2mContentError(`bad TLV for ${here}: ${key} appears twice`);
    out[key] = v;
  };
  const addResource = (instanceId: number, e: TlvEntry): void => {
    const def = model.resource(objectId, e.id);
    const base = `/${objectId}/${instanceId}/${e.id}`;
    if (e.type === TlvType.RESOURCE) {
      put(base, decodeTlvValue(e.value as Buffer, def?.type, base));
    } else if (e.type === TlvType.MULTIPLE_RESOURCE) {
      for (const ri of e.children ?? []) {
        const key = `${base}/${ri.id}`;
        put(key, decodeTlvValue(ri.value as Buffer, def?.type, key));
      }
    } else {
      throw new Lwm2mContentError(`bad TLV for ${here}: expected a Resource, got ${TYPE_NAMES[e.type]} ${e.id}`);
    }
  };
  const isResource = (e: TlvEntry): boolean => e.type === TlvType.RESOURCE || e.type === TlvType.MULTIPLE_RESOURCE;

  let entries = readTlv(payload);
  if (level === 1) {
    if (entries.every((e) => e.type === TlvType.OBJECT_INSTANCE)) {
      for (const inst of entries) for (const r of inst.children ?? []) addResource(inst.id, r);
    } else if (entries.every(isResource)) {
      // Some clients leave out the instance wrapper for a single-instance Object.
      if (model.get(objectId)?.multiple === true) {
        throw new Lwm2mContentError(`bad TLV for ${here}: Resources without an Object Instance for a multiple-instance Object`);
      }
      for (const r of entries) addResource(0, r);
    } else {
      throw new Lwm2mContentError(`bad TLV for ${here}: expected Object Instances`);
    }
    return out;
  }
  const instanceId = path.instanceId as number;
  // Unwrap an Object Instance wrapper for this instance.
  if (entries.length === 1 && entries[0]?.type === TlvType.OBJECT_INSTANCE) {
    if (entries[0].id !== instanceId) {
      throw new Lwm2mContentError(`bad TLV for ${here}: got Object Instance ${entries[0].id}`);
    }
    entries = entries[0].children ?? [];
  }
  if (level === 2) {
    for (const e of entries) addResource(instanceId, e);
    return out;
  }
  const resourceId = path.resourceId as number;
  if (entries.length === 1 && isResource(entries[0] as TlvEntry) && (entries[0] as TlvEntry).id !== resourceId && level === 3) {
    throw new Lwm2mContentError(`bad TLV for ${here}: got Resource ${(entries[0] as TlvEntry).id}`);
  }
  if (level === 3) {
    if (entries.length > 0 && entries.every((e) => e.type === TlvType.RESOURCE_INSTANCE)) {
      // Resource Instances without their Multiple Resource wrapper.
      addResource(instanceId, { type: TlvType.MULTIPLE_RESOURCE, id: resourceId, children: entries });
      return out;
    }
    if (entries.length > 1) throw new Lwm2mContentError(`bad TLV for ${here}: expected one Resource, got ${entries.length} entries`);
    for (const e of entries) addResource(instanceId, e);
    return out;
  }
  // Level 4: one Resource Instance, possibly inside its Multiple Resource.
  const riId = path.resourceInstanceId as number;
  if (entries.length === 1 && entries[0]?.type === TlvType.MULTIPLE_RESOURCE) {
    if (entries[0].id !== resourceId) throw new Lwm2mContentError(`bad TLV for ${here}: got Resource ${entries[0].id}`);
    entries = entries[0].children ?? [];
  }
  if (entries.length > 1) throw new Lwm2mContentError(`bad TLV for ${here}: expected one Resource Instance, got ${entries.length} entries`);
  const e = entries[0];
  if (e === undefined) return out;
  if (e.type !== TlvType.RESOURCE_INSTANCE && e.type !== TlvType.RESOURCE) {
    throw new Lwm2mContentError(`bad TLV for ${here}: expected a Resource Instance, got ${TYPE_NAMES[e.type]}`);
  }
  if (e.id !== riId) throw new Lwm2mContentError(`bad TLV for ${here}: got Resource Instance ${e.id}`);
  put(here, decodeTlvValue(e.value as Buffer, model.resource(objectId, resourceId)?.type, here));
  return out;
}

/** Encodes a write of `value` to `path` (see `flattenWrite` for the accepted shapes). */
export function encodeTlv(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const level = pathLevel(path);
  if (level === 0) throw new Lwm2mContentError('TLV cannot carry a composite write (root path); use senml-json');
  const entries = flattenWrite(path, value);
  if (entries.length === 0) throw new Lwm2mContentError(`write to ${pathToString(path)}: no value given`);

  const valueBytes = (e: WriteEntry): Buffer => {
    const def = model.resource(e.objectId, e.resourceId);
    const key = entryKey(e);
    if (def?.type === 'none') throw new Lwm2mContentError(`${key}: the Resource is executable and has no value to write`);
    return encodeTlvValue(toTyped(e.value, def?.type, def ? `${key} (${def.type})` : key), def !== undefined);
  };

  if (level === 4) {
    const e = entries[0] as WriteEntry;
    return writeTlv([{ type: TlvType.RESOURCE_INSTANCE, id: e.resourceInstanceId as number, value: valueBytes(e) }]);
  }

  // Group: instance → resource → single value or instances.
  type ResGroup = { id: number; single?: WriteEntry; instances?: Map<number, WriteEntry> };
  const instances = new Map<number | undefined, Map<number, ResGroup>>();
  for (const e of entries) {
    let res = instances.get(e.instanceId);
    if (res === undefined) instances.set(e.instanceId, (res = new Map()));
    let g = res.get(e.resourceId);
    if (g === undefined) res.set(e.resourceId, (g = { id: e.resourceId }));
    const def = model.resource(e.objectId, e.resourceId);
    if (e.resourceInstanceId !== undefined || e.emptyMultiple) {
      if (def !== undefined && !def.multiple) {
        throw new Lwm2mContentError(`${entryKey(e)}: Resource ${def.name} is single-instance; give one value`);
      }
      if (g.single !== undefined) throw new Lwm2mContentError(`${entryKey(e)}: given both as one value and as instances`);
      g.instances ??= new Map();
      if (e.resourceInstanceId !== undefined) {
        if (g.instances.has(e.resourceInstanceId)) throw new Lwm2mContentError(`${entryKey(e)}: given twice`);
        g.instances.set(e.resourceInstanceId, e);
      }
    } else {
      if (def?.multiple) {
        throw new Lwm2mContentError(
          `${entryKey(e)}: Resource ${def.name} is multiple-instance; give its instances as an array or {"<instance id>": value}`,
        );
      }
      if (g.single !== undefined || g.instances !== undefined) throw new Lwm2mContentError(`${entryKey(e)}: given twice`);
      g.single = e;
    }
  }
  const resourceTlvs = (res: Map<number, ResGroup>): TlvEntry[] =>
    [...res.values()].map((g): TlvEntry => {
      if (g.single !== undefined) return { type: TlvType.RESOURCE, id: g.id, value: valueBytes(g.single) };
      return {
        type: TlvType.MULTIPLE_RESOURCE,
        id: g.id,
        children: [...(g.instances as Map<number, WriteEntry>).values()].map((e) => ({
          type: TlvType.RESOURCE_INSTANCE,
          id: e.resourceInstanceId as number,
          value: valueBytes(e),
        })),
      };
    });

  if (level === 3 || level === 2) return writeTlv(resourceTlvs(instances.values().next().value as Map<number, ResGroup>));
  // Object level: Object Instance entries, or bare Resources when the device picks the instance.
  const out: TlvEntry[] = [];
  for (const [instanceId, res] of instances) {
    if (instanceId === undefined) out.push(...resourceTlvs(res));
    else out.push({ type: TlvType.OBJECT_INSTANCE, id: instanceId, children: resourceTlvs(res) });
  }
  return writeTlv(out);
}
