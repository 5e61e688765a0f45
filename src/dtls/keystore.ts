/**
 * Memory for the key blocks of established sessions: slots in a few large ArrayBuffers owned by one DtlsServer,
 * instead of one small ArrayBuffer per session (each of which costs several hundred bytes of native bookkeeping).
 * A slot is zeroed when it is released and before it is handed out again; the chunks are dropped by clear().
 * The store only grows to the peak number of live key blocks (at most maxSessions of them).
 */

import { Buffer } from 'node:buffer';

const CHUNK_SIZE = 16 * 1024;

export class KeyStore {
  private readonly chunks: ArrayBuffer[] = [];
  private readonly chunkIndex = new Map<ArrayBuffer, number>();
  /** Free slots by size, each encoded as chunk index * CHUNK_SIZE + offset. */
  private readonly free = new Map<number, number[]>();
  /** Next unused byte in the last chunk. */
  private used = CHUNK_SIZE;

  /** A zero-filled view of `length` bytes (1..CHUNK_SIZE) in one of the store's chunks. */
  alloc(length: number): Buffer {
    if (!Number.isInteger(length) || length < 1 || length > CHUNK_SIZE) throw new RangeError('bad key block length');
    const slot = this.free.get(length)?.pop();
    if (slot !== undefined) {
      const chunk = this.chunks[Math.floor(slot / CHUNK_SIZE)];
      return Buffer.from(chunk, slot % CHUNK_SIZE, length).fill(0);
    }
    if (this.used + length > CHUNK_SIZE) {
      const chunk = new ArrayBuffer(CHUNK_SIZE);
      this.chunkIndex.set(chunk, this.chunks.length);
      this.chunks.push(chunk);
      this.used = 0;
    }
    const off = this.used;
    this.used += length;
    return Buffer.from(this.chunks[this.chunks.length - 1], off, length);
  }

  /** A copy of `src` in the store. */
  copy(src: Uint8Array): Buffer {
    const b = this.alloc(src.length);
    b.set(src);
    return b;
  }

  /**
   * Zeroes a slot and makes it available again. A block that is not (or no longer, after clear()) in the store is
   * only zeroed.
   */
  release(buffer: ArrayBuffer, offset: number, length: number): void {
    new Uint8Array(buffer, offset, length).fill(0);
    const index = this.chunkIndex.get(buffer);
    if (index === undefined) return;
    let list = this.free.get(length);
    if (!list) {
      list = [];
      this.free.set(length, list);
    }
    list.push(index * CHUNK_SIZE + offset);
  }

  /** Zeroes and forgets every chunk. */
  clear(): void {
    for (const c of this.chunks) new Uint8Array(c).fill(0);
    this.chunks.length = 0;
    this.chunkIndex.clear();
    this.free.clear();
    this.used = CHUNK_SIZE;
  }
}
