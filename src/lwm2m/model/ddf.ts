/**
 * Reads OMA LwM2M Object definitions (DDF XML, schema LWM2M.xsd / LWM2M-v1_1.xsd):
 *
 *   <LWM2M><Object ObjectType="MODefinition"><Name/><ObjectID/><ObjectURN/><LWM2MVersion/><ObjectVersion/>
 *     <MultipleInstances/><Mandatory/><Resources><Item ID=".."><Name/><Operations/><MultipleInstances/>
 *     <Mandatory/><Type/><RangeEnumeration/><Units/></Item>…</Resources></Object>…</LWM2M>
 */
import { MAX_ID } from '../path';
import { parseXml, child, childText, XmlElement, XmlError } from './xml';
import { Lwm2mModelError, ObjectDef, ResourceDef, ResourceOperations, ResourceType, RESOURCE_TYPES } from './types';

const TYPE_BY_LOWER: ReadonlyMap<string, ResourceType> = new Map(
  RESOURCE_TYPES.filter((t) => t !== 'none').map((t) => [t.toLowerCase(), t] as [string, ResourceType]),
);

function parseId(raw: string | undefined, what: string): number {
  if (raw === undefined || raw === '') throw new Lwm2mModelError(`${what} is missing`);
  if (!/^[0-9]+$/.test(raw) || Number(raw) > MAX_ID) {
    throw new Lwm2mModelError(`${what} ${JSON.stringify(raw)} is not an integer 0..${MAX_ID}`);
  }
  return Number(raw);
}

function parseMultiple(raw: string | undefined, what: string): boolean {
  const v = (raw ?? '').toLowerCase();
  if (v === 'multiple') return true;
  if (v === 'single') return false;
  throw new Lwm2mModelError(`${what}: MultipleInstances must be Single or Multiple, got ${JSON.stringify(raw ?? '')}`);
}

function parseMandatory(raw: string | undefined, what: string): boolean {
  const v = (raw ?? '').toLowerCase();
  if (v === 'mandatory') return true;
  if (v === 'optional') return false;
  throw new Lwm2mModelError(`${what}: Mandatory must be Mandatory or Optional, got ${JSON.stringify(raw ?? '')}`);
}

/** Normalises an Operations value (`R`, `W`, `RW`, `E`, empty; `WR` is read as `RW`). */
export function parseOperations(raw: string | undefined, what: string): ResourceOperations {
  const v = (raw ?? '').replace(/\s+/g, '').toUpperCase();
  if (v === '' || v === 'NONE') return '';
  if (v === 'R' || v === 'W' || v === 'E') return v;
  if (v === 'RW' || v === 'WR') return 'RW';
  throw new Lwm2mModelError(`${what}: Operations must be R, W, RW, E or empty, got ${JSON.stringify(raw)}`);
}

/** Normalises a Type value (case-insensitive; empty means `'none'`, the type of executable Resources). */
export function parseResourceType(raw: string | undefined, what: string): ResourceType {
  const v = (raw ?? '').trim().replace(/\s+/g, ' ').toLowerCase();
  if (v === '' || v === 'none') return 'none';
  const t = TYPE_BY_LOWER.get(v) ?? (v === 'unsignedinteger' ? 'Unsigned Integer' : undefined);
  if (t === undefined) {
    throw new Lwm2mModelError(`${what}: unknown Type ${JSON.stringify(raw)} (expected one of ${RESOURCE_TYPES.join(', ')})`);
  }
  return t;
}

function readResource(item: XmlElement, objectWhat: string): ResourceDef {
  const id = parseId(item.attributes['ID']?.trim(), `${objectWhat}: Item ID`);
  const what = `${objectWhat} resource ${id}`;
  const name = childText(item, 'Name')?.replace(/\s+/g, ' ');
  if (!name) throw new Lwm2mModelError(`${what}: Name is missing`);
  const def: ResourceDef = {
    id,
    name,
    operations: parseOperations(childText(item, 'Operations'), what),
    multiple: parseMultiple(childText(item, 'MultipleInstances'), what),
    mandatory: parseMandatory(childText(item, 'Mandatory'), what),
    type: parseResourceType(childText(item, 'Type'), what),
  };
  const units = childText(item, 'Units');
  if (units) def.units = units;
  const range = childText(item, 'RangeEnumeration');
  if (range) def.rangeEnumeration = range;
  return def;
}

function readObject(obj: XmlElement, index: number): ObjectDef {
  const objectWhat0 = `Object #${index + 1}`;
  const id = parseId(childText(obj, 'ObjectID'), `${objectWhat0}: ObjectID`);
  const what = `Object ${id}`;
  const name = childText(obj, 'Name')?.replace(/\s+/g, ' ');
  if (!name) throw new Lwm2mModelError(`${what}: Name is missing`);
  const def: ObjectDef = {
    id,
    name,
    version: childText(obj, 'ObjectVersion') || '1.0',
    multiple: parseMultiple(childText(obj, 'MultipleInstances'), what),
    mandatory: parseMandatory(childText(obj, 'Mandatory'), what),
    resources: new Map(),
  };
  const urn = childText(obj, 'ObjectURN');
  if (urn) def.urn = urn;
  const lwm2m = childText(obj, 'LWM2MVersion');
  if (lwm2m) def.lwm2mVersion = lwm2m;
  if (!/^[0-9]+\.[0-9]+$/.test(def.version)) {
    throw new Lwm2mModelError(`${what}: ObjectVersion must look like 1.0, got ${JSON.stringify(def.version)}`);
  }
  const resources = child(obj, 'Resources');
  if (resources === undefined) throw new Lwm2mModelError(`${what}: <Resources> is missing`);
  for (const item of resources.children) {
    if (item.name !== 'Item') continue;
    const r = readResource(item, what);
    if (def.resources.has(r.id)) throw new Lwm2mModelError(`${what}: resource ${r.id} is defined twice`);
    def.resources.set(r.id, r);
  }
  return def;
}

/**
 * Parses a DDF document and returns the Object definitions it contains (usually one). Throws
 * `Lwm2mModelError` for input that is not well-formed XML, not a DDF (`<LWM2M>` root with `<Object>`
 * children) or a DDF with missing or invalid fields; the message says which Object and Resource.
 */
export function parseDdf(xml: string): ObjectDef[] {
  let root: XmlElement;
  try {
    root = parseXml(xml);
  } catch (err) {
    if (err instanceof XmlError) throw new Lwm2mModelError(`not a DDF document: ${err.message}`);
    throw err;
  }
  if (root.name !== 'LWM2M') {
    throw new Lwm2mModelError(`not a DDF document: root element is <${root.name}>, expected <LWM2M>`);
  }
  const objects = root.children.filter((c) => c.name === 'Object');
  if (objects.length === 0) throw new Lwm2mModelError('not a DDF document: <LWM2M> contains no <Object>');
  return objects.map(readObject);
}
