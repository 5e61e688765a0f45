import { Buffer } from 'node:buffer';
import type { CipherSuiteName } from './suites';

export type AuthType = 'psk' | 'rpk' | 'x509';

/** What an abbreviated handshake needs from the full handshake that created a session (RFC 5246 §7.3). */
export interface CachedSession {
  master: Buffer;
  suite: CipherSuiteName;
  identity: string;
  authType: AuthType;
  extendedMasterSecret: boolean;
  createdAt: number;
  /** RPK: the client's SubjectPublicKeyInfo, looked up again on resumption. */
  peerSpki?: Buffer;
  /** X.509: end of the client certificate's validity (ms since epoch). */
  peerNotAfter?: number;
}

/** JSON form of a cache entry (see DtlsServer.exportResumptionCache). Contains the master secret. */
export interface ResumptionState {
  sessionId: string;
  master: string;
  suite: CipherSuiteName;
  identity: string;
  authType: AuthType;
  extendedMasterSecret: boolean;
  createdAt: number;
  peerSpki?: string;
  peerNotAfter?: number;
}

/**
 * Session-id resumption cache: bounded (oldest entry evicted first) and with a lifetime counted from the full
 * handshake. Expiry is checked on use; no timer.
 */
export class SessionCache {
  /** Keyed by the session id as a latin1 string (one character per byte: half the size of hex). */
  private readonly entries = new Map<string, CachedSession>();

  constructor(readonly maxEntries: number, readonly ttlMs: number, private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.entries.size;
  }

  get(sessionId: Buffer): CachedSession | undefined {
    if (sessionId.length === 0) return undefined;
    const key = sessionId.toString('latin1');
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (this.now() - e.createdAt >= this.ttlMs) {
      this.delete(key);
      return undefined;
    }
    return e;
  }

  set(sessionId: Buffer, entry: CachedSession): void {
    if (this.maxEntries <= 0) return;
    const key = sessionId.toString('latin1');
    this.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
    this.entries.set(key, entry);
  }

  remove(sessionId: Buffer): void {
    this.delete(sessionId.toString('latin1'));
  }

  private delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    e.master.fill(0);
    this.entries.delete(key);
  }

  clear(): void {
    for (const key of [...this.entries.keys()]) this.delete(key);
  }

  export(): ResumptionState[] {
    const out: ResumptionState[] = [];
    const now = this.now();
    for (const [sessionId, e] of this.entries) {
      if (now - e.createdAt >= this.ttlMs) continue;
      const s: ResumptionState = {
        sessionId: Buffer.from(sessionId, 'latin1').toString('hex'), master: e.master.toString('base64'), suite: e.suite,
        identity: e.identity, authType: e.authType, extendedMasterSecret: e.extendedMasterSecret, createdAt: e.createdAt,
      };
      if (e.peerSpki) s.peerSpki = e.peerSpki.toString('base64');
      if (e.peerNotAfter !== undefined) s.peerNotAfter = e.peerNotAfter;
      out.push(s);
    }
    return out;
  }
}
