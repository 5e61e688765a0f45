/**
 * The one error type thrown by the content codecs, for bad device input (undecodable payloads) and for values
 * a flow asks to write that do not fit the Resource. The message says what is wrong and where (path, format).
 */
export class Lwm2mContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Lwm2mContentError';
  }
}
