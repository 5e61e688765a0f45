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

interface Waiter {
  /** The mailbox the waiter is in (it moves on hand-over). */
  box: Waiter[];
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface DeviceState {
  awakeUntil: number;
  asleep: boolean;
  mailbox: Waiter[];
}

export interface QueueModeEvents {
  sleep: (endpoint: string) => void;
  awake: (endpoint: string) => void;
}

export class QueueMode {
  private readonly devices = new Map<string, DeviceState>();

  constructor(
    /** Milliseconds a device stays reachable after it last talked (CoAP MAX_TRANSMIT_WAIT, 93 s, by default). */
    private readonly awakeTimeMs: number,
    private readonly events: QueueModeEvents,
  ) {}

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
    const waiting = st.mailbox.splice(0);
    for (const w of waiting) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  isAwake(endpoint: string, now = Date.now()): boolean {
    const st = this.devices.get(endpoint);
    return st !== undefined && !st.asleep && st.awakeUntil > now;
  }

  /** Resolves when the device is (or becomes) awake; rejects after timeoutMs. */
  whenAwake(endpoint: string, timeoutMs: number, now = Date.now()): Promise<void> {
    if (this.isAwake(endpoint, now)) return Promise.resolve();
    let st = this.devices.get(endpoint);
    if (!st) {
      st = { awakeUntil: 0, asleep: true, mailbox: [] };
      this.devices.set(endpoint, st);
    }
    const state = st;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        box: state.mailbox,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = waiter.box.indexOf(waiter);
          if (i >= 0) waiter.box.splice(i, 1);
          reject(new MailboxTimeoutError(`device "${endpoint}" is asleep (queue mode) and did not wake up within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      state.mailbox.push(waiter);
    });
  }

  /** Awake/asleep state per device, for hand-over and restarts (the waiting requests themselves stay in-process). */
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
   * timeout and is released when the device talks to the new instance.
   */
  transferTo(next: QueueMode): void {
    for (const [endpoint, st] of this.devices) {
      if (st.mailbox.length === 0) continue;
      let target = next.devices.get(endpoint);
      if (!target) {
        target = { awakeUntil: st.awakeUntil, asleep: st.asleep, mailbox: [] };
        next.devices.set(endpoint, target);
      }
      for (const w of st.mailbox.splice(0)) {
        w.box = target.mailbox;
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
      w.reject(new MailboxClosedError(why));
    }
  }

  close(): void {
    for (const endpoint of [...this.devices.keys()]) this.forget(endpoint, 'the LwM2M server is closed');
  }
}
