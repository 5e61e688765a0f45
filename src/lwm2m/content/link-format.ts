/**
 * CoRE Link Format (RFC 6690, Content-Format 40): registration payloads and Discover answers, e.g.
 * `</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</3/0>`.
 *
 *   link-value-list = [ link-value *[ "," link-value ]]
 *   link-value      = "<" URI-Reference ">" *( ";" link-param )
 *   link-param      = parmname [ "=" ( ptoken / quoted-string ) ]
 *
 * Quoted values may hold `,` and `;` and `\"` escapes. White space around separators is tolerated (some clients
 * add it). A parameter without value is `true`; a repeated parameter keeps its first value.
 */
import { Lwm2mContentError } from './errors';

export interface Link {
  uri: string;
  attributes: Record<string, string | true>;
}

const PARMNAME_RE = /^[A-Za-z0-9!#$&+\-.^_`|~*]+$/;

export function parseLinkFormat(s: string): Link[] {
  if (typeof s !== 'string') throw new Lwm2mContentError('link-format payload must be a string');
  const links: Link[] = [];
  let pos = 0;
  const n = s.length;
  const ws = (): void => {
    while (pos < n && /\s/.test(s[pos] as string)) pos++;
  };
  const fail = (msg: string): never => {
    const context = JSON.stringify(s.slice(Math.max(0, pos - 10), pos + 10));
    throw new Lwm2mContentError(`bad link-format at character ${pos} (near ${context}): ${msg}`);
  };

  ws();
  if (pos === n) return links;
  for (;;) {
    ws();
    if (s[pos] !== '<') fail("expected '<' starting a link");
    const close = s.indexOf('>', pos + 1);
    if (close < 0) fail("missing '>' closing the link target");
    const uri = s.slice(pos + 1, close);
    if (/[\s<]/.test(uri)) fail('white space or < inside the link target');
    pos = close + 1;
    const attributes: Record<string, string | true> = {};
    for (;;) {
      ws();
      if (s[pos] !== ';') break;
      pos++;
      ws();
      let end = pos;
      while (end < n && !/[=;,\s]/.test(s[end] as string)) end++;
      const name = s.slice(pos, end);
      pos = end;
      ws();
      if (name === '') {
        if (s[pos] === '=') fail('parameter without a name');
        continue; // tolerate ';;' and a trailing ';'
      }
      if (!PARMNAME_RE.test(name)) fail(`invalid parameter name ${JSON.stringify(name)}`);
      let value: string | true = true;
      if (s[pos] === '=') {
        pos++;
        ws();
        if (s[pos] === '"') {
          pos++;
          let v = '';
          for (;;) {
            if (pos >= n) fail(`unterminated quoted value of ${name}`);
            const c = s[pos] as string;
            if (c === '\\' && pos + 1 < n) {
              v += s[pos + 1];
              pos += 2;
            } else if (c === '"') {
              pos++;
              break;
            } else {
              v += c;
              pos++;
            }
          }
          value = v;
        } else {
          let vend = pos;
          while (vend < n && s[vend] !== ';' && s[vend] !== ',') vend++;
          value = s.slice(pos, vend).trim();
          if (value.includes('"')) fail(`stray '"' in the value of ${name}`);
          pos = vend;
        }
      }
      if (!Object.prototype.hasOwnProperty.call(attributes, name)) {
        // defineProperty: a parameter named __proto__ must stay a plain key.
        Object.defineProperty(attributes, name, { value, enumerable: true, writable: true, configurable: true });
      }
    }
    links.push({ uri, attributes });
    ws();
    if (pos >= n) return links;
    if (s[pos] !== ',') fail("expected ',' or ';' after a link");
    pos++;
  }
}
