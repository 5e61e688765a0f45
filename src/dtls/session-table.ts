import { flatString } from '../flat-string';

/** What the table needs of a session: the address it answers at now. */
export interface AddressedSession {
  readonly address: string;
}

const PORTS = 65536;

/**
 * The established sessions of one DTLS server by peer address: a Map keyed by `${address}:${port}` (the public view),
 * and beside it an index by port, an array of 65,536 slots, so that each received datagram finds its session from the
 * address and port it came from without building and hashing a key string. A slot holds the session on that port, or
 * an array of them when peers on several addresses use the same port. The index is made with the first session.
 *
 * A slot's session is matched by its current `address`: a session that moves (connection ID, RFC 9146) is deleted
 * under its old address and port and set under the new ones by its owner right after it changed them.
 */
export class SessionTable<S extends AddressedSession> {
  readonly byKey = new Map<string, S>();
  private byPort: Array<S | S[] | undefined> | undefined;

  get size(): number {
    return this.byKey.size;
  }

  get(address: string, port: number): S | undefined {
    if (!validPort(port)) return this.byKey.get(`${address}:${port}`);
    const v = this.byPort?.[port];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return v.address === address ? v : undefined;
    for (let i = 0; i < v.length; i++) if (v[i].address === address) return v[i];
    return undefined;
  }

  /** Puts `s` under address and port; returns the session it replaced there, if any. */
  set(address: string, port: number, s: S): S | undefined {
    const key = `${address}:${port}`;
    const previous = this.byKey.get(key);
    this.byKey.set(flatString(key), s);
    if (!validPort(port)) return previous;
    const slots = (this.byPort ??= new Array<S | S[] | undefined>(PORTS).fill(undefined));
    const v = slots[port];
    if (v === undefined || v === previous) {
      slots[port] = s;
    } else if (Array.isArray(v)) {
      const at = previous ? v.indexOf(previous) : -1;
      if (at >= 0) v[at] = s;
      else v.push(s);
    } else {
      slots[port] = [v, s];
    }
    return previous;
  }

  /** Removes `s` from under address and port (nothing when another session is there). */
  delete(address: string, port: number, s: S): boolean {
    const key = `${address}:${port}`;
    if (this.byKey.get(key) !== s) return false;
    this.byKey.delete(key);
    if (!validPort(port) || !this.byPort) return true;
    const v = this.byPort[port];
    if (v === s) {
      this.byPort[port] = undefined;
    } else if (Array.isArray(v)) {
      const at = v.indexOf(s);
      if (at >= 0) v.splice(at, 1);
      if (v.length === 1) this.byPort[port] = v[0];
      else if (v.length === 0) this.byPort[port] = undefined;
    }
    return true;
  }

  values(): IterableIterator<S> {
    return this.byKey.values();
  }

  clear(): void {
    this.byKey.clear();
    this.byPort = undefined;
  }
}

function validPort(port: number): boolean {
  return port >= 0 && port < PORTS && (port | 0) === port;
}
