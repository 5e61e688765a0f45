import type { Channel, LogFn } from '../channel';

export type PoolMode = 'inbound' | 'outbound';

/** A live outbound DTLS session dialled by the server (the device runs the DTLS server). */
export interface OutboundSession {
  channel: Channel;
  close(): void;
  /** Called by the dialler when the peer closes or the socket fails. */
  onClose(cb: () => void): void;
}

export type Dialler = (endpoint: string) => Promise<OutboundSession>;

/** Per-device pooled-session record (SPEC: lwm2m-stats perSession). */
export interface PoolEntry {
  endpoint: string;
  mode: PoolMode;
  channel?: Channel;
  address: string;
  port: number;
  identity?: string;
  handshakes: number;
  requests: number;
  createdAt: number;
  lastUsed: number;
  /** Outbound: the dial in progress; concurrent requests wait for it instead of dialling again. */
  dialing?: Promise<Channel>;
  outbound?: OutboundSession;
}

export interface PoolOptions {
  mode: PoolMode;
  /** Milliseconds without traffic after which an outbound session is closed. */
  idleTimeoutMs: number;
  maxSessions: number;
  dial: Dialler;
  log?: LogFn;
}

export class PoolError extends Error {
  override name = 'PoolError';
}

/**
 * Endpoint → authenticated session. Inbound entries point at the session the device opened (bound at
 * registration); outbound entries own a session the server dialled. Either way one handshake serves every
 * request until the session ends.
 */
export class SessionPool {
  private readonly entries = new Map<string, PoolEntry>();
  /**
   * Entries by the key of the channel they are bound to, so that a session's end finds its entries without going
   * over the whole pool (one session normally serves one endpoint; an array when it serves several).
   */
  private readonly byChannel = new Map<string, PoolEntry | PoolEntry[]>();

  constructor(private readonly opts: PoolOptions) {}

  get mode(): PoolMode {
    return this.opts.mode;
  }

  get(endpoint: string): PoolEntry | undefined {
    return this.entries.get(endpoint);
  }

  all(): PoolEntry[] {
    return [...this.entries.values()];
  }

  /** Inbound: binds a device-opened session to the endpoint that registered over it. */
  bindInbound(endpoint: string, channel: Channel, newHandshake: boolean, now = Date.now()): PoolEntry {
    let entry = this.entries.get(endpoint);
    if (!entry) {
      this.checkCapacity();
      entry = this.newEntry(endpoint, 'inbound', channel.address, channel.port, channel.identity, now);
      entry.handshakes = 1;
    } else if (entry.channel?.key !== channel.key && newHandshake) {
      entry.handshakes += 1;
    }
    entry.mode = 'inbound';
    this.bind(entry, channel);
    entry.address = channel.address;
    entry.port = channel.port;
    entry.identity = channel.identity;
    return entry;
  }

  /** The session with this key ended; entries that used it stay (counters kept) but have no channel. */
  unbindChannel(channelKey: string): PoolEntry[] {
    const bound = this.byChannel.get(channelKey);
    if (bound === undefined) return [];
    const hit = Array.isArray(bound) ? [...bound] : [bound];
    for (const entry of hit) {
      this.unbind(entry);
      entry.outbound = undefined;
    }
    return hit;
  }

  /** Sets the entry's channel, keeping the by-channel index in step. */
  private bind(entry: PoolEntry, channel: Channel): void {
    if (entry.channel === channel) return;
    this.unbind(entry);
    entry.channel = channel;
    const key = channel.key;
    const bound = this.byChannel.get(key);
    if (bound === undefined) this.byChannel.set(key, entry);
    else if (Array.isArray(bound)) bound.push(entry);
    else this.byChannel.set(key, [bound, entry]);
  }

  /** Clears the entry's channel, keeping the by-channel index in step. */
  private unbind(entry: PoolEntry): void {
    const channel = entry.channel;
    if (!channel) return;
    entry.channel = undefined;
    const key = channel.key;
    const bound = this.byChannel.get(key);
    if (bound === entry) {
      this.byChannel.delete(key);
    } else if (Array.isArray(bound)) {
      const at = bound.indexOf(entry);
      if (at >= 0) bound.splice(at, 1);
      if (bound.length === 1) this.byChannel.set(key, bound[0]);
      else if (bound.length === 0) this.byChannel.delete(key);
    }
  }

  /** Outbound: prepares an entry and dials right away, so the first request pays no handshake. */
  prepareOutbound(endpoint: string, address: string, port: number, identity: string | undefined, now = Date.now()): PoolEntry {
    let entry = this.entries.get(endpoint);
    if (!entry) {
      this.checkCapacity();
      entry = this.newEntry(endpoint, 'outbound', address, port, identity, now);
      this.entries.set(endpoint, entry);
    }
    this.connectOutbound(entry).catch((err: Error) => {
      this.opts.log?.('debug', `outbound DTLS dial to ${endpoint} failed: ${err.message}`);
    });
    return entry;
  }

  /** The entry of `endpoint` when it has a live session now (no waiting), else undefined: channelFor's fast path. */
  readyEntry(endpoint: string): PoolEntry | undefined {
    const entry = this.entries.get(endpoint);
    return entry?.channel ? entry : undefined;
  }

  /**
   * The channel to use for a request: the bound inbound session, or the outbound session (dialling it when
   * there is none; concurrent callers share the one dial).
   */
  async channelFor(endpoint: string): Promise<{ channel: Channel; entry: PoolEntry; reused: boolean }> {
    const entry = this.entries.get(endpoint);
    if (!entry) throw new PoolError(`no pooled session for endpoint "${endpoint}"`);
    if (entry.channel) return { channel: entry.channel, entry, reused: true };
    if (entry.mode === 'inbound') {
      throw new PoolError(`the DTLS session of "${endpoint}" has ended; the device must reconnect before it can be reached`);
    }
    // This request waits for a handshake, so it does not count as reusing a pooled session.
    const channel = await this.connectOutbound(entry);
    return { channel, entry, reused: false };
  }

  private connectOutbound(entry: PoolEntry): Promise<Channel> {
    if (entry.channel) return Promise.resolve(entry.channel);
    if (entry.dialing) return entry.dialing;
    const dialing = this.opts
      .dial(entry.endpoint)
      .then((session) => {
        if (this.entries.get(entry.endpoint) !== entry) {
          session.close();
          throw new PoolError(`endpoint "${entry.endpoint}" left the pool while its session was being dialled`);
        }
        entry.handshakes += 1;
        this.bind(entry, session.channel);
        entry.outbound = session;
        entry.address = session.channel.address;
        entry.port = session.channel.port;
        entry.lastUsed = Date.now();
        session.onClose(() => {
          if (entry.outbound === session) {
            entry.outbound = undefined;
            this.unbind(entry);
          }
        });
        this.opts.log?.('debug', `outbound DTLS session to ${entry.endpoint} established (${entry.address}:${entry.port})`);
        return session.channel;
      })
      .finally(() => {
        if (entry.dialing === dialing) entry.dialing = undefined;
      });
    entry.dialing = dialing;
    return dialing;
  }


  /** Forgets the endpoint; an outbound session is closed (de-registration, expiry). */
  remove(endpoint: string): void {
    const entry = this.entries.get(endpoint);
    if (!entry) return;
    this.entries.delete(endpoint);
    entry.outbound?.close();
    entry.outbound = undefined;
    this.unbind(entry);
  }

  /** Closes outbound sessions idle for longer than the idle timeout; returns the endpoints closed. */
  sweepIdle(now = Date.now()): string[] {
    const closed: string[] = [];
    for (const entry of this.entries.values()) {
      if (entry.outbound && now - entry.lastUsed >= this.opts.idleTimeoutMs) {
        const s = entry.outbound;
        entry.outbound = undefined;
        this.unbind(entry);
        s.close();
        closed.push(entry.endpoint);
        this.opts.log?.('debug', `outbound DTLS session to ${entry.endpoint} closed after ${Math.round((now - entry.lastUsed) / 1000)}s idle`);
      }
    }
    return closed;
  }

  closeAll(): void {
    for (const entry of this.entries.values()) entry.outbound?.close();
    this.entries.clear();
    this.byChannel.clear();
  }

  countSessions(): { active: number; inbound: number; outbound: number } {
    let inbound = 0;
    let outbound = 0;
    for (const e of this.entries.values()) {
      if (!e.channel) continue;
      if (e.mode === 'inbound') inbound += 1;
      else outbound += 1;
    }
    return { active: inbound + outbound, inbound, outbound };
  }

  private checkCapacity(): void {
    if (this.entries.size >= this.opts.maxSessions) {
      throw new PoolError(`session pool full (maxSessions ${this.opts.maxSessions})`);
    }
  }

  private newEntry(endpoint: string, mode: PoolMode, address: string, port: number, identity: string | undefined, now: number): PoolEntry {
    const entry: PoolEntry = {
      endpoint, mode, address, port, identity,
      handshakes: 0, requests: 0, createdAt: now, lastUsed: now,
    };
    this.entries.set(endpoint, entry);
    return entry;
  }
}
