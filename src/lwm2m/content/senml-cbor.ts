/**
 * SenML CBOR (RFC 8428 §6, Content-Format 112) as profiled by LwM2M 1.1+ (Core TS §7.4.5): an array of maps
 * keyed by the integer labels of RFC 8428 Table 6 (bver -1, bn -2, bt -3, bu -4, bv -5, bs -6, n 0, u 1, v 2,
 * vs 3, vb 4, s 5, t 6, ut 7, vd 8) and by text for labels without an integer (LwM2M's `"vlo"` for Objlnk).
 * Opaque (`vd`) is a byte string. Resolution and typing are shared with SenML JSON (`senml.ts`).
 */
import { Lwm2mPath, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { Lwm2mContentError } from './errors';
import { CborWriter, decodeCbor } from './cbor';
import { SenmlRecord, resolveSenmlRecords, senmlBaseName, senmlRecordsToValues, senmlWriteRecords } from './senml';
import { Lwm2mValue, TypedValue } from './values';

const FMT = 'SenML CBOR';

/** RFC 8428 Table 6: CBOR integer label → SenML label. */
export const SENML_CBOR_LABELS: ReadonlyMap<number, string> = new Map([
  [-1, 'bver'],
  [-2, 'bn'],
  [-3, 'bt'],
  [-4, 'bu'],
  [-5, 'bv'],
  [-6, 'bs'],
  [0, 'n'],
  [1, 'u'],
  [2, 'v'],
  [3, 'vs'],
  [4, 'vb'],
  [5, 's'],
  [6, 't'],
  [7, 'ut'],
  [8, 'vd'],
]);

/** Decodes and resolves SenML CBOR records. Throws `Lwm2mContentError` for invalid CBOR or invalid SenML. */
export function decodeSenmlCborRecords(payload: Buffer): SenmlRecord[] {
  const doc = decodeCbor(payload, FMT);
  if (!Array.isArray(doc)) throw new Lwm2mContentError(`invalid ${FMT}: expected an array of records`);
  const records = doc.map((rec: unknown, i: number) => {
    if (!(rec instanceof Map)) throw new Lwm2mContentError(`invalid ${FMT}: SenML record ${i} is not a map`);
    // Null prototype: a text label such as "__proto__" stays a plain field.
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [k, v] of rec as Map<unknown, unknown>) {
      let name: string | undefined;
      // Text labels are LwM2M's "vlo" and extensions; the RFC 8428 labels written as text are accepted too.
      if (typeof k === 'number') name = SENML_CBOR_LABELS.get(k);
      else if (typeof k === 'string') name = k;
      else throw new Lwm2mContentError(`invalid ${FMT}: SenML record ${i} has a label that is neither an integer nor text`);
      if (name === undefined) continue;
      if (name in out) throw new Lwm2mContentError(`SenML record ${i}: ${name} is given twice`);
      out[name] = v;
    }
    return out;
  });
  return resolveSenmlRecords(records, FMT);
}

/** Decodes SenML CBOR into values keyed by full path (latest record of a time series; see `decodeSenmlJson`). */
export function decodeSenmlCbor(payload: Buffer, path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  return senmlRecordsToValues(decodeSenmlCborRecords(payload), path, model, 'SenML');
}

function valueLabel(t: TypedValue): string | number {
  switch (t.kind) {
    case 'string':
      return 3;
    case 'bool':
      return 4;
    case 'opaque':
      return 8;
    case 'objlnk':
      return 'vlo';
    default:
      return 2;
  }
}

/**
 * Encodes a write like `encodeSenmlJson`: full-path names, or with several records the target path once as base
 * name and relative names. A Float Resource's value is a CBOR float even when integral.
 */
export function encodeSenmlCbor(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const records = senmlWriteRecords(path, value, model, 'SenML');
  const bn = senmlBaseName(path, records.length);
  const w = new CborWriter().array(records.length);
  records.forEach((r, i) => {
    if (bn !== undefined && i === 0) w.map(3).int(-2).text(bn);
    else w.map(2);
    w.int(0).text(bn === undefined ? r.name : r.name.slice(bn.length));
    w.key(valueLabel(r.typed)).typed(r.typed);
  });
  return w.toBuffer();
}

/** The payload of a Read-Composite / Observe-Composite request in SenML CBOR: `[{0: "/3/0/1"}, …]`. */
export function encodeSenmlCborPaths(paths: readonly Lwm2mPath[]): Buffer {
  const w = new CborWriter().array(paths.length);
  for (const p of paths) w.map(1).int(0).text(pathToString(p));
  return w.toBuffer();
}
