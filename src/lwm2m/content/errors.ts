/**
 * The one error type thrown by the content codecs, for bad device input (undecodable payloads) and for values
 * a flow asks to write that do not fit the Resource. The message says what is wrong and where (path, format).
 */
export class Lwm2mContentError extends Error {
  /** `options.cause`: the internal error behind it, when an unexpected failure was turned into this error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Lwm2mContentError';
  }
}
