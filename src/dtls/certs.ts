import { Buffer } from 'node:buffer';
import { type KeyObject, X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { DecodeError } from './handshake';

/** RFC 7250 §3 / IANA TLS Certificate Types. */
export const CertificateType = { x509: 0, rawPublicKey: 2 } as const;
/** ecdsa_secp256r1_sha256 (RFC 5246 §7.4.1.4.1: hash sha256 = 4, signature ecdsa = 3). */
export const ECDSA_SHA256 = 0x0403;
/** secp256r1 (RFC 8422 §5.1.1). */
export const SECP256R1 = 23;
export const ECDSA_SIGN = 64;

export interface CertificateOptions {
  /** Server private key, PEM (EC P-256). */
  key: string;
  /** Server certificate chain, PEM, leaf first. May be empty when only raw public keys are used. */
  chain: string[];
  /** Offer the server key as a raw public key (RFC 7250) to clients that ask for it. Default true. */
  rpk?: boolean;
}

/** Server credentials, parsed once. */
export interface ServerCredentials {
  privateKey: KeyObject;
  /** DER of each certificate, leaf first. */
  chain: Buffer[];
  /** SubjectPublicKeyInfo (DER) of the server key. */
  spki: Buffer;
  rpk: boolean;
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/** Parses and checks the configured server key and chain; throws TypeError with a message that never holds the key. */
export function loadServerCredentials(opts: CertificateOptions): ServerCredentials {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(opts.key);
  } catch {
    throw new TypeError('certificate.key is not a readable PEM private key');
  }
  if (!isP256(privateKey)) throw new TypeError('certificate.key must be an EC P-256 (secp256r1) key');
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const chain: Buffer[] = [];
  for (const pem of opts.chain ?? []) {
    let c: X509Certificate;
    try {
      c = new X509Certificate(pem);
    } catch {
      throw new TypeError('certificate.chain holds something that is not a PEM certificate');
    }
    chain.push(c.raw);
  }
  if (chain.length > 0) {
    const leafSpki = new X509Certificate(chain[0]).publicKey.export({ type: 'spki', format: 'der' });
    if (!leafSpki.equals(spki)) throw new TypeError('certificate.chain[0] does not match certificate.key');
  }
  const rpk = opts.rpk !== false;
  if (chain.length === 0 && !rpk) throw new TypeError('certificate.chain is empty and rpk is disabled');
  return { privateKey, chain, spki, rpk };
}

export function loadTrustedCAs(pems: readonly string[]): X509Certificate[] {
  return pems.map((pem) => {
    try {
      return new X509Certificate(pem);
    } catch {
      throw new TypeError('trustedCAs holds something that is not a PEM certificate');
    }
  });
}

function u24(n: number): Buffer {
  const b = Buffer.allocUnsafe(3);
  b.writeUIntBE(n, 0, 3);
  return b;
}

/** Certificate message body: X.509 certificate_list, or a single SubjectPublicKeyInfo (RFC 7250 §3). */
export function encodeCertificate(type: number, creds: ServerCredentials): Buffer {
  if (type === CertificateType.rawPublicKey) return Buffer.concat([u24(creds.spki.length), creds.spki]);
  const parts = creds.chain.flatMap((c) => [u24(c.length), c]);
  const body = Buffer.concat(parts);
  return Buffer.concat([u24(body.length), body]);
}

/** Parses a client Certificate message body; throws DecodeError. Returns DER items (X.509 list or [SPKI]). */
export function decodeCertificate(type: number, body: Buffer): Buffer[] {
  if (body.length < 3) throw new DecodeError('truncated Certificate');
  const total = body.readUIntBE(0, 3);
  if (total + 3 !== body.length) throw new DecodeError('bad Certificate length');
  if (type === CertificateType.rawPublicKey) return total === 0 ? [] : [body.subarray(3)];
  const out: Buffer[] = [];
  let off = 3;
  while (off < body.length) {
    if (body.length - off < 3) throw new DecodeError('truncated certificate entry');
    const len = body.readUIntBE(off, 3);
    if (len === 0 || off + 3 + len > body.length) throw new DecodeError('bad certificate entry length');
    out.push(body.subarray(off + 3, off + 3 + len));
    off += 3 + len;
    if (out.length > 10) throw new DecodeError('certificate chain too long');
  }
  return out;
}

/** CertificateRequest (RFC 5246 §7.4.4): ecdsa_sign, ecdsa_secp256r1_sha256, no authority list. */
export function encodeCertificateRequest(): Buffer {
  return Buffer.from([1, ECDSA_SIGN, 0, 2, ECDSA_SHA256 >> 8, ECDSA_SHA256 & 0xff, 0, 0]);
}

/** A P-256 public key from a SubjectPublicKeyInfo, or undefined. */
export function p256FromSpki(spki: Buffer): KeyObject | undefined {
  try {
    const k = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    return isP256(k) ? k : undefined;
  } catch {
    return undefined;
  }
}

export interface VerifiedCertificate {
  publicKey: KeyObject;
  /** Subject common name of the leaf ('' when it has none). */
  commonName: string;
  notAfter: number;
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** Subject CN from Node's one-attribute-per-line subject string. */
export function commonName(cert: X509Certificate): string {
  for (const line of cert.subject.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return '';
}

/**
 * Verifies a client chain (leaf first) against the trusted CAs: each certificate is issued and signed by the next one
 * or by a trusted CA, every certificate is within its validity period, issuers are CAs, the leaf key is P-256.
 * Returns a reason string on failure.
 */
export function verifyClientChain(ders: Buffer[], trusted: readonly X509Certificate[], now = Date.now()):
    VerifiedCertificate | { error: string; alert: 'bad_certificate' | 'certificate_expired' | 'unknown_ca' } {
  if (ders.length === 0) return { error: 'no client certificate', alert: 'bad_certificate' };
  let chain: X509Certificate[];
  try {
    chain = ders.map((d) => new X509Certificate(d));
  } catch {
    return { error: 'unreadable client certificate', alert: 'bad_certificate' };
  }
  const valid = (c: X509Certificate): boolean => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
  const leaf = chain[0];
  if (!isP256(leaf.publicKey)) return { error: 'client certificate key is not EC P-256', alert: 'bad_certificate' };
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i];
    if (!valid(cert)) return { error: `certificate ${i} is expired or not yet valid`, alert: 'certificate_expired' };
    const anchor = trusted.find((t) => issuedBy(cert, t));
    if (anchor) {
      if (!anchor.ca || !valid(anchor)) return { error: 'trusted issuer is not a valid CA', alert: 'unknown_ca' };
      return { publicKey: leaf.publicKey, commonName: commonName(leaf), notAfter: Date.parse(leaf.validTo) };
    }
    // A certificate that is itself one of the trusted ones ends the chain too.
    if (trusted.some((t) => t.raw.equals(cert.raw))) {
      return { publicKey: leaf.publicKey, commonName: commonName(leaf), notAfter: Date.parse(leaf.validTo) };
    }
    const next = chain[i + 1];
    if (!next || !next.ca || !issuedBy(cert, next)) {
      return { error: 'client certificate does not chain to a trusted CA', alert: 'unknown_ca' };
    }
  }
  return { error: 'client certificate does not chain to a trusted CA', alert: 'unknown_ca' };
}
