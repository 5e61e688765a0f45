/**
 * Anti-replay sliding window (RFC 6347 §4.1.2.6, RFC 4303 §3.4.3): 64 records per epoch.
 * `check` is called before authentication, `update` only after the record authenticated.
 */
export const REPLAY_WINDOW_SIZE = 64;

export class ReplayWindow {
  /** Highest sequence number accepted so far, -1 before the first. */
  private top = -1;
  /** Bit i set = sequence number (top - i) was accepted. */
  private bits = 0n;

  /** True if the sequence number is new and not left of the window. */
  check(seq: number): boolean {
    if (seq > this.top) return true;
    const diff = this.top - seq;
    if (diff >= REPLAY_WINDOW_SIZE) return false;
    return ((this.bits >> BigInt(diff)) & 1n) === 0n;
  }

  update(seq: number): void {
    if (seq > this.top) {
      const shift = this.top < 0 ? REPLAY_WINDOW_SIZE : seq - this.top;
      this.bits = shift >= REPLAY_WINDOW_SIZE ? 0n : (this.bits << BigInt(shift)) & 0xffffffffffffffffn;
      this.bits |= 1n;
      this.top = seq;
    } else {
      const diff = this.top - seq;
      if (diff < REPLAY_WINDOW_SIZE) this.bits |= 1n << BigInt(diff);
    }
  }

  get highest(): number {
    return this.top;
  }

  /** Serialisable state: the highest accepted number and the 64-bit bitmap as 16 hex digits. */
  snapshot(): { highest: number; bitmap: string } {
    return { highest: this.top, bitmap: this.bits.toString(16).padStart(16, '0') };
  }

  /** Rebuilds a window from snapshot(); throws TypeError on a malformed one. */
  static restore(state: { highest: number; bitmap: string }): ReplayWindow {
    const w = new ReplayWindow();
    if (!Number.isSafeInteger(state.highest) || state.highest < -1 || typeof state.bitmap !== 'string' ||
        !/^[0-9a-f]{1,16}$/i.test(state.bitmap)) {
      throw new TypeError('malformed replay window state');
    }
    w.top = state.highest;
    w.bits = BigInt(`0x${state.bitmap}`);
    return w;
  }
}
