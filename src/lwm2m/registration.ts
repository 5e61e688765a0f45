import { Buffer } from 'node:buffer';
import type { Channel, LogFn } from '../channel';
import type { CoapMessage, CoapResponseInit } from '../coap';
import { parseLinkFormat } from './content';
import type { Registration, Registry } from './registry';
import type { SecurityStore } from './security';

export interface RegistrationOptions {
  allowNoSec: boolean;
  /** Seconds. */
  minLifetime: number;
  maxLifetime: number;
  log?: LogFn;
}

export const SUPPORTED_VERSIONS = ['1.0', '1.1', '1.2'];
const DEFAULT_LIFETIME = 86400;
/** Distinct registration payloads whose parsed links are kept (see RegistrationInterface.objectLinks). */
const LINK_CACHE_SIZE = 256;
/** Longer payloads are parsed every time (the cache holds their text). */
const LINK_CACHE_MAX_TEXT = 2048;
const BINDING = /^(?:U|UQ|S|SQ|US|UQS|T|TQ|N|NQ|[USTN]{1,4}Q?)$/;

function reply(code: string, diagnostic?: string, locationPath?: string[]): CoapResponseInit {
  return {
    code,
    payload: diagnostic ? Buffer.from(diagnostic, 'utf8') : undefined,
    locationPath,
  };
}

/** Splits `["ep=dev1", "Q", "lt=60"]` into a map; a key without `=` maps to ''. */
export function parseQuery(query: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const q of query) {
    const i = q.indexOf('=');
    if (i < 0) out.set(q, '');
    else out.set(q.slice(0, i), q.slice(i + 1));
  }
  return out;
}

export interface ObjectLinks {
  /** Whether the payload had the `rt="oma.lwm2m"` root link. */
  hasRootLink: boolean;
  objects: string[];
  objectVersions: Record<string, string>;
  contentFormats: number[];
  rootPath: string;
}

/** Reads the registration payload (RFC 6690 link format, LwM2M TS Transport §6.2.1). */
export function parseObjectLinks(payload: string): ObjectLinks {
  const links = parseLinkFormat(payload);
  let rootPath = '';
  let hasRootLink = false;
  const contentFormats: number[] = [];
  for (const link of links) {
    const rt = link.attributes.rt;
    if (rt === 'oma.lwm2m' || rt === '"oma.lwm2m"') {
      hasRootLink = true;
      rootPath = link.uri === '/' ? '' : link.uri.replace(/\/$/, '');
      const ct = link.attributes.ct;
      if (typeof ct === 'string') {
        for (const n of ct.replace(/"/g, '').split(/\s+/)) if (/^\d+$/.test(n)) contentFormats.push(Number(n));
      }
    }
  }
  const objects: string[] = [];
  const objectVersions: Record<string, string> = {};
  for (const link of links) {
    let uri = link.uri;
    if (rootPath && uri.startsWith(rootPath + '/')) uri = uri.slice(rootPath.length);
    const m = /^\/(\d{1,5})(?:\/(\d{1,5}))?\/?$/.exec(uri);
    if (!m) continue;
    const objectId = Number(m[1]);
    if (objectId > 65535 || (m[2] !== undefined && Number(m[2]) > 65535)) continue;
    const path = m[2] === undefined ? `/${objectId}` : `/${objectId}/${Number(m[2])}`;
    if (!objects.includes(path)) objects.push(path);
    const ver = link.attributes.ver;
    if (typeof ver === 'string') objectVersions[String(objectId)] = ver.replace(/"/g, '');
  }
  return { hasRootLink, objects, objectVersions, contentFormats, rootPath };
}

/**
 * The LwM2M registration interface (Register, Update, De-register) over CoAP, with the security checks:
 * a DTLS peer may register only the endpoint its credential (PSK identity, raw public key, or X.509 certificate
 * CN) belongs to; unsecured registrations only when allowed and only for endpoints without security information.
 */
export class RegistrationInterface {
  /**
   * Parsed link payloads by payload text, frozen and shared: a fleet of devices of one kind announces the same
   * objects, so their registrations share one `objects` array (and versions, formats) instead of a copy each.
   */
  private readonly linkCache = new Map<string, Readonly<ObjectLinks>>();

  constructor(
    private readonly registry: Registry,
    private readonly security: SecurityStore,
    private readonly opts: RegistrationOptions,
  ) {}

  /** Returns undefined when the request is not for the registration interface. */
  handle(req: CoapMessage, channel: Channel, now = Date.now()): CoapResponseInit | undefined {
    if (req.path[0] !== 'rd') return undefined;
    if (req.path.length === 1) {
      if (req.code !== '0.02') return reply('4.05', 'only POST is allowed on /rd');
      return this.register(req, channel, now);
    }
    if (req.path.length !== 2) return reply('4.04', 'no such registration resource');
    const reg = this.registry.byId(req.path[1]);
    if (!reg) return reply('4.04', `no registration with id ${req.path[1]}`);
    const refusal = this.checkSameDevice(reg, channel);
    if (refusal) return refusal;
    if (req.code === '0.02') return this.update(reg, req, channel, now);
    if (req.code === '0.04') {
      this.registry.remove(reg, 'deregister');
      this.opts.log?.('debug', `de-registered endpoint ${reg.endpoint} (${reg.registrationId})`);
      return reply('2.02');
    }
    return reply('4.05', 'only POST (update) and DELETE (de-register) are allowed on a registration');
  }

  /** parseObjectLinks through the cache (bounded: the oldest entry goes when it is full). */
  private objectLinks(payload: Buffer): Readonly<ObjectLinks> {
    const text = payload.toString('utf8');
    let links = this.linkCache.get(text);
    if (links) return links;
    const parsed = parseObjectLinks(text);
    links = Object.freeze({
      hasRootLink: parsed.hasRootLink,
      objects: Object.freeze(parsed.objects) as string[],
      objectVersions: Object.freeze(parsed.objectVersions) as Record<string, string>,
      contentFormats: Object.freeze(parsed.contentFormats) as number[],
      rootPath: parsed.rootPath,
    });
    if (text.length > LINK_CACHE_MAX_TEXT) return links;
    if (this.linkCache.size >= LINK_CACHE_SIZE) this.linkCache.delete(this.linkCache.keys().next().value as string);
    this.linkCache.set(text, links);
    return links;
  }

  private refuse(code: string, why: string, channel: Channel): CoapResponseInit {
    this.opts.log?.('debug', `registration from ${channel.address}:${channel.port} refused: ${why}`);
    return reply(code, why);
  }

  private register(req: CoapMessage, channel: Channel, now: number): CoapResponseInit {
    const q = parseQuery(req.query);
    const endpoint = q.get('ep');
    if (!endpoint) return this.refuse('4.00', 'missing endpoint name (ep)', channel);
    if (endpoint.length > 255) return this.refuse('4.00', 'endpoint name longer than 255 characters', channel);

    const secRefusal = this.checkSecurity(endpoint, channel);
    if (secRefusal) return secRefusal;

    const asked = q.get('lwm2m') ?? '1.0';
    // The shared constant, not the copy from the query (kept for the registration's lifetime).
    const lwm2mVersion = SUPPORTED_VERSIONS.find((v) => v === asked);
    if (lwm2mVersion === undefined) {
      return this.refuse('4.12', `unsupported LwM2M version "${asked}" (supported: ${SUPPORTED_VERSIONS.join(', ')})`, channel);
    }
    const lifetime = this.parseLifetime(q.get('lt'));
    if (typeof lifetime === 'string') return this.refuse('4.00', lifetime, channel);
    const binding = q.get('b') ?? 'U';
    if (!BINDING.test(binding)) return this.refuse('4.00', `invalid binding mode "${binding}"`, channel);
    if (req.contentFormat !== undefined && req.contentFormat !== 40) {
      return this.refuse('4.00', `registration payload must be link-format (40), got content format ${req.contentFormat}`, channel);
    }
    let links: Readonly<ObjectLinks>;
    try {
      links = this.objectLinks(req.payload);
    } catch (err) {
      return this.refuse('4.00', `invalid link-format payload: ${(err as Error).message}`, channel);
    }
    // All fields in one literal (no spread): the object keeps them in-object, without a separate property store.
    const reg: Registration = {
      endpoint,
      registrationId: this.registry.newRegistrationId(),
      lifetime,
      lwm2mVersion,
      binding,
      queueMode: binding.includes('Q') || q.has('Q'),
      smsNumber: q.get('sms') || undefined,
      objects: links.objects,
      objectVersions: links.objectVersions,
      contentFormats: links.contentFormats,
      rootPath: links.rootPath,
      address: channel.address,
      port: channel.port,
      secure: channel.secure,
      identity: channel.identity,
      channelKey: channel.key,
      registeredAt: now,
      lastSeen: now,
    };
    this.registry.add(reg);
    this.opts.log?.(
      'debug',
      `registered endpoint ${endpoint} (${reg.registrationId}) from ${channel.address}:${channel.port}` +
        (channel.secure ? ` over DTLS as ${channel.identity} (${channel.authType ?? 'psk'})` : ' without security') +
        `, lwm2m ${lwm2mVersion}, lifetime ${lifetime}s, binding ${binding}`,
    );
    return reply('2.01', undefined, ['rd', reg.registrationId]);
  }

  private update(reg: Registration, req: CoapMessage, channel: Channel, now: number): CoapResponseInit {
    const q = parseQuery(req.query);
    const changes: Partial<Registration> = { lastSeen: now, address: channel.address, port: channel.port, channelKey: channel.key };
    if (q.has('lt')) {
      const lifetime = this.parseLifetime(q.get('lt'));
      if (typeof lifetime === 'string') return this.refuse('4.00', lifetime, channel);
      changes.lifetime = lifetime;
    }
    if (q.has('b')) {
      const binding = q.get('b') ?? '';
      if (!BINDING.test(binding)) return this.refuse('4.00', `invalid binding mode "${binding}"`, channel);
      changes.binding = binding;
      changes.queueMode = binding.includes('Q') || q.has('Q');
    } else if (q.has('Q')) {
      changes.queueMode = true;
    }
    if (q.has('sms')) changes.smsNumber = q.get('sms') || undefined;
    if (req.payload.length > 0) {
      try {
        const links = this.objectLinks(req.payload);
        changes.objects = links.objects;
        changes.objectVersions = links.objectVersions;
        // Without its root link an Update payload says nothing new about formats or the alternate path.
        if (links.hasRootLink) {
          changes.contentFormats = links.contentFormats;
          changes.rootPath = links.rootPath;
        }
      } catch (err) {
        return this.refuse('4.00', `invalid link-format payload: ${(err as Error).message}`, channel);
      }
    }
    this.registry.update(reg, changes);
    this.opts.log?.('debug', `update from endpoint ${reg.endpoint} (${reg.registrationId})`);
    return reply('2.04');
  }

  private parseLifetime(text: string | undefined): number | string {
    if (text === undefined) return Math.min(Math.max(DEFAULT_LIFETIME, this.opts.minLifetime), this.opts.maxLifetime);
    if (!/^\d+$/.test(text)) return `invalid lifetime "${text}" (seconds, a whole number)`;
    const lt = Number(text);
    if (lt < this.opts.minLifetime || lt > this.opts.maxLifetime) {
      return `lifetime ${lt}s outside the allowed range ${this.opts.minLifetime}..${this.opts.maxLifetime}s`;
    }
    return lt;
  }

  /**
   * Register: a DTLS peer may register only the endpoint its credential belongs to (PSK identity of that endpoint's
   * entry, that endpoint's raw public key, or an X.509 certificate whose CN is the endpoint name); unsecured peers
   * only when NoSec is allowed and the endpoint has no security entry.
   */
  private checkSecurity(endpoint: string, channel: Channel): CoapResponseInit | undefined {
    if (channel.secure) {
      const why = this.security.refusal(channel, endpoint);
      return why === undefined ? undefined : this.refuse('4.03', why, channel);
    }
    if (!this.opts.allowNoSec) return this.refuse('4.03', 'unsecured (NoSec) registration refused: this server requires DTLS', channel);
    if (this.security.entryOf(endpoint)) {
      return this.refuse('4.03', `endpoint "${endpoint}" has security configured and must register over DTLS`, channel);
    }
    return undefined;
  }

  /**
   * Update and De-register must come from the device that registered: both unsecured, or the same identity with a
   * credential that (still) belongs to the endpoint, so that equal identity strings of different credential kinds
   * (a PSK identity and a certificate CN) never match.
   */
  private checkSameDevice(reg: Registration, channel: Channel): CoapResponseInit | undefined {
    if (reg.secure !== channel.secure ||
      (reg.secure && (reg.identity !== channel.identity || this.security.endpointOf(channel) !== reg.endpoint))) {
      return this.refuse('4.03', `not the device that registered ${reg.endpoint}`, channel);
    }
    return undefined;
  }
}
