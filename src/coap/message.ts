/**
 * CoAP message encoding and decoding (RFC 7252 §3, RFC 7641 Observe, RFC 7959 Block options).
 *
 * Both are done here in one pass. Decoding checks the structure as it reads (anything RFC 7252 calls a message format
 * error is rejected, where coap-packet's parser is lenient about truncated options, reserved token lengths and a
 * payload marker without payload) and keeps views into the datagram; encoding writes into a buffer of the exact size.
 * The tests compare both with coap-packet (its parse and generate) on random messages.
 */
import { Buffer } from 'node:buffer';
import { CoapFormatError } from './errors';

export type CoapMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'FETCH' | 'PATCH' | 'iPATCH';
export type CoapType = 'CON' | 'NON' | 'ACK' | 'RST';

/** One option: a coap-packet option name ('Uri-Path', 'Content-Format', 'Observe', ...) or a numeric string. */
export interface CoapOption {
  name: string;
  value: Buffer;
}

/** Anything received, decoded. */
export interface CoapMessage {
  /** 'c.dd', e.g. '0.01' for GET, '2.05' for Content, '0.00' for an empty message. */
  code: string;
  type: CoapType;
  messageId: number;
  token: Buffer;
  options: CoapOption[];
  payload: Buffer;
  /** Uri-Path, Uri-Query and Location-Path segments; read-only (an empty list is shared between messages). */
  path: readonly string[];
  query: readonly string[];
  contentFormat?: number;
  accept?: number;
  observe?: number;
  locationPath: readonly string[];
}

/** What `encodeMessage` puts on the wire. */
export interface OutgoingMessage {
  type: CoapType;
  /** 'c.dd' code, a method name, or a response code name such as 'Content'. */
  code: string;
  messageId: number;
  token?: Buffer;
  options?: CoapOption[];
  payload?: Buffer;
}

/** Option numbers (RFC 7252 §12.2, RFC 7641, RFC 7959, RFC 7967). */
export const OptionNumber = {
  IfMatch: 1,
  UriHost: 3,
  ETag: 4,
  IfNoneMatch: 5,
  Observe: 6,
  UriPort: 7,
  LocationPath: 8,
  Oscore: 9,
  UriPath: 11,
  ContentFormat: 12,
  MaxAge: 14,
  UriQuery: 15,
  HopLimit: 16,
  Accept: 17,
  QBlock1: 19,
  LocationQuery: 20,
  Block2: 23,
  Block1: 27,
  Size2: 28,
  QBlock2: 31,
  ProxyUri: 35,
  ProxyScheme: 39,
  Size1: 60,
  NoResponse: 258,
} as const;

const NAME_TO_NUMBER: ReadonlyMap<string, number> = new Map([
  ['If-Match', 1],
  ['Uri-Host', 3],
  ['ETag', 4],
  ['If-None-Match', 5],
  ['Observe', 6],
  ['Uri-Port', 7],
  ['Location-Path', 8],
  ['OSCORE', 9],
  ['Uri-Path', 11],
  ['Content-Format', 12],
  ['Max-Age', 14],
  ['Uri-Query', 15],
  ['Hop-Limit', 16],
  ['Accept', 17],
  ['Q-Block1', 19],
  ['Location-Query', 20],
  ['Block2', 23],
  ['Block1', 27],
  ['Size2', 28],
  ['Q-Block2', 31],
  ['Proxy-Uri', 35],
  ['Proxy-Scheme', 39],
  ['Size1', 60],
  ['No-Response', 258],
  ['OCF-Accept-Content-Format-Version', 2049],
  ['OCF-Content-Format-Version', 2053],
]);
const NUMBER_TO_NAME: ReadonlyMap<number, string> = new Map([...NAME_TO_NUMBER].map(([k, v]) => [v, k]));

/** Option number for a name (or numeric string); undefined when neither. */
export function optionNumber(name: string): number | undefined {
  const known = NAME_TO_NUMBER.get(name);
  if (known !== undefined) return known;
  if (/^\d+$/.test(name)) {
    const n = Number(name);
    if (n >= 0 && n <= 65535) return n;
  }
  return undefined;
}

/** Option name coap-packet uses for a number (numeric string for unknown ones). */
export function optionName(num: number): string {
  return NUMBER_TO_NAME.get(num) ?? String(num);
}

/** RFC 7252 §5.4.6: odd option numbers are critical. */
export function isCriticalOption(num: number): boolean {
  return (num & 1) === 1;
}

interface OptionRule {
  repeatable: boolean;
  min: number;
  max: number;
}
/** Options this layer recognises, with their length ranges (RFC 7252 §5.10, RFC 7641 §2, RFC 7959 §2.1, RFC 7967). */
const RECOGNISED: ReadonlyMap<number, OptionRule> = new Map([
  [1, { repeatable: true, min: 0, max: 8 }],
  [3, { repeatable: false, min: 1, max: 255 }],
  [4, { repeatable: true, min: 1, max: 8 }],
  [5, { repeatable: false, min: 0, max: 0 }],
  [6, { repeatable: false, min: 0, max: 3 }],
  [7, { repeatable: false, min: 0, max: 2 }],
  [8, { repeatable: true, min: 0, max: 255 }],
  [11, { repeatable: true, min: 0, max: 255 }],
  [12, { repeatable: false, min: 0, max: 2 }],
  [14, { repeatable: false, min: 0, max: 4 }],
  [15, { repeatable: true, min: 0, max: 255 }],
  [17, { repeatable: false, min: 0, max: 2 }],
  [20, { repeatable: true, min: 0, max: 255 }],
  [23, { repeatable: false, min: 0, max: 3 }],
  [27, { repeatable: false, min: 0, max: 3 }],
  [28, { repeatable: false, min: 0, max: 4 }],
  [35, { repeatable: false, min: 1, max: 1034 }],
  [39, { repeatable: false, min: 1, max: 255 }],
  [60, { repeatable: false, min: 0, max: 4 }],
  [258, { repeatable: false, min: 0, max: 1 }],
]);

/**
 * RFC 7252 §5.4.1/§5.4.5: the first critical option this layer cannot honour (unknown number, value length
 * out of range, or a repeated non-repeatable option), or undefined when all critical options are fine.
 */
export function findUnrecognisedCritical(options: readonly CoapOption[]): number | undefined {
  // Decoded options come in ascending number order, so a repeat follows its first occurrence; a list out of order
  // (built by hand) keeps a set of the numbers seen.
  let seen: Set<number> | undefined;
  let prev = -1;
  for (let i = 0; i < options.length; i++) {
    const opt = options[i];
    const num = optionNumber(opt.name);
    if (num === undefined) continue;
    if (num < prev && !seen) {
      seen = new Set<number>();
      for (let j = 0; j < i; j++) {
        const n = optionNumber(options[j].name);
        if (n !== undefined) seen.add(n);
      }
    }
    const repeated = seen ? seen.has(num) : num === prev;
    const rule = RECOGNISED.get(num);
    const ok =
      rule !== undefined &&
      opt.value.length >= rule.min &&
      opt.value.length <= rule.max &&
      (rule.repeatable || !repeated);
    seen?.add(num);
    prev = num;
    if (!ok && isCriticalOption(num)) return num;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Codes

const CODE_NAMES: ReadonlyMap<string, string> = new Map([
  ['0.00', 'Empty'],
  ['0.01', 'GET'],
  ['0.02', 'POST'],
  ['0.03', 'PUT'],
  ['0.04', 'DELETE'],
  ['0.05', 'FETCH'],
  ['0.06', 'PATCH'],
  ['0.07', 'iPATCH'],
  ['2.01', 'Created'],
  ['2.02', 'Deleted'],
  ['2.03', 'Valid'],
  ['2.04', 'Changed'],
  ['2.05', 'Content'],
  ['2.31', 'Continue'],
  ['4.00', 'Bad Request'],
  ['4.01', 'Unauthorized'],
  ['4.02', 'Bad Option'],
  ['4.03', 'Forbidden'],
  ['4.04', 'Not Found'],
  ['4.05', 'Method Not Allowed'],
  ['4.06', 'Not Acceptable'],
  ['4.08', 'Request Entity Incomplete'],
  ['4.09', 'Conflict'],
  ['4.12', 'Precondition Failed'],
  ['4.13', 'Request Entity Too Large'],
  ['4.15', 'Unsupported Content-Format'],
  ['4.22', 'Unprocessable Entity'],
  ['4.29', 'Too Many Requests'],
  ['5.00', 'Internal Server Error'],
  ['5.01', 'Not Implemented'],
  ['5.02', 'Bad Gateway'],
  ['5.03', 'Service Unavailable'],
  ['5.04', 'Gateway Timeout'],
  ['5.05', 'Proxying Not Supported'],
]);
const NAME_TO_CODE: ReadonlyMap<string, string> = new Map(
  [...CODE_NAMES].map(([code, name]) => [name.toLowerCase(), code]),
);

const METHOD_CODES: Readonly<Record<CoapMethod, string>> = {
  GET: '0.01',
  POST: '0.02',
  PUT: '0.03',
  DELETE: '0.04',
  FETCH: '0.05',
  PATCH: '0.06',
  iPATCH: '0.07',
};

/** Human name of a code ('2.05' → 'Content'); the code itself when it has no registered name. */
export function codeName(code: string): string {
  return CODE_NAMES.get(code) ?? code;
}

/** 'c.dd' with name, e.g. '4.04 Not Found'. */
export function describeCode(code: string): string {
  const name = CODE_NAMES.get(code);
  return name ? `${code} ${name}` : code;
}

/**
 * Normalises a code given as 'c.dd', 'cdd' (e.g. '205'), a method name or a code name ('Content', case
 * insensitive) to 'c.dd'. Undefined when it is none of these or out of range.
 */
export function normaliseCode(code: string): string | undefined {
  if (code.length === 4 && code.charCodeAt(1) === 46) {
    // 'c.dd', the form used inside the package: no regular expression
    const c = code.charCodeAt(0) - 48;
    const d1 = code.charCodeAt(2) - 48;
    const d2 = code.charCodeAt(3) - 48;
    if (c >= 0 && c <= 7 && d1 >= 0 && d1 <= 3 && d2 >= 0 && d2 <= 9) return d1 * 10 + d2 <= 31 ? code : undefined;
  }
  const dotted = /^([0-7])\.([0-3][0-9])$/.exec(code);
  if (dotted) return Number(dotted[2]) <= 31 ? code : undefined;
  const plain = /^([0-7])([0-3][0-9])$/.exec(code);
  if (plain) return Number(plain[2]) <= 31 ? `${plain[1]}.${plain[2]}` : undefined;
  if (Object.prototype.hasOwnProperty.call(METHOD_CODES, code)) return METHOD_CODES[code as CoapMethod];
  return NAME_TO_CODE.get(code.toLowerCase());
}

export function methodCode(method: CoapMethod): string {
  return METHOD_CODES[method];
}

/** Method name for a request code ('0.01' → 'GET'); undefined for other codes. */
export function methodName(code: string): CoapMethod | undefined {
  for (const m of Object.keys(METHOD_CODES) as CoapMethod[]) if (METHOD_CODES[m] === code) return m;
  return undefined;
}

/** Class digit of a 'c.dd' code. */
export function codeClass(code: string): number {
  return Number(code.charAt(0));
}

export function isRequestCode(code: string): boolean {
  return codeClass(code) === 0 && code !== '0.00';
}

export function isResponseCode(code: string): boolean {
  const c = codeClass(code);
  return c >= 2 && c <= 5;
}

export function isSuccessCode(code: string): boolean {
  return codeClass(code) === 2;
}

// ---------------------------------------------------------------------------------------------------------------
// Option values

/** Minimal-length unsigned integer option value (RFC 7252 §3.2): 0 is the empty value. */
export function encodeUint(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`option value ${value} is not an unsigned 32-bit integer`);
  }
  const bytes: number[] = [];
  let v = value;
  while (v > 0) {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Buffer.from(bytes);
}

/** Reads an unsigned integer option value (leading zeros allowed, up to 6 bytes). */
export function decodeUint(value: Buffer): number {
  if (value.length > 6) throw new RangeError('integer option value longer than 6 bytes');
  let n = 0;
  for (const b of value) n = n * 256 + b;
  return n;
}

/** Block1/Block2 option value (RFC 7959 §2.2). */
export interface BlockValue {
  /** Block number, 0 .. 2^20 - 1. */
  num: number;
  /** More blocks follow. */
  more: boolean;
  /** Size exponent 0..6; block size = 2^(szx + 4). */
  szx: number;
}

/** Block size in bytes for a SZX. */
export function blockSize(szx: number): number {
  return 1 << (szx + 4);
}

/** Largest SZX whose block size is at most `size` bytes (clamped to 0..6). */
export function szxForSize(size: number): number {
  let szx = 6;
  while (szx > 0 && blockSize(szx) > size) szx--;
  return szx;
}

export function encodeBlock(block: BlockValue): Buffer {
  const { num, more, szx } = block;
  if (!Number.isInteger(num) || num < 0 || num > 0xfffff) throw new RangeError(`block number ${num} out of range`);
  if (!Number.isInteger(szx) || szx < 0 || szx > 6) throw new RangeError(`block SZX ${szx} out of range`);
  return encodeUint(num * 16 + (more ? 8 : 0) + szx);
}

/** Decodes a Block option value; undefined when it is longer than 3 bytes or uses the reserved SZX 7. */
export function decodeBlock(value: Buffer): BlockValue | undefined {
  if (value.length > 3) return undefined;
  const v = decodeUint(value);
  const szx = v & 7;
  if (szx === 7) return undefined;
  return { num: Math.floor(v / 16), more: (v & 8) !== 0, szx };
}

/** All values of one option, in message order. */
export function getOptions(options: readonly CoapOption[], name: string): Buffer[] {
  const num = optionNumber(name);
  const out: Buffer[] = [];
  for (const o of options) if (o.name === name || (num !== undefined && optionNumber(o.name) === num)) out.push(o.value);
  return out;
}

/** First value of one option. */
export function getOption(options: readonly CoapOption[], name: string): Buffer | undefined {
  return getOptions(options, name)[0];
}

/** First value of an unsigned-integer option, when present and no longer than `maxLength` bytes. */
export function getUintOption(options: readonly CoapOption[], name: string, maxLength = 4): number | undefined {
  return uintWithin(getOption(options, name), maxLength);
}

/** Uri-Path options for path segments (each at most 255 bytes of UTF-8). */
export function pathOptions(segments: readonly string[], name = 'Uri-Path'): CoapOption[] {
  return segments.map((s) => {
    const value = Buffer.from(s, 'utf8');
    if (value.length > 255) throw new RangeError(`${name} segment longer than 255 bytes`);
    return { name, value };
  });
}

/** Uri-Query options ('k=v' strings, each at most 255 bytes). */
export function queryOptions(query: readonly string[]): CoapOption[] {
  return pathOptions(query, 'Uri-Query');
}

// ---------------------------------------------------------------------------------------------------------------
// Datagrams

/** Header fields readable from the first four bytes, when the version is 1. */
export interface CoapHeader {
  type: CoapType;
  code: string;
  messageId: number;
  tokenLength: number;
}

const TYPES: readonly CoapType[] = ['CON', 'NON', 'ACK', 'RST'];
/** 'c.dd' for every code byte, made once. */
const CODE_TEXT: readonly string[] = Array.from({ length: 256 }, (_, b) => `${b >> 5}.${String(b & 31).padStart(2, '0')}`);

/** Reads the fixed header without validating the rest; undefined if too short or not CoAP version 1. */
export function peekHeader(datagram: Buffer): CoapHeader | undefined {
  if (datagram.length < 4) return undefined;
  const b0 = datagram[0];
  if (b0 >> 6 !== 1) return undefined;
  const b1 = datagram[1];
  return {
    type: TYPES[(b0 >> 4) & 3],
    code: CODE_TEXT[b1],
    messageId: datagram.readUInt16BE(2),
    tokenLength: b0 & 15,
  };
}

/** A typed unsigned-integer option's value, when present and no longer than `maxLength` bytes. */
function uintWithin(value: Buffer | undefined, maxLength: number): number | undefined {
  return value === undefined || value.length > maxLength ? undefined : decodeUint(value);
}

/** Option names by number for the numbers below 64 (the rest go through optionName). */
const SMALL_OPTION_NAMES: readonly string[] = Array.from({ length: 64 }, (_, n) => optionName(n));
/** Shared by every message without token, payload, path, query or location path (nothing writes into them). */
const NO_BYTES: Buffer = Buffer.alloc(0);
const NO_SEGMENTS: readonly string[] = Object.freeze([]);

/**
 * Decodes a datagram in one pass: the structure is checked as the options are read (anything RFC 7252 calls a
 * message format error throws CoapFormatError: a short header, another version, a reserved token length, an empty
 * message with more than a header, truncated token/option, delta or length 15, an option number above 65535, a
 * payload marker without payload), and the typed fields are filled on the way. Typed fields (contentFormat, accept,
 * observe) are set only when the first such option's value has a valid length. Token, option values and payload are
 * views into the datagram (a buffer of its own: the socket's or the DTLS layer's plaintext), not copies.
 */
export function decodeMessage(datagram: Buffer): CoapMessage {
  const len = datagram.length;
  if (len < 4) throw new CoapFormatError('datagram shorter than a CoAP header');
  const b0 = datagram[0];
  if (b0 >> 6 !== 1) throw new CoapFormatError('not CoAP version 1');
  const tokenLength = b0 & 15;
  if (tokenLength > 8) throw new CoapFormatError(`reserved token length ${tokenLength}`);
  const codeByte = datagram[1];
  if (codeByte === 0 && len !== 4) throw new CoapFormatError('empty message with token, options or payload');
  let i = 4 + tokenLength;
  if (i > len) throw new CoapFormatError('truncated token');
  const token = tokenLength === 0 ? NO_BYTES : datagram.subarray(4, i);
  const options: CoapOption[] = [];
  let path: string[] | undefined;
  let query: string[] | undefined;
  let locationPath: string[] | undefined;
  let cf: Buffer | undefined;
  let accept: Buffer | undefined;
  let observe: Buffer | undefined;
  let payload: Buffer = NO_BYTES;
  let number = 0;
  while (i < len) {
    const b = datagram[i++];
    if (b === 0xff) {
      if (i >= len) throw new CoapFormatError('payload marker without payload');
      payload = datagram.subarray(i);
      break;
    }
    let delta = b >> 4;
    let length = b & 15;
    if (delta === 15 || length === 15) throw new CoapFormatError('reserved option delta or length 15');
    if (delta === 13) {
      if (i + 1 > len) throw new CoapFormatError('truncated option delta');
      delta = datagram[i] + 13;
      i += 1;
    } else if (delta === 14) {
      if (i + 2 > len) throw new CoapFormatError('truncated option delta');
      delta = ((datagram[i] << 8) | datagram[i + 1]) + 269;
      i += 2;
    }
    if (length === 13) {
      if (i + 1 > len) throw new CoapFormatError('truncated option length');
      length = datagram[i] + 13;
      i += 1;
    } else if (length === 14) {
      if (i + 2 > len) throw new CoapFormatError('truncated option length');
      length = ((datagram[i] << 8) | datagram[i + 1]) + 269;
      i += 2;
    }
    number += delta;
    if (number > 65535) throw new CoapFormatError('option number above 65535');
    if (i + length > len) throw new CoapFormatError('truncated option value');
    // an empty value (e.g. Content-Format 0, Observe 0, If-None-Match) shares one empty buffer
    const value = length === 0 ? NO_BYTES : datagram.subarray(i, i + length);
    i += length;
    options.push({ name: number < 64 ? SMALL_OPTION_NAMES[number] : optionName(number), value });
    switch (number) {
      case URI_PATH:
        (path ??= []).push(value.toString('utf8'));
        break;
      case URI_QUERY:
        (query ??= []).push(value.toString('utf8'));
        break;
      case LOCATION_PATH:
        (locationPath ??= []).push(value.toString('utf8'));
        break;
      case CONTENT_FORMAT: cf ??= value; break;
      case ACCEPT: accept ??= value; break;
      case OBSERVE: observe ??= value; break;
      default:
    }
  }
  // every field in the literal (undefined when absent): one shape for every message, no property added afterwards
  return {
    code: CODE_TEXT[codeByte],
    type: TYPES[(b0 >> 4) & 3],
    messageId: (datagram[2] << 8) | datagram[3],
    token,
    options,
    payload,
    path: path ?? NO_SEGMENTS,
    query: query ?? NO_SEGMENTS,
    locationPath: locationPath ?? NO_SEGMENTS,
    contentFormat: uintWithin(cf, 2),
    accept: uintWithin(accept, 2),
    observe: uintWithin(observe, 3),
  };
}

const URI_PATH = 11;
const URI_QUERY = 15;
const LOCATION_PATH = 8;
const CONTENT_FORMAT = 12;
const ACCEPT = 17;
const OBSERVE = 6;

/** Bytes an option delta or length takes beyond the option's first byte (RFC 7252 §3.1). */
function extBytes(n: number): number {
  return n < 13 ? 0 : n < 269 ? 1 : 2;
}

/** Writes the 4-bit nibble of an option delta or length and returns it; the extended bytes follow at `pos`. */
function nibble(n: number): number {
  return n < 13 ? n : n < 269 ? 13 : 14;
}

function writeExt(buf: Buffer, pos: number, n: number): number {
  if (n < 13) return pos;
  if (n < 269) {
    buf[pos] = n - 13;
    return pos + 1;
  }
  buf.writeUInt16BE(n - 269, pos);
  return pos + 2;
}

/** The 2-bit message type (RFC 7252 §3), -1 for anything else: compared, not read from a table by name (a property
 * name that changes from call to call makes optimised code do a generic lookup). */
function typeBits(type: CoapType): number {
  return type === 'CON' ? 0 : type === 'NON' ? 1 : type === 'ACK' ? 2 : type === 'RST' ? 3 : -1;
}
const EMPTY = Buffer.alloc(0);

/**
 * Encodes a message (RFC 7252 §3) into one buffer of exactly its size; options go out in option-number order (a
 * stable sort: repeated options such as Uri-Path keep their order). Throws (RangeError/Error) on invalid input or
 * when it exceeds maxLength bytes.
 */
export function encodeMessage(msg: OutgoingMessage, maxLength = 1152): Buffer {
  const code = normaliseCode(msg.code);
  if (code === undefined) throw new RangeError(`invalid CoAP code '${msg.code}'`);
  const token = msg.token ?? EMPTY;
  if (token.length > 8) throw new RangeError('token longer than 8 bytes');
  if (!Number.isInteger(msg.messageId) || msg.messageId < 0 || msg.messageId > 0xffff) {
    throw new RangeError(`message id ${msg.messageId} out of range`);
  }
  const type = typeBits(msg.type);
  if (type < 0) throw new RangeError(`invalid CoAP type '${String(msg.type)}'`);
  const options = msg.options ?? [];
  const payload = msg.payload ?? EMPTY;
  if (code === '0.00' && (token.length > 0 || options.length > 0 || payload.length > 0)) {
    throw new RangeError('an empty message carries no token, options or payload');
  }
  const n = options.length;
  const numbers = new Array<number>(n);
  let sorted = true;
  for (let i = 0; i < n; i++) {
    const o = options[i];
    const num = optionNumber(o.name);
    if (num === undefined) throw new RangeError(`unknown option '${o.name}'`);
    if (!Buffer.isBuffer(o.value)) throw new TypeError(`option '${o.name}' needs a Buffer value`);
    if (o.value.length > 65535 + 269) throw new RangeError(`option '${o.name}' value too long`);
    numbers[i] = num;
    if (i > 0 && num < numbers[i - 1]) sorted = false;
  }
  let order: number[] | undefined;
  if (!sorted) order = Array.from({ length: n }, (_, i) => i).sort((a, b) => numbers[a] - numbers[b] || a - b);

  let length = 4 + token.length;
  let prev = 0;
  for (let k = 0; k < n; k++) {
    const i = order ? order[k] : k;
    const delta = numbers[i] - prev;
    const len = options[i].value.length;
    length += 1 + extBytes(delta) + extBytes(len) + len;
    prev = numbers[i];
  }
  if (payload.length > 0) length += 1 + payload.length;
  if (length > maxLength) throw new Error(`Max packet size is ${maxLength}: current is ${length}`);

  const buf = Buffer.allocUnsafe(length);
  buf[0] = 0x40 | (type << 4) | token.length;
  // code is 'c.dd' here (normaliseCode)
  buf[1] = ((code.charCodeAt(0) - 48) << 5) | ((code.charCodeAt(2) - 48) * 10 + code.charCodeAt(3) - 48);
  buf[2] = msg.messageId >>> 8;
  buf[3] = msg.messageId & 0xff;
  let pos = putBytes(buf, 4, token);
  prev = 0;
  for (let k = 0; k < n; k++) {
    const i = order ? order[k] : k;
    const delta = numbers[i] - prev;
    const value = options[i].value;
    buf[pos++] = (nibble(delta) << 4) | nibble(value.length);
    pos = writeExt(buf, pos, delta);
    pos = writeExt(buf, pos, value.length);
    pos = putBytes(buf, pos, value);
    prev = numbers[i];
  }
  if (payload.length > 0) {
    buf[pos++] = 0xff;
    putBytes(buf, pos, payload);
  }
  return buf;
}

/** Copies `src` into `buf` at `pos` and returns the position after it: short ones (tokens, most option values) byte by byte. */
function putBytes(buf: Buffer, pos: number, src: Uint8Array): number {
  const n = src.length;
  if (n > 32) {
    buf.set(src, pos);
    return pos + n;
  }
  for (let j = 0; j < n; j++) buf[pos + j] = src[j];
  return pos + n;
}

/** Empty ACK or RST for a message id. */
export function emptyMessage(type: 'ACK' | 'RST' | 'CON', messageId: number): Buffer {
  const b = Buffer.alloc(4);
  b[0] = 0x40 | ((type === 'CON' ? 0 : type === 'ACK' ? 2 : 3) << 4);
  b[1] = 0;
  b.writeUInt16BE(messageId & 0xffff, 2);
  return b;
}

/** One-line description for trace logs: `CON 0.01 GET mid=12 tok=0a0b /rd?ep=x cf=40 12B`. Never the payload. */
export function describeMessage(msg: CoapMessage): string {
  const parts = [msg.type, describeCode(msg.code), `mid=${msg.messageId}`];
  if (msg.token.length) parts.push(`tok=${msg.token.toString('hex')}`);
  if (msg.path.length || msg.query.length) {
    parts.push('/' + msg.path.join('/') + (msg.query.length ? '?' + msg.query.join('&') : ''));
  }
  if (msg.locationPath.length) parts.push('loc=/' + msg.locationPath.join('/'));
  if (msg.contentFormat !== undefined) parts.push(`cf=${msg.contentFormat}`);
  if (msg.observe !== undefined) parts.push(`obs=${msg.observe}`);
  if (msg.payload.length) parts.push(`${msg.payload.length}B`);
  return parts.join(' ');
}
