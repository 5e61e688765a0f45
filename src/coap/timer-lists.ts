/** What an entry of TimerLists carries: its due time and its links (set and read by TimerLists only). */
export interface TimerEntry {
  timerDue?: number;
  timerPrev?: TimerEntry;
  timerNext?: TimerEntry;
  timerList?: TimerList;
}

interface TimerList {
  head?: TimerEntry;
  tail?: TimerEntry;
}

/**
 * Timers for many short-lived entries (a CoAP endpoint's retransmission timers: one per confirmable request, nearly
 * all cancelled by the answer within milliseconds). Entries of one length wait in a list of their own, in the order
 * they fall due, linked through the entries themselves; one Node timer is armed for the earliest due time. Starting
 * and cancelling are a few field writes: no Timeout object or closure per entry, and no list of Node's timers made
 * and dropped each time the few requests in flight for one length all get their answers.
 *
 * The Node timer is cleared when no entry is left, so an idle owner holds none. Due times are performance.now()
 * milliseconds; an entry fires no earlier than its length after it was added.
 */
export class TimerLists<E extends TimerEntry> {
  private readonly lists = new Map<number, TimerList>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private count = 0;
  /** While due entries fire: add() leaves arming to run(), which arms for the earliest entry once they are done. */
  private running = false;
  private readonly onTimer = (): void => this.run();

  /** `fire`: called with each entry that falls due (the entry is no longer in the lists then). */
  constructor(private readonly fire: (entry: E) => void) {}

  /** Entries waiting. */
  get size(): number {
    return this.count;
  }

  /** Starts `entry`'s timer of `ms` milliseconds (restarts it when it was waiting). */
  add(entry: E, ms: number): void {
    if (entry.timerList) this.remove(entry);
    const due = performance.now() + ms;
    let list = this.lists.get(ms);
    if (list === undefined) {
      list = {};
      this.lists.set(ms, list);
    }
    entry.timerDue = due;
    entry.timerList = list;
    entry.timerPrev = list.tail;
    entry.timerNext = undefined;
    if (list.tail) list.tail.timerNext = entry;
    else list.head = entry;
    list.tail = entry;
    this.count++;
    if (due < this.armedFor && !this.running) this.arm(due);
  }

  /** Cancels `entry`'s timer (nothing when it has none). */
  remove(entry: E): void {
    const list = entry.timerList;
    if (list === undefined) return;
    const prev = entry.timerPrev;
    const next = entry.timerNext;
    if (prev) prev.timerNext = next;
    else list.head = next;
    if (next) next.timerPrev = prev;
    else list.tail = prev;
    entry.timerList = entry.timerPrev = entry.timerNext = undefined;
    this.count--;
    if (this.count === 0) this.disarm();
  }

  /** Cancels every timer. */
  clear(): void {
    for (const list of this.lists.values()) {
      for (let e = list.head; e; ) {
        const next = e.timerNext;
        e.timerList = e.timerPrev = e.timerNext = undefined;
        e = next;
      }
      list.head = list.tail = undefined;
    }
    this.count = 0;
    this.disarm();
  }

  private arm(due: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = due;
    this.timer = setTimeout(this.onTimer, Math.max(0, due - performance.now()));
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
  }

  private run(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    // Node's timers run on the event loop's clock (whole milliseconds, read at the start of the loop iteration): one
    // may run a fraction of a millisecond before performance.now() reaches its due time.
    const now = performance.now() + 1;
    const due: E[] = [];
    for (const list of this.lists.values()) {
      for (let e = list.head; e !== undefined && (e.timerDue as number) <= now; e = e.timerNext) due.push(e as E);
    }
    for (const e of due) this.remove(e);
    this.running = true;
    let failure: unknown;
    for (const e of due) {
      try {
        this.fire(e);
      } catch (err) {
        failure ??= err; // the others still fire; the first error surfaces as a throwing timer's would
      }
    }
    this.running = false;
    if (this.count > 0) {
      let next = Infinity;
      for (const list of this.lists.values()) if (list.head && (list.head.timerDue as number) < next) next = list.head.timerDue as number;
      if (next < this.armedFor) this.arm(next);
    }
    if (failure !== undefined) throw failure;
  }
}
