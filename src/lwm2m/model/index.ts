export * from './types';
export { ObjectModel, coreObjectDefs, MAX_DDF_FILE_BYTES } from './object-model';
export type { PathDescription, LoadDirectoryResult, CheckWritableOptions } from './object-model';
export { parseDdf, parseOperations, parseResourceType } from './ddf';
export { toCompact, fromCompact, COMPACT_FORMAT, COMPACT_RESOURCE_FIELDS } from './compact';
export type { CompactObject, CompactObjectFile, CompactResource } from './compact';
