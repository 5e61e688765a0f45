import { Lwm2mContentError } from './errors';

/** CoAP Content-Format numbers used by LwM2M (IANA CoRE Parameters registry; LwM2M Core TS §7). */
export const ContentFormat = {
  TEXT: 0,
  LINK: 40,
  OPAQUE: 42,
  CBOR: 60,
  SENML_JSON: 110,
  SENML_CBOR: 112,
  TLV: 11542,
  LWM2M_JSON: 11543,
  LWM2M_CBOR: 11544,
} as const;

export type ContentFormatNumber = (typeof ContentFormat)[keyof typeof ContentFormat];

/** `msg.format` names (SPEC) → Content-Format number. */
const BY_NAME: Readonly<Record<string, ContentFormatNumber>> = {
  text: ContentFormat.TEXT,
  link: ContentFormat.LINK,
  opaque: ContentFormat.OPAQUE,
  cbor: ContentFormat.CBOR,
  'senml-json': ContentFormat.SENML_JSON,
  'senml-cbor': ContentFormat.SENML_CBOR,
  tlv: ContentFormat.TLV,
  /** `application/vnd.oma.lwm2m+json`, the LwM2M 1.0 JSON format. */
  json: ContentFormat.LWM2M_JSON,
  'lwm2m-cbor': ContentFormat.LWM2M_CBOR,
};

const NAME_BY_NUMBER: ReadonlyMap<number, string> = new Map(Object.entries(BY_NAME).map(([k, v]) => [v, k]));

/**
 * Numbers some LwM2M 1.0 clients still send from before the IANA registration
 * (`application/vnd.oma.lwm2m+text|tlv|json|opaque` = 1541..1544).
 */
const LEGACY: ReadonlyMap<number, ContentFormatNumber> = new Map([
  [1541, ContentFormat.TEXT],
  [1542, ContentFormat.TLV],
  [1543, ContentFormat.LWM2M_JSON],
  [1544, ContentFormat.OPAQUE],
]);

const MEDIA_TYPES: ReadonlyMap<number, string> = new Map([
  [ContentFormat.TEXT, 'text/plain;charset=utf-8'],
  [ContentFormat.LINK, 'application/link-format'],
  [ContentFormat.OPAQUE, 'application/octet-stream'],
  [ContentFormat.CBOR, 'application/cbor'],
  [ContentFormat.SENML_JSON, 'application/senml+json'],
  [ContentFormat.SENML_CBOR, 'application/senml+cbor'],
  [ContentFormat.TLV, 'application/vnd.oma.lwm2m+tlv'],
  [ContentFormat.LWM2M_JSON, 'application/vnd.oma.lwm2m+json'],
  [ContentFormat.LWM2M_CBOR, 'application/vnd.oma.lwm2m+cbor'],
]);

/**
 * `msg.format` name → Content-Format number: `text` `link` `opaque` `tlv` `senml-json` `senml-cbor`
 * `lwm2m-cbor` `json` (LwM2M 1.0 JSON, 11543) `cbor` (60). Case-insensitive; a decimal number (`'11542'`) is
 * accepted as is. `'auto'`, `''` and undefined return `undefined` (the caller chooses). Anything else throws
 * `Lwm2mContentError` listing the valid names.
 */
export function formatByName(name: string | undefined | null): number | undefined {
  if (name === undefined || name === null) return undefined;
  if (typeof name !== 'string') throw new Lwm2mContentError(`format must be a string, got ${typeof name}`);
  const key = name.trim().toLowerCase();
  if (key === '' || key === 'auto') return undefined;
  const n = BY_NAME[key];
  if (n !== undefined) return n;
  if (/^[0-9]{1,5}$/.test(key) && Number(key) <= 65535) return Number(key);
  throw new Lwm2mContentError(
    `unknown format ${JSON.stringify(name)}: use auto, ${Object.keys(BY_NAME).join(', ')} or a Content-Format number`,
  );
}

/** Content-Format number → `msg.format` name (`11542` → `'tlv'`); an unknown number gives its decimal string. */
export function formatName(format: number): string {
  return NAME_BY_NUMBER.get(format) ?? NAME_BY_NUMBER.get(LEGACY.get(format) ?? -1) ?? String(format);
}

/** Media type of a Content-Format number, for messages (`11542` → `'application/vnd.oma.lwm2m+tlv'`). */
export function formatMediaType(format: number): string | undefined {
  return MEDIA_TYPES.get(normalizeFormat(format));
}

/** Maps the pre-registration LwM2M 1.0 numbers (1541..1544) to the registered ones; others unchanged. */
export function normalizeFormat(format: number): number {
  return LEGACY.get(format) ?? format;
}
