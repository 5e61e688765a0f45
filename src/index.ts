export * from './server';
export { CcmContext, CcmScratch } from './dtls/ccm';
export type { Channel, LogFn } from './channel';
export {
  SecurityStore, SecurityError, type PskEntry, type PskEntryInput, type RpkEntry, type RpkEntryInput, type SecurityEntry,
  type SecurityEntryInput,
} from './lwm2m/security';
export type { Registration } from './lwm2m/registry';
export { OPERATIONS, IMPLEMENTED_OPERATIONS, FORMAT_NAMES } from './lwm2m/operations';
/** A simulated LwM2M device (DTLS via node-dtls-client or plain CoAP), for demos and tests. */
export { SimulatedDevice, DEFAULT_OBJECTS, type SimulatedDeviceOptions } from './sim/device';
/** Scale-out: several server instances sharing one fleet through Redis (option `cluster`). */
export { RedisClusterStore, type RedisClusterOptions, type ClusterStore } from './cluster';
