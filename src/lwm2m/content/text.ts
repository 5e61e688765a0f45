/**
 * Plain text (Content-Format 0) and opaque (42) for single Resources and Resource Instances
 * (LwM2M Core TS §7.4.1, §7.4.2, Appendix C).
 *
 * Text representation by type: String/Corelnk as is (UTF-8); Integer, Unsigned Integer and Time (seconds
 * since 1970) in decimal; Float in decimal or exponent notation; Boolean `1`/`0` (`true`/`false` also read);
 * Objlnk `objectId:instanceId`; Opaque base64. A Resource unknown to the model is read as a string.
 */
import { Buffer } from 'node:buffer';
import { Lwm2mPath, pathLevel, pathToString } from '../path';
import { ObjectModel } from '../model/object-model';
import { ResourceType } from '../model/types';
import { Lwm2mContentError } from './errors';
import { INT64_MAX, INT64_MIN, Lwm2mValue, UINT64_MAX, formatObjlnk, intValue, parseObjlnk, timeValue, toTyped } from './values';
import { isContainer } from './write-values';

function requireSingle(path: Lwm2mPath, fmt: string): void {
  const level = pathLevel(path);
  if (level < 3) {
    throw new Lwm2mContentError(`${fmt} carries one Resource value; the path ${pathToString(path)} is not a Resource`);
  }
}

function resourceType(path: Lwm2mPath, model: ObjectModel): ResourceType | undefined {
  return model.resource(path.objectId as number, path.resourceId as number)?.type;
}

const BASE64_RE = /^[A-Za-z0-9+/\-_]*={0,2}$/;

/** Strict base64 (standard or URL-safe alphabet, padding optional) → bytes. */
export function decodeBase64(s: string, where: string): Buffer {
  const t = s.replace(/\s+/g, '');
  if (!BASE64_RE.test(t) || t.replace(/=+$/, '').length % 4 === 1) {
    throw new Lwm2mContentError(`${where}: not valid base64`);
  }
  return Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** Parses the text form of one value by Resource type. */
export function parseTextValue(s: string, type: ResourceType | undefined, where: string): Lwm2mValue {
  const t = s.trim();
  const bad = (expected: string): never => {
    const shown = JSON.stringify(s.length > 40 ? s.slice(0, 40) + '…' : s);
    throw new Lwm2mContentError(`${where}: ${shown} is not a valid ${type} (${expected})`);
  };
  switch (type) {
    case 'Integer':
    case 'Unsigned Integer': {
      if (!/^[+-]?[0-9]+$/.test(t)) return bad('decimal integer');
      const v = BigInt(t);
      const [min, max] = type === 'Integer' ? [INT64_MIN, INT64_MAX] : [0n, UINT64_MAX];
      if (v < min || v > max) return bad(`${min}..${max}`);
      return intValue(v);
    }
    case 'Float': {
      if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(t)) return bad('decimal number');
      return Number(t);
    }
    case 'Boolean':
      if (t === '1' || t.toLowerCase() === 'true') return true;
      if (t === '0' || t.toLowerCase() === 'false') return false;
      return bad('1 or 0');
    case 'Time': {
      if (/^[+-]?[0-9]+(\.[0-9]+)?$/.test(t)) return timeValue(Number(t), where);
      const ms = Date.parse(t);
      if (t !== '' && !Number.isNaN(ms)) return new Date(ms);
      return bad('seconds since 1970');
    }
    case 'Objlnk': {
      const o = parseObjlnk(t);
      return o ?? bad('objectId:instanceId');
    }
    case 'Opaque':
      return decodeBase64(s, where);
    default:
      return s;
  }
}

export function decodeText(payload: Buffer, path: Lwm2mPath, model: ObjectModel): Record<string, Lwm2mValue> {
  requireSingle(path, 'text/plain');
  const key = pathToString(path);
  return { [key]: parseTextValue(payload.toString('utf8'), resourceType(path, model), key) };
}

export function encodeText(path: Lwm2mPath, value: unknown, model: ObjectModel): Buffer {
  requireSingle(path, 'text/plain');
  const key = pathToString(path);
  const type = resourceType(path, model);
  if (isContainer(value)) throw new Lwm2mContentError(`${key}: text/plain carries one value, got an object or array`);
  const t = toTyped(value, type, type ? `${key} (${type})` : key);
  switch (t.kind) {
    case 'string':
      return Buffer.from(t.value, 'utf8');
    case 'int':
    case 'uint':
    case 'time':
      return Buffer.from(t.value.toString(), 'utf8');
    case 'float':
      if (!Number.isFinite(t.value)) throw new Lwm2mContentError(`${key}: ${t.value} has no text representation`);
      return Buffer.from(String(t.value), 'utf8');
    case 'bool':
      return Buffer.from(t.value ? '1' : '0', 'utf8');
    case 'opaque':
      return Buffer.from(t.value.toString('base64'), 'utf8');
    case 'objlnk':
      return Buffer.from(formatObjlnk(t.value), 'utf8');
  }
}

export function decodeOpaque(payload: Buffer, path: Lwm2mPath): Record<string, Lwm2mValue> {
  requireSingle(path, 'application/octet-stream');
  return { [pathToString(path)]: Buffer.from(payload) };
}

/** Opaque write: a Buffer, Uint8Array, `{type:'Buffer', data}` or a string (sent as UTF-8). */
export function encodeOpaque(path: Lwm2mPath, value: unknown): Buffer {
  requireSingle(path, 'application/octet-stream');
  const key = pathToString(path);
  const t = toTyped(value, 'Opaque', `${key} (opaque)`);
  return Buffer.from(t.value as Buffer);
}
