import { Lwm2mPath, MAX_ID, pathLevel } from '../path';
import { fromCompact, CompactObjectFile } from './compact';
import { parseDdf } from './ddf';
import { Lwm2mModelError, ObjectDef, ResourceDef, RESOURCE_OPERATIONS, RESOURCE_TYPES } from './types';
import coreObjects from './core-objects.json';

/** The shipped core Object set (OMA 0–7, 9, 10, 19, 21 and the IPSO 33xx Objects), freshly built each call. */
export function coreObjectDefs(): ObjectDef[] {
  return (coreObjects as unknown as CompactObjectFile).objects.map(fromCompact);
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

function validate(def: ObjectDef): void {
  if (def === null || typeof def !== 'object') throw new Lwm2mModelError('Object definition must be an object');
  if (!isId(def.id)) throw new Lwm2mModelError(`Object definition: id ${JSON.stringify(def.id)} is not an integer 0..${MAX_ID}`);
  const what = `Object ${def.id}`;
  if (typeof def.name !== 'string' || def.name === '') throw new Lwm2mModelError(`${what}: name is missing`);
  if (typeof def.version !== 'string') throw new Lwm2mModelError(`${what}: version must be a string`);
  if (!(def.resources instanceof Map)) throw new Lwm2mModelError(`${what}: resources must be a Map of Resource ID → ResourceDef`);
  for (const [key, r] of def.resources) {
    if (r === null || typeof r !== 'object' || !isId(r.id) || r.id !== key) {
      throw new Lwm2mModelError(`${what}: resource under key ${key} has a missing or different id`);
    }
    if (typeof r.name !== 'string') throw new Lwm2mModelError(`${what} resource ${r.id}: name must be a string`);
    if (!RESOURCE_OPERATIONS.includes(r.operations)) {
      throw new Lwm2mModelError(`${what} resource ${r.id}: operations ${JSON.stringify(r.operations)} is not one of '', R, W, RW, E`);
    }
    if (!RESOURCE_TYPES.includes(r.type)) {
      throw new Lwm2mModelError(`${what} resource ${r.id}: unknown type ${JSON.stringify(r.type)}`);
    }
  }
}

/**
 * Object and Resource definitions by ID. Used by the codecs to decode values by type and by the nodes to name
 * paths. One definition per Object ID: `add` (and `loadDdf`) replace an earlier definition of the same ID.
 */
export class ObjectModel {
  private readonly objects = new Map<number, ObjectDef>();

  /** `defs` omitted: the shipped core set. Pass `[]` for an empty model. */
  constructor(defs?: readonly ObjectDef[]) {
    for (const def of defs ?? coreObjectDefs()) this.add(def);
  }

  get(objectId: number): ObjectDef | undefined {
    return this.objects.get(objectId);
  }

  resource(objectId: number, resourceId: number): ResourceDef | undefined {
    return this.objects.get(objectId)?.resources.get(resourceId);
  }

  has(objectId: number): boolean {
    return this.objects.has(objectId);
  }

  /** Object IDs in ascending order. */
  ids(): number[] {
    return [...this.objects.keys()].sort((a, b) => a - b);
  }

  /** Adds or replaces an Object definition. Throws `Lwm2mModelError` for an invalid definition. */
  add(def: ObjectDef): void {
    validate(def);
    this.objects.set(def.id, def);
  }

  /** Parses DDF XML, adds every Object it defines and returns them. Throws `Lwm2mModelError` for non-DDF input. */
  loadDdf(xml: string): ObjectDef[] {
    const defs = parseDdf(xml);
    for (const def of defs) this.add(def);
    return defs;
  }

  /** Human names along a path, e.g. `/3/0/9` → `{ object: 'Device', resource: 'Battery Level' }`. */
  names(path: Lwm2mPath): { object?: string; resource?: string } {
    const out: { object?: string; resource?: string } = {};
    if (pathLevel(path) === 0) return out;
    const obj = this.objects.get(path.objectId as number);
    if (obj === undefined) return out;
    out.object = obj.name;
    if (path.resourceId !== undefined) {
      const r = obj.resources.get(path.resourceId);
      if (r !== undefined) out.resource = r.name;
    }
    return out;
  }
}
