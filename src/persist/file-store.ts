/**
 * An encrypted, atomically written file holding one Lwm2mServerState, so a server can come back after a restart
 * with its registrations, DTLS sessions, observations and queue-mode state.
 *
 * File layout (all integers big-endian):
 *
 *   magic "LWM2MSTA" (8) | format version (1) | HKDF salt (16) | AES-GCM IV (12) | GCM tag (16) | ciphertext
 *
 * The key is HKDF-SHA256(secret, salt, "lwm2m-server state v1"), 32 bytes, with a fresh random salt and IV on every
 * write; the 37-byte header before the tag is authenticated as additional data. The plaintext is UTF-8 JSON:
 * `{ "format": 1, "info": {...}, "state": {...} }`.
 *
 * Writes go to a temporary file in the same folder (mode 0600), are flushed with fsync and renamed over the file,
 * then the folder is flushed: a reader sees the old file or the new one, never part of one. A file that is
 * truncated, altered, written under another secret or not a state file is reported and renamed to
 * `<file>.corrupt-<timestamp>`; load() then answers undefined.
 */
import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Lwm2mServerState } from '../server';

const MAGIC = Buffer.from('LWM2MSTA', 'ascii');
const FORMAT = 1;
const SALT_LEN = 16;
const IV_LEN = 12;
const TAG_LEN = 16;
const HEADER_LEN = MAGIC.length + 1 + SALT_LEN + IV_LEN;
const KDF_INFO = Buffer.from('lwm2m-server state v1', 'ascii');

/** Where the saved state was listening; a caller may refuse a state saved for other ports. */
export interface StateFileInfo {
  bind?: string;
  coapPort?: number;
  coapsPort?: number;
}

export interface FileStateStoreOptions {
  /** Called with a one-line message when a file is unreadable and moved aside (never with key material). */
  warn?: (message: string) => void;
}

/** Why a file could not be used. */
class StateFileError extends Error {}

/**
 * One state file. `secret` is the secret the encryption key is derived from (in Node-RED: the credential secret).
 * Saves are serialised: the last one started is the one left on disk.
 */
export class FileStateStore {
  readonly file: string;
  private readonly secret: Buffer;
  private readonly warn: (message: string) => void;
  private chain: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<string>();

  constructor(file: string, secret: string | Buffer, opts: FileStateStoreOptions = {}) {
    if (typeof file !== 'string' || file === '') throw new TypeError('FileStateStore: a file name is required');
    const s = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.isBuffer(secret) ? Buffer.from(secret) : undefined;
    if (!s || s.length === 0) throw new TypeError('FileStateStore: a non-empty secret is required (the state holds session keys and is never written in plain text)');
    this.file = path.resolve(file);
    this.secret = s;
    this.warn = opts.warn ?? (() => undefined);
  }

  /** The saved state, or undefined when there is none or it was unusable (then it is moved aside and reported). */
  async load(): Promise<Lwm2mServerState | undefined> {
    return (await this.read())?.state;
  }

  /** Like load(), with the info saved beside the state. */
  async read(): Promise<{ state: Lwm2mServerState; info: StateFileInfo; savedAt: number } | undefined> {
    await this.chain.catch(() => undefined);
    this.removeStaleTemps();
    let data: Buffer;
    try {
      data = await fs.promises.readFile(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      this.warn(`persisted state ${this.file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); starting without it`);
      return undefined;
    }
    try {
      return this.decode(data);
    } catch (err) {
      const reason = err instanceof StateFileError ? err.message : `unexpected content (${(err as Error).message})`;
      const aside = await this.moveAside();
      this.warn(`persisted state ${this.file} is unusable: ${reason}; ${aside ? `moved to ${aside}` : 'left in place'}, starting without it`);
      return undefined;
    }
  }

  /** Writes `state` (without its in-process `handover` field) atomically, mode 0600. */
  save(state: Lwm2mServerState, info: StateFileInfo = {}): Promise<void> {
    const { handover: _handover, ...plain } = state;
    // Serialise now, so later changes to the live objects do not leak into this write.
    const json = JSON.stringify({ format: FORMAT, savedAt: Date.now(), info, state: plain });
    const run = this.chain.catch(() => undefined).then(() => this.write(this.encode(Buffer.from(json, 'utf8'))));
    this.chain = run;
    return run;
  }

  /** Removes the file (e.g. when persistence is turned off or the server node is deleted). */
  async remove(): Promise<void> {
    await this.chain.catch(() => undefined);
    await fs.promises.rm(this.file, { force: true });
  }

  private key(salt: Buffer): Buffer {
    return Buffer.from(hkdfSync('sha256', this.secret, salt, KDF_INFO, 32));
  }

  private encode(plain: Buffer): Buffer {
    const salt = randomBytes(SALT_LEN);
    const iv = randomBytes(IV_LEN);
    const header = Buffer.concat([MAGIC, Buffer.from([FORMAT]), salt, iv]);
    const cipher = createCipheriv('aes-256-gcm', this.key(salt), iv, { authTagLength: TAG_LEN });
    cipher.setAAD(header);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([header, cipher.getAuthTag(), body]);
  }

  private decode(data: Buffer): { state: Lwm2mServerState; info: StateFileInfo; savedAt: number } {
    if (data.length >= MAGIC.length && !data.subarray(0, MAGIC.length).equals(MAGIC)) throw new StateFileError('not an LwM2M server state file');
    if (data.length < HEADER_LEN + TAG_LEN) throw new StateFileError(`truncated (${data.length} bytes)`);
    const version = data[MAGIC.length];
    if (version !== FORMAT) throw new StateFileError(`unsupported file format ${version}`);
    const header = data.subarray(0, HEADER_LEN);
    const salt = data.subarray(MAGIC.length + 1, MAGIC.length + 1 + SALT_LEN);
    const iv = data.subarray(MAGIC.length + 1 + SALT_LEN, HEADER_LEN);
    const tag = data.subarray(HEADER_LEN, HEADER_LEN + TAG_LEN);
    const decipher = createDecipheriv('aes-256-gcm', this.key(salt), iv, { authTagLength: TAG_LEN });
    decipher.setAAD(header);
    decipher.setAuthTag(tag);
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(HEADER_LEN + TAG_LEN)), decipher.final()]);
    } catch {
      throw new StateFileError('it cannot be decrypted (written under another credential secret, truncated or altered)');
    }
    let doc: unknown;
    try {
      doc = JSON.parse(plain.toString('utf8'));
    } catch {
      throw new StateFileError('its content is not valid JSON');
    }
    const d = doc as { format?: unknown; savedAt?: unknown; info?: unknown; state?: unknown };
    if (!d || typeof d !== 'object' || d.format !== FORMAT) throw new StateFileError('unsupported content format');
    const problem = checkState(d.state);
    if (problem) throw new StateFileError(problem);
    const info = d.info && typeof d.info === 'object' ? (d.info as StateFileInfo) : {};
    return { state: d.state as Lwm2mServerState, info, savedAt: typeof d.savedAt === 'number' ? d.savedAt : 0 };
  }

  private async write(data: Buffer): Promise<void> {
    const dir = path.dirname(this.file);
    const tmp = `${this.file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.inFlight.add(tmp);
    try {
      const fh = await fs.promises.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.promises.rename(tmp, this.file);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    } finally {
      this.inFlight.delete(tmp);
    }
    // Make the rename itself durable. Not every platform can open a folder for fsync; the file is complete either way.
    try {
      const dh = await fs.promises.open(dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch {
      // ignored: see above
    }
  }

  /** Temporary files left by a writer that died mid-write (its process is gone). */
  private removeStaleTemps(): void {
    const dir = path.dirname(this.file);
    const prefix = `${path.basename(this.file)}.tmp-`;
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const full = path.join(dir, name);
      if (this.inFlight.has(full)) continue;
      const pid = Number(name.slice(prefix.length).split('-')[0]);
      if (pid !== process.pid && processAlive(pid)) continue;
      try {
        fs.rmSync(full, { force: true });
      } catch {
        // a file we cannot remove is harmless: it is never read
      }
    }
  }

  private async moveAside(): Promise<string | undefined> {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    for (let i = 0; i < 100; i++) {
      const target = `${this.file}.corrupt-${stamp}${i ? `-${i}` : ''}`;
      if (fs.existsSync(target)) continue;
      try {
        await fs.promises.rename(this.file, target);
        return target;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A shape check of a decrypted state: undefined when usable, else the reason. */
function checkState(s: unknown): string | undefined {
  if (!s || typeof s !== 'object') return 'no server state in the file';
  const st = s as Record<string, unknown>;
  if (st.version !== 1) return `unsupported server state version ${String(st.version)}`;
  for (const k of ['registrations', 'sessions', 'observations', 'queue', 'pool']) {
    if (!Array.isArray(st[k])) return `server state without ${k}`;
  }
  const c = st.counters as { requests?: unknown } | undefined;
  if (!c || typeof c !== 'object' || !c.requests || typeof c.requests !== 'object') return 'server state without counters';
  return undefined;
}
