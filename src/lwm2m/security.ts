import { Buffer } from 'node:buffer';
import { type KeyObject, createPublicKey } from 'node:crypto';
import { type CertificateOptions, loadServerCredentials, loadTrustedCAs } from '../dtls/certs';

/**
 * Security information per endpoint (LwM2M "security store"). Each endpoint has at most one entry:
 * - PSK: the identity and key the device must use, and, in outbound pool mode, where its own DTLS server listens;
 * - RPK (RFC 7250): the device's raw public key (P-256).
 * X.509 devices need no entry: a client certificate that chains to a trusted CA authenticates the endpoint named by
 * its subject CN (LwM2M: the CN must equal the endpoint name), unless the endpoint has a PSK or RPK entry, which
 * then is the only credential accepted for it.
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

/** A device authenticated by its raw public key (RFC 7250). Its DTLS identity is the endpoint name. */
export interface RpkEntry {
  endpoint: string;
  /** The device's P-256 public key as SubjectPublicKeyInfo (DER), in canonical (uncompressed point) form. */
  rpk: Buffer;
}

export type SecurityEntry = PskEntry | RpkEntry;

/** The shape accepted from configuration (the config node's `psk` credential): the key as hex text. */
export interface PskEntryInput {
  endpoint: string;
  identity: string;
  key: string | Buffer;
  host?: string;
  port?: number;
}

/**
 * A raw-public-key entry from configuration. `rpk`: the device's P-256 public key as SubjectPublicKeyInfo DER
 * (a Buffer, or hex text; spaces and colons are ignored) or as a PEM "PUBLIC KEY" block (line breaks optional).
 */
export interface RpkEntryInput {
  endpoint: string;
  rpk: string | Buffer;
}

export type SecurityEntryInput = PskEntryInput | RpkEntryInput;

/** How a DTLS peer authenticated (DtlsSession.authType; undefined on a channel means PSK). */
export type PeerAuthType = 'psk' | 'rpk' | 'x509';

/** What the store needs to know about an authenticated peer: a DtlsSession or a secure Channel. */
export interface AuthenticatedPeer {
  identity?: string;
  authType?: PeerAuthType;
}

/** A listing entry: PSK entries without their key; RPK entries with the public key as hex. */
export type SecurityEntryInfo = Omit<PskEntry, 'key'> | { endpoint: string; rpk: string };

export class SecurityError extends Error {
  override name = 'SecurityError';
}

const HEX = /^(?:[0-9a-fA-F]{2})+$/;
const PEM_PUBLIC_KEY = /-----BEGIN PUBLIC KEY-----([\s\S]*?)-----END PUBLIC KEY-----/;

export function isRpkEntry(entry: SecurityEntry): entry is RpkEntry {
  return 'rpk' in entry;
}

function isRpkInput(input: SecurityEntryInput): input is RpkEntryInput {
  return (input as { rpk?: unknown }).rpk !== undefined;
}

function p256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/**
 * A public key (SPKI DER bytes, hex text or PEM) in canonical SubjectPublicKeyInfo DER form, or undefined when it
 * is not a P-256 public key.
 */
export function canonicalRpk(value: string | Buffer): Buffer | undefined {
  let der: Buffer;
  if (Buffer.isBuffer(value)) {
    der = value;
  } else if (typeof value === 'string') {
    const pem = PEM_PUBLIC_KEY.exec(value);
    if (pem) {
      const b64 = pem[1].replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
      der = Buffer.from(b64, 'base64');
    } else {
      const hex = value.replace(/^0x/i, '').replace(/[\s:]/g, '');
      if (!HEX.test(hex)) return undefined;
      der = Buffer.from(hex, 'hex');
    }
  } else {
    return undefined;
  }
  try {
    const key = createPublicKey({ key: der, format: 'der', type: 'spki' });
    return p256(key) ? key.export({ type: 'spki', format: 'der' }) : undefined;
  } catch {
    return undefined;
  }
}

/** Validates one PSK entry and converts the key to bytes; the error never repeats the key. */
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
  return new StoredPskEntry(endpoint, identity, keyBytes, host || undefined, portNum);
}

/**
 * A PSK entry as the store keeps it: a table can hold 100,000 of them, so it is compact. The key is kept as a
 * latin1 string (one character per byte, ~40 bytes against ~100 for a Buffer object) and `key` hands out a fresh
 * Buffer copy; endpoint and identity are flat copies (a string built by concatenation would keep its pieces);
 * `host` and `port` exist only when set. Satisfies `PskEntry`; the key is a private field, so spreading or
 * serialising an entry never copies it.
 */
class StoredPskEntry implements PskEntry {
  readonly endpoint: string;
  readonly identity: string;
  declare host?: string;
  declare port?: number;
  readonly #key: string;

  constructor(endpoint: string, identity: string, key: Buffer, host?: string, port?: number) {
    this.endpoint = flatCopy(endpoint);
    this.identity = flatCopy(identity);
    this.#key = key.toString('latin1');
    if (host !== undefined) this.host = host;
    if (port !== undefined) this.port = port;
  }

  get key(): Buffer {
    return Buffer.from(this.#key, 'latin1');
  }
}

/** A plain copy of an entry, with the PSK key as an own property (for a store that serialises entries). */
export function securityEntryData(entry: SecurityEntry): SecurityEntry {
  if (isRpkEntry(entry)) return { endpoint: entry.endpoint, rpk: entry.rpk };
  const out: PskEntry = { endpoint: entry.endpoint, identity: entry.identity, key: entry.key };
  if (entry.host !== undefined) out.host = entry.host;
  if (entry.port !== undefined) out.port = entry.port;
  return out;
}

/** A flat copy of a string (any characters; a lone surrogate cannot occur in a name a device sends anyway). */
function flatCopy(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

/** Validates one raw-public-key entry. */
export function toRpkEntry(input: RpkEntryInput, index = 0): RpkEntry {
  const where = `RPK entry ${index + 1}`;
  if (!input || typeof input !== 'object') throw new SecurityError(`${where}: expected an object`);
  const { endpoint, rpk } = input;
  if (typeof endpoint !== 'string' || endpoint === '') throw new SecurityError(`${where}: "endpoint" must be a non-empty string`);
  const extra = input as unknown as Record<string, unknown>;
  if (extra.key !== undefined || extra.identity !== undefined) {
    throw new SecurityError(`${where} (${endpoint}): give either "identity" and "key" (PSK) or "rpk" (raw public key), not both`);
  }
  const der = canonicalRpk(rpk);
  if (!der) {
    throw new SecurityError(`${where} (${endpoint}): "rpk" must be a P-256 public key: SubjectPublicKeyInfo DER as hex, or a PEM "PUBLIC KEY" block`);
  }
  return { endpoint, rpk: der };
}

/** Validates one entry of either kind (an entry with `rpk` is a raw-public-key entry). */
export function toSecurityEntry(input: SecurityEntryInput, index = 0): SecurityEntry {
  if (input && typeof input === 'object' && isRpkInput(input)) return toRpkEntry(input, index);
  return toPskEntry(input as PskEntryInput, index);
}

/** Parses the config node's JSON credential text. Empty text means no entries. */
export function parsePskTable(text: string | undefined): SecurityEntryInput[] {
  if (text === undefined || text.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SecurityError(`PSK table is not valid JSON (${(err as Error).message.replace(/ in JSON.*$/, '')})`);
  }
  if (!Array.isArray(parsed)) throw new SecurityError('PSK table must be a JSON array of {endpoint, identity, key} and {endpoint, rpk}');
  return parsed as SecurityEntryInput[];
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The CERTIFICATE blocks of a PEM bundle, in order (other text and blocks are ignored). */
export function splitPemCertificates(text: string | undefined): string[] {
  if (typeof text !== 'string') return [];
  return (text.match(PEM_CERTIFICATE) ?? []).map((block) => block + '\n');
}

/** The config node's certificate credentials (all PEM text; empty = not set). */
export interface CertificateCredentials {
  /** Server private key (EC P-256). */
  serverKey?: string;
  /** Server certificate chain, leaf first. Empty with a key: the server offers its key as a raw public key only. */
  serverCert?: string;
  /** CA certificates that device certificates must chain to. */
  trustedCAs?: string;
}

/**
 * Lwm2mServerOptions `certificate` / `trustedCAs` from the config node's credentials, checked (P-256 key, chain that
 * matches the key, readable CA certificates). Throws SecurityError with a message that never holds key material.
 * `warnings` lists settings that have no effect.
 */
export function certificateConfig(creds: CertificateCredentials): {
  certificate?: CertificateOptions;
  trustedCAs?: string[];
  warnings: string[];
} {
  const key = creds.serverKey?.trim() ?? '';
  const certText = creds.serverCert?.trim() ?? '';
  const caText = creds.trustedCAs?.trim() ?? '';
  const warnings: string[] = [];
  const chain = splitPemCertificates(certText);
  if (certText !== '' && chain.length === 0) throw new SecurityError('server certificate: no PEM "CERTIFICATE" block found');
  const cas = splitPemCertificates(caText);
  if (caText !== '' && cas.length === 0) throw new SecurityError('trusted CAs: no PEM "CERTIFICATE" block found');
  if (key === '') {
    if (chain.length > 0) throw new SecurityError('server certificate given without its private key');
    if (cas.length > 0) warnings.push('trusted CAs are not used: certificate devices need the server key (and certificate) too');
    return { warnings };
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) throw new SecurityError('server key: expected a PEM private key (-----BEGIN PRIVATE KEY-----)');
  const certificate: CertificateOptions = { key, chain };
  try {
    loadServerCredentials(certificate);
    loadTrustedCAs(cas);
  } catch (err) {
    throw new SecurityError(`server certificate: ${(err as Error).message}`);
  }
  if (cas.length === 0) warnings.push('no trusted CAs: devices with X.509 certificates cannot connect (raw public keys still can)');
  return { certificate, trustedCAs: cas.length > 0 ? cas : undefined, warnings };
}

/**
 * Endpoint → entry, PSK identity → PSK entry, raw public key → RPK entry. Endpoints, PSK identities and raw public
 * keys are each unique.
 */
export class SecurityStore {
  private readonly byEndpointMap = new Map<string, SecurityEntry>();
  private readonly byIdentityMap = new Map<string, PskEntry>();
  /** Canonical SPKI (hex) → entry. */
  private readonly byRpkMap = new Map<string, RpkEntry>();

  /** Adds or replaces the entry of `entry.endpoint` (a PSK entry, or an RPK entry when `rpk` is set). */
  add(input: PskEntryInput): PskEntry;
  add(input: RpkEntryInput): RpkEntry;
  add(input: SecurityEntryInput): SecurityEntry;
  add(input: SecurityEntryInput): SecurityEntry {
    const entry = toSecurityEntry(input);
    if (isRpkEntry(entry)) {
      const clash = this.byRpkMap.get(entry.rpk.toString('hex'));
      if (clash && clash.endpoint !== entry.endpoint) {
        throw new SecurityError(`this public key is already used by endpoint "${clash.endpoint}"`);
      }
    } else {
      const clash = this.byIdentityMap.get(entry.identity);
      if (clash && clash.endpoint !== entry.endpoint) {
        throw new SecurityError(`identity "${entry.identity}" is already used by endpoint "${clash.endpoint}"`);
      }
    }
    this.remove(entry.endpoint);
    this.index(entry);
    return entry;
  }

  private index(entry: SecurityEntry): void {
    this.byEndpointMap.set(entry.endpoint, entry);
    if (isRpkEntry(entry)) this.byRpkMap.set(entry.rpk.toString('hex'), entry);
    else this.byIdentityMap.set(entry.identity, entry);
  }

  /** Replaces the whole table; throws (leaving the old table) when any entry is invalid or duplicated. */
  replaceAll(inputs: SecurityEntryInput[]): void {
    const next = new SecurityStore();
    inputs.forEach((input, i) => {
      const entry = toSecurityEntry(input, i);
      const kind = isRpkEntry(entry) ? 'RPK' : 'PSK';
      if (next.byEndpointMap.has(entry.endpoint)) throw new SecurityError(`${kind} entry ${i + 1}: endpoint "${entry.endpoint}" appears twice`);
      if (isRpkEntry(entry)) {
        const other = next.byRpkMap.get(entry.rpk.toString('hex'));
        if (other) throw new SecurityError(`RPK entry ${i + 1} (${entry.endpoint}): the same public key is already given for endpoint "${other.endpoint}"`);
      } else if (next.byIdentityMap.has(entry.identity)) {
        throw new SecurityError(`PSK entry ${i + 1}: identity "${entry.identity}" appears twice`);
      }
      next.index(entry);
    });
    this.byEndpointMap.clear();
    this.byIdentityMap.clear();
    this.byRpkMap.clear();
    for (const e of next.byEndpointMap.values()) this.index(e);
  }

  remove(endpoint: string): boolean {
    const old = this.byEndpointMap.get(endpoint);
    if (!old) return false;
    this.byEndpointMap.delete(endpoint);
    if (isRpkEntry(old)) this.byRpkMap.delete(old.rpk.toString('hex'));
    else this.byIdentityMap.delete(old.identity);
    return true;
  }

  /** The PSK entry of an endpoint (undefined when it has none, or has an RPK entry). */
  byEndpoint(endpoint: string): PskEntry | undefined {
    const e = this.byEndpointMap.get(endpoint);
    return e && !isRpkEntry(e) ? e : undefined;
  }

  /** The entry of an endpoint, of either kind. */
  entryOf(endpoint: string): SecurityEntry | undefined {
    return this.byEndpointMap.get(endpoint);
  }

  byIdentity(identity: string): PskEntry | undefined {
    return this.byIdentityMap.get(identity);
  }

  /** The RPK entry of a public key (SubjectPublicKeyInfo DER, any valid encoding of the point). */
  byPublicKey(spki: Buffer): RpkEntry | undefined {
    const canonical = canonicalRpk(spki);
    return canonical ? this.byRpkMap.get(canonical.toString('hex')) : undefined;
  }

  /** Key lookup for the DTLS server. */
  keyFor(identity: string): Buffer | undefined {
    return this.byIdentityMap.get(identity)?.key;
  }

  /** Raw-public-key lookup for the DTLS server: the session identity is the endpoint name. */
  rpkLookup(spki: Buffer): { identity: string } | undefined {
    const entry = this.byPublicKey(spki);
    return entry ? { identity: entry.endpoint } : undefined;
  }

  /**
   * The endpoint an authenticated DTLS peer may act as, or undefined:
   * psk (or no authType) → the endpoint of the PSK identity; rpk → the endpoint whose key it is (the session
   * identity); x509 → the certificate's CN, unless that endpoint has a PSK or RPK entry (then only that credential
   * is accepted for it).
   */
  endpointOf(peer: AuthenticatedPeer): string | undefined {
    const { identity } = peer;
    if (identity === undefined) return undefined;
    switch (peer.authType ?? 'psk') {
      case 'psk':
        return this.byIdentityMap.get(identity)?.endpoint;
      case 'rpk': {
        const e = this.byEndpointMap.get(identity);
        return e && isRpkEntry(e) ? identity : undefined;
      }
      case 'x509':
        return identity !== '' && !this.byEndpointMap.has(identity) ? identity : undefined;
      default:
        return undefined;
    }
  }

  /**
   * Why `peer` may not act as `endpoint`, or undefined when it may. The reason names identities and endpoints,
   * never keys.
   */
  refusal(peer: AuthenticatedPeer, endpoint: string): string | undefined {
    if (this.endpointOf(peer) === endpoint) return undefined;
    const identity = peer.identity ?? '';
    const entry = this.byEndpointMap.get(endpoint);
    switch (peer.authType ?? 'psk') {
      case 'rpk':
        return `this raw public key belongs to endpoint "${identity}", not "${endpoint}"`;
      case 'x509':
        if (identity === endpoint && entry) {
          return `endpoint "${endpoint}" has ${isRpkEntry(entry) ? 'a raw public key' : 'a PSK'} configured: a certificate is not accepted for it`;
        }
        return `certificate CN "${identity}" does not match endpoint name "${endpoint}"`;
      default:
        return `identity "${identity}" is not allowed to register endpoint "${endpoint}"`;
    }
  }

  get size(): number {
    return this.byEndpointMap.size;
  }

  /** Entries without PSK keys, for listings (RPK public keys as hex). */
  list(): SecurityEntryInfo[] {
    return [...this.byEndpointMap.values()].map((e) => {
      if (isRpkEntry(e)) return { endpoint: e.endpoint, rpk: e.rpk.toString('hex') };
      const { key: _key, ...rest } = e;
      return rest;
    });
  }
}
