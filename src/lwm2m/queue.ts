/**
 * Queue mode (LwM2M TS Transport §6.5): a device that registered with queue mode is reachable only for a while
 * after it last sent something. Requests for a sleeping device wait in its mailbox until it talks again
 * (Register, Update, Send) or until their own timeout.
 */
export class MailboxTimeoutError extends Error {
  override name = 'MailboxTimeoutError';
}
export class MailboxClosedError extends Error {
  override name = 'MailboxClosedError';
}

/**
 * One request waiting in a mailbox, as a descriptor that can be saved and executed by another server instance
 * (restart, hand-over). `payload` is the request's payload as given; `msg` a JSON-safe copy of the flow message the
 * request came with (see toJsonSafe in the cluster codec), or undefined.
 */
export interface MailboxEntry {
  id: string;
  endpoint: string;
  operation: string;
  path: string | string[];
  payload?: unknown;
  format?: string;
  /** The request's own timeout (ms), when it had one; the answer then has to arrive by `deadline` as well. */
  timeout?: number;
  /** Absolute time (ms since the epoch) after which the entry fails with "did not wake up". */
  deadline: number;
  queuedAt: number;
  /** Who sent the request (a flow node id): results of restored entries are routed by it. */
  owner?: string;
  msg?: Record<string, unknown>;
  /** cancel-observe(-composite): the token (hex) of the observation to cancel, taken off the table when queued. */
  cancelToken?: string;
}

interface Waiter {
  /** The mailbox the waiter is in (it moves on hand-over). */
  box: Waiter[];
  /** The descriptor; undefined for requests that are not kept across restarts (e.g. forwarded by another instance). */
  entry?: MailboxEntry;
  /** A caller waiting in this process; undefined for an entry restored from a saved state (no caller any more). */
  live?: { resolve: () => void; reject: (err: Error) => void };
  endpoint: string;
  /** The wait it was given, for the timeout message. */
  waitMs: number;
  timer?: NodeJS.Timeout;
  /** The instance whose mailbox holds it (it changes on hand-over). */
  queue: QueueMode;
}

interface DeviceState {
  awakeUntil: number;
  asleep: boolean;
  mailbox: Waiter[];
}

export interface QueueModeEvents {
  sleep: (endpoint: string) => void;
  awake: (endpoint: string) => void;
  /** A restored entry's device woke up: execute it now. */
  wake?: (entry: MailboxEntry) => void;
  /** A restored entry failed without being sent (timeout, device gone). */
  lapse?: (entry: MailboxEntry, err: Error) => void;
}

/** How many ids of settled entries are remembered, so a saved copy of them is not executed again. */
const SETTLED_MEMORY = 1024;

export class QueueMode {
  private readonly devices = new Map<string, DeviceState>();
  /** Ids of entries that left a mailbox (sent, timed out, failed), oldest first. */
  private readonly settled = new Set<string>();

  constructor(
    /** Milliseconds a device stays reachable after it last talked (CoAP MAX_TRANSMIT_WAIT, 93 s, by default). */
    private readonly awakeTimeMs: number,
    private readonly events: QueueModeEvents,
  ) {}

  private markSettled(w: Waiter): void {
    if (!w.entry) return;
    this.settled.add(w.entry.id);
    if (this.settled.size > SETTLED_MEMORY) this.settled.delete(this.settled.values().next().value as string);
  }

  /** The device talked: it is awake for awakeTimeMs; waiting requests go out now, in order. */
  heard(endpoint: string, now = Date.now()): void {
    let st = this.devices.get(endpoint);
    if (!st) {
      st = { awakeUntil: 0, asleep: false, mailbox: [] };
      this.devices.set(endpoint, st);
    }
    st.awakeUntil = now + this.awakeTimeMs;
    if (st.asleep) {
      st.asleep = false;
      this.events.awake(endpoint);
    }
    if (st.mailbox.length === 0) return;
    const waiting = st.mailbox.splice(0);
    for (const w of waiting) {
      clearTimeout(w.timer);
      this.markSettled(w);
      if (w.live) w.live.resolve();
      else if (w.entry) this.events.wake?.(w.entry);
    }
  }

  isAwake(endpoint: string, now = Date.now()): boolean {
    const st = this.devices.get(endpoint);
    return st !== undefined && !st.asleep && st.awakeUntil > now;
  }

  private stateOf(endpoint: string): DeviceState {
    let st = this.devices.get(endpoint);
    if (!st) {
      st = { awakeUntil: 0, asleep: true, mailbox: [] };
      this.devices.set(endpoint, st);
    }
    return st;
  }

  private timeoutError(entry: { endpoint: string }, ms: number): MailboxTimeoutError {
    return new MailboxTimeoutError(`device "${entry.endpoint}" is asleep (queue mode) and did not wake up within ${ms} ms`);
  }

  /**
   * Resolves when the device is (or becomes) awake; rejects after timeoutMs. With `entry` the waiting request is
   * part of exportEntries() (so a restarted server can execute it); without, it lives in this process only.
   */
  whenAwake(endpoint: string, timeoutMs: number, entry?: MailboxEntry, now = Date.now()): Promise<void> {
    if (this.isAwake(endpoint, now)) return Promise.resolve();
    const state = this.stateOf(endpoint);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { box: state.mailbox, entry, live: { resolve, reject }, endpoint, waitMs: timeoutMs, queue: this };
      waiter.timer = setTimeout(() => waiter.queue.expire(waiter), timeoutMs);
      state.mailbox.push(waiter);
    });
  }

  /** A waiter's time ran out: the caller (or, for a restored entry, the `lapse` event) gets the timeout error. */
  private expire(w: Waiter): void {
    const i = w.box.indexOf(w);
    if (i >= 0) w.box.splice(i, 1);
    this.markSettled(w);
    const err = this.timeoutError(w, w.waitMs);
    if (w.live) w.live.reject(err);
    else if (w.entry) this.events.lapse?.(w.entry, err);
  }

  /** Descriptors of the requests waiting (in order per device), for a restart or another instance to take up. */
  exportEntries(): MailboxEntry[] {
    const out: MailboxEntry[] = [];
    for (const st of this.devices.values()) for (const w of st.mailbox) if (w.entry) out.push(w.entry);
    return out;
  }

  /**
   * Queues entries saved by another instance, each with the time left to its deadline; on wake the `wake` event
   * executes it. Entries already here or settled here (in-process hand-over) are skipped. Returns the entries whose
   * deadline already passed (not queued: the caller reports them).
   */
  importEntries(entries: MailboxEntry[], now = Date.now()): MailboxEntry[] {
    const present = new Set(this.exportEntries().map((e) => e.id));
    const expired: MailboxEntry[] = [];
    for (const entry of entries) {
      if (present.has(entry.id) || this.settled.has(entry.id)) continue;
      present.add(entry.id);
      const left = entry.deadline - now;
      if (left <= 0) {
        this.settled.add(entry.id);
        expired.push(entry);
        continue;
      }
      const state = this.stateOf(entry.endpoint);
      const waiter: Waiter = { box: state.mailbox, entry, endpoint: entry.endpoint, waitMs: entry.deadline - entry.queuedAt, queue: this };
      waiter.timer = setTimeout(() => waiter.queue.expire(waiter), left);
      state.mailbox.push(waiter);
    }
    return expired;
  }

  /** For an entry that will not wait here: false when it is already here or was settled here, else marks it settled. */
  claim(id: string): boolean {
    if (this.settled.has(id) || this.exportEntries().some((e) => e.id === id)) return false;
    this.settled.add(id);
    return true;
  }

  /** The error a restored entry whose deadline passed gets. */
  expiredError(entry: MailboxEntry): MailboxTimeoutError {
    return this.timeoutError(entry, entry.deadline - entry.queuedAt);
  }

  /** Awake/asleep state per device, for hand-over and restarts (the waiting requests: exportEntries()). */
  exportState(): Array<{ endpoint: string; awakeUntil: number; asleep: boolean }> {
    return [...this.devices].map(([endpoint, st]) => ({ endpoint, awakeUntil: st.awakeUntil, asleep: st.asleep }));
  }

  importState(list: Array<{ endpoint: string; awakeUntil: number; asleep: boolean }>): void {
    for (const d of list) {
      const st = this.devices.get(d.endpoint);
      if (st) {
        st.awakeUntil = d.awakeUntil;
        st.asleep = d.asleep;
      } else {
        this.devices.set(d.endpoint, { awakeUntil: d.awakeUntil, asleep: d.asleep, mailbox: [] });
      }
    }
  }

  /**
   * Hands the waiting requests over to another instance's mailbox (in-process redeploy): each keeps its own
   * timeout and is released when the device talks to the new instance; restored entries then execute (and report
   * timeouts) there.
   */
  transferTo(next: QueueMode): void {
    for (const id of this.settled) next.settled.add(id);
    for (const [endpoint, st] of this.devices) {
      if (st.mailbox.length === 0) continue;
      let target = next.devices.get(endpoint);
      if (!target) {
        target = { awakeUntil: st.awakeUntil, asleep: st.asleep, mailbox: [] };
        next.devices.set(endpoint, target);
      }
      for (const w of st.mailbox.splice(0)) {
        w.box = target.mailbox;
        w.queue = next;
        target.mailbox.push(w);
      }
    }
  }

  /** Number of requests waiting for the device. */
  pending(endpoint: string): number {
    return this.devices.get(endpoint)?.mailbox.length ?? 0;
  }

  /** Marks devices whose awake window has passed as asleep (emitting 'sleep' once). */
  sweep(now = Date.now()): void {
    for (const [endpoint, st] of this.devices) {
      if (!st.asleep && st.awakeUntil <= now) {
        st.asleep = true;
        this.events.sleep(endpoint);
      }
    }
  }

  /** The device left (de-registered, expired): waiting requests fail. */
  forget(endpoint: string, why: string): void {
    const st = this.devices.get(endpoint);
    if (!st) return;
    this.devices.delete(endpoint);
    for (const w of st.mailbox) {
      clearTimeout(w.timer);
      this.markSettled(w);
      if (w.live) w.live.reject(new MailboxClosedError(why));
      else if (w.entry) this.events.lapse?.(w.entry, new MailboxClosedError(why));
    }
  }

  /**
   * The server closes: waiting callers fail with `why` (`handedOverWhy` for those whose entry was handed over to
   * another instance); restored entries are dropped silently (they live on in a saved or handed-over state, if any).
   */
  close(why = 'the LwM2M server is closed', handedOverWhy?: string): void {
    for (const st of this.devices.values()) {
      for (const w of st.mailbox) {
        clearTimeout(w.timer);
        w.live?.reject(new MailboxClosedError(w.entry && handedOverWhy !== undefined ? handedOverWhy : why));
      }
    }
    this.devices.clear();
  }
}
