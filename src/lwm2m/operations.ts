import { Buffer } from 'node:buffer';
import type { CoapMessage, CoapRequestInit } from '../coap';
import {
  ContentFormat, decodeContent, encodeCompositePaths, encodeContent, formatByName, formatName, parseLinkFormat, parseTextValue, unwrapSingle,
} from './content';
import type { ObjectModel } from './model';
import { parsePath, pathLevel, pathToString, type Lwm2mPath } from './path';
import type { Registration } from './registry';

export const OPERATIONS = [
  'read', 'write', 'write-update', 'write-attributes', 'discover', 'execute', 'create', 'delete',
  'observe', 'cancel-observe', 'read-composite', 'write-composite', 'observe-composite', 'cancel-observe-composite',
] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Every operation of SPEC is implemented; kept as a list for documentation and the editor. */
export const IMPLEMENTED_OPERATIONS: readonly Operation[] = OPERATIONS;

export const FORMAT_NAMES = ['auto', 'text', 'opaque', 'tlv', 'senml-json', 'senml-cbor', 'lwm2m-cbor', 'json', 'cbor'] as const;

export interface OperationInput {
  operation: string;
  /** One path, or (composite operations) several as an array or a comma-separated string. */
  path: string | string[];
  payload?: unknown;
  /** A name from FORMAT_NAMES; empty or 'auto' lets the server choose. */
  format?: string;
}

/** Bad input from a flow: which field and why. Nothing was sent. */
export class Lwm2mInputError extends Error {
  override name = 'Lwm2mInputError';
}

export interface PreparedOperation {
  operation: Operation;
  /** The target path (root `{}` for composite operations). */
  path: Lwm2mPath;
  /** Normalised path text; composite: the paths joined with ','. */
  pathString: string;
  /** Composite operations: each path. */
  paths: readonly string[];
  composite: boolean;
  coap: CoapRequestInit;
}

const COMPOSITE: readonly Operation[] = ['read-composite', 'write-composite', 'observe-composite', 'cancel-observe-composite'];

function requestedFormat(format: string | undefined): number | undefined {
  if (format === undefined || format === '' || format === 'auto') return undefined;
  let n: number | undefined;
  try {
    n = formatByName(format);
  } catch {
    n = undefined;
  }
  if (n === undefined) throw new Lwm2mInputError(`unknown format "${format}" (use one of: ${FORMAT_NAMES.join(', ')})`);
  return n;
}

/** The format to encode a write in when the flow did not choose one. */
export function autoWriteFormat(reg: Registration): number {
  if (reg.contentFormats.includes(ContentFormat.SENML_JSON)) return ContentFormat.SENML_JSON;
  if (reg.contentFormats.includes(ContentFormat.SENML_CBOR)) return ContentFormat.SENML_CBOR;
  if (reg.lwm2mVersion !== '1.0' && reg.contentFormats.length === 0) return ContentFormat.SENML_JSON;
  return ContentFormat.TLV;
}

/** Composite operations need SenML (JSON or CBOR). */
function compositeFormat(reg: Registration, requested: number | undefined): number {
  if (requested !== undefined) {
    if (requested !== ContentFormat.SENML_JSON && requested !== ContentFormat.SENML_CBOR) {
      throw new Lwm2mInputError(`composite operations use senml-json or senml-cbor, not ${formatName(requested)}`);
    }
    return requested;
  }
  if (!reg.contentFormats.includes(ContentFormat.SENML_JSON) && reg.contentFormats.includes(ContentFormat.SENML_CBOR)) {
    return ContentFormat.SENML_CBOR;
  }
  return ContentFormat.SENML_JSON;
}

/** The CoAP Uri-Path segments of an LwM2M path on a device whose objects live under `rootPath` ('' at the root). */
function coapPath(rootPath: string, pathString: string): string[] {
  return (rootPath + (pathString === '/' ? '' : pathString)).split('/').filter((s) => s !== '');
}

/** A parsed single-path target, shared by the requests naming it (frozen). */
interface Target {
  readonly path: Lwm2mPath;
  readonly pathString: string;
  readonly level: number;
  readonly paths: readonly string[];
  /** The CoAP Uri-Path segments for a device registered at the root. */
  readonly segments: readonly string[];
}

function parseTarget(text: string): Target {
  const path = Object.freeze(parseOne(text));
  const pathString = pathToString(path);
  const segments = Object.freeze(coapPath('', pathString));
  return Object.freeze({ path, pathString, level: pathLevel(path), paths: Object.freeze([pathString]), segments });
}

/**
 * Parsed single-path targets by the text the flow gave (a fleet is read over and over at the same few paths), so a
 * request does not parse and split its path again. Bounded: emptied when it reaches `max` texts. One per server.
 */
export class TargetCache {
  private readonly map = new Map<string, Target>();

  constructor(private readonly max = 1024) {}

  get(text: string): Target {
    let t = this.map.get(text);
    if (!t) {
      t = parseTarget(text); // throws for a bad path: nothing is cached
      if (this.map.size >= this.max) this.map.clear();
      this.map.set(text, t);
    }
    return t;
  }
}

function parseOne(text: string): Lwm2mPath {
  try {
    return parsePath(text);
  } catch (err) {
    throw new Lwm2mInputError(`bad path "${text}": ${(err as Error).message}`);
  }
}

function pathList(input: string | string[]): string[] {
  const list = Array.isArray(input) ? input : String(input).split(',');
  const out = list.map((p) => (typeof p === 'string' ? p.trim() : '')).filter((p) => p !== '');
  if (out.length === 0) throw new Lwm2mInputError('composite operations need one or more paths in msg.topic (an array, or comma-separated)');
  return out.map((p) => pathToString(parseOne(p)));
}

/** write-attributes: names, value kinds and the version that introduced them (LwM2M TS Core §5.1.2). */
const ATTRIBUTES: Record<string, { kind: 'uint' | 'number' | 'flag'; since: string }> = {
  pmin: { kind: 'uint', since: '1.0' },
  pmax: { kind: 'uint', since: '1.0' },
  gt: { kind: 'number', since: '1.0' },
  lt: { kind: 'number', since: '1.0' },
  st: { kind: 'number', since: '1.0' },
  epmin: { kind: 'uint', since: '1.1' },
  epmax: { kind: 'uint', since: '1.1' },
  edge: { kind: 'flag', since: '1.2' },
  con: { kind: 'flag', since: '1.2' },
  hqmax: { kind: 'uint', since: '1.2' },
};

/** Validates write-attributes input and returns the Uri-Query entries. `null` clears an attribute. */
export function attributeQuery(payload: unknown, path: Lwm2mPath, reg: Registration, model: ObjectModel): string[] {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload) || Buffer.isBuffer(payload)) {
    throw new Lwm2mInputError('write-attributes needs an object in msg.payload, e.g. {"pmin": 5, "pmax": 60}');
  }
  const attrs = payload as Record<string, unknown>;
  const names = Object.keys(attrs);
  if (names.length === 0) throw new Lwm2mInputError('write-attributes needs at least one attribute');
  const level = pathLevel(path);
  if (level === 0) throw new Lwm2mInputError('write-attributes needs an object, instance or resource path');
  const res = path.resourceId !== undefined && path.objectId !== undefined ? model.resource(path.objectId, path.resourceId) : undefined;
  const values: Record<string, number | null> = {};
  const query: string[] = [];
  for (const name of names) {
    const spec = ATTRIBUTES[name];
    if (!spec) throw new Lwm2mInputError(`unknown attribute "${name}" (use: ${Object.keys(ATTRIBUTES).join(', ')})`);
    if (spec.since > reg.lwm2mVersion) {
      throw new Lwm2mInputError(`attribute "${name}" needs LwM2M ${spec.since}; device "${reg.endpoint}" registered with ${reg.lwm2mVersion}`);
    }
    const raw = attrs[name];
    if (raw === null || raw === undefined) {
      values[name] = null;
      query.push(name);
      continue;
    }
    const v = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : typeof raw === 'boolean' ? Number(raw) : raw;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Lwm2mInputError(`attribute "${name}" must be a number, got ${JSON.stringify(raw)}`);
    if (spec.kind === 'uint' && (!Number.isInteger(v) || v < 0)) throw new Lwm2mInputError(`attribute "${name}" must be a whole number of seconds ≥ 0, got ${v}`);
    if (spec.kind === 'flag' && v !== 0 && v !== 1) throw new Lwm2mInputError(`attribute "${name}" must be 0 or 1 (or a boolean), got ${v}`);
    if (name === 'st' && v <= 0) throw new Lwm2mInputError(`attribute "st" (step) must be greater than 0, got ${v}`);
    values[name] = v;
    query.push(`${name}=${v}`);
  }
  const set = (n: string): number | undefined => (typeof values[n] === 'number' ? (values[n] as number) : undefined);
  const [pmin, pmax, epmin, epmax, gt, lt, st] = ['pmin', 'pmax', 'epmin', 'epmax', 'gt', 'lt', 'st'].map(set);
  if (pmin !== undefined && pmax !== undefined && pmax < pmin) throw new Lwm2mInputError(`pmax (${pmax}) must not be less than pmin (${pmin})`);
  if (epmin !== undefined && epmax !== undefined && epmax <= epmin) throw new Lwm2mInputError(`epmax (${epmax}) must be greater than epmin (${epmin})`);
  const numeric = ['gt', 'lt', 'st'].filter((n) => n in values);
  if (numeric.length > 0) {
    if (level < 3) throw new Lwm2mInputError(`attributes ${numeric.join(', ')} apply to a numeric resource, not to ${pathToString(path)}`);
    if (res && !['Integer', 'Unsigned Integer', 'Float'].includes(res.type)) {
      throw new Lwm2mInputError(`attributes ${numeric.join(', ')} apply to numeric resources; ${pathToString(path)} (${res.name}) is ${res.type}`);
    }
  }
  if (gt !== undefined && lt !== undefined) {
    if (lt >= gt) throw new Lwm2mInputError(`lt (${lt}) must be less than gt (${gt})`);
    if (st !== undefined && lt + 2 * st >= gt) throw new Lwm2mInputError(`lt + 2×st (${lt + 2 * st}) must be less than gt (${gt})`);
  }
  if ('edge' in values) {
    if (level < 3) throw new Lwm2mInputError(`attribute "edge" applies to a boolean resource, not to ${pathToString(path)}`);
    if (res && res.type !== 'Boolean') throw new Lwm2mInputError(`attribute "edge" applies to boolean resources; ${pathToString(path)} (${res.name}) is ${res.type}`);
  }
  return query;
}

/** Type and operation checks from the object model, before anything is sent. */
function checkValue(path: Lwm2mPath, value: unknown, model: ObjectModel, operation: string): void {
  if (path.objectId !== undefined && path.resourceId !== undefined) {
    const res = model.resource(path.objectId, path.resourceId);
    if (res && !res.operations.includes('W')) {
      throw new Lwm2mInputError(`resource ${pathToString(path)} (${res.name}) is not writable (operations: ${res.operations || 'none'}); ${operation} refused`);
    }
  }
  try {
    model.checkWritable(path, value, { operation: operation === 'create' ? 'create' : 'write' });
  } catch (err) {
    throw new Lwm2mInputError(`${operation} ${pathToString(path)}: ${(err as Error).message}`);
  }
}

function encode(cf: number, path: Lwm2mPath, value: unknown, model: ObjectModel, operation: string): Buffer {
  try {
    return encodeContent(cf, path, value, model);
  } catch (err) {
    throw new Lwm2mInputError(`cannot encode msg.payload as ${formatName(cf)} for ${operation} ${pathToString(path)}: ${(err as Error).message}`);
  }
}

/** Validates the flow's input and builds the CoAP request for it. Throws Lwm2mInputError before anything is sent. */
export function prepareOperation(input: OperationInput, reg: Registration, model: ObjectModel, targets?: TargetCache): PreparedOperation {
  const operation = input.operation as Operation;
  if (typeof input.operation !== 'string' || !OPERATIONS.includes(operation)) {
    throw new Lwm2mInputError(`unknown operation "${String(input.operation)}" (use one of: ${OPERATIONS.join(', ')})`);
  }
  if (input.path === undefined || input.path === null || input.path === '' || (Array.isArray(input.path) && input.path.length === 0)) {
    throw new Lwm2mInputError('missing path: set msg.topic (or the node\'s path) to an LwM2M path such as /3/0/0');
  }
  const format = requestedFormat(input.format);

  if (COMPOSITE.includes(operation)) {
    const root: Lwm2mPath = {};
    const uri = coapPath(reg.rootPath, '/');
    const cf = compositeFormat(reg, format);
    if (operation === 'write-composite') {
      const value = input.payload;
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new Lwm2mInputError('write-composite needs an object keyed by full path in msg.payload, e.g. {"/1/0/1": 600, "/3/0/14": "+02"}');
      }
      const paths = Object.keys(value).map((p) => pathToString(parseOne(p)));
      for (const p of paths) checkValue(parsePath(p), (value as Record<string, unknown>)[p], model, operation);
      const payload = encode(cf, root, value, model, operation);
      return { operation, path: root, pathString: paths.join(','), paths, composite: true, coap: { method: 'iPATCH', path: uri, contentFormat: cf, payload } };
    }
    const paths = pathList(input.path);
    let payload: Buffer;
    try {
      payload = encodeCompositePaths(cf, paths.map((p) => parsePath(p)));
    } catch (err) {
      throw new Lwm2mInputError(`cannot encode the path list as ${formatName(cf)}: ${(err as Error).message}`);
    }
    const observe = operation === 'observe-composite' ? 0 : operation === 'cancel-observe-composite' ? 1 : undefined;
    return {
      operation, path: root, pathString: paths.join(','), paths, composite: true,
      coap: { method: 'FETCH', path: uri, contentFormat: cf, accept: cf, payload, observe },
    };
  }

  if (Array.isArray(input.path)) throw new Lwm2mInputError(`${operation} takes one path, not a list`);
  const target = targets ? targets.get(String(input.path)) : parseTarget(String(input.path));
  const { path, pathString, level } = target;
  const uri = reg.rootPath === '' ? target.segments : coapPath(reg.rootPath, pathString);
  if (level === 0) throw new Lwm2mInputError(`${operation} needs an object, instance or resource path, not "/"`);
  if (operation === 'read') {
    // the most frequent operation: one object, no copies
    return { operation, path, pathString, paths: target.paths, composite: false, coap: { method: 'GET', path: uri, accept: format } };
  }
  const base = { operation, path, pathString, paths: target.paths, composite: false };

  switch (operation) {
    case 'observe':
      return { ...base, coap: { method: 'GET', path: uri, accept: format, observe: 0 } };
    case 'cancel-observe':
      return { ...base, coap: { method: 'GET', path: uri, accept: format, observe: 1 } };
    case 'discover':
      return { ...base, coap: { method: 'GET', path: uri, accept: ContentFormat.LINK } };
    case 'delete':
      if (level !== 2) throw new Lwm2mInputError(`delete needs an object instance path like /31024/7, got "${pathString}"`);
      return { ...base, coap: { method: 'DELETE', path: uri } };
    case 'write-attributes':
      return { ...base, coap: { method: 'PUT', path: uri, query: attributeQuery(input.payload, path, reg, model) } };
    case 'execute': {
      if (level !== 3) throw new Lwm2mInputError(`execute needs a resource path like /3/0/4, got "${pathString}"`);
      const res = model.resource(path.objectId as number, path.resourceId as number);
      if (res && res.operations !== 'E') throw new Lwm2mInputError(`resource ${pathString} (${res.name}) is not executable`);
      let args: Buffer | undefined;
      if (input.payload !== undefined && input.payload !== null && input.payload !== '') {
        if (typeof input.payload !== 'string') throw new Lwm2mInputError('execute arguments (msg.payload) must be a string, e.g. "0=\'a\',1"');
        args = Buffer.from(input.payload, 'utf8');
      }
      return { ...base, coap: { method: 'POST', path: uri, payload: args } };
    }
    case 'create': {
      if (level !== 1) throw new Lwm2mInputError(`create needs an object path like /31024, got "${pathString}"`);
      const value = input.payload;
      if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
        throw new Lwm2mInputError('create needs an object in msg.payload: {"/31024/7/1": 42} (instance 7) or {"1": 42} (the device picks the instance)');
      }
      checkValue(path, value, model, operation);
      const cf = format ?? autoWriteFormat(reg);
      return { ...base, coap: { method: 'POST', path: uri, contentFormat: cf, payload: encode(cf, path, value, model, operation) } };
    }
    case 'write':
    case 'write-update': {
      if (level < 2) throw new Lwm2mInputError(`${operation} needs an object instance or resource path, got "${pathString}"`);
      if (input.payload === undefined || input.payload === null) throw new Lwm2mInputError(`${operation} needs a value in msg.payload`);
      checkValue(path, input.payload, model, operation);
      const cf = format ?? autoWriteFormat(reg);
      const method = operation === 'write' ? 'PUT' : 'POST';
      return { ...base, coap: { method, path: uri, contentFormat: cf, payload: encode(cf, path, input.payload, model, operation) } };
    }
    default:
      throw new Lwm2mInputError(`operation "${operation}" is not supported`);
  }
}

/** Turns the device's answer (or a notification) into the msg.payload value the flow gets. */
export function decodeResult(op: PreparedOperation, res: CoapMessage, model: ObjectModel): unknown {
  if (res.payload.length === 0) return undefined;
  if (op.operation === 'discover' || res.contentFormat === ContentFormat.LINK) {
    const out: Record<string, Record<string, string | true>> = {};
    for (const link of parseLinkFormat(res.payload.toString('utf8'))) out[link.uri] = link.attributes;
    return out;
  }
  const cf = res.contentFormat ?? ContentFormat.TEXT;
  if (cf === ContentFormat.TEXT && !op.composite && pathLevel(op.path) >= 3) {
    // One Resource as text, the commonest answer: its value directly (what unwrapSingle would take out of the
    // record decodeContent makes). A value that does not parse goes the general way, which reports it in context.
    try {
      return parseTextValue(res.payload.toString('utf8'), model.resource(op.path.objectId as number, op.path.resourceId as number)?.type, op.pathString);
    } catch {
      // reported below
    }
  }
  const values = decodeContent(cf, res.payload, op.path, model);
  return op.composite ? values : unwrapSingle(values, op.path);
}
