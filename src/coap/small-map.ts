/**
 * A map for the one or two entries a CoAP channel usually has pending. A `Map` allocates a new hash table when it
 * grows from empty and again when it shrinks back (V8 rehashes on delete once it is under a quarter full), so a
 * channel that sends one request at a time reallocated two tables per request; a table kept by a long-lived
 * channel outlives the young generation and is copied and promoted before it dies (GC pauses under load). Here
 * the first two entries live in fields (set and delete allocate nothing); a `Map` takes the rest.
 * Keys compare with `===` (numbers and strings; never undefined).
 */
export class SmallMap<K, V> {
  private k0: K | undefined;
  private v0: V | undefined;
  private k1: K | undefined;
  private v1: V | undefined;
  private more: Map<K, V> | undefined;

  get size(): number {
    return (this.k0 !== undefined ? 1 : 0) + (this.k1 !== undefined ? 1 : 0) + (this.more?.size ?? 0);
  }

  get(key: K): V | undefined {
    if (key === this.k0) return this.v0;
    if (key === this.k1) return this.v1;
    return this.more?.get(key);
  }

  has(key: K): boolean {
    return key === this.k0 || key === this.k1 || (this.more?.has(key) ?? false);
  }

  set(key: K, value: V): this {
    if (key === this.k0) this.v0 = value;
    else if (key === this.k1) this.v1 = value;
    else if (this.more?.has(key)) this.more.set(key, value);
    else if (this.k0 === undefined) {
      this.k0 = key;
      this.v0 = value;
    } else if (this.k1 === undefined) {
      this.k1 = key;
      this.v1 = value;
    } else {
      (this.more ??= new Map()).set(key, value);
    }
    return this;
  }

  delete(key: K): boolean {
    if (key === this.k0) {
      this.k0 = undefined;
      this.v0 = undefined;
      return true;
    }
    if (key === this.k1) {
      this.k1 = undefined;
      this.v1 = undefined;
      return true;
    }
    if (!this.more?.delete(key)) return false;
    if (this.more.size === 0) this.more = undefined;
    return true;
  }

  /** The values, as an array (a copy: the map may change while the caller goes through it). */
  values(): V[] {
    const out: V[] = [];
    if (this.k0 !== undefined) out.push(this.v0 as V);
    if (this.k1 !== undefined) out.push(this.v1 as V);
    if (this.more) for (const v of this.more.values()) out.push(v);
    return out;
  }

  clear(): void {
    this.k0 = this.k1 = undefined;
    this.v0 = this.v1 = undefined;
    this.more = undefined;
  }
}
