/**
 * Security information per endpoint (LwM2M "security store"): which PSK identity and key a device must use,
 * and, in outbound pool mode, where its own DTLS server listens.
 */
export interface PskEntry {
  endpoint: string;
  identity: string;
  /** Pre-shared key bytes. */
  key: Buffer;
  /** Outbound mode: the device's DTLS server, when it differs from the registration's source address. */
  host?: string;
  port?: number;
}

/** The shape accepted from configuration (the config node's `psk` credential): the key as hex text. */
export interface PskEntryInput {
  endpoint: string;
  identity: string;
  key: string | Buffer;
  host?: string;
  port?: number;
}

export class SecurityError extends Error {
  override name = 'SecurityError';
}

const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/** Validates one entry and converts the key to bytes; the error never repeats the key. */
export function toPskEntry(input: PskEntryInput, index = 0): PskEntry {
  const where = `PSK entry ${index + 1}`;
  if (!input || typeof input !== 'object') throw new SecurityError(`${where}: expected an object`);
  const { endpoint, identity, key, host, port } = input;
  if (typeof endpoint !== 'string' || endpoint === '') throw new SecurityError(`${where}: "endpoint" must be a non-empty string`);
  if (typeof identity !== 'string' || identity === '') throw new SecurityError(`${where} (${endpoint}): "identity" must be a non-empty string`);
  let keyBytes: Buffer;
  if (Buffer.isBuffer(key)) keyBytes = Buffer.from(key);
  else if (typeof key === 'string' && HEX.test(key)) keyBytes = Buffer.from(key, 'hex');
  else throw new SecurityError(`${where} (${endpoint}): "key" must be an even-length hex string`);
  if (keyBytes.length === 0 || keyBytes.length > 64) throw new SecurityError(`${where} (${endpoint}): key must be 1 to 64 bytes`);
  if (host !== undefined && host !== '' && typeof host !== 'string') throw new SecurityError(`${where} (${endpoint}): "host" must be a string`);
  let portNum: number | undefined;
  if (port !== undefined && port !== null && (port as unknown) !== '') {
    portNum = Number(port);
    if (!Number.isInteger(portNum) || portNum < 1 || portNum > 65535) throw new SecurityError(`${where} (${endpoint}): "port" must be 1..65535`);
  }
  return { endpoint, identity, key: keyBytes, host: host || undefined, port: portNum };
}

/** Parses the config node's JSON credential text. Empty text means no entries. */
export function parsePskTable(text: string | undefined): PskEntryInput[] {
  if (text === undefined || text.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SecurityError(`PSK table is not valid JSON (${(err as Error).message.replace(/ in JSON.*$/, '')})`);
  }
  if (!Array.isArray(parsed)) throw new SecurityError('PSK table must be a JSON array of {endpoint, identity, key}');
  return parsed as PskEntryInput[];
}

/** Endpoint ↔ identity ↔ key. Identities and endpoints are each unique. */
export class SecurityStore {
  private readonly byEndpointMap = new Map<string, PskEntry>();
  private readonly byIdentityMap = new Map<string, PskEntry>();

  /** Adds or replaces the entry of `entry.endpoint`. */
  add(input: PskEntryInput): PskEntry {
    const entry = toPskEntry(input);
    const clash = this.byIdentityMap.get(entry.identity);
    if (clash && clash.endpoint !== entry.endpoint) {
      throw new SecurityError(`identity "${entry.identity}" is already used by endpoint "${clash.endpoint}"`);
    }
    this.remove(entry.endpoint);
    this.byEndpointMap.set(entry.endpoint, entry);
    this.byIdentityMap.set(entry.identity, entry);
    return entry;
  }

  /** Replaces the whole table; throws (leaving the old table) when any entry is invalid or duplicated. */
  replaceAll(inputs: PskEntryInput[]): void {
    const next = new SecurityStore();
    inputs.forEach((input, i) => {
      const entry = toPskEntry(input, i);
      if (next.byEndpointMap.has(entry.endpoint)) throw new SecurityError(`PSK entry ${i + 1}: endpoint "${entry.endpoint}" appears twice`);
      if (next.byIdentityMap.has(entry.identity)) throw new SecurityError(`PSK entry ${i + 1}: identity "${entry.identity}" appears twice`);
      next.byEndpointMap.set(entry.endpoint, entry);
      next.byIdentityMap.set(entry.identity, entry);
    });
    this.byEndpointMap.clear();
    this.byIdentityMap.clear();
    for (const e of next.byEndpointMap.values()) {
      this.byEndpointMap.set(e.endpoint, e);
      this.byIdentityMap.set(e.identity, e);
    }
  }

  remove(endpoint: string): boolean {
    const old = this.byEndpointMap.get(endpoint);
    if (!old) return false;
    this.byEndpointMap.delete(endpoint);
    this.byIdentityMap.delete(old.identity);
    return true;
  }

  byEndpoint(endpoint: string): PskEntry | undefined {
    return this.byEndpointMap.get(endpoint);
  }

  byIdentity(identity: string): PskEntry | undefined {
    return this.byIdentityMap.get(identity);
  }

  /** Key lookup for the DTLS server. */
  keyFor(identity: string): Buffer | undefined {
    return this.byIdentityMap.get(identity)?.key;
  }

  get size(): number {
    return this.byEndpointMap.size;
  }

  /** Entries without their keys, for listings. */
  list(): Array<Omit<PskEntry, 'key'>> {
    return [...this.byEndpointMap.values()].map(({ key: _key, ...rest }) => rest);
  }
}
