/**
 * JSON for messages between server instances: Buffers (and other byte arrays) and Dates survive the round trip.
 * A Buffer becomes `{ "$t": "buf", "v": "<base64>" }`, a Date `{ "$t": "date", "v": <ms since the epoch> }`, a bigint
 * `{ "$t": "big", "v": "<decimal>" }`;
 * a plain object that itself has a `$t` key is wrapped as `{ "$t": "obj", "v": { … } }` so it is never mistaken
 * for a tag. `undefined` object members are left out (as JSON does); functions are dropped.
 */

import { Buffer } from 'node:buffer';

type Tagged = { $t: 'buf'; v: string } | { $t: 'date'; v: number } | { $t: 'big'; v: string } | { $t: 'obj'; v: Record<string, unknown> };

function toPlain(value: unknown, depth: number): unknown {
  if (depth > 64) throw new TypeError('value nested too deeply to send to another instance');
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'function' || typeof value === 'symbol') return undefined;
    if (typeof value === 'bigint') return { $t: 'big', v: value.toString() } satisfies Tagged;
    return value;
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    return { $t: 'buf', v: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') } satisfies Tagged;
  }
  if (value instanceof Date) return { $t: 'date', v: value.getTime() } satisfies Tagged;
  if (Array.isArray(value)) return value.map((v) => {
    const p = toPlain(v, depth + 1);
    return p === undefined ? null : p;
  });
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const p = toPlain(v, depth + 1);
    if (p !== undefined) out[k] = p;
  }
  return Object.prototype.hasOwnProperty.call(out, '$t') ? ({ $t: 'obj', v: out } satisfies Tagged) : out;
}

function fromPlain(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(fromPlain);
  const o = value as Record<string, unknown>;
  if (typeof o.$t === 'string' && Object.keys(o).length === 2 && 'v' in o) {
    if (o.$t === 'buf' && typeof o.v === 'string') return Buffer.from(o.v, 'base64');
    if (o.$t === 'date' && typeof o.v === 'number') return new Date(o.v);
    if (o.$t === 'big' && typeof o.v === 'string' && /^-?\d+$/.test(o.v)) return BigInt(o.v);
    if (o.$t === 'obj' && o.v !== null && typeof o.v === 'object' && !Array.isArray(o.v)) {
      const inner: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(o.v as Record<string, unknown>)) inner[k] = fromPlain(v);
      return inner;
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = fromPlain(v);
  return out;
}

/** JSON text of `value`, with Buffers and Dates tagged. */
export function encodeJson(value: unknown): string {
  return JSON.stringify(toPlain(value, 0));
}

/** A JSON-safe copy of `value` (what encodeJson() serialises): Buffers, Dates and bigints tagged, functions dropped. */
export function toJsonSafe(value: unknown): unknown {
  return toPlain(value, 0);
}

/** The value a toJsonSafe() copy stands for. */
export function fromJsonSafe(value: unknown): unknown {
  return fromPlain(value);
}

/** The value of encodeJson() text; throws SyntaxError on text that is not JSON. */
export function decodeJson(text: string): unknown {
  return fromPlain(JSON.parse(text));
}
