/** Flow JSON for the lwm2m nodes as the editor writes it, for node-red-node-test-helper. Nodes sit on tab 'tab'. */
import helper from 'node-red-node-test-helper';

export type FlowNode = Record<string, unknown>;

/** Server node settings as the editor's defaults set them, on loopback; ports and security are up to the test. */
export const SERVER_DEFAULTS = {
  bind: '127.0.0.1',
  poolMode: 'inbound',
  idleTimeout: 300,
  maxSessions: 100,
  minLifetime: 1,
  maxLifetime: 86400,
} as const;

export function tabNode(label = 'lwm2m'): FlowNode {
  return { id: 'tab', type: 'tab', label };
}

/** An lwm2m-server config node (no tab); `props` are added as given. */
export function serverNode(id: string, props: FlowNode): FlowNode {
  return { id, type: 'lwm2m-server', z: '', ...props };
}

/** An lwm2m-request node (a read with everything from the msg unless `props` say otherwise), wired to `out`. */
export function requestNode(id: string, server: string, out: string | undefined, props: FlowNode = {}): FlowNode {
  return {
    id, type: 'lwm2m-request', z: 'tab', server, operation: 'read', endpoint: '', path: '', format: 'auto', timeout: '',
    wires: out ? [[out]] : [], ...props,
  };
}

export function eventsNode(id: string, server: string, events: string, endpointFilter: string, out: string): FlowNode {
  return { id, type: 'lwm2m-events', z: 'tab', server, events, endpointFilter, wires: [[out]] };
}

export function statsNode(id: string, server: string, out: string): FlowNode {
  return { id, type: 'lwm2m-stats', z: 'tab', server, interval: 0, wires: [[out]] };
}

/** A catch node for every node on the tab, wired to `out`. */
export function catchAllNode(id: string, out: string): FlowNode {
  return { id, type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [[out]] };
}

export function helperNodes(...ids: string[]): FlowNode[] {
  return ids.map((id) => ({ id, type: 'helper', z: 'tab' }));
}

/** Every msg that reaches the node `id` from now on. */
export function collect<M>(id: string): M[] {
  const seen: M[] = [];
  helper.getNode(id).on('input', (m: M) => seen.push(m));
  return seen;
}

/**
 * Registers hooks in the calling describe(): the test helper's server runs for all its tests; after each test,
 * `cleanup` runs (e.g. to stop a device), then the flows are unloaded.
 */
export function useNodeRedHelper(cleanup: () => Promise<void> = async () => {}): void {
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    await cleanup();
    await helper.unload();
  });
}
