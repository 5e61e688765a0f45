import { Buffer } from 'node:buffer';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ClientHello } from './handshake';
import { HmacSha256 } from './prf';

export const COOKIE_LENGTH = 32;

/**
 * Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1): Cookie = HMAC(Secret, Client-IP, Client-Parameters).
 * The secret rotates; cookies made with the current or the previous secret are accepted. Rotation is lazy
 * (checked on use), so no timer is needed.
 */
export class CookieJar {
  private current = new HmacSha256(randomBytes(32));
  private previous: HmacSha256 | undefined;
  private rotatedAt: number;

  constructor(private readonly rotateMs: number = 60_000, private readonly now: () => number = Date.now) {
    this.rotatedAt = now();
  }

  rotate(): void {
    this.previous = this.current;
    this.current = new HmacSha256(randomBytes(32));
    this.rotatedAt = this.now();
  }

  private maybeRotate(): void {
    const age = this.now() - this.rotatedAt;
    if (age >= 2 * this.rotateMs) {
      // Both secrets are stale: nothing issued with them may still be honoured.
      this.rotate();
      this.previous = undefined;
    } else if (age >= this.rotateMs) {
      this.rotate();
    }
  }

  private mac(secret: HmacSha256, address: string, port: number, hello: ClientHello): Buffer {
    const fixed = Buffer.allocUnsafe(5);
    fixed.writeUInt16BE(port, 0);
    fixed.writeUInt16BE(hello.clientVersion, 2);
    fixed[4] = hello.sessionId.length;
    return secret
      .digest(Buffer.from(address, 'utf8'), fixed, hello.random, hello.sessionId, hello.cipherSuitesRaw, hello.compressionMethods)
      .subarray(0, COOKIE_LENGTH);
  }

  make(address: string, port: number, hello: ClientHello): Buffer {
    this.maybeRotate();
    return this.mac(this.current, address, port, hello);
  }

  verify(address: string, port: number, hello: ClientHello): boolean {
    this.maybeRotate();
    if (hello.cookie.length !== COOKIE_LENGTH) return false;
    let ok = timingSafeEqual(hello.cookie, this.mac(this.current, address, port, hello));
    if (this.previous) ok = timingSafeEqual(hello.cookie, this.mac(this.previous, address, port, hello)) || ok;
    return ok;
  }
}
