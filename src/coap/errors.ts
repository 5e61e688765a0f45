/** Errors raised by the CoAP message layer. Each sets `name` so it survives logging and serialisation. */

/** A confirmable request got no ACK/response after every transmission, or a request hit its overall timeout. */
export class CoapTimeoutError extends Error {
  override readonly name = 'CoapTimeoutError';
  constructor(
    message: string,
    /** How many times the request was put on the wire. */
    readonly transmissions: number,
    /** Milliseconds from the first transmission until giving up. */
    readonly elapsedMs: number,
    /** The request's own time limit (timeoutMs) ran out, rather than its retransmissions. */
    readonly atDeadline = false,
  ) {
    super(message);
  }
}

/** The peer answered the request with a Reset message (it could not or would not process it). */
export class CoapResetError extends Error {
  override readonly name = 'CoapResetError';
}

/** The channel the request was sent over was forgotten (peer gone, session closed, device de-registered). */
export class ChannelClosedError extends Error {
  override readonly name = 'ChannelClosedError';
  constructor(
    message: string,
    readonly channelKey: string,
  ) {
    super(message);
  }
}

/** The endpoint was closed while the request was pending, or a request was made after close(). */
export class EndpointClosedError extends Error {
  override readonly name = 'EndpointClosedError';
}

/** The caller's AbortSignal fired. `cause` holds the signal's reason when it has one. */
export class RequestAbortedError extends Error {
  override readonly name = 'RequestAbortedError';
}

/** The peer answered with something that cannot be accepted (e.g. an unrecognised critical option). */
export class CoapProtocolError extends Error {
  override readonly name = 'CoapProtocolError';
}

/** A datagram is not a well-formed CoAP message (RFC 7252 §3 "message format error"). */
export class CoapFormatError extends Error {
  override readonly name = 'CoapFormatError';
}

/**
 * A block-wise (RFC 7959) body is larger than the endpoint accepts (`maxBodySize`), as announced by Size2 or
 * found while reassembling.
 */
export class CoapBodyTooLargeError extends Error {
  override readonly name = 'CoapBodyTooLargeError';
  constructor(
    message: string,
    /** The limit in bytes. */
    readonly limit: number,
    /** The announced or reached size in bytes. */
    readonly size: number,
  ) {
    super(message);
  }
}
