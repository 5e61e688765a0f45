/**
 * CoAP endpoint over any datagram Channel (RFC 7252 messaging, RFC 7641 Observe client side).
 *
 * One instance serves many channels (peers). Per channel it keeps message ids, pending outgoing exchanges
 * (matched by message id for ACK/RST and by token for responses), observations, and a duplicate-detection
 * cache for incoming messages. All state hangs off the instance; every timer it creates is cleared by close().
 */
import { randomBytes } from 'crypto';
import type { Channel, LogFn } from '../channel';
import {
  ChannelClosedError,
  CoapFormatError,
  CoapProtocolError,
  CoapResetError,
  CoapTimeoutError,
  EndpointClosedError,
  RequestAbortedError,
} from './errors';
import {
  CoapMessage,
  CoapMethod,
  CoapOption,
  codeClass,
  decodeMessage,
  describeMessage,
  emptyMessage,
  encodeMessage,
  encodeUint,
  findUnrecognisedCritical,
  getOption,
  isRequestCode,
  isResponseCode,
  isSuccessCode,
  methodCode,
  methodName,
  normaliseCode,
  pathOptions,
  peekHeader,
  queryOptions,
} from './message';

export interface CoapRequestInit {
  method: CoapMethod;
  path: string[];
  query?: string[];
  contentFormat?: number;
  accept?: number;
  /** Observe option value: 0 registers, 1 deregisters (RFC 7641 §2). */
  observe?: number;
  payload?: Buffer;
  /** Default true. */
  confirmable?: boolean;
  /** Extra options, added after the ones above. */
  options?: CoapOption[];
  /**
   * Use this token instead of a fresh random one (e.g. a GET with observe: 1 that actively cancels an
   * observation must carry the observation's token). An observation still registered under it is ended first.
   */
  token?: Buffer;
}

export interface CoapResponseInit {
  /** 'c.dd' (e.g. '2.05') or a code name ('Content'). */
  code: string;
  contentFormat?: number;
  payload?: Buffer;
  locationPath?: string[];
  options?: CoapOption[];
}

export interface CoapRequestOptions {
  /** Overall cap in ms from the first transmission. */
  timeoutMs?: number;
  /** Keep the token registered after the first response and deliver later notifications here. */
  onNotification?: (msg: CoapMessage) => void;
  /** Aborts the request (rejecting with RequestAbortedError), or ends an established observation. */
  signal?: AbortSignal;
}

export interface CoapEndpointOptions {
  /** RFC 7252 ACK_TIMEOUT, default 2000 ms. */
  ackTimeoutMs?: number;
  /** RFC 7252 ACK_RANDOM_FACTOR, default 1.5. */
  ackRandomFactor?: number;
  /** RFC 7252 MAX_RETRANSMIT, default 4. */
  maxRetransmit?: number;
  /** Lifetime of duplicate-detection entries, default 247000 ms (EXCHANGE_LIFETIME). */
  exchangeLifetimeMs?: number;
  /** How long to wait for a separate response after an empty ACK when the request has no timeoutMs. Default 30000. */
  separateResponseTimeoutMs?: number;
  /** Wait for a NON request's response when the request has no timeoutMs. Default MAX_TRANSMIT_WAIT (93 s). */
  nonTimeoutMs?: number;
  /** Token length for new requests, 4..8 bytes, default 8. */
  tokenLength?: number;
  /** Largest datagram this endpoint sends, default 1152 bytes (RFC 7252 §4.6). */
  maxMessageSize?: number;
  /** Cap on duplicate-detection entries over all channels, default 100000; beyond it new ones are not cached. */
  maxDedupEntries?: number;
  /** Handles incoming requests. Throwing or rejecting answers 5.00. */
  onRequest: (req: CoapMessage, channel: Channel) => CoapResponseInit | Promise<CoapResponseInit>;
  /** 'trace' for each exchange, 'debug' for dropped input, 'warn' for handler failures. */
  log?: LogFn;
  /** Monotonic clock in ms (for tests). Default performance.now. */
  now?: () => number;
}

export interface CoapEndpointStats {
  requestsSent: number;
  responsesReceived: number;
  retransmissions: number;
  timeouts: number;
  duplicates: number;
  malformed: number;
  requestsReceived: number;
  notificationsReceived: number;
  staleNotifications: number;
  resetsSent: number;
  resetsReceived: number;
}

interface DedupEntry {
  expiresAt: number;
  /** What was sent for it (ACK, piggybacked response, RST); resent for a duplicate CON. */
  reply?: Buffer;
}

interface Exchange {
  state: ChannelState;
  token: Buffer;
  tokenKey: string;
  messageId: number;
  bytes: Buffer;
  confirmable: boolean;
  label: string;
  startedAt: number;
  transmissions: number;
  timeoutMs: number;
  retransmitTimer?: NodeJS.Timeout;
  deadlineTimer?: NodeJS.Timeout;
  awaitingAck: boolean;
  settled: boolean;
  resolve: (msg: CoapMessage) => void;
  reject: (err: Error) => void;
  overallTimeoutMs?: number;
  onNotification?: (msg: CoapMessage) => void;
  observing: boolean;
  cancelled: boolean;
  lastObserve: number;
  lastObserveAt: number;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface ChannelState {
  key: string;
  channel: Channel;
  nextMessageId: number;
  byMessageId: Map<number, Exchange>;
  byToken: Map<string, Exchange>;
  dedup: Map<number, DedupEntry>;
  /** Tokens of cancelled observations: a notification carrying one gets RST. Value: expiry time. */
  cancelledTokens: Map<string, number>;
  /** Kept (for message id continuity) until this time even when otherwise empty. */
  keepUntil: number;
  /** Incoming requests whose handler has not answered yet. */
  handling: number;
}

/** RFC 7641 §3.4: is notification sequence `v2` (received `elapsedMs` after `v1`) fresher than `v1`? */
export function isFresherNotification(v1: number, v2: number, elapsedMs: number): boolean {
  const window = 1 << 23;
  return (v1 < v2 && v2 - v1 < window) || (v1 > v2 && v1 - v2 > window) || elapsedMs > 128000;
}

const DIAGNOSTIC_HANDLER_FAILED = Buffer.from('request handler failed');

export class CoapEndpoint {
  readonly stats: CoapEndpointStats = {
    requestsSent: 0,
    responsesReceived: 0,
    retransmissions: 0,
    timeouts: 0,
    duplicates: 0,
    malformed: 0,
    requestsReceived: 0,
    notificationsReceived: 0,
    staleNotifications: 0,
    resetsSent: 0,
    resetsReceived: 0,
  };

  private readonly ackTimeoutMs: number;
  private readonly ackRandomFactor: number;
  private readonly maxRetransmit: number;
  private readonly exchangeLifetimeMs: number;
  private readonly separateResponseTimeoutMs: number;
  private readonly nonTimeoutMs: number;
  private readonly tokenLength: number;
  private readonly maxMessageSize: number;
  private readonly maxDedupEntries: number;
  private readonly onRequest: CoapEndpointOptions['onRequest'];
  private readonly logFn?: LogFn;
  private readonly now: () => number;
  private readonly channels = new Map<string, ChannelState>();
  private sweepTimer?: NodeJS.Timeout;
  private dedupCount = 0;
  private closed = false;

  constructor(opts: CoapEndpointOptions) {
    if (!opts || typeof opts.onRequest !== 'function') throw new TypeError('CoapEndpoint needs an onRequest handler');
    this.ackTimeoutMs = positive(opts.ackTimeoutMs, 2000, 'ackTimeoutMs');
    this.ackRandomFactor = opts.ackRandomFactor ?? 1.5;
    if (!(this.ackRandomFactor >= 1)) throw new RangeError('ackRandomFactor must be at least 1');
    this.maxRetransmit = opts.maxRetransmit ?? 4;
    if (!Number.isInteger(this.maxRetransmit) || this.maxRetransmit < 0 || this.maxRetransmit > 20) {
      throw new RangeError('maxRetransmit must be an integer 0..20');
    }
    this.exchangeLifetimeMs = positive(opts.exchangeLifetimeMs, 247000, 'exchangeLifetimeMs');
    this.separateResponseTimeoutMs = positive(opts.separateResponseTimeoutMs, 30000, 'separateResponseTimeoutMs');
    const maxTransmitWait =
      this.ackTimeoutMs * (Math.pow(2, this.maxRetransmit + 1) - 1) * this.ackRandomFactor;
    this.nonTimeoutMs = positive(opts.nonTimeoutMs, Math.ceil(maxTransmitWait), 'nonTimeoutMs');
    this.tokenLength = opts.tokenLength ?? 8;
    if (!Number.isInteger(this.tokenLength) || this.tokenLength < 4 || this.tokenLength > 8) {
      throw new RangeError('tokenLength must be 4..8');
    }
    this.maxMessageSize = positive(opts.maxMessageSize, 1152, 'maxMessageSize');
    this.maxDedupEntries = positive(opts.maxDedupEntries, 100000, 'maxDedupEntries');
    this.onRequest = opts.onRequest;
    this.logFn = opts.log;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Number of channels with state (pending requests, observations, dedup entries). */
  get channelCount(): number {
    return this.channels.size;
  }

  /** Processes one received datagram from `channel`. Never throws: bad input is dropped and counted. */
  handle(channel: Channel, datagram: Buffer): void {
    if (this.closed) return;
    try {
      this.dispatch(channel, datagram);
    } catch (err) {
      // Only reachable through a bug or a hostile Channel object; never let it escape.
      this.stats.malformed++;
      this.log('debug', `coap ${safeKey(channel)} dropped datagram: ${errorText(err)}`);
    }
  }

  /** Sends a request and resolves with the (first) response. */
  request(channel: Channel, init: CoapRequestInit, opts: CoapRequestOptions = {}): Promise<CoapMessage> {
    if (this.closed) return Promise.reject(new EndpointClosedError('CoAP endpoint is closed'));
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    let options: CoapOption[];
    let confirmable: boolean;
    try {
      if (!init || typeof init.method !== 'string') throw new TypeError('request needs a method');
      const code = methodCode(init.method);
      if (!code) throw new TypeError(`unknown CoAP method '${String(init.method)}'`);
      if (!Array.isArray(init.path)) throw new TypeError('request path must be an array of segments');
      options = [...pathOptions(init.path), ...queryOptions(init.query ?? [])];
      if (init.contentFormat !== undefined) options.push({ name: 'Content-Format', value: uint16(init.contentFormat) });
      if (init.accept !== undefined) options.push({ name: 'Accept', value: uint16(init.accept) });
      if (init.observe !== undefined) {
        if (!Number.isInteger(init.observe) || init.observe < 0 || init.observe > 0xffffff) {
          throw new RangeError('observe must be 0..2^24-1');
        }
        options.push({ name: 'Observe', value: encodeUint(init.observe) });
      }
      if (init.options) options.push(...init.options);
      if (init.token !== undefined && (!Buffer.isBuffer(init.token) || init.token.length > 8)) {
        throw new RangeError('token must be a Buffer of at most 8 bytes');
      }
      if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) throw new RangeError('timeoutMs must be positive');
      confirmable = init.confirmable !== false;
    } catch (err) {
      return Promise.reject(err);
    }

    const state = this.stateFor(channel);
    let token: Buffer;
    if (init.token !== undefined) {
      token = Buffer.from(init.token);
      const key = token.toString('hex');
      const existing = state.byToken.get(key);
      if (existing) {
        if (existing.settled && existing.observing) this.finish(existing);
        else return Promise.reject(new Error(`token ${key} is in use by a pending request`));
      }
      state.cancelledTokens.delete(key);
    } else {
      token = this.newToken(state);
    }
    const messageId = this.nextMessageId(state);
    let bytes: Buffer;
    try {
      bytes = encodeMessage(
        { type: confirmable ? 'CON' : 'NON', code: methodCode(init.method), messageId, token, options, payload: init.payload },
        this.maxMessageSize,
      );
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }

    return new Promise<CoapMessage>((resolve, reject) => {
      const ex: Exchange = {
        state,
        token,
        tokenKey: token.toString('hex'),
        messageId,
        bytes,
        confirmable,
        label: `${init.method} /${init.path.join('/')}`,
        startedAt: this.now(),
        transmissions: 0,
        timeoutMs: 0,
        awaitingAck: confirmable,
        settled: false,
        resolve,
        reject,
        overallTimeoutMs: opts.timeoutMs,
        onNotification: opts.onNotification,
        observing: false,
        cancelled: false,
        lastObserve: 0,
        lastObserveAt: 0,
        signal: opts.signal,
      };
      state.byToken.set(ex.tokenKey, ex);
      state.byMessageId.set(messageId, ex);
      state.keepUntil = this.now() + this.exchangeLifetimeMs;
      this.stats.requestsSent++;
      this.transmit(ex);
      if (confirmable) {
        ex.timeoutMs = this.ackTimeoutMs * (1 + Math.random() * (this.ackRandomFactor - 1));
        ex.retransmitTimer = setTimeout(() => this.onRetransmitTimer(ex), ex.timeoutMs);
      }
      const deadline = opts.timeoutMs ?? (confirmable ? undefined : this.nonTimeoutMs);
      if (deadline !== undefined) ex.deadlineTimer = setTimeout(() => this.onDeadline(ex, deadline), deadline);
      if (opts.signal) {
        const signal = opts.signal;
        ex.onAbort = () => {
          if (ex.settled) {
            if (ex.observing) this.endObservation(ex, true);
          } else {
            this.fail(ex, abortError(signal));
          }
        };
        signal.addEventListener('abort', ex.onAbort, { once: true });
      }
    });
  }

  /**
   * Forgets an observation (or marks a still-pending observe request so it will not be kept). A later
   * notification carrying the token is answered with RST, which cancels it at the peer (RFC 7641 §3.6).
   */
  cancelObservation(channel: Channel, token: Buffer): void {
    if (this.closed || !Buffer.isBuffer(token)) return;
    const state = this.stateFor(channel);
    const key = token.toString('hex');
    const ex = state.byToken.get(key);
    if (ex) {
      if (ex.settled) this.finish(ex);
      else ex.cancelled = true;
    }
    state.cancelledTokens.set(key, this.now() + this.exchangeLifetimeMs);
  }

  /** Rejects the channel's pending requests with ChannelClosedError and drops all its state. */
  forgetChannel(channelKey: string, reason?: string): void {
    const state = this.channels.get(channelKey);
    if (!state) return;
    this.dropState(state, () => new ChannelClosedError(`channel ${channelKey} closed${reason ? `: ${reason}` : ''}`, channelKey));
  }

  /** Clears every timer and rejects pending requests with EndpointClosedError. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const state of [...this.channels.values()]) {
      this.dropState(state, () => new EndpointClosedError('CoAP endpoint closed'));
    }
    this.channels.clear();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Incoming

  private dispatch(channel: Channel, datagram: Buffer): void {
    if (!Buffer.isBuffer(datagram)) {
      this.stats.malformed++;
      return;
    }
    let msg: CoapMessage;
    try {
      msg = decodeMessage(datagram);
    } catch (err) {
      this.stats.malformed++;
      const header = peekHeader(datagram);
      this.log('debug', `coap ${channel.key} malformed datagram (${datagram.length} bytes): ${errorText(err)}`);
      if (header && header.type === 'CON' && err instanceof CoapFormatError) this.sendReset(channel, header.messageId);
      return;
    }
    this.log('trace', `coap ${channel.key} <- ${describeMessage(msg)}`);
    const cls = codeClass(msg.code);
    if (msg.code === '0.00') {
      if (msg.type === 'CON') {
        this.sendReset(channel, msg.messageId); // CoAP ping
      } else if (msg.type === 'ACK') {
        this.onAck(channel, msg);
      } else if (msg.type === 'RST') {
        this.onReset(channel, msg);
      } else {
        this.dropMalformed(channel, msg, 'empty NON message');
      }
    } else if (isRequestCode(msg.code)) {
      if (msg.type === 'CON' || msg.type === 'NON') this.onIncomingRequest(channel, msg);
      else this.dropMalformed(channel, msg, `request code in ${msg.type}`);
    } else if (isResponseCode(msg.code)) {
      if (msg.type === 'ACK') this.onAck(channel, msg);
      else if (msg.type === 'RST') this.dropMalformed(channel, msg, 'RST with a code');
      else this.onSeparateResponse(channel, msg);
    } else {
      // Classes 1, 6 and 7 are reserved.
      this.dropMalformed(channel, msg, `reserved code class ${cls}`);
      if (msg.type === 'CON') this.sendReset(channel, msg.messageId);
    }
  }

  private onAck(channel: Channel, msg: CoapMessage): void {
    const state = this.channels.get(channel.key);
    const ex = state?.byMessageId.get(msg.messageId);
    if (!state || !ex || !ex.confirmable || !ex.awaitingAck) {
      this.log('trace', `coap ${channel.key} ignoring unmatched ACK mid=${msg.messageId}`);
      return;
    }
    state.channel = channel;
    if (msg.code === '0.00') {
      // Separate response follows (RFC 7252 §5.2.2).
      this.stopTransmitting(ex);
      if (ex.deadlineTimer === undefined) {
        const wait = this.separateResponseTimeoutMs;
        ex.deadlineTimer = setTimeout(() => this.onDeadline(ex, wait, true), wait);
      }
      return;
    }
    if (!msg.token.equals(ex.token)) {
      this.dropMalformed(channel, msg, 'piggybacked response with a different token');
      return;
    }
    this.stopTransmitting(ex);
    const bad = findUnrecognisedCritical(msg.options);
    if (bad !== undefined) {
      this.fail(ex, new CoapProtocolError(`response to ${ex.label} carries unrecognised critical option ${bad}`));
      return;
    }
    this.deliverResponse(ex, msg);
  }

  private onReset(channel: Channel, msg: CoapMessage): void {
    const state = this.channels.get(channel.key);
    const ex = state?.byMessageId.get(msg.messageId);
    if (!ex) return;
    this.stats.resetsReceived++;
    this.fail(ex, new CoapResetError(`peer ${channel.key} reset ${ex.label} (mid ${msg.messageId})`));
  }

  private onSeparateResponse(channel: Channel, msg: CoapMessage): void {
    const state = this.stateFor(channel);
    if (this.isDuplicate(state, channel, msg)) return;
    const entry = this.remember(state, msg.messageId);
    const key = msg.token.toString('hex');
    const ex = state.byToken.get(key);
    const reject = (why: string): void => {
      this.log('trace', `coap ${channel.key} rejecting ${msg.type} response mid=${msg.messageId}: ${why}`);
      const rst = emptyMessage('RST', msg.messageId);
      if (entry) entry.reply = rst;
      this.stats.resetsSent++;
      this.sendRaw(channel, rst);
    };
    if (!ex) {
      if (state.cancelledTokens.has(key)) {
        state.cancelledTokens.set(key, this.now() + this.exchangeLifetimeMs);
        reject('observation cancelled');
      } else if (msg.type === 'CON') {
        reject('unknown token');
      }
      return;
    }
    if (findUnrecognisedCritical(msg.options) !== undefined) {
      if (msg.type === 'CON') reject('unrecognised critical option');
      return;
    }
    if (msg.type === 'CON') {
      const ack = emptyMessage('ACK', msg.messageId);
      if (entry) entry.reply = ack;
      this.sendRaw(channel, ack);
    }
    this.stopTransmitting(ex);
    this.deliverResponse(ex, msg);
  }

  private deliverResponse(ex: Exchange, msg: CoapMessage): void {
    if (!ex.settled) {
      this.stats.responsesReceived++;
      this.clearDeadline(ex);
      const keep =
        ex.onNotification !== undefined && !ex.cancelled && msg.observe !== undefined && isSuccessCode(msg.code);
      if (keep) {
        ex.observing = true;
        ex.lastObserve = msg.observe as number;
        ex.lastObserveAt = this.now();
        ex.settled = true;
        this.log('trace', `coap ${ex.state.key} observing ${ex.label} tok=${ex.tokenKey}`);
      } else {
        this.finish(ex);
        ex.settled = true;
      }
      ex.resolve(msg);
      return;
    }
    if (!ex.observing) return;
    this.stats.notificationsReceived++;
    if (msg.observe === undefined || !isSuccessCode(msg.code)) {
      // RFC 7641 §3.2: a response without Observe (or an error) ends the observation.
      this.finish(ex);
      this.notify(ex, msg);
      return;
    }
    const t = this.now();
    if (!isFresherNotification(ex.lastObserve, msg.observe, t - ex.lastObserveAt)) {
      this.stats.staleNotifications++;
      this.log('trace', `coap ${ex.state.key} stale notification obs=${msg.observe} (last ${ex.lastObserve}) dropped`);
      return;
    }
    ex.lastObserve = msg.observe;
    ex.lastObserveAt = t;
    this.notify(ex, msg);
  }

  private notify(ex: Exchange, msg: CoapMessage): void {
    const cb = ex.onNotification;
    if (!cb) return;
    try {
      cb(msg);
    } catch (err) {
      this.log('warn', `coap ${ex.state.key} notification handler for ${ex.label} threw: ${errorText(err)}`);
    }
  }

  private onIncomingRequest(channel: Channel, msg: CoapMessage): void {
    const state = this.stateFor(channel);
    if (this.isDuplicate(state, channel, msg)) return;
    const entry = this.remember(state, msg.messageId);
    this.stats.requestsReceived++;

    let answered = false;
    state.handling++;
    const reply = (res: CoapResponseInit): void => {
      if (answered) return;
      answered = true;
      state.handling--;
      if (this.closed || this.channels.get(state.key) !== state) return; // forgotten meanwhile
      const bytes = this.encodeResponse(state, msg, res);
      if (entry) entry.reply = bytes;
      this.sendRaw(state.channel, bytes, true);
    };

    if (!methodName(msg.code)) {
      reply({ code: '4.05' });
      return;
    }
    const bad = findUnrecognisedCritical(msg.options);
    if (bad !== undefined) {
      reply({ code: '4.02', payload: Buffer.from(`unrecognised critical option ${bad}`) });
      return;
    }
    if (getOption(msg.options, 'Proxy-Uri') || getOption(msg.options, 'Proxy-Scheme')) {
      reply({ code: '5.05' });
      return;
    }
    const failed = (err: unknown): void => {
      this.log('warn', `coap ${channel.key} request handler failed for ${describeMessage(msg)}: ${errorText(err)}`);
      reply({ code: '5.00', payload: DIAGNOSTIC_HANDLER_FAILED });
    };
    let result: CoapResponseInit | Promise<CoapResponseInit>;
    try {
      result = this.onRequest(msg, channel);
    } catch (err) {
      failed(err);
      return;
    }
    if (isThenable(result)) {
      result.then(
        (res) => {
          try {
            reply(res);
          } catch (err) {
            failed(err);
          }
        },
        failed,
      );
    } else {
      reply(result);
    }
  }

  /** Encodes a response; an invalid or oversized response init becomes a 5.00. */
  private encodeResponse(state: ChannelState, req: CoapMessage, res: CoapResponseInit): Buffer {
    const type = req.type === 'CON' ? 'ACK' : 'NON';
    const messageId = type === 'ACK' ? req.messageId : this.nextMessageId(state);
    try {
      if (!res || typeof res !== 'object' || typeof res.code !== 'string') throw new TypeError('response without a code');
      const code = normaliseCode(res.code);
      if (!code || !isResponseCode(code)) throw new RangeError(`'${res.code}' is not a response code`);
      const options: CoapOption[] = [];
      if (res.contentFormat !== undefined) options.push({ name: 'Content-Format', value: uint16(res.contentFormat) });
      if (res.locationPath) options.push(...pathOptions(res.locationPath, 'Location-Path'));
      if (res.options) options.push(...res.options);
      return encodeMessage({ type, code, messageId, token: req.token, options, payload: res.payload }, this.maxMessageSize);
    } catch (err) {
      this.log('warn', `coap ${state.key} cannot encode response to ${describeMessage(req)}: ${errorText(err)}`);
      return encodeMessage({ type, code: '5.00', messageId, token: req.token, payload: DIAGNOSTIC_HANDLER_FAILED });
    }
  }

  /** Duplicate detection by (channel, message id). A duplicate CON gets the cached reply again. */
  private isDuplicate(state: ChannelState, channel: Channel, msg: CoapMessage): boolean {
    const entry = state.dedup.get(msg.messageId);
    if (!entry) return false;
    if (entry.expiresAt <= this.now()) {
      state.dedup.delete(msg.messageId);
      this.dedupCount--;
      return false;
    }
    this.stats.duplicates++;
    this.log('trace', `coap ${channel.key} duplicate ${msg.type} mid=${msg.messageId}${entry.reply ? ', replying again' : ''}`);
    if (msg.type === 'CON' && entry.reply) this.sendRaw(channel, entry.reply);
    return true;
  }

  private remember(state: ChannelState, messageId: number): DedupEntry | undefined {
    if (this.dedupCount >= this.maxDedupEntries) return undefined;
    const entry: DedupEntry = { expiresAt: this.now() + this.exchangeLifetimeMs };
    state.dedup.set(messageId, entry);
    this.dedupCount++;
    return entry;
  }

  private dropMalformed(channel: Channel, msg: CoapMessage, why: string): void {
    this.stats.malformed++;
    this.log('debug', `coap ${channel.key} dropped ${msg.type} mid=${msg.messageId}: ${why}`);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Outgoing exchanges

  private transmit(ex: Exchange): void {
    ex.transmissions++;
    if (this.logFn) {
      this.log('trace', `coap ${ex.state.key} -> ${ex.confirmable ? 'CON' : 'NON'} ${ex.label} mid=${ex.messageId} tok=${ex.tokenKey}` +
        (ex.transmissions > 1 ? ` (transmission ${ex.transmissions})` : ''));
    }
    this.sendRaw(ex.state.channel, ex.bytes);
  }

  private onRetransmitTimer(ex: Exchange): void {
    ex.retransmitTimer = undefined;
    if (ex.settled || !ex.awaitingAck) return;
    if (ex.transmissions - 1 < this.maxRetransmit) {
      this.stats.retransmissions++;
      this.transmit(ex);
      ex.timeoutMs *= 2;
      ex.retransmitTimer = setTimeout(() => this.onRetransmitTimer(ex), ex.timeoutMs);
      return;
    }
    this.stats.timeouts++;
    const elapsed = Math.round(this.now() - ex.startedAt);
    this.fail(
      ex,
      new CoapTimeoutError(
        `${ex.label} to ${ex.state.key}: no ACK or response after ${ex.transmissions} transmissions over ${elapsed} ms`,
        ex.transmissions,
        elapsed,
      ),
    );
  }

  private onDeadline(ex: Exchange, ms: number, afterAck = false): void {
    ex.deadlineTimer = undefined;
    if (ex.settled) return;
    this.stats.timeouts++;
    const elapsed = Math.round(this.now() - ex.startedAt);
    const what = afterAck ? `no separate response within ${ms} ms of the empty ACK` : `no response within ${ms} ms`;
    this.fail(
      ex,
      new CoapTimeoutError(
        `${ex.label} to ${ex.state.key}: ${what} (${ex.transmissions} transmission${ex.transmissions === 1 ? '' : 's'})`,
        ex.transmissions,
        elapsed,
      ),
    );
  }

  /** Stops retransmitting and forgets the message id (the ACK, or a response, arrived). */
  private stopTransmitting(ex: Exchange): void {
    ex.awaitingAck = false;
    if (ex.retransmitTimer) clearTimeout(ex.retransmitTimer);
    ex.retransmitTimer = undefined;
    if (ex.state.byMessageId.get(ex.messageId) === ex) ex.state.byMessageId.delete(ex.messageId);
  }

  private clearDeadline(ex: Exchange): void {
    if (ex.deadlineTimer) clearTimeout(ex.deadlineTimer);
    ex.deadlineTimer = undefined;
  }

  /** Removes every trace of the exchange (timers, maps, abort listener). Does not settle the promise. */
  private finish(ex: Exchange): void {
    this.stopTransmitting(ex);
    this.clearDeadline(ex);
    ex.observing = false;
    if (ex.state.byToken.get(ex.tokenKey) === ex) ex.state.byToken.delete(ex.tokenKey);
    if (ex.signal && ex.onAbort) ex.signal.removeEventListener('abort', ex.onAbort);
    ex.onAbort = undefined;
  }

  private fail(ex: Exchange, err: Error): void {
    this.finish(ex);
    if (ex.settled) return;
    ex.settled = true;
    this.log('trace', `coap ${ex.state.key} ${ex.label} failed: ${err.message}`);
    ex.reject(err);
  }

  private endObservation(ex: Exchange, passiveCancel: boolean): void {
    this.finish(ex);
    if (passiveCancel && this.channels.get(ex.state.key) === ex.state) {
      ex.state.cancelledTokens.set(ex.tokenKey, this.now() + this.exchangeLifetimeMs);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Channel state, sweeping

  private stateFor(channel: Channel): ChannelState {
    let state = this.channels.get(channel.key);
    if (!state) {
      state = {
        key: channel.key,
        channel,
        nextMessageId: randomBytes(2).readUInt16BE(0),
        byMessageId: new Map(),
        byToken: new Map(),
        dedup: new Map(),
        cancelledTokens: new Map(),
        keepUntil: 0,
        handling: 0,
      };
      this.channels.set(channel.key, state);
      this.ensureSweep();
    } else {
      state.channel = channel;
    }
    return state;
  }

  private nextMessageId(state: ChannelState): number {
    for (let i = 0; i < 65536; i++) {
      const id = state.nextMessageId;
      state.nextMessageId = (state.nextMessageId + 1) & 0xffff;
      if (!state.byMessageId.has(id)) return id;
    }
    throw new Error('no free message id'); // unreachable: at most one pending exchange per id
  }

  private newToken(state: ChannelState): Buffer {
    for (let i = 0; i < 32; i++) {
      const t = randomBytes(this.tokenLength);
      const key = t.toString('hex');
      if (!state.byToken.has(key) && !state.cancelledTokens.has(key)) return t;
    }
    throw new Error('could not allocate a unique token');
  }

  private ensureSweep(): void {
    if (this.sweepTimer || this.closed) return;
    const interval = Math.min(30000, Math.max(20, Math.floor(this.exchangeLifetimeMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), interval);
  }

  /** Expires dedup entries and cancelled tokens, drops idle channel state; stops itself when nothing is left. */
  private sweep(): void {
    const t = this.now();
    for (const [key, state] of this.channels) {
      for (const [mid, entry] of state.dedup) {
        if (entry.expiresAt <= t) {
          state.dedup.delete(mid);
          this.dedupCount--;
        }
      }
      for (const [tok, exp] of state.cancelledTokens) if (exp <= t) state.cancelledTokens.delete(tok);
      if (
        state.byToken.size === 0 &&
        state.byMessageId.size === 0 &&
        state.dedup.size === 0 &&
        state.cancelledTokens.size === 0 &&
        state.handling === 0 &&
        state.keepUntil <= t
      ) {
        this.channels.delete(key);
      }
    }
    if (this.channels.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private dropState(state: ChannelState, makeError: () => Error): void {
    this.channels.delete(state.key);
    this.dedupCount -= state.dedup.size;
    state.dedup.clear();
    state.cancelledTokens.clear();
    const exchanges = new Set([...state.byToken.values(), ...state.byMessageId.values()]);
    for (const ex of exchanges) this.fail(ex, makeError());
    state.byToken.clear();
    state.byMessageId.clear();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Sending, logging

  private sendReset(channel: Channel, messageId: number): void {
    this.stats.resetsSent++;
    this.log('trace', `coap ${channel.key} -> RST mid=${messageId}`);
    this.sendRaw(channel, emptyMessage('RST', messageId));
  }

  private sendRaw(channel: Channel, bytes: Buffer, traceIt = false): void {
    if (traceIt && this.logFn) {
      try {
        this.log('trace', `coap ${channel.key} -> ${describeMessage(decodeMessage(bytes))}`);
      } catch {
        /* our own encoding; cannot fail */
      }
    }
    try {
      channel.send(bytes);
    } catch (err) {
      this.log('debug', `coap ${safeKey(channel)} send failed: ${errorText(err)}`);
    }
  }

  private log(level: Parameters<LogFn>[0], message: string): void {
    if (!this.logFn) return;
    try {
      this.logFn(level, message);
    } catch {
      /* a logger must not break the protocol */
    }
  }
}

function positive(value: number | undefined, dflt: number, name: string): number {
  if (value === undefined) return dflt;
  if (!(typeof value === 'number' && value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive number`);
  return value;
}

function uint16(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new RangeError(`content format ${value} out of range`);
  return encodeUint(value);
}

function isThenable<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function abortError(signal: AbortSignal): RequestAbortedError {
  const reason: unknown = signal.reason;
  const err = new RequestAbortedError(
    reason instanceof Error && reason.message ? `request aborted: ${reason.message}` : 'request aborted',
  );
  (err as { cause?: unknown }).cause = reason;
  return err;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function safeKey(channel: Channel): string {
  try {
    return String(channel.key);
  } catch {
    return '?';
  }
}

