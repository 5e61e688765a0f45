import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { Lwm2mPath, MAX_ID, parsePath, pathLevel, pathToString } from '../path';
import { flattenWrite, entryKey } from '../content/write-values';
import { describeValue, toTyped } from '../content/values';
import { fromCompact, CompactObjectFile } from './compact';
import { parseDdf } from './ddf';
import {
  Lwm2mModelError,
  ObjectDef,
  ResourceDef,
  ResourceOperations,
  ResourceType,
  RESOURCE_OPERATIONS,
  RESOURCE_TYPES,
} from './types';
import coreObjects from './core-objects.json';

/** What the model knows about a path (see `ObjectModel.describe`). */
export interface PathDescription {
  /** The path as a string, e.g. `'/3/0/9'`. */
  path: string;
  /** False when the Object (or, for a Resource path, the Resource) is not in the model. */
  known: boolean;
  objectId?: number;
  objectName?: string;
  objectVersion?: string;
  /** The Object may have several Instances. */
  objectMultiple?: boolean;
  instanceId?: number;
  resourceId?: number;
  resourceName?: string;
  type?: ResourceType;
  units?: string;
  operations?: ResourceOperations;
  /** The Resource has Resource Instances. */
  resourceMultiple?: boolean;
  mandatory?: boolean;
  resourceInstanceId?: number;
}

/** Result of `ObjectModel.loadDirectory`. */
export interface LoadDirectoryResult {
  /** Object definitions added (or replacing earlier ones), in file name order. */
  loaded: ObjectDef[];
  /** Files that could not be used, by file name, with the reason. Nothing is added from such a file. */
  errors: Array<{ file: string; error: string }>;
}

/** Options of `ObjectModel.checkWritable`. */
export interface CheckWritableOptions {
  /**
   * `'create'`: the values initialise a new Object Instance, so read-only Resources may be given (LwM2M Create);
   * types and existence are still checked. Default `'write'` (Write, Write-Update, Write-Composite).
   */
  operation?: 'write' | 'create';
}

/** Largest DDF file `loadDirectory` reads (the largest OMA registry files are well under 1 MB). */
export const MAX_DDF_FILE_BYTES = 4 * 1024 * 1024;

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
  /** namesFor: name by path string (null: none), for the paths results keep coming back with; emptied by add(). */
  private readonly nameCache = new Map<string, string | null>();

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
    this.nameCache.clear();
  }

  /** Parses DDF XML, adds every Object it defines and returns them. Throws `Lwm2mModelError` for non-DDF input. */
  loadDdf(xml: string): ObjectDef[] {
    const defs = parseDdf(xml);
    for (const def of defs) this.add(def);
    return defs;
  }

  /**
   * Reads every `*.xml` DDF file of a folder (not its sub-folders) and adds the Objects they define; a file that is
   * not a usable DDF is reported in `errors` and adds nothing. Never throws: an unreadable folder is one error.
   */
  loadDirectory(dir: string): LoadDirectoryResult {
    const result: LoadDirectoryResult = { loaded: [], errors: [] };
    let names: string[];
    try {
      names = fs
        .readdirSync(dir)
        .filter((f) => f.toLowerCase().endsWith('.xml'))
        .sort();
    } catch (e) {
      result.errors.push({ file: String(dir), error: `cannot read the folder: ${e instanceof Error ? e.message : String(e)}` });
      return result;
    }
    for (const file of names) {
      try {
        const full = nodePath.join(dir, file);
        const st = fs.statSync(full);
        if (!st.isFile()) continue;
        if (st.size > MAX_DDF_FILE_BYTES) throw new Lwm2mModelError(`file is ${st.size} bytes, more than the ${MAX_DDF_FILE_BYTES} bytes a DDF may have`);
        const defs = parseDdf(fs.readFileSync(full, 'utf8'));
        // Validate every Object of the file before adding any, so a bad file adds nothing.
        const check = new ObjectModel([]);
        for (const def of defs) check.add(def);
        for (const def of defs) this.add(def);
        result.loaded.push(...defs);
      } catch (e) {
        result.errors.push({ file, error: e instanceof Error ? e.message : String(e) });
      }
    }
    return result;
  }

  /**
   * Everything the model knows about a path: Object name and version, and for a Resource (Instance) path its
   * name, type, units and operations. Accepts a path string or object; throws `Lwm2mPathError` for a bad path.
   */
  describe(path: Lwm2mPath | string): PathDescription {
    const p = typeof path === 'string' ? parsePath(path) : path;
    const level = pathLevel(p);
    const out: PathDescription = { path: pathToString(p), known: false };
    if (level === 0) return out;
    out.objectId = p.objectId as number;
    if (p.instanceId !== undefined) out.instanceId = p.instanceId;
    if (p.resourceId !== undefined) out.resourceId = p.resourceId;
    if (p.resourceInstanceId !== undefined) out.resourceInstanceId = p.resourceInstanceId;
    const obj = this.objects.get(out.objectId);
    if (obj === undefined) return out;
    out.objectName = obj.name;
    out.objectVersion = obj.version;
    out.objectMultiple = obj.multiple;
    if (p.resourceId === undefined) {
      out.known = true;
      return out;
    }
    const r = obj.resources.get(p.resourceId);
    if (r === undefined) return out;
    out.known = true;
    out.resourceName = r.name;
    out.type = r.type;
    if (r.units !== undefined) out.units = r.units;
    out.operations = r.operations;
    out.resourceMultiple = r.multiple;
    out.mandatory = r.mandatory;
    return out;
  }

  /**
   * Names for the keys of a result keyed by path (`msg.payload` of a read): a Resource (Instance) path gets its
   * Resource name, an Object or Object Instance path its Object name. Keys that are not paths, or that the model
   * does not know, are left out: `{ "/3/0/0": "Manufacturer", "/3/0/6/1": "Available Power Sources" }`.
   */
  namesFor(values: Record<string, unknown>): Record<string, string> {
    const out: Record<string, string> = {};
    if (values === null || typeof values !== 'object') return out;
    for (const key of Object.keys(values)) {
      const name = this.nameOf(key);
      if (name !== null) out[key] = name;
    }
    return out;
  }

  /** The name namesFor gives a path key, or null; cached (at most 4,096 paths, then the cache starts over). */
  nameOf(key: string): string | null {
    let name = this.nameCache.get(key);
    if (name !== undefined) return name;
    try {
      const d = this.describe(key);
      name = (d.resourceId !== undefined ? d.resourceName : d.objectName) ?? null;
    } catch {
      name = null;
    }
    if (this.nameCache.size >= 4096) this.nameCache.clear();
    this.nameCache.set(key, name);
    return name;
  }

  /**
   * Checks a value a flow wants to write to `path` before anything is sent (same value shapes as the encoders:
   * one value for a Resource, an array or `{"<instance>": v}` for a multiple-instance Resource, an object keyed by
   * Resource ID or full path for an Object Instance, by full path at the root for Write-Composite). Throws
   * `Lwm2mModelError` saying which path and why when a Resource of a known Object does not exist, is not writable
   * (read-only, executable, or bootstrap-only), is given as one value but has instances (or the reverse), or when
   * the value does not fit the Resource type (e.g. `"abc"` for an Integer, `-1` for an Unsigned Integer, `"yes"` for
   * a Boolean). Values are accepted in the same forms the encoders convert (`"42"` for an Integer, `1`/`"true"`
   * for a Boolean, a Date or seconds for Time). Objects unknown to the model are not checked.
   */
  checkWritable(path: Lwm2mPath | string, value: unknown, options: CheckWritableOptions = {}): void {
    const fail = (msg: string): never => {
      throw new Lwm2mModelError(msg);
    };
    let p: Lwm2mPath;
    try {
      p = typeof path === 'string' ? parsePath(path) : path;
      pathLevel(p);
    } catch (e) {
      return fail((e as Error).message);
    }
    const create = options.operation === 'create';
    let entries;
    try {
      entries = flattenWrite(p, value);
    } catch (e) {
      return fail((e as Error).message);
    }
    if (entries.length === 0) fail(`write to ${pathToString(p)}: no value given (${describeValue(value)})`);
    for (const e of entries) {
      const obj = this.objects.get(e.objectId);
      if (obj === undefined) continue;
      const key = entryKey(e);
      const r = obj.resources.get(e.resourceId);
      if (r === undefined) fail(`${key}: Object ${obj.id} (${obj.name}) has no Resource ${e.resourceId}`);
      const def = r as ResourceDef;
      const what = `${key} (${obj.name} / ${def.name})`;
      if (def.operations === 'E') fail(`${what} is executable, not writable: use execute`);
      if (!create) {
        if (def.operations === 'R') fail(`${what} is read-only`);
        if (def.operations === '') fail(`${what} is not writable by an LwM2M Server (only through bootstrap)`);
      }
      if (def.multiple && e.resourceInstanceId === undefined && !e.emptyMultiple) {
        fail(`${what} is multiple-instance: give its instances as an array or {"<instance id>": value}`);
      }
      if (!def.multiple && (e.resourceInstanceId !== undefined || e.emptyMultiple)) {
        fail(`${what} is single-instance: give one value`);
      }
      if (e.emptyMultiple) continue;
      try {
        toTyped(e.value, def.type, `${what}, type ${def.type}`);
      } catch (err) {
        fail((err as Error).message);
      }
    }
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
