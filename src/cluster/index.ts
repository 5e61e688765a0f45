export type { ClusterStore } from './types';
export { RedisClusterStore, redactUrl, type RedisClusterOptions } from './redis';
export { encodeJson, decodeJson } from './codec';
