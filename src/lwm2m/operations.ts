import type { CoapMessage, CoapRequestInit } from '../coap';
import { ContentFormat, decodeContent, encodeContent, formatByName, formatName, parseLinkFormat, unwrapSingle } from './content';
import type { ObjectModel } from './model';
import { parsePath, pathToString, type Lwm2mPath } from './path';
import type { Registration } from './registry';

export const OPERATIONS = [
  'read', 'write', 'write-update', 'write-attributes', 'discover', 'execute', 'create', 'delete',
  'observe', 'cancel-observe', 'read-composite', 'write-composite', 'observe-composite', 'cancel-observe-composite',
] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Operations this version sends; the others are refused with a clear error before anything is sent. */
export const IMPLEMENTED_OPERATIONS: readonly Operation[] = ['read', 'write', 'write-update', 'discover', 'execute'];

export const FORMAT_NAMES = ['auto', 'text', 'opaque', 'tlv', 'senml-json', 'senml-cbor', 'lwm2m-cbor', 'json', 'cbor'] as const;

export interface OperationInput {
  operation: string;
  path: string;
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
  path: Lwm2mPath;
  pathString: string;
  coap: CoapRequestInit;
}

function requestedFormat(format: string | undefined): number | undefined {
  if (format === undefined || format === '' || format === 'auto') return undefined;
  const n = formatByName(format);
  if (n === undefined) throw new Lwm2mInputError(`unknown format "${format}" (use one of: ${FORMAT_NAMES.join(', ')})`);
  return n;
}

/** The format to encode a write in when the flow did not choose one. */
export function autoWriteFormat(reg: Registration): number {
  if (reg.contentFormats.includes(ContentFormat.SENML_JSON)) return ContentFormat.SENML_JSON;
  return ContentFormat.TLV;
}

function coapPath(reg: Registration, pathString: string): string[] {
  const full = (reg.rootPath + pathString).split('/').filter((s) => s !== '');
  return full;
}

/** Validates the flow's input and builds the CoAP request for it. */
export function prepareOperation(input: OperationInput, reg: Registration, model: ObjectModel): PreparedOperation {
  const operation = input.operation as Operation;
  if (typeof input.operation !== 'string' || !OPERATIONS.includes(operation)) {
    throw new Lwm2mInputError(`unknown operation "${String(input.operation)}" (use one of: ${OPERATIONS.join(', ')})`);
  }
  if (!IMPLEMENTED_OPERATIONS.includes(operation)) {
    throw new Lwm2mInputError(`operation "${operation}" is not supported yet (supported: ${IMPLEMENTED_OPERATIONS.join(', ')})`);
  }
  if (typeof input.path !== 'string' || input.path === '') {
    throw new Lwm2mInputError('missing path: set msg.topic (or the node\'s path) to an LwM2M path such as /3/0/0');
  }
  let path: Lwm2mPath;
  try {
    path = parsePath(input.path);
  } catch (err) {
    throw new Lwm2mInputError(`bad path "${input.path}": ${(err as Error).message}`);
  }
  const pathString = pathToString(path);
  const format = requestedFormat(input.format);
  const uri = coapPath(reg, pathString);

  switch (operation) {
    case 'read':
      return { operation, path, pathString, coap: { method: 'GET', path: uri, accept: format } };
    case 'discover':
      return { operation, path, pathString, coap: { method: 'GET', path: uri, accept: ContentFormat.LINK } };
    case 'execute': {
      if (path.resourceId === undefined || path.resourceInstanceId !== undefined) {
        throw new Lwm2mInputError(`execute needs a resource path like /3/0/4, got "${pathString}"`);
      }
      const res = path.objectId !== undefined ? model.resource(path.objectId, path.resourceId) : undefined;
      if (res && res.operations !== 'E') throw new Lwm2mInputError(`resource ${pathString} (${res.name}) is not executable`);
      let args: Buffer | undefined;
      if (input.payload !== undefined && input.payload !== null && input.payload !== '') {
        if (typeof input.payload !== 'string') throw new Lwm2mInputError('execute arguments (msg.payload) must be a string, e.g. "0=\'a\',1"');
        args = Buffer.from(input.payload, 'utf8');
      }
      return { operation, path, pathString, coap: { method: 'POST', path: uri, payload: args } };
    }
    case 'write':
    case 'write-update': {
      if (path.objectId === undefined || path.instanceId === undefined) {
        throw new Lwm2mInputError(`${operation} needs an object instance or resource path, got "${pathString}"`);
      }
      if (input.payload === undefined || input.payload === null) throw new Lwm2mInputError(`${operation} needs a value in msg.payload`);
      if (path.resourceId !== undefined) {
        const res = model.resource(path.objectId, path.resourceId);
        if (res && !res.operations.includes('W')) {
          throw new Lwm2mInputError(`resource ${pathString} (${res.name}) is not writable (operations: ${res.operations || 'none'})`);
        }
      }
      const cf = format ?? autoWriteFormat(reg);
      let payload: Buffer;
      try {
        payload = encodeContent(cf, path, input.payload, model);
      } catch (err) {
        throw new Lwm2mInputError(`cannot encode msg.payload as ${formatName(cf)} for ${pathString}: ${(err as Error).message}`);
      }
      const method = operation === 'write' ? 'PUT' : 'POST';
      return { operation, path, pathString, coap: { method, path: uri, contentFormat: cf, payload } };
    }
    default:
      throw new Lwm2mInputError(`operation "${operation}" is not supported yet`);
  }
}

/** Turns the device's answer into the msg.payload value the flow gets. */
export function decodeResult(op: PreparedOperation, res: CoapMessage, model: ObjectModel): unknown {
  if (res.payload.length === 0) return undefined;
  if (op.operation === 'discover' || res.contentFormat === ContentFormat.LINK) {
    const out: Record<string, Record<string, string | true>> = {};
    for (const link of parseLinkFormat(res.payload.toString('utf8'))) out[link.uri] = link.attributes;
    return out;
  }
  const cf = res.contentFormat ?? ContentFormat.TEXT;
  const values = decodeContent(cf, res.payload, op.path, model);
  return unwrapSingle(values, op.path);
}
