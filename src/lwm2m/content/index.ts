/**
 * LwM2M content formats: payload ⇄ values keyed by full path.
 *
 * Supported here: text/plain (0), link-format (40, decode), opaque (42), SenML JSON (110), OMA-TLV (11542).
 * CBOR (60), SenML CBOR (112), LwM2M JSON (11543) and LwM2M CBOR (11544) are recognised and refused with a
 * clear `Lwm2mContentError` until their codecs exist.
 */
import { Lwm2mPath, Lwm2mPathError, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { Lwm2mContentError } from './errors';
import { ContentFormat, formatName, normalizeFormat } from './formats';
import { decodeOpaque, decodeText, encodeOpaque, encodeText } from './text';
import { decodeTlv, encodeTlv } from './tlv';
import { decodeSenmlJson, encodeSenmlJson, encodeSenmlJsonPaths } from './senml-json';
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
export type { SenmlRecord, SenmlValueKind } from './senml-json';
export { flattenWrite, isContainer } from './write-values';
export type { WriteEntry } from './write-values';
export { parseTextValue } from './text';

function unsupported(format: number): never {
  throw new Lwm2mContentError(`content format ${format} (${formatName(format)}) is not supported yet`);
}

function checkPath(path: Lwm2mPath): string {
  try {
    pathLevel(path);
    return pathToString(path);
  } catch (e) {
    throw new Lwm2mContentError((e as Lwm2mPathError).message);
  }
}

/** Re-throws anything that is not already a `Lwm2mContentError` as one, with context. */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Lwm2mContentError) throw e;
    throw new Lwm2mContentError(`${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
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
  return guard(`cannot decode ${formatName(format)} payload for ${here}`, () => {
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
      case ContentFormat.SENML_CBOR:
      case ContentFormat.LWM2M_JSON:
      case ContentFormat.LWM2M_CBOR:
        return unsupported(format);
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
  return guard(`cannot encode ${formatName(format)} for ${here}`, () => {
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
      case ContentFormat.SENML_CBOR:
      case ContentFormat.LWM2M_JSON:
      case ContentFormat.LWM2M_CBOR:
        return unsupported(format);
      default:
        throw new Lwm2mContentError(`unknown content format ${format}`);
    }
  });
}

/**
 * The payload of a Read-Composite / Observe-Composite request naming `paths` (SenML JSON for now).
 * Throws `Lwm2mContentError` for other formats.
 */
export function encodeCompositePaths(format: number, paths: readonly Lwm2mPath[]): Buffer {
  paths.forEach(checkPath);
  if (normalizeFormat(format) === ContentFormat.SENML_JSON) return encodeSenmlJsonPaths(paths);
  return unsupported(format);
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
