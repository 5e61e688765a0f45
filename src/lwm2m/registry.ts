import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';

/** One registered LwM2M client, as flows see it (SPEC: lwm2m-events payload). */
export interface Registration {
  endpoint: string;
  registrationId: string;
  /** Seconds. */
  lifetime: number;
  lwm2mVersion: string;
  binding: string;
  queueMode: boolean;
  smsNumber?: string;
  /** Object instances and objects the device announced, e.g. ['/1/0', '/3/0', '/3303']. */
  objects: string[];
  /** Object versions announced with `ver=`, keyed by object id. */
  objectVersions: Record<string, string>;
  /** Content formats announced on the root link (`</>;ct=…`). */
  contentFormats: number[];
  /** Alternate path (`</x>;rt="oma.lwm2m"`), '' when the objects sit at the root. */
  rootPath: string;
  address: string;
  port: number;
  secure: boolean;
  identity?: string;
  /** Channel the device talks over (plain UDP peer or DTLS session). */
  channelKey: string;
  registeredAt: number;
  lastSeen: number;
}

export type RegistryEvent = 'register' | 'update' | 'deregister' | 'expire';

/**
 * Endpoint → registration, with unique registration ids. A new registration of an endpoint replaces the old one.
 * Emits 'register' (reg, replaced?), 'update' (reg, changes), 'deregister' (reg), 'expire' (reg).
 */
export class Registry extends EventEmitter {
  private readonly byEndpointMap = new Map<string, Registration>();
  private readonly byIdMap = new Map<string, Registration>();
  /**
   * No registration expires before this (a lower bound: traffic only moves expiries later), so the periodic check
   * skips the scan over every registration until it is due.
   */
  private nextExpiry = Infinity;

  private noteExpiry(reg: Registration): void {
    const at = reg.lastSeen + reg.lifetime * 1000;
    if (Number.isNaN(at)) this.nextExpiry = -Infinity; // a malformed restore: check every time, as before
    else if (at < this.nextExpiry) this.nextExpiry = at;
  }

  newRegistrationId(): string {
    for (;;) {
      const id = randomBytes(6).toString('base64url');
      if (!this.byIdMap.has(id)) return id;
    }
  }

  add(reg: Registration): Registration | undefined {
    const replaced = this.byEndpointMap.get(reg.endpoint);
    if (replaced) this.byIdMap.delete(replaced.registrationId);
    this.byEndpointMap.set(reg.endpoint, reg);
    this.byIdMap.set(reg.registrationId, reg);
    this.noteExpiry(reg);
    this.emit('register', reg, replaced);
    return replaced;
  }

  /** Puts back a saved registration (hand-over, restart) without emitting 'register'. */
  restore(reg: Registration): void {
    const old = this.byEndpointMap.get(reg.endpoint);
    if (old) this.byIdMap.delete(old.registrationId);
    this.byEndpointMap.set(reg.endpoint, reg);
    this.byIdMap.set(reg.registrationId, reg);
    this.noteExpiry(reg);
  }

  /** Applies changes to a registration; emits 'update' with the names of the fields that changed. */
  update(reg: Registration, changes: Partial<Registration>): string[] {
    const changed: string[] = [];
    for (const [k, v] of Object.entries(changes) as Array<[keyof Registration, unknown]>) {
      if (v === undefined) continue;
      if (JSON.stringify(reg[k]) !== JSON.stringify(v)) changed.push(k);
      (reg as unknown as Record<string, unknown>)[k] = v;
    }
    this.noteExpiry(reg);
    this.emit('update', reg, changed.filter((k) => k !== 'lastSeen'));
    return changed;
  }

  /** Marks traffic from the device without an Update (keeps lastSeen fresh for queue mode). */
  touch(reg: Registration, now = Date.now()): void {
    reg.lastSeen = now;
  }

  remove(reg: Registration, why: 'deregister' | 'expire'): boolean {
    if (this.byIdMap.get(reg.registrationId) !== reg) return false;
    this.byIdMap.delete(reg.registrationId);
    this.byEndpointMap.delete(reg.endpoint);
    this.emit(why, reg);
    return true;
  }

  /** Removes a registration without an event (it now lives elsewhere, e.g. on another server instance). */
  forget(reg: Registration): boolean {
    if (this.byIdMap.get(reg.registrationId) !== reg) return false;
    this.byIdMap.delete(reg.registrationId);
    this.byEndpointMap.delete(reg.endpoint);
    return true;
  }

  byEndpoint(endpoint: string): Registration | undefined {
    return this.byEndpointMap.get(endpoint);
  }

  byId(id: string): Registration | undefined {
    return this.byIdMap.get(id);
  }

  all(): Registration[] {
    return [...this.byEndpointMap.values()];
  }

  get size(): number {
    return this.byEndpointMap.size;
  }

  /** Removes every registration whose lifetime ran out; returns them (each also emitted as 'expire'). */
  expire(now = Date.now()): Registration[] {
    if (now < this.nextExpiry) return [];
    const gone: Registration[] = [];
    let next = Infinity;
    for (const reg of this.byEndpointMap.values()) {
      const at = reg.lastSeen + reg.lifetime * 1000;
      if (at <= now) gone.push(reg);
      else if (Number.isNaN(at)) next = -Infinity;
      else if (at < next) next = at;
    }
    this.nextExpiry = next;
    for (const reg of gone) this.remove(reg, 'expire');
    return gone;
  }

  clear(): void {
    this.byEndpointMap.clear();
    this.byIdMap.clear();
  }
}
