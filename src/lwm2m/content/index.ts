/**
 * LwM2M content formats: payload ⇄ values keyed by full path.
 *
 * Every LwM2M format, both ways: text/plain (0), opaque (42), CBOR (60, one value), SenML JSON (110),
 * SenML CBOR (112), OMA-TLV (11542), LwM2M JSON (11543, the 1.0 JSON format) and LwM2M CBOR (11544, 1.2);
 * link-format (40) is decoded only (servers do not send it).
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, Lwm2mPathError, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { Lwm2mContentError } from './errors';
import { ContentFormat, formatName, normalizeFormat } from './formats';
import { decodeOpaque, decodeText, encodeOpaque, encodeText } from './text';
import { decodeTlv, encodeTlv } from './tlv';
import { decodeSenmlJson, encodeSenmlJson, encodeSenmlJsonPaths } from './senml-json';
import { decodeSenmlCbor, encodeSenmlCbor, encodeSenmlCborPaths } from './senml-cbor';
import { decodeCborValue, encodeCborValue } from './cbor';
import { decodeLwm2mJson, encodeLwm2mJson } from './lwm2m-json';
import { decodeLwm2mCbor, encodeLwm2mCbor } from './lwm2m-cbor';
import { Lwm2mValue, describeValue } from './values';

export { Lwm2mContentError } from './errors';
export { ContentFormat, formatByName, formatName, formatMediaType, normalizeFormat } from './formats';
export type { ContentFormatNumber } from './formats';
export type { Lwm2mValue, Lwm2mObjlnk, TypedValue } from './values';
export { isObjlnk, parseObjlnk, formatObjlnk, toTyped } from './values';
export { parseLinkFormat } from './link-format';
export type { Link } from './link-format';
export { readTlv, writeTlv, decodeTlvValue, encodeTlvValue, TlvType } from './tlv';
export type { TlvEntry } from './tlv';
export { decodeSenmlJsonRecords, encodeSenmlJsonPaths } from './senml-json';
export type { SenmlRecord, SenmlValueKind } from './senml';
export { decodeSenmlCborRecords, encodeSenmlCborPaths, SENML_CBOR_LABELS } from './senml-cbor';
export { decodeLwm2mJsonRecords } from './lwm2m-json';
export { CborWriter, decodeCbor } from './cbor';
export { flattenWrite, isContainer } from './write-values';
export type { WriteEntry } from './write-values';
export { parseTextValue } from './text';

function checkPath(path: Lwm2mPath): string {
  try {
    pathLevel(path);
    return pathToString(path);
  } catch (e) {
    throw new Lwm2mContentError((e as Lwm2mPathError).message);
  }
}

/**
 * Re-throws anything that is not already a `Lwm2mContentError` as one, with context (`what` is called only then,
 * so the message costs nothing when all goes well).
 */
function guard<T>(what: () => string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Lwm2mContentError) throw e;
    throw new Lwm2mContentError(`${what()}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * Decodes a payload a device sent in answer to a request on `path` (or in a notification / Send) into values
 * keyed by full path (`'/3/0/0'`); a single Resource read gives one key, a multiple-instance Resource one key
 * per instance (`'/3/0/6/0'`). Link-format gives the payload text under the request path (use
 * `parseLinkFormat` for its structure). Throws only `Lwm2mContentError`.
 */
export function decodeContent(
  format: number,
  payload: Buffer | Uint8Array,
  path: Lwm2mPath,
  model: ObjectModel,
): Record<string, Lwm2mValue> {
  const here = checkPath(path);
  const fmt = normalizeFormat(format);
  if (!(payload instanceof Uint8Array)) throw new Lwm2mContentError(`payload must be a Buffer, got ${describeValue(payload)}`);
  const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return guard(() => `cannot decode ${formatName(format)} payload for ${here}`, () => {
    switch (fmt) {
      case ContentFormat.TEXT:
        return decodeText(buf, path, model);
      case ContentFormat.OPAQUE:
        return decodeOpaque(buf, path);
      case ContentFormat.TLV:
        return decodeTlv(buf, path, model);
      case ContentFormat.SENML_JSON:
        return decodeSenmlJson(buf, path, model);
      case ContentFormat.LINK:
        return { [here]: buf.toString('utf8') };
      case ContentFormat.CBOR:
        return decodeCborValue(buf, path, model);
      case ContentFormat.SENML_CBOR:
        return decodeSenmlCbor(buf, path, model);
      case ContentFormat.LWM2M_JSON:
        return decodeLwm2mJson(buf, path, model);
      case ContentFormat.LWM2M_CBOR:
        return decodeLwm2mCbor(buf, path, model);
      default:
        throw new Lwm2mContentError(`unknown content format ${format}`);
    }
  });
}

/**
 * Encodes a value to write to `path`: a single value for a Resource (Instance) path; for a multiple-instance
 * Resource an array or `{ "<instance id>": value }`; for an Object Instance (or Object, for Create) a record
 * keyed by full path (`{"/1/0/1": 600}`) or Resource ID (`{"1": 600}`); for the root path (composite write, SenML
 * only) a record keyed by full path. Values are converted to the Resource type from the model (or from their JS
 * type when the Resource is unknown). Throws `Lwm2mContentError` for values that do not fit.
 */
export function encodeContent(format: number, path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  const here = checkPath(path);
  const fmt = normalizeFormat(format);
  return guard(() => `cannot encode ${formatName(format)} for ${here}`, () => {
    switch (fmt) {
      case ContentFormat.TEXT:
        return encodeText(path, value, model);
      case ContentFormat.OPAQUE:
        return encodeOpaque(path, value);
      case ContentFormat.TLV:
        return encodeTlv(path, value, model);
      case ContentFormat.SENML_JSON:
        return encodeSenmlJson(path, value, model);
      case ContentFormat.LINK:
        throw new Lwm2mContentError('link-format is only decoded (servers do not send it)');
      case ContentFormat.CBOR:
        return encodeCborValue(path, value, model);
      case ContentFormat.SENML_CBOR:
        return encodeSenmlCbor(path, value, model);
      case ContentFormat.LWM2M_JSON:
        return encodeLwm2mJson(path, value, model);
      case ContentFormat.LWM2M_CBOR:
        return encodeLwm2mCbor(path, value, model);
      default:
        throw new Lwm2mContentError(`unknown content format ${format}`);
    }
  });
}

/**
 * The payload of a Read-Composite / Observe-Composite request naming `paths`, in SenML JSON or SenML CBOR (the
 * formats LwM2M defines for it). Throws `Lwm2mContentError` for other formats.
 */
export function encodeCompositePaths(format: number, paths: readonly Lwm2mPath[]): Buffer {
  paths.forEach(checkPath);
  const fmt = normalizeFormat(format);
  if (fmt === ContentFormat.SENML_JSON) return encodeSenmlJsonPaths(paths);
  if (fmt === ContentFormat.SENML_CBOR) return encodeSenmlCborPaths(paths);
  throw new Lwm2mContentError(
    `a composite request names its paths in senml-json or senml-cbor, not ${formatName(format)}`,
  );
}

/**
 * SPEC output shape: when the request path is a single Resource (or Resource Instance) and exactly that key
 * came back, its value; otherwise the record keyed by full path (also for a multiple-instance Resource, whose
 * keys are its instances).
 */
export function unwrapSingle(
  values: Record<string, Lwm2mValue>,
  path: Lwm2mPath,
): Lwm2mValue | Record<string, Lwm2mValue> {
  if (pathLevel(path) < 3) return values;
  const keys = Object.keys(values);
  const key = pathToString(path);
  if (keys.length === 1 && keys[0] === key) return values[key] as Lwm2mValue;
  return values;
}
