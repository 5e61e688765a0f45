import type { Lwm2mRequest, Lwm2mResult, Lwm2mServer, RegistrationInfo } from '../server';

/**
 * What an Lwm2mServer asks of a shared store when several server instances serve one fleet (option `cluster`).
 * RedisClusterStore is the implementation; one store object belongs to one server instance.
 */
export interface ClusterStore {
  /** This instance's id in the cluster. */
  readonly instanceId: string;
  /** Called by start() once the ports are bound: connects, shares the security table, publishes what is local. */
  attach(server: Lwm2mServer): Promise<void>;
  /**
   * Called by stop() before anything is torn down. `handOver` = the instance really goes away (not an in-process
   * redeploy): its registrations, DTLS sessions, observations and queue state are stored for another instance to
   * take over. Resolves true when DTLS sessions were handed over (the server must then not send close_notify).
   */
  detach(server: Lwm2mServer, handOver: boolean): Promise<boolean>;
  /** Called by stop() at the very end: closes the connections. */
  close(): Promise<void>;
  /** A request for an endpoint that is not registered through this instance. */
  forward(req: Lwm2mRequest): Promise<Lwm2mResult>;
  /** Registrations held by other instances (or by none, after a crash), for listings. */
  remoteRegistrations(): RegistrationInfo[];
}
