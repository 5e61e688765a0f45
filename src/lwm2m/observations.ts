/** One active observation (single path or composite) of one device. */
export interface Observation {
  endpoint: string;
  registrationId: string;
  /** `observe:/3/0/0` or `observe-composite:/1/0/1,/3/0/0` */
  key: string;
  paths: readonly string[];
  composite: boolean;
  token: Buffer;
  channelKey: string;
  /** Who started it (e.g. the Node-RED node id), so its owner can cancel everything it started. */
  owner?: string;
  createdAt: number;
  /** Called once when the observation ends without an explicit cancel by its owner. */
  onEnd?: (reason: string) => void;
}

export function observationKey(composite: boolean, paths: readonly string[]): string {
  return `${composite ? 'observe-composite' : 'observe'}:${paths.join(',')}`;
}

/** Endpoint → key → observation. A new observation of the same target replaces the old one. */
export class ObservationStore {
  private readonly byEndpoint = new Map<string, Map<string, Observation>>();

  add(obs: Observation): Observation | undefined {
    let m = this.byEndpoint.get(obs.endpoint);
    if (!m) {
      m = new Map();
      this.byEndpoint.set(obs.endpoint, m);
    }
    const old = m.get(obs.key);
    m.set(obs.key, obs);
    return old;
  }

  get(endpoint: string, key: string): Observation | undefined {
    return this.byEndpoint.get(endpoint)?.get(key);
  }

  /** Removes it only if it is still the current observation for its key. */
  remove(obs: Observation): boolean {
    const m = this.byEndpoint.get(obs.endpoint);
    if (!m || m.get(obs.key) !== obs) return false;
    m.delete(obs.key);
    if (m.size === 0) this.byEndpoint.delete(obs.endpoint);
    return true;
  }

  /** Removes and returns every observation of an endpoint. */
  removeEndpoint(endpoint: string): Observation[] {
    const m = this.byEndpoint.get(endpoint);
    this.byEndpoint.delete(endpoint);
    return m ? [...m.values()] : [];
  }

  ofEndpoint(endpoint: string): Observation[] {
    return [...(this.byEndpoint.get(endpoint)?.values() ?? [])];
  }

  ofOwner(owner: string): Observation[] {
    const out: Observation[] = [];
    for (const m of this.byEndpoint.values()) for (const o of m.values()) if (o.owner === owner) out.push(o);
    return out;
  }

  all(): Observation[] {
    const out: Observation[] = [];
    for (const m of this.byEndpoint.values()) out.push(...m.values());
    return out;
  }

  get size(): number {
    let n = 0;
    for (const m of this.byEndpoint.values()) n += m.size;
    return n;
  }

  clear(): void {
    this.byEndpoint.clear();
  }
}
