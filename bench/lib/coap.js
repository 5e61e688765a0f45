'use strict';
/** Just enough CoAP (RFC 7252 §3) for the benchmark fleet: encode a request or response, decode the header. */

const TYPE = { CON: 0, NON: 1, ACK: 2, RST: 3 };
const OPT = { uriPath: 11, contentFormat: 12, uriQuery: 15 };

function code(c) {
  const [cls, detail] = c.split('.').map(Number);
  return (cls << 5) | detail;
}

function optionHeader(nibble, value) {
  if (value < 13) return { n: value, ext: Buffer.alloc(0) };
  if (value < 269) return { n: 13, ext: Buffer.from([value - 13]) };
  const ext = Buffer.alloc(2);
  ext.writeUInt16BE(value - 269);
  return { n: 14, ext };
}

function encodeOptions(options) {
  const sorted = [...options].sort((a, b) => a[0] - b[0]);
  const parts = [];
  let last = 0;
  for (const [num, value] of sorted) {
    const v = Buffer.isBuffer(value) ? value : typeof value === 'number' ? uint(value) : Buffer.from(String(value));
    const d = optionHeader(0, num - last);
    const l = optionHeader(0, v.length);
    parts.push(Buffer.from([(d.n << 4) | l.n]), d.ext, l.ext, v);
    last = num;
  }
  return Buffer.concat(parts);
}

function uint(n) {
  if (n === 0) return Buffer.alloc(0);
  const bytes = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from(bytes);
}

/** { type, code: '2.05', mid, token, options: [[num, value]], payload } -> Buffer */
function encode({ type, code: c, mid, token, options = [], payload }) {
  const head = Buffer.from([0x40 | (type << 4) | token.length, code(c), mid >> 8, mid & 0xff]);
  const parts = [head, token, encodeOptions(options)];
  if (payload && payload.length > 0) parts.push(Buffer.from([0xff]), payload);
  return Buffer.concat(parts);
}

/** Header, token, the payload, and the Uri-Path segments (the only option the fleet looks at). */
function decode(buf) {
  if (buf.length < 4 || buf[0] >> 6 !== 1) return undefined;
  const tkl = buf[0] & 0x0f;
  const msg = { type: (buf[0] >> 4) & 3, code: `${buf[1] >> 5}.${String(buf[1] & 31).padStart(2, '0')}`, mid: buf.readUInt16BE(2), token: buf.subarray(4, 4 + tkl), path: [], payload: Buffer.alloc(0) };
  let off = 4 + tkl;
  let num = 0;
  while (off < buf.length) {
    if (buf[off] === 0xff) {
      msg.payload = buf.subarray(off + 1);
      break;
    }
    let d = buf[off] >> 4;
    let l = buf[off] & 15;
    off++;
    if (d === 13) d = 13 + buf[off++];
    else if (d === 14) { d = 269 + buf.readUInt16BE(off); off += 2; }
    if (l === 13) l = 13 + buf[off++];
    else if (l === 14) { l = 269 + buf.readUInt16BE(off); off += 2; }
    num += d;
    if (num === OPT.uriPath) msg.path.push(buf.toString('utf8', off, off + l));
    off += l;
  }
  return msg;
}

module.exports = { TYPE, OPT, encode, decode };
