/**
 * A datagram path to one peer. The CoAP layer sends and receives through channels without knowing whether
 * the bytes travel as plain UDP datagrams or inside a DTLS session.
 */
export interface Channel {
  /** Unique per peer and transport, e.g. `udp:127.0.0.1:5683` or `dtls:127.0.0.1:40000`. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** True when the channel is an authenticated DTLS session. */
  readonly secure: boolean;
  /** Identity the peer authenticated with (DTLS only): PSK identity, RPK endpoint, or X.509 subject CN. */
  readonly identity?: string;
  /** How the DTLS peer authenticated; undefined = PSK. */
  readonly authType?: 'psk' | 'rpk' | 'x509';
  /** Sends one datagram (one CoAP message). Must not throw; failures are reported by the transport. */
  send(data: Buffer): void;
  /**
   * Where the CoAP endpoint keeps its state for this channel, on a channel object that lives as long as its session
   * and carries every request and answer of it (the pool's): the endpoint then finds it without a lookup by key.
   * Channels made per message leave it out. Only the endpoint sets it.
   */
  coapState?: unknown;
}

/**
 * Log hook used by the protocol core; the Node-RED adapter maps it to node.debug / node.trace. A `trace` property of
 * false says trace messages are not wanted: the per-datagram ones are then not even built (they cost as much as a
 * good part of a request).
 */
export type LogFn = ((level: 'error' | 'warn' | 'info' | 'debug' | 'trace', message: string) => void) & { trace?: boolean };

/** Whether trace messages for `log` are worth building. */
export function tracing(log: LogFn | undefined): boolean {
  return log !== undefined && log.trace !== false;
}
