/** Shared pieces of the content format tests: byte-vector parsing, error matching, Object definitions. */
import assert from 'node:assert/strict';
import { Lwm2mContentError, Lwm2mValue } from '../../src/lwm2m/content';
import { ObjectDef, ResourceDef } from '../../src/lwm2m/model';

/** Hex bytes with white space and `# comments` ignored. */
export const hex = (s: string): Buffer => Buffer.from(s.replace(/#[^\n]*/g, '').replace(/\s+/g, ''), 'hex');

/** For assert.throws: the error is an Lwm2mContentError (with a message matching `re` when given). */
export const isContentError = (re?: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof Lwm2mContentError, `expected Lwm2mContentError, got ${String(e)}`);
  if (re) assert.match((e as Error).message, re);
  return true;
};

/** A readable and writable Resource `R<id>`. */
export function res(id: number, type: ResourceDef['type'], multiple = false): ResourceDef {
  return { id, name: `R${id}`, operations: 'RW', multiple, mandatory: false, type };
}

/** An optional Object `O<id>` with the given Resources. */
export function obj(id: number, resources: ResourceDef[], multiple = true): ObjectDef {
  return { id, name: `O${id}`, version: '1.0', multiple, mandatory: false, resources: new Map(resources.map((r) => [r.id, r])) };
}

/** Read /3/0, the Device Object example of the OMA LwM2M TS (TS 1.0 §6.4.3/§6.4.4), all 16 values. */
export const DEVICE_VALUES: Record<string, Lwm2mValue> = {
  '/3/0/0': 'Open Mobile Alliance',
  '/3/0/1': 'Lightweight M2M Client',
  '/3/0/2': '345000123',
  '/3/0/3': '1.0',
  '/3/0/6/0': 1,
  '/3/0/6/1': 5,
  '/3/0/7/0': 3800,
  '/3/0/7/1': 5000,
  '/3/0/8/0': 125,
  '/3/0/8/1': 900,
  '/3/0/9': 100,
  '/3/0/10': 15,
  '/3/0/11/0': 0,
  '/3/0/13': new Date(1367491215 * 1000),
  '/3/0/14': '+02:00',
  '/3/0/16': 'U',
};
