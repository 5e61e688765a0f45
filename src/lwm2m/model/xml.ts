/**
 * A small, strict XML element reader: enough for OMA DDF files (elements, attributes, text, CDATA, comments,
 * processing instructions, a DOCTYPE without internal subset, the predefined and numeric character
 * references). No namespaces processing, no external entities, no DTD: anything it does not understand is
 * rejected with an `XmlError` that gives the line and column.
 */

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** Concatenated character data directly inside this element (text and CDATA), not trimmed. */
  text: string;
}

export class XmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XmlError';
  }
}

const MAX_INPUT = 8 * 1024 * 1024;
const MAX_DEPTH = 64;
const NAME_RE = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
/** Markup skipped wherever it stands: [opening, closing, what it is]. */
const SKIPPED_MARKUP = [
  ['<!--', '-->', 'comment'],
  ['<?', '?>', 'processing instruction'],
] as const;

/** Parses an XML document and returns its root element. */
export function parseXml(input: string): XmlElement {
  if (typeof input !== 'string') throw new XmlError('XML input must be a string');
  if (input.length > MAX_INPUT) throw new XmlError(`XML input too large (${input.length} characters, limit ${MAX_INPUT})`);
  const src = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  let pos = 0;

  const where = (at: number = pos): string => {
    let line = 1;
    let col = 1;
    for (let i = 0; i < at && i < src.length; i++) {
      if (src.charCodeAt(i) === 10) {
        line++;
        col = 1;
      } else col++;
    }
    return `line ${line}, column ${col}`;
  };
  const fail = (msg: string, at: number = pos): never => {
    throw new XmlError(`${msg} at ${where(at)}`);
  };
  const skipSpace = (): void => {
    while (pos < src.length && /[ \t\r\n]/.test(src[pos] as string)) pos++;
  };
  const expect = (s: string): void => {
    if (!src.startsWith(s, pos)) fail(`expected '${s}'`);
    pos += s.length;
  };
  const readName = (): string => {
    NAME_RE.lastIndex = pos;
    const m = NAME_RE.exec(src);
    if (!m) return fail('expected a name');
    pos += m[0].length;
    return m[0];
  };
  const decodeEntities = (raw: string, at: number): string =>
    raw.replace(/&([^;&\s]*);?/g, (whole, ref: string) => {
      if (!whole.endsWith(';')) return fail(`unterminated character reference '${whole}'`, at);
      if (ref in PREDEFINED) return PREDEFINED[ref] as string;
      const m = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(ref);
      if (m) {
        const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2] as string, 10);
        if (cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff)) return String.fromCodePoint(cp);
      }
      return fail(`unsupported character reference '${whole}'`, at);
    });
  /** Skips comments, processing instructions, DOCTYPE and white space between markup. */
  /** Skips one comment or processing instruction at `pos`; false when there is none. */
  const skipCommentOrPi = (): boolean => {
    for (const [open, close, what] of SKIPPED_MARKUP) {
      if (!src.startsWith(open, pos)) continue;
      const end = src.indexOf(close, pos + open.length);
      if (end < 0) fail(`unterminated ${what}`);
      pos = end + close.length;
      return true;
    }
    return false;
  };
  const skipMisc = (allowDoctype: boolean): void => {
    for (;;) {
      skipSpace();
      if (skipCommentOrPi()) continue;
      if (allowDoctype && src.startsWith('<!DOCTYPE', pos)) {
        const end = src.indexOf('>', pos);
        if (end < 0) fail('unterminated DOCTYPE');
        if (src.slice(pos, end).includes('[')) fail('DOCTYPE with an internal subset is not supported');
        pos = end + 1;
      } else return;
    }
  };

  const readElement = (depth: number): XmlElement => {
    if (depth > MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`);
    const start = pos;
    expect('<');
    const name = readName();
    const el: XmlElement = { name, attributes: {}, children: [], text: '' };
    for (;;) {
      const before = pos;
      skipSpace();
      if (src.startsWith('/>', pos)) {
        pos += 2;
        return el;
      }
      if (src[pos] === '>') {
        pos++;
        break;
      }
      if (pos === before) fail(`expected white space, '>' or '/>' in <${name}>`);
      const attr = readName();
      skipSpace();
      expect('=');
      skipSpace();
      const quote = src[pos];
      if (quote !== '"' && quote !== "'") fail(`attribute ${attr} of <${name}> must be quoted`);
      const end = src.indexOf(quote as string, pos + 1);
      if (end < 0) fail(`unterminated value of attribute ${attr}`);
      const raw = src.slice(pos + 1, end);
      if (raw.includes('<')) fail(`'<' in value of attribute ${attr}`);
      if (attr in el.attributes) fail(`duplicate attribute ${attr} in <${name}>`);
      el.attributes[attr] = decodeEntities(raw, pos);
      pos = end + 1;
    }
    // Content.
    let text = '';
    for (;;) {
      if (pos >= src.length) fail(`element <${name}> is not closed`, start);
      const lt = src.indexOf('<', pos);
      if (lt < 0) fail(`element <${name}> is not closed`, start);
      if (lt > pos) {
        text += decodeEntities(src.slice(pos, lt), pos);
        pos = lt;
      }
      if (src.startsWith('</', pos)) {
        pos += 2;
        const closing = readName();
        if (closing !== name) fail(`closing tag </${closing}> does not match <${name}>`);
        skipSpace();
        expect('>');
        el.text = text;
        return el;
      }
      if (src.startsWith('<![CDATA[', pos)) {
        const end = src.indexOf(']]>', pos + 9);
        if (end < 0) fail('unterminated CDATA section');
        text += src.slice(pos + 9, end);
        pos = end + 3;
      } else if (skipCommentOrPi()) {
        // Not content.
      } else if (src.startsWith('<!', pos)) {
        fail('unsupported markup declaration');
      } else {
        el.children.push(readElement(depth + 1));
      }
    }
  };

  skipMisc(true);
  if (src[pos] !== '<') fail('not an XML document: expected a root element');
  const root = readElement(0);
  skipMisc(false);
  if (pos < src.length) fail('unexpected content after the root element');
  return root;
}

/** First child element with this name, or undefined. */
export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** Trimmed text of the first child element with this name, or undefined when there is no such child. */
export function childText(el: XmlElement, name: string): string | undefined {
  const c = child(el, name);
  return c === undefined ? undefined : c.text.trim();
}
