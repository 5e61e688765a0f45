/**
 * LwM2M JSON, `application/vnd.oma.lwm2m+json` (Content-Format 11543), the JSON format of LwM2M 1.0
 * (TS 1.0 §6.4.4), kept in 1.1+ for compatibility:
 *
 *   {"bn":"/3/0/","bt":1500000000,"e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"9","v":100,"t":-5},
 *     {"n":"6/0","v":1},{"n":"1","bv":true},{"n":"22/0","ov":"3:1"}]}
 *
 * Names are the base name `bn` + `n` (the request path when `bn` is absent); values are `v` (numbers: Integer,
 * Unsigned Integer, Float and Time in seconds), `sv` (String, Corelnk, and Opaque as base64), `bv` (Boolean) and
 * `ov` (Objlnk); times are base time `bt` + `t`. Written with `bn` = the Object Instance (or Object) path.
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { Lwm2mContentError } from './errors';
import { SenmlRecord, SenmlValueKind, senmlRecordsToValues, senmlWriteRecords } from './senml';
import { Lwm2mValue, TypedValue, formatObjlnk } from './values';

const FMT = 'LwM2M JSON';

/** LwM2M JSON value key → the SenML value kind with the same meaning. */
const KINDS: ReadonlyArray<[string, SenmlValueKind]> = [
  ['v', 'v'],
  ['sv', 'vs'],
  ['bv', 'vb'],
  ['ov', 'vlo'],
];

/** Parses LwM2M JSON into resolved records (full names, resolved times). Throws `Lwm2mContentError`. */
export function decodeLwm2mJsonRecords(payload: Buffer, path: Lwm2mPath): SenmlRecord[] {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch (e) {
    throw new Lwm2mContentError(`invalid ${FMT}: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Lwm2mContentError(`invalid ${FMT}: expected an object {"bn": …, "e": [ … ]}`);
  }
  const d = doc as Record<string, unknown>;
  const bnRaw = d['bn'];
  if (bnRaw !== undefined && typeof bnRaw !== 'string') throw new Lwm2mContentError(`invalid ${FMT}: bn must be a string`);
  const btRaw = d['bt'];
  if (btRaw !== undefined && (typeof btRaw !== 'number' || !Number.isFinite(btRaw))) {
    throw new Lwm2mContentError(`invalid ${FMT}: bt must be a number`);
  }
  const e = d['e'];
  if (!Array.isArray(e)) throw new Lwm2mContentError(`invalid ${FMT}: "e" must be an array of entries`);
  const bn = bnRaw ?? (pathLevel(path) > 0 ? pathToString(path) + '/' : '/');
  return e.map((entry: unknown, i: number): SenmlRecord => {
    const where = `${FMT} entry ${i}`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new Lwm2mContentError(`invalid ${FMT}: entry ${i} is not an object`);
    const r = entry as Record<string, unknown>;
    const n = r['n'];
    if (n !== undefined && typeof n !== 'string') throw new Lwm2mContentError(`${where}: n must be a string`);
    const t = r['t'];
    if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t))) throw new Lwm2mContentError(`${where}: t must be a number`);
    const rec: SenmlRecord = { name: bn + (n ?? '') };
    if (t !== undefined || btRaw !== undefined) rec.time = (btRaw ?? 0) + (t ?? 0);
    const present = KINDS.filter(([k]) => r[k] !== undefined);
    if (present.length > 1) throw new Lwm2mContentError(`${where} (${rec.name}): more than one value field (${present.map(([k]) => k).join(', ')})`);
    const [key, kind] = present[0] ?? [];
    if (key === undefined || kind === undefined) return rec;
    const raw = r[key];
    if (kind === 'v' && typeof raw !== 'number') throw new Lwm2mContentError(`${where} (${rec.name}): v must be a number`);
    if ((kind === 'vs' || kind === 'vlo') && typeof raw !== 'string') throw new Lwm2mContentError(`${where} (${rec.name}): ${key} must be a string`);
    if (kind === 'vb' && typeof raw !== 'boolean') throw new Lwm2mContentError(`${where} (${rec.name}): bv must be true or false`);
    rec.kind = kind;
    rec.value = raw as number | string | boolean;
    return rec;
  });
}

/** Decodes LwM2M JSON into values keyed by full path (the latest entry of a time series wins). */
export function decodeLwm2mJson(payload: Buffer, path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  return senmlRecordsToValues(decodeLwm2mJsonRecords(payload, path), path, model, FMT, true);
}

function valueField(t: TypedValue, where: string): string {
  switch (t.kind) {
    case 'string':
      return `"sv":${JSON.stringify(t.value)}`;
    case 'int':
    case 'uint':
    case 'time':
      return `"v":${t.value.toString()}`;
    case 'float':
      if (!Number.isFinite(t.value)) throw new Lwm2mContentError(`${where}: ${t.value} cannot be sent in ${FMT}`);
      return `"v":${JSON.stringify(t.value)}`;
    case 'bool':
      return `"bv":${t.value}`;
    case 'opaque':
      return `"sv":"${t.value.toString('base64')}"`;
    case 'objlnk':
      return `"ov":"${formatObjlnk(t.value)}"`;
  }
}

/**
 * Encodes a write to an Object Instance, Resource or Resource Instance (or a Create on an Object with the
 * instance given): `bn` is the Object Instance path (`"/3/0/"`), names are relative (`"14"`, `"6/0"`).
 */
export function encodeLwm2mJson(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const level = pathLevel(path);
  if (level === 0) throw new Lwm2mContentError(`${FMT} cannot carry a composite write (root path); use senml-json or senml-cbor`);
  const records = senmlWriteRecords(path, value, model, FMT);
  const bn = level === 1 ? `/${path.objectId}/` : `/${path.objectId}/${path.instanceId}/`;
  const entries = records.map((r) => `{"n":${JSON.stringify(r.name.slice(bn.length))},${valueField(r.typed, r.name)}}`);
  return Buffer.from(`{"bn":${JSON.stringify(bn)},"e":[${entries.join(',')}]}`, 'utf8');
}
