/**
 * SenML (RFC 8428) as profiled by LwM2M 1.1+ (Core TS §7.4.4, §7.4.5), shared by SenML JSON (110), SenML CBOR
 * (112) and, for its value handling, LwM2M JSON (11543): record resolution (base name, base time, base value),
 * records → values keyed by path, and a write → records.
 *
 * The resolved name of a record (base name `bn` + name `n`) is an LwM2M path; values are `v` (numbers: Integer,
 * Unsigned Integer, Float, Time), `vs` (String, Corelnk), `vb` (Boolean), `vd` (Opaque) and `vlo` (Objlnk,
 * `"3:0"`); time is base time `bt` + `t`.
 *
 * Decoding converts by the model type when the SenML value kind matches it (`v` → Date for Time, `vlo` → object
 * link, `vd` → Buffer); when it does not match, or the Resource is unknown, the value is kept as sent (the SenML
 * kind says what it is, so nothing is lost).
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, parsePath, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { ResourceType } from '../model/types';
import { Lwm2mContentError } from './errors';
import { decodeBase64 } from './text';
import { Lwm2mValue, TypedValue, intValue, parseObjlnk, timeValue, toTyped } from './values';
import { WriteEntry, entryKey, flattenWrite } from './write-values';

export type SenmlValueKind = 'v' | 'vs' | 'vb' | 'vd' | 'vlo';

/** One record after resolving base fields (RFC 8428 §4.6). */
export interface SenmlRecord {
  /** Resolved name (`bn` + `n`). */
  name: string;
  /** Resolved time (`bt` + `t`), when either is present. Values below 2^28 are relative to now (RFC 8428 §4.5.3). */
  time?: number;
  /** Which value field the record carries; undefined for a record without value (e.g. a composite read request). */
  kind?: SenmlValueKind;
  /** `v` is a number, or a bigint for an integer beyond 2^53 (SenML CBOR only). */
  value?: number | bigint | string | boolean | Buffer;
}

export const SENML_VALUE_KINDS: readonly SenmlValueKind[] = ['v', 'vs', 'vb', 'vd', 'vlo'];
const KNOWN_FIELDS = new Set(['bn', 'bt', 'bu', 'bv', 'bs', 'bver', 'n', 'u', 'v', 'vs', 'vb', 'vd', 'vlo', 's', 't', 'ut']);

/**
 * Resolves records given as plain objects keyed by the JSON labels (SenML CBOR maps its integer labels to those
 * first). `fmt` names the format in messages. Throws `Lwm2mContentError` for invalid SenML.
 */
export function resolveSenmlRecords(doc: readonly unknown[], fmt: string): SenmlRecord[] {
  let bn = '';
  let bt = 0;
  let bv = 0;
  const out: SenmlRecord[] = [];
  doc.forEach((rec: unknown, i: number) => {
    const where = `SenML record ${i}`;
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
      throw new Lwm2mContentError(`invalid ${fmt}: ${where} is not an object`);
    }
    const r = rec as Record<string, unknown>;
    for (const k of Object.keys(r)) {
      if (!KNOWN_FIELDS.has(k) && k.endsWith('_')) {
        throw new Lwm2mContentError(`${where}: field ${JSON.stringify(k)} must be understood (RFC 8428 §4.4) and is not supported`);
      }
    }
    const str = (k: string): string | undefined => {
      const v = r[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw new Lwm2mContentError(`${where}: ${k} must be a string`);
      return v;
    };
    const num = (k: string): number | undefined => {
      const v = r[k];
      if (v === undefined) return undefined;
      if (typeof v === 'bigint') return Number(v);
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Lwm2mContentError(`${where}: ${k} must be a number`);
      return v;
    };
    const rbn = str('bn');
    if (rbn !== undefined) bn = rbn;
    const rbt = num('bt');
    if (rbt !== undefined) bt = rbt;
    const rbv = num('bv');
    if (rbv !== undefined) bv = rbv;
    const n = str('n') ?? '';
    const t = num('t');
    const name = bn + n;
    if (name === '') throw new Lwm2mContentError(`${where}: no name (neither bn nor n)`);
    const record: SenmlRecord = { name };
    if (t !== undefined || rbt !== undefined || bt !== 0) record.time = bt + (t ?? 0);
    const present = SENML_VALUE_KINDS.filter((k) => r[k] !== undefined);
    if (present.length > 1) throw new Lwm2mContentError(`${where} (${name}): more than one value field (${present.join(', ')})`);
    const kind = present[0];
    if (kind !== undefined) {
      record.kind = kind;
      const raw = r[kind];
      switch (kind) {
        case 'v':
          if (typeof raw === 'bigint') {
            record.value = bv === 0 ? intValue(raw) : Number(raw) + bv;
            break;
          }
          if (typeof raw !== 'number') throw new Lwm2mContentError(`${where} (${name}): v must be a number`);
          record.value = raw + bv;
          break;
        case 'vs':
        case 'vlo':
          if (typeof raw !== 'string') throw new Lwm2mContentError(`${where} (${name}): ${kind} must be a string`);
          record.value = raw;
          break;
        case 'vb':
          if (typeof raw !== 'boolean') throw new Lwm2mContentError(`${where} (${name}): vb must be true or false`);
          record.value = raw;
          break;
        case 'vd':
          // A byte string in CBOR, base64url text in JSON.
          if (raw instanceof Uint8Array) record.value = Buffer.from(raw);
          else if (typeof raw === 'string') record.value = decodeBase64(raw, `${where} (${name}) vd`);
          else throw new Lwm2mContentError(`${where} (${name}): vd must be ${fmt.includes('CBOR') ? 'a byte string' : 'a base64 string'}`);
          break;
      }
    }
    out.push(record);
  });
  return out;
}

function convert(rec: SenmlRecord, type: ResourceType | undefined, where: string, opaqueText: boolean): Lwm2mValue {
  const v = rec.value as number | bigint | string | boolean | Buffer;
  switch (rec.kind) {
    case 'v':
      return type === 'Time' ? timeValue(v as number | bigint, where) : v;
    case 'vs':
      if (type === 'Objlnk') return parseObjlnk(v as string) ?? v;
      if (type === 'Opaque' && opaqueText) return decodeBase64(v as string, where);
      return v;
    case 'vlo': {
      const o = parseObjlnk(v as string);
      if (o === undefined) throw new Lwm2mContentError(`${where}: vlo ${JSON.stringify(v)} is not objectId:instanceId`);
      return o;
    }
    default:
      return v;
  }
}

/**
 * Records → values keyed by full path. When several records name the same path (a time series) the one with the
 * latest time is kept (the last one on equal times). Records without value are skipped. A name without the
 * leading '/' is taken relative to the request path. `opaqueText`: a string value of an Opaque Resource is base64
 * (LwM2M JSON, which has no `vd`).
 */
export function senmlRecordsToValues(
  records: readonly SenmlRecord[],
  path: Lwm2mPath,
  model: ObjectModel,
  fmt: string,
  opaqueText = false,
): Record<string, Lwm2mValue> {
  const prefix = pathLevel(path) > 0 ? pathToString(path) + '/' : '/';
  const out: Record<string, Lwm2mValue> = {};
  const times = new Map<string, number>();
  for (const rec of records) {
    if (rec.kind === undefined) continue;
    let p: Lwm2mPath;
    try {
      p = parsePath(rec.name.startsWith('/') ? rec.name : prefix + rec.name);
    } catch (e) {
      throw new Lwm2mContentError(`${fmt} name ${JSON.stringify(rec.name)} is not an LwM2M path: ${(e as Error).message}`);
    }
    if (pathLevel(p) < 3) {
      throw new Lwm2mContentError(`${fmt} record ${rec.name} carries a value but does not name a Resource`);
    }
    const key = pathToString(p);
    const time = rec.time ?? 0;
    const prev = times.get(key);
    if (prev !== undefined && time < prev) continue;
    times.set(key, time);
    const def = model.resource(p.objectId as number, p.resourceId as number);
    out[key] = convert(rec, def?.type, key, opaqueText);
  }
  return out;
}

/** One record to write: full path and the typed value. */
export interface SenmlWriteRecord {
  name: string;
  typed: TypedValue;
}

/**
 * A write (see `flattenWrite` for the shapes; at the root path, a composite write keyed by full paths) → records
 * with full-path names, values typed by the model. `fmt` names the format in messages.
 */
export function senmlWriteRecords(path: Lwm2mPath, value: unknown, model: ObjectModel, fmt: string): SenmlWriteRecord[] {
  const entries = flattenWrite(path, value).filter((e) => !e.emptyMultiple);
  if (entries.length === 0) throw new Lwm2mContentError(`write to ${pathToString(path)}: no value given`);
  return entries.map((e: WriteEntry) => {
    if (e.instanceId === undefined) {
      throw new Lwm2mContentError(
        `write to ${pathToString(path)}: ${fmt} names are full paths, so give the instance (e.g. {"/${e.objectId}/0/${e.resourceId}": …}) or use tlv`,
      );
    }
    const def = model.resource(e.objectId, e.resourceId);
    const key = entryKey(e);
    if (def !== undefined && def.multiple && e.resourceInstanceId === undefined) {
      throw new Lwm2mContentError(`${key}: Resource ${def.name} is multiple-instance; give its instances as an array or {"<instance id>": value}`);
    }
    if (def !== undefined && !def.multiple && e.resourceInstanceId !== undefined) {
      throw new Lwm2mContentError(`${key}: Resource ${def.name} is single-instance; give one value`);
    }
    return { name: key, typed: toTyped(e.value, def?.type, def ? `${key} (${def.type})` : key) };
  });
}

/**
 * The base name used when writing several records: the target path with a trailing '/', so names are relative
 * (`{"bn":"/3/0/","n":"14"}`). Undefined when names are written in full (one record, or a composite write).
 */
export function senmlBaseName(path: Lwm2mPath, count: number): string | undefined {
  if (count === 1 || pathLevel(path) === 0) return undefined;
  return pathToString(path) + '/';
}
