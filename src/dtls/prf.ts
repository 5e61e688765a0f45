import { createHmac } from 'node:crypto';

/**
 * TLS 1.2 PRF with P_SHA256 (RFC 5246 §5):
 *   P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
 *   A(0) = seed, A(i) = HMAC(secret, A(i-1))
 *   PRF(secret, label, seed) = P_SHA256(secret, label + seed)
 */
export function pSha256(secret: Buffer, seed: Buffer, length: number): Buffer {
  // Its own memory, never a slice of Node's shared pool: deriveKeys keeps views into it as the session keys.
  const out = Buffer.alloc(length);
  let a = seed;
  let written = 0;
  while (written < length) {
    a = createHmac('sha256', secret).update(a).digest();
    const block = createHmac('sha256', secret).update(a).update(seed).digest();
    written += block.copy(out, written, 0, Math.min(block.length, length - written));
  }
  return out;
}

export function prf(secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  return pSha256(secret, Buffer.concat([Buffer.from(label, 'ascii'), seed]), length);
}
