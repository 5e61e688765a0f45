/**
 * The compact JSON form of Object definitions used for the shipped core set (`core-objects.json`, written by
 * `scripts/gen-objects.js`): one entry per Object, Resources as tuples
 * `[id, name, operations, multiple, mandatory, type, units?]`. Descriptions and range/enumeration texts are
 * left out to keep the package small; load the DDF with `ObjectModel.loadDdf` when they are needed.
 */
import { MAX_ID } from '../path';
import { Lwm2mModelError, ObjectDef, ResourceDef, RESOURCE_OPERATIONS, RESOURCE_TYPES } from './types';

export type CompactResource =
  | [number, string, string, boolean, boolean, string]
  | [number, string, string, boolean, boolean, string, string];

export interface CompactObject {
  id: number;
  name: string;
  urn?: string;
  version: string;
  lwm2m?: string;
  multiple: boolean;
  mandatory: boolean;
  resources: CompactResource[];
}

export interface CompactObjectFile {
  format: 'lwm2m-objects/1';
  resourceFields: string[];
  objects: CompactObject[];
}

export const COMPACT_FORMAT = 'lwm2m-objects/1';
export const COMPACT_RESOURCE_FIELDS = ['id', 'name', 'operations', 'multiple', 'mandatory', 'type', 'units'];

export function toCompact(def: ObjectDef): CompactObject {
  // Key order is the order written to the JSON file.
  const out: Partial<CompactObject> = { id: def.id, name: def.name };
  if (def.urn !== undefined) out.urn = def.urn;
  out.version = def.version;
  if (def.lwm2mVersion !== undefined) out.lwm2m = def.lwm2mVersion;
  out.multiple = def.multiple;
  out.mandatory = def.mandatory;
  out.resources = [...def.resources.values()]
    .sort((a, b) => a.id - b.id)
    .map((r): CompactResource => {
      const base: [number, string, string, boolean, boolean, string] = [
        r.id,
        r.name,
        r.operations,
        r.multiple,
        r.mandatory,
        r.type,
      ];
      return r.units ? [...base, r.units] : base;
    });
  return out as CompactObject;
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

export function fromCompact(c: CompactObject): ObjectDef {
  const what = `compact Object ${JSON.stringify(c?.id)}`;
  if (c === null || typeof c !== 'object' || !isId(c.id) || typeof c.name !== 'string' || !Array.isArray(c.resources)) {
    throw new Lwm2mModelError(`${what}: invalid entry`);
  }
  const def: ObjectDef = {
    id: c.id,
    name: c.name,
    version: typeof c.version === 'string' ? c.version : '1.0',
    multiple: c.multiple === true,
    mandatory: c.mandatory === true,
    resources: new Map(),
  };
  if (typeof c.urn === 'string') def.urn = c.urn;
  if (typeof c.lwm2m === 'string') def.lwm2mVersion = c.lwm2m;
  for (const t of c.resources) {
    const [id, name, ops, multiple, mandatory, type, units] = t;
    if (
      !isId(id) ||
      typeof name !== 'string' ||
      !(RESOURCE_OPERATIONS as readonly string[]).includes(ops) ||
      !(RESOURCE_TYPES as readonly string[]).includes(type)
    ) {
      throw new Lwm2mModelError(`${what}: invalid resource ${JSON.stringify(t)}`);
    }
    const r: ResourceDef = {
      id,
      name,
      operations: ops as ResourceDef['operations'],
      multiple: multiple === true,
      mandatory: mandatory === true,
      type: type as ResourceDef['type'],
    };
    if (typeof units === 'string' && units !== '') r.units = units;
    def.resources.set(id, r);
  }
  return def;
}
