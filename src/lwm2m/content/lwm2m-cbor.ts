/**
 * LwM2M CBOR, `application/vnd.oma.lwm2m+cbor` (Content-Format 11544, LwM2M 1.2 Core TS §7.4.6): nested CBOR
 * maps keyed by the IDs along the path, from the root, with Resource values at the leaves:
 *
 *   {3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}, 9: 100}}}
 *
 * A key may also be an array of IDs standing for several levels at once (`{[3, 0]: {0: …}}`). Values are
 * represented as in plain CBOR (see `cbor.ts`). Written as nested maps with single-ID keys, which every reader
 * accepts; a multiple-instance Resource written with no instances is an empty map.
 */
import { Lwm2mPath, MAX_ID, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { Lwm2mContentError } from './errors';
import { CborWriter, cborItemToValue, decodeCbor } from './cbor';
import { Lwm2mValue, TypedValue, toTyped } from './values';
import { entryKey, flattenWrite } from './write-values';

const FMT = 'LwM2M CBOR';

function keyIds(k: unknown, where: string): number[] {
  const one = (v: unknown): number => {
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_ID) {
      throw new Lwm2mContentError(`invalid ${FMT}: key ${typeof v === 'bigint' ? String(v) : JSON.stringify(v) ?? String(v)} under ${where} is not an ID 0..${MAX_ID}`);
    }
    return n;
  };
  if (Array.isArray(k)) {
    if (k.length === 0) throw new Lwm2mContentError(`invalid ${FMT}: empty path key under ${where}`);
    return k.map(one);
  }
  return [one(k)];
}

/** Decodes LwM2M CBOR into values keyed by full path. Throws `Lwm2mContentError` for anything malformed. */
export function decodeLwm2mCbor(payload: Buffer, _path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  const doc = decodeCbor(payload, FMT);
  if (!(doc instanceof Map)) throw new Lwm2mContentError(`invalid ${FMT}: expected a map keyed by Object ID`);
  const out: Record<string, Lwm2mValue> = {};
  const walk = (node: Map<unknown, unknown>, ids: number[]): void => {
    const here = ids.length === 0 ? '/' : '/' + ids.join('/');
    for (const [k, v] of node) {
      const p = [...ids, ...keyIds(k, here)];
      if (p.length > 4) throw new Lwm2mContentError(`invalid ${FMT}: path /${p.join('/')} has more than 4 levels`);
      const key = '/' + p.join('/');
      if (v instanceof Map) {
        if (p.length === 4) throw new Lwm2mContentError(`invalid ${FMT}: ${key} is a Resource Instance but holds a map`);
        walk(v as Map<unknown, unknown>, p);
        continue;
      }
      // null: no value (LwM2M CBOR allows it for a Resource without value); nothing to report.
      if (v === null || v === undefined) continue;
      if (p.length < 3) throw new Lwm2mContentError(`invalid ${FMT}: ${key} carries a value but does not name a Resource`);
      if (Object.prototype.hasOwnProperty.call(out, key)) throw new Lwm2mContentError(`invalid ${FMT}: ${key} appears twice`);
      const def = model.resource(p[0] as number, p[2] as number);
      out[key] = cborItemToValue(v, def?.type, key);
    }
  };
  walk(doc as Map<unknown, unknown>, []);
  return out;
}

type Tree = Map<number, Tree | TypedValue>;

/** Encodes a write (see `flattenWrite` for the shapes; at the root path, a composite write keyed by full paths). */
export function encodeLwm2mCbor(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const entries = flattenWrite(path, value);
  if (entries.length === 0) throw new Lwm2mContentError(`write to ${pathToString(path)}: no value given`);
  const root: Tree = new Map();
  for (const e of entries) {
    const key = entryKey(e);
    if (e.instanceId === undefined) {
      throw new Lwm2mContentError(
        `write to ${pathToString(path)}: ${FMT} needs the instance (e.g. {"/${e.objectId}/0/${e.resourceId}": …}) or use tlv`,
      );
    }
    const def = model.resource(e.objectId, e.resourceId);
    if (def !== undefined && def.multiple && e.resourceInstanceId === undefined && !e.emptyMultiple) {
      throw new Lwm2mContentError(`${key}: Resource ${def.name} is multiple-instance; give its instances as an array or {"<instance id>": value}`);
    }
    if (def !== undefined && !def.multiple && (e.resourceInstanceId !== undefined || e.emptyMultiple)) {
      throw new Lwm2mContentError(`${key}: Resource ${def.name} is single-instance; give one value`);
    }
    const ids = [e.objectId, e.instanceId, e.resourceId];
    if (e.resourceInstanceId !== undefined) ids.push(e.resourceInstanceId);
    let node = root;
    for (const id of ids.slice(0, -1)) {
      let next = node.get(id);
      if (next === undefined) node.set(id, (next = new Map()));
      if (!(next instanceof Map)) throw new Lwm2mContentError(`${key}: given both as one value and as instances`);
      node = next;
    }
    const last = ids[ids.length - 1] as number;
    if (node.has(last)) throw new Lwm2mContentError(`${key}: given twice`);
    node.set(last, e.emptyMultiple ? new Map() : toTyped(e.value, def?.type, def ? `${key} (${def.type})` : key));
  }
  const w = new CborWriter();
  const write = (t: Tree): void => {
    w.map(t.size);
    for (const [id, v] of t) {
      w.int(id);
      if (v instanceof Map) write(v);
      else w.typed(v);
    }
  };
  write(root);
  return w.toBuffer();
}
