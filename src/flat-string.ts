/**
 * A flat copy of a string built by concatenation. V8 keeps `a + b` as a tree of string pieces (a "cons string",
 * 32 bytes per piece); a key kept for a session's lifetime (or as a Map key) is smaller as one sequential string.
 * Keys here are ASCII (addresses, ports, hex), so a latin1 round trip is exact.
 */

import { Buffer } from 'node:buffer';

export function flatString(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}
