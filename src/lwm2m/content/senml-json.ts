/**
 * SenML JSON (RFC 8428, Content-Format 110) as profiled by LwM2M 1.1 (Core TS §7.4.4): the JSON syntax around the
 * shared SenML handling in `senml.ts`. Opaque values (`vd`) are base64url without padding.
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { Lwm2mContentError } from './errors';
import { formatObjlnk, Lwm2mValue, TypedValue } from './values';
import { SenmlRecord, resolveSenmlRecords, senmlBaseName, senmlRecordsToValues, senmlWriteRecords } from './senml';

export type { SenmlRecord, SenmlValueKind } from './senml';

const FMT = 'SenML JSON';

/** Parses and resolves SenML JSON records. Throws `Lwm2mContentError` for invalid JSON or invalid SenML. */
export function decodeSenmlJsonRecords(payload: Buffer): SenmlRecord[] {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch (e) {
    throw new Lwm2mContentError(`invalid SenML JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(doc)) throw new Lwm2mContentError('invalid SenML JSON: expected an array of records');
  return resolveSenmlRecords(doc, FMT);
}

/**
 * Decodes SenML JSON into values keyed by full path. When several records name the same path (a time series)
 * the one with the latest time is kept (the last one on equal times). Records without value are skipped.
 * Use `decodeSenmlJsonRecords` to get every record with its time.
 */
export function decodeSenmlJson(payload: Buffer, path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  return senmlRecordsToValues(decodeSenmlJsonRecords(payload), path, model, 'SenML');
}

function valueField(t: TypedValue, where: string): string {
  switch (t.kind) {
    case 'string':
      return `"vs":${JSON.stringify(t.value)}`;
    case 'int':
    case 'uint':
    case 'time':
      return `"v":${t.value.toString()}`;
    case 'float':
      if (!Number.isFinite(t.value)) throw new Lwm2mContentError(`${where}: ${t.value} cannot be sent in SenML JSON`);
      return `"v":${JSON.stringify(t.value)}`;
    case 'bool':
      return `"vb":${t.value}`;
    case 'opaque':
      return `"vd":"${t.value.toString('base64url')}"`;
    case 'objlnk':
      return `"vlo":"${formatObjlnk(t.value)}"`;
  }
}

/**
 * Encodes a write (see `flattenWrite` for the shapes; at the root path, a composite write keyed by full paths).
 * Names are full paths; with more than one record the target path is sent once as base name.
 */
export function encodeSenmlJson(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const records = senmlWriteRecords(path, value, model, 'SenML').map((r) => ({ name: r.name, field: valueField(r.typed, r.name) }));
  const bn = senmlBaseName(path, records.length);
  if (bn === undefined) {
    return Buffer.from('[' + records.map((r) => `{"n":${JSON.stringify(r.name)},${r.field}}`).join(',') + ']', 'utf8');
  }
  const parts = records.map((r, i) => {
    const n = JSON.stringify(r.name.slice(bn.length));
    return i === 0 ? `{"bn":${JSON.stringify(bn)},"n":${n},${r.field}}` : `{"n":${n},${r.field}}`;
  });
  return Buffer.from('[' + parts.join(',') + ']', 'utf8');
}

/** The payload of a Read-Composite / Observe-Composite request: one record per path, names only. */
export function encodeSenmlJsonPaths(paths: readonly Lwm2mPath[]): Buffer {
  return Buffer.from('[' + paths.map((p) => `{"n":${JSON.stringify(pathToString(p))}}`).join(',') + ']', 'utf8');
}
