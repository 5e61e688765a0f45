/**
 * Anti-replay sliding window (RFC 6347 §4.1.2.6, RFC 4303 §3.4.3): 64 records per epoch.
 * `check` is called before authentication, `update` only after the record authenticated.
 */
export const REPLAY_WINDOW_SIZE = 64;

/** A sequence number as a small integer when it is one (V8 then keeps it inside the object, not in a box of its own). */
function small(n: number): number {
  return n >= 0 && n <= 0x3fffffff ? n | 0 : n;
}

export class ReplayWindow {
  /** Highest sequence number accepted so far, -1 before the first. */
  private top = -1;
  /**
   * The 64-bit bitmap as two 32-bit halves (int32, kept inside the object): bit i set = sequence number (top - i)
   * was accepted; bits 0..31 in `lo`, 32..63 in `hi`.
   */
  private lo = 0;
  private hi = 0;

  /** True if the sequence number is new and not left of the window. */
  check(seq: number): boolean {
    if (seq > this.top) return true;
    const diff = this.top - seq;
    if (diff >= REPLAY_WINDOW_SIZE) return false;
    const bit = diff < 32 ? (this.lo >>> diff) & 1 : (this.hi >>> (diff - 32)) & 1;
    return bit === 0;
  }

  update(seq: number): void {
    if (seq > this.top) {
      const shift = this.top < 0 ? REPLAY_WINDOW_SIZE : seq - this.top;
      if (shift >= REPLAY_WINDOW_SIZE) {
        this.hi = 0;
        this.lo = 0;
      } else if (shift >= 32) {
        this.hi = shift === 32 ? this.lo : (this.lo << (shift - 32)) | 0;
        this.lo = 0;
      } else {
        this.hi = ((this.hi << shift) | (this.lo >>> (32 - shift))) | 0;
        this.lo = (this.lo << shift) | 0;
      }
      this.lo |= 1;
      this.top = small(seq);
    } else {
      const diff = this.top - seq;
      if (diff < 32) this.lo |= 1 << diff;
      else if (diff < REPLAY_WINDOW_SIZE) this.hi |= 1 << (diff - 32);
    }
  }

  get highest(): number {
    return this.top;
  }

  /** Serialisable state: the highest accepted number and the 64-bit bitmap as 16 hex digits. */
  snapshot(): { highest: number; bitmap: string } {
    const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');
    return { highest: this.top, bitmap: hex(this.hi) + hex(this.lo) };
  }

  /** Rebuilds a window from snapshot(); throws TypeError on a malformed one. */
  static restore(state: { highest: number; bitmap: string }): ReplayWindow {
    const w = new ReplayWindow();
    if (!Number.isSafeInteger(state.highest) || state.highest < -1 || typeof state.bitmap !== 'string' ||
        !/^[0-9a-f]{1,16}$/i.test(state.bitmap)) {
      throw new TypeError('malformed replay window state');
    }
    const bits = state.bitmap.padStart(16, '0');
    w.top = small(state.highest);
    w.hi = parseInt(bits.slice(0, 8), 16) | 0;
    w.lo = parseInt(bits.slice(8), 16) | 0;
    return w;
  }
}
