import type { Lwm2mServerState } from '../server';
import type { FileStateStore, StateFileInfo } from './file-store';

export { FileStateStore, type FileStateStoreOptions, type StateFileInfo } from './file-store';

/**
 * The state without DTLS sessions and without the observations that only exist over them. A running server's
 * sessions keep sending after a snapshot, so a snapshot's sessions may be resumed once at most (a second resume
 * would repeat record sequence numbers, and with them AEAD nonces, under the same keys): what is saved while
 * serving, and what stays on disk once a saved state was taken up, is this.
 */
export function withoutSessions(state: Lwm2mServerState): Lwm2mServerState {
  const plain = new Map(state.registrations.filter((r) => !r.secure).map((r) => [r.endpoint, r.channelKey]));
  return {
    ...state,
    sessions: [],
    observations: state.observations.filter((o) => plain.get(o.endpoint) === o.channelKey),
  };
}

export interface StateSaverOptions {
  /** Milliseconds between saves; default 10000. */
  intervalMs?: number;
  /** Where the server listens (saved beside the state). */
  info?: StateFileInfo;
  warn?: (message: string) => void;
}

/**
 * Saves a running server's state every `intervalMs` while it changes (compared by its JSON, `savedAt` aside), without
 * its sessions (see withoutSessions): what a restart after a crash finds. close() stops the timer; it does not save.
 */
export class StateSaver {
  private timer?: NodeJS.Timeout;
  private last = '';
  private busy = false;
  private closed = false;
  /** Saves done and skipped (unchanged), for tests and diagnostics. */
  readonly counts = { saved: 0, unchanged: 0, failed: 0 };

  constructor(
    private readonly store: FileStateStore,
    private readonly snapshot: () => Lwm2mServerState,
    private readonly opts: StateSaverOptions = {},
  ) {}

  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.tick(), this.opts.intervalMs ?? 10000);
  }

  /** Saves now if the state changed since the last save. */
  async tick(): Promise<void> {
    if (this.busy || this.closed) return;
    this.busy = true;
    try {
      const state = withoutSessions(this.snapshot());
      const fingerprint = JSON.stringify({ ...state, savedAt: 0 });
      if (fingerprint === this.last) {
        this.counts.unchanged += 1;
        return;
      }
      await this.store.save(state, this.opts.info);
      this.last = fingerprint;
      this.counts.saved += 1;
    } catch (err) {
      this.counts.failed += 1;
      this.opts.warn?.(`LwM2M state not saved to ${this.store.file}: ${(err as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
