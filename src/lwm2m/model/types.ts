/** Object and Resource definitions as published in OMA DDF files (LwM2M Core TS §6.2, Appendix D). */

export type ResourceOperations = '' | 'R' | 'W' | 'RW' | 'E';

export type ResourceType =
  | 'String'
  | 'Integer'
  | 'Unsigned Integer'
  | 'Float'
  | 'Boolean'
  | 'Opaque'
  | 'Time'
  | 'Objlnk'
  | 'Corelnk'
  /** No value: executable Resources (empty `<Type>` in the DDF). */
  | 'none';

export const RESOURCE_TYPES: readonly ResourceType[] = [
  'String',
  'Integer',
  'Unsigned Integer',
  'Float',
  'Boolean',
  'Opaque',
  'Time',
  'Objlnk',
  'Corelnk',
  'none',
];

export const RESOURCE_OPERATIONS: readonly ResourceOperations[] = ['', 'R', 'W', 'RW', 'E'];

export interface ResourceDef {
  id: number;
  name: string;
  operations: ResourceOperations;
  /** True when the Resource has Resource Instances (`MultipleInstances` = Multiple). */
  multiple: boolean;
  mandatory: boolean;
  type: ResourceType;
  units?: string;
  rangeEnumeration?: string;
}

export interface ObjectDef {
  id: number;
  name: string;
  urn?: string;
  /** Object version, e.g. `'1.2'` (`'1.0'` when the DDF does not say). */
  version: string;
  /** LwM2M enabler version the Object was written for, e.g. `'1.1'`, when the DDF says. */
  lwm2mVersion?: string;
  /** True when the Object may have several Instances. */
  multiple: boolean;
  mandatory: boolean;
  /** Resource definitions by Resource ID. */
  resources: Map<number, ResourceDef>;
}

/** Thrown for an invalid Object definition or input that is not an OMA DDF document. */
export class Lwm2mModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Lwm2mModelError';
  }
}
