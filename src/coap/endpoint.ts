/**
 * CoAP endpoint over any datagram Channel (RFC 7252 messaging, RFC 7641 Observe client side, RFC 7959
 * block-wise transfers in both directions).
 *
 * One instance serves many channels (peers). Per channel it keeps message ids, pending outgoing exchanges
 * (matched by message id for ACK/RST and by token for responses), observations, a duplicate-detection
 * cache for incoming messages, incoming Block1 reassemblies and large responses being served in Block2
 * blocks. All state hangs off the instance; every timer it creates is cleared by close().
 *
 * Block-wise transfers are transparent to callers: `request()` splits a large payload into Block1 blocks and
 * reassembles a Block2 response (and Block2 notifications) into one message; incoming Block1 requests reach
 * `onRequest` once with the whole body, and a response larger than the block size is served in Block2 blocks.
 */
import { Buffer } from 'node:buffer';
import { randomBytes, randomFillSync } from 'crypto';
import { SmallMap } from './small-map';
import { type TimerEntry, TimerLists } from './timer-lists';
import { type Channel, type LogFn, tracing } from '../channel';
import {
  ChannelClosedError,
  CoapBodyTooLargeError,
  CoapFormatError,
  CoapProtocolError,
  CoapResetError,
  CoapTimeoutError,
  EndpointClosedError,
  RequestAbortedError,
} from './errors';
import {
  BlockValue,
  CoapMessage,
  CoapMethod,
  CoapOption,
  blockSize,
  codeClass,
  decodeBlock,
  decodeMessage,
  describeCode,
  describeMessage,
  emptyMessage,
  encodeBlock,
  encodeMessage,
  encodeUint,
  findUnrecognisedCritical,
  getOption,
  getUintOption,
  isRequestCode,
  isResponseCode,
  isSuccessCode,
  methodCode,
  methodName,
  normaliseCode,
  optionNumber,
  pathOptions,
  peekHeader,
  queryOptions,
  szxForSize,
} from './message';

/** What an acknowledged exchange keeps instead of its datagram. */
const NO_BYTES = Buffer.alloc(0);

export interface CoapRequestInit {
  method: CoapMethod;
  path: readonly string[];
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
  /**
   * Block1 size in bytes for this request (16, 32, 64, 128, 256, 512 or 1024); default the endpoint's
   * `blockSize`. A payload larger than this is sent block-wise (RFC 7959 §2.5); a smaller size the peer asks
   * for in its 2.31 Continue (or 4.13 answer to the first block) is honoured.
   */
  blockSize?: number;
  /**
   * Ask the peer up front for Block2 blocks of at most this size (16..1024, a power of two; RFC 7959 §2.4
   * early negotiation). Default: no Block2 option on the first request, the peer picks.
   */
  block2Size?: number;
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
  /** Overall cap in ms from the first transmission; for a block-wise transfer it covers every block. */
  timeoutMs?: number;
  /**
   * Keep the token registered after the first response and deliver later notifications here. A notification
   * that carries the first Block2 block is delivered once the remaining blocks are fetched (RFC 7959 §2.6),
   * with the whole body, and only if no newer notification arrived meanwhile.
   */
  onNotification?: (msg: CoapMessage) => void;
  /** Aborts the request (rejecting with RequestAbortedError), or ends an established observation. */
  signal?: AbortSignal;
}

/**
 * Where a request's outcome goes (CoapEndpoint.requestWith): `answered` with the (first, or block-wise completed)
 * response, or `failed`, once, with the `ctx` the caller passed. A caller that keeps an object per request of its own
 * passes it as `ctx` and one long-lived sink, instead of a promise and its callbacks per request at each layer. Both
 * are called from inside the endpoint's handling of a datagram or timer: they must not throw.
 */
export interface ExchangeSink<C> {
  answered(ctx: C, msg: CoapMessage): void;
  failed(ctx: C, err: Error): void;
}

/** A promise's two settling functions (the context of PROMISE_SINK). */
interface Settle {
  resolve: (msg: CoapMessage) => void;
  reject: (err: Error) => void;
}

/** The sink of the calls that return a promise. */
const PROMISE_SINK: ExchangeSink<Settle> = {
  answered: (ctx, msg) => ctx.resolve(msg),
  failed: (ctx, err) => ctx.reject(err),
};

/** Hands the outcome of a block-wise transfer (a promise) to `sink` with `ctx`. */
function handOver<C>(outcome: Promise<CoapMessage>, sink: ExchangeSink<C>, ctx: C): void {
  outcome.then((msg) => sink.answered(ctx, msg), (err: Error) => sink.failed(ctx, err));
}

/** The sink of an adopted observation (no request waits for it). */
const NO_SINK: ExchangeSink<undefined> = {
  answered: () => undefined,
  failed: () => undefined,
};

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
  /**
   * Block size in bytes (16, 32, 64, 128, 256, 512 or 1024, default 1024) for Block1 request bodies this
   * endpoint sends and for Block2 responses it serves. A 1024-byte block with CoAP headers stays within the
   * default `maxMessageSize` (1152) and, inside a DTLS record plus IPv6/UDP headers, under the 1280-byte
   * IPv6 minimum MTU; constrained links may need 512 or less.
   */
  blockSize?: number;
  /**
   * Largest body reassembled from blocks, in either direction, default 16 MiB (16777216). A larger Block2
   * response rejects the request with CoapBodyTooLargeError; a larger incoming Block1 request is answered
   * 4.13 Request Entity Too Large with Size1 set to the limit.
   */
  maxBodySize?: number;
  /**
   * An incoming Block1 reassembly, or a large response cached to serve its Block2 blocks, is dropped after
   * this many ms without a block request for it. Default 120000.
   */
  blockTransferTimeoutMs?: number;
  /**
   * Incoming Block1 reassemblies (and, separately, cached Block2 responses) kept per channel, default 4;
   * starting one more drops the least recently used.
   */
  maxBlockTransfersPerChannel?: number;
  /**
   * Bytes held over all channels for incoming Block1 reassemblies and cached Block2 responses, default
   * 64 MiB (67108864). A Block1 transfer that would exceed it is answered 4.13; a response that would exceed
   * it is not cached (a later block request then calls `onRequest` again).
   */
  maxBlockBufferBytes?: number;
  /**
   * Handles incoming requests. Throwing or rejecting answers 5.00. A request sent in Block1 blocks arrives
   * here once, with the whole body and without Block1/Size1 options; a response whose payload is larger than
   * `blockSize` (or than the Block2 size the peer asked for) is sent in Block2 blocks.
   */
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
  /** Block1/Block2 blocks put on the wire as requests (not counting retransmissions). */
  blocksSent: number;
  /** Block1 blocks of incoming requests accepted. */
  blocksReceived: number;
  /** Block2 blocks served in responses to incoming requests. */
  blocksServed: number;
  /** Block-wise transfers that ended in an error (either direction). */
  blockTransferErrors: number;
}

interface DedupEntry {
  expiresAt: number;
  /**
   * What was sent for it (ACK, piggybacked response, RST), resent for a duplicate CON. Kept as a latin1 string (one
   * small heap string instead of a Buffer with its own ArrayBuffer and backing store, for EXCHANGE_LIFETIME).
   */
  reply?: string;
}

interface Exchange extends TimerEntry {
  state: ChannelState;
  token: Buffer;
  tokenKey: string;
  messageId: number;
  bytes: Buffer;
  confirmable: boolean;
  label: Label;
  startedAt: number;
  transmissions: number;
  timeoutMs: number;
  deadlineTimer?: NodeJS.Timeout;
  /** A deadline not armed yet (performance.now() time; see startExchange) and its length for the message. */
  deadlineAt?: number;
  deadlineMs?: number;
  awaitingAck: boolean;
  settled: boolean;
  /** Where the outcome goes, with sinkCtx (see ExchangeSink). */
  sink: ExchangeSink<unknown>;
  sinkCtx: unknown;
  overallTimeoutMs?: number;
  onNotification?: (msg: CoapMessage) => void;
  observing: boolean;
  cancelled: boolean;
  lastObserve: number;
  lastObserveAt: number;
  signal?: AbortSignal;
  onAbort?: () => void;
  /** How to fetch the remaining blocks of a Block2 notification (observations with automatic block-wise). */
  template?: BlockTemplate;
  /** Increases with each fresh notification; a reassembled notification is delivered only if still current. */
  notifyGen: number;
  /**
   * A first response with more Block2 blocks to come is to be completed (spec.autoBlock2). What the follow-up
   * requests repeat is read back from `bytes` then (sentTemplate), so nothing else of the request is kept meanwhile.
   */
  autoBlock2: boolean;
}

/**
 * `GET /3/0/0`: how messages and errors name a request. Made into text only when one is written (template
 * literals call toString), not for every request.
 */
class RequestLabel {
  constructor(private readonly method: string, private readonly path: readonly string[]) {}

  toString(): string {
    return `${this.method} /${this.path.join('/')}`;
  }
}

type Label = string | RequestLabel;

/** What a follow-up Block2 request repeats from the original request. */
interface BlockTemplate {
  code: string;
  label: Label;
  /** Options of the original request without Observe and block options. */
  options: CoapOption[];
  /** FETCH only: the body, repeated in each Block2 request when it fit in one message (RFC 8132 §2.3.2). */
  payload?: Buffer;
  confirmable: boolean;
}

/** One outgoing block-wise transfer (a request and its follow-up block requests). */
interface TransferCtx {
  state: ChannelState;
  label: Label;
  startedAt: number;
  /** Absolute `now()` deadline from the caller's timeoutMs. */
  deadline?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Blocks transferred so far, for error messages. */
  blocks: number;
}

interface ExchangeSpec {
  code: string;
  label: Label;
  options: CoapOption[];
  payload?: Buffer;
  confirmable: boolean;
  token: Buffer;
  /** The token's key (tokenKeyOf), when already known. */
  tokenKey?: string;
  /** The caller chose the token (init.token): end an observation under it, refuse if a request uses it. */
  explicitToken: boolean;
  template?: BlockTemplate;
  /** A first response with more Block2 blocks to come is completed before the request resolves (RFC 7959 §2.4). */
  autoBlock2?: boolean;
}

/** An incoming Block1 request body being reassembled (RFC 7959 §2.5), keyed by method and URI. */
interface Reassembly {
  chunks: Buffer[];
  bytes: number;
  lastNum: number;
  lastSzx: number;
  expiresAt: number;
}

/** A large response being served in Block2 blocks, keyed by method and URI. */
interface ServedBody {
  res: CoapResponseInit;
  payload: Buffer;
  expiresAt: number;
}

/**
 * Per-channel state. The maps are created on first use and released by the sweep once empty: most channels hold
 * at most one or two of them at a time (e.g. a just-registered device only the Register's duplicate-detection
 * entry), and an empty Map costs ~200 bytes.
 */
class ChannelState {
  /** Kept (for message id continuity) until this time even when otherwise empty. */
  keepUntil = 0;
  /** False once the endpoint has dropped this state (a channel object may still hold it in its coapState). */
  live = true;
  /** Incoming requests whose handler has not answered yet. */
  handling = 0;
  _byMessageId: SmallMap<number, Exchange> | undefined;
  _byToken: SmallMap<string, Exchange> | undefined;
  _dedup: Map<number, DedupEntry> | undefined;
  _cancelledTokens: Map<string, number> | undefined;
  _reassemblies: Map<string, Reassembly> | undefined;
  _served: Map<string, ServedBody> | undefined;

  constructor(readonly key: string, public channel: Channel, public nextMessageId: number, readonly owner: object) {}

  /** Pending exchanges (usually one or two at a time: see SmallMap). */
  get byMessageId(): SmallMap<number, Exchange> {
    return (this._byMessageId ??= new SmallMap());
  }

  get byToken(): SmallMap<string, Exchange> {
    return (this._byToken ??= new SmallMap());
  }

  get dedup(): Map<number, DedupEntry> {
    return (this._dedup ??= new Map());
  }

  /** Tokens of cancelled observations: a notification carrying one gets RST. Value: expiry time. */
  get cancelledTokens(): Map<string, number> {
    return (this._cancelledTokens ??= new Map());
  }

  /** Incoming Block1 bodies, in least-recently-used order. */
  get reassemblies(): Map<string, Reassembly> {
    return (this._reassemblies ??= new Map());
  }

  /** Large responses being served block by block, in least-recently-used order. */
  get served(): Map<string, ServedBody> {
    return (this._served ??= new Map());
  }

  /** Drops the maps that are empty; true when nothing at all is left. */
  releaseEmpty(): boolean {
    if (this._byMessageId?.size === 0) this._byMessageId = undefined;
    if (this._byToken?.size === 0) this._byToken = undefined;
    if (this._dedup?.size === 0) this._dedup = undefined;
    if (this._cancelledTokens?.size === 0) this._cancelledTokens = undefined;
    if (this._reassemblies?.size === 0) this._reassemblies = undefined;
    if (this._served?.size === 0) this._served = undefined;
    return !this._byMessageId && !this._byToken && !this._dedup && !this._cancelledTokens && !this._reassemblies &&
      !this._served && this.handling === 0;
  }
}

/** Whether two short byte strings (tokens) are equal: a loop, not Buffer.equals' call into C++. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
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
    blocksSent: 0,
    blocksReceived: 0,
    blocksServed: 0,
    blockTransferErrors: 0,
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
  private readonly blockSzx: number;
  private readonly maxBodySize: number;
  private readonly blockTransferTimeoutMs: number;
  private readonly maxBlockTransfersPerChannel: number;
  private readonly maxBlockBufferBytes: number;
  private blockBufferBytes = 0;
  private readonly onRequest: CoapEndpointOptions['onRequest'];
  private readonly logFn?: LogFn;
  /** Trace messages are built only when the logger wants them. */
  private readonly tracing: boolean;
  private readonly now: () => number;
  private readonly channels = new Map<string, ChannelState>();
  private sweepTimer?: NodeJS.Timeout;
  /** Retransmission timers of the confirmable requests waiting for their ACK (one Node timer for all of them). */
  private readonly retransmits = new TimerLists<Exchange>((ex) => this.onRetransmitTimer(ex));
  private dedupCount = 0;
  private closed = false;
  /** Random bytes for tokens, consumed from tokenPoolOffset (see newToken). */
  private readonly tokenPool = Buffer.alloc(4096);
  /** uriPathOptions: the Uri-Path option of each short segment seen. */
  private readonly segmentOptions = new Map<string, CoapOption>();
  /** Uri-Path option lists of frozen paths (shared), held only as long as their path is. */
  private readonly pathOptionLists = new WeakMap<readonly string[], CoapOption[]>();
  /** The key (tokenKeyOf) of the token newToken returned last (startExchange need not make it again). */
  private newTokenKey = '';
  /** Accept and Content-Format options by value (a handful of formats), shared like the Uri-Path ones. */
  private readonly acceptOptions = new Map<number, CoapOption>();
  private readonly formatOptions = new Map<number, CoapOption>();
  private tokenPoolOffset = 4096;

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
    this.blockSzx = blockSzxOf(opts.blockSize, 'blockSize') ?? 6;
    this.maxBodySize = positive(opts.maxBodySize, 16 * 1024 * 1024, 'maxBodySize');
    this.blockTransferTimeoutMs = positive(opts.blockTransferTimeoutMs, 120000, 'blockTransferTimeoutMs');
    this.maxBlockTransfersPerChannel = opts.maxBlockTransfersPerChannel ?? 4;
    if (!Number.isInteger(this.maxBlockTransfersPerChannel) || this.maxBlockTransfersPerChannel < 1) {
      throw new RangeError('maxBlockTransfersPerChannel must be a positive integer');
    }
    this.maxBlockBufferBytes = positive(opts.maxBlockBufferBytes, 64 * 1024 * 1024, 'maxBlockBufferBytes');
    this.onRequest = opts.onRequest;
    this.logFn = opts.log;
    this.tracing = tracing(opts.log);
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

  /**
   * Sends a request and resolves with the (first) response.
   *
   * Block-wise (RFC 7959) happens here without the caller noticing: a payload larger than the block size goes
   * out as a Block1 transfer (each block confirmable when the request is, the final response resolves), and a
   * response carrying Block2 with more blocks to come is completed by fetching the remaining blocks (same
   * method and options, same token; a fresh one when the token is an observation's) and resolves with the
   * whole body (first response's code and options, Block2 removed). A non-2.xx answer to a block ends the
   * transfer and resolves with that answer. `timeoutMs` caps the whole transfer. Passing a Block1 or Block2
   * option in `init.options` turns this off for the request (the caller does block-wise itself).
   */
  request(channel: Channel, init: CoapRequestInit, opts: CoapRequestOptions = {}): Promise<CoapMessage> {
    return new Promise<CoapMessage>((resolve, reject) => this.requestWith(channel, init, opts, PROMISE_SINK, { resolve, reject }));
  }

  /**
   * request() with the outcome handed to `sink` with `ctx` instead of a promise (see ExchangeSink): exactly once,
   * possibly before this returns (a request refused at once fails then). For a caller that keeps an object per
   * request of its own: no promise, closures or microtask per request in this layer.
   */
  requestWith<C>(channel: Channel, init: CoapRequestInit, opts: CoapRequestOptions, sink: ExchangeSink<C>, ctx: C): void {
    if (this.closed) return sink.failed(ctx, new EndpointClosedError('CoAP endpoint is closed'));
    if (opts.signal?.aborted) return sink.failed(ctx, abortError(opts.signal));
    let base: CoapOption[];
    let observeOption: CoapOption | undefined;
    let confirmable: boolean;
    let code: string;
    let automatic: boolean;
    let block1Szx: number;
    let block2Szx: number | undefined;
    let label: Label;
    try {
      if (!init || typeof init.method !== 'string') throw new TypeError('request needs a method');
      code = methodCode(init.method);
      if (!code) throw new TypeError(`unknown CoAP method '${String(init.method)}'`);
      if (!Array.isArray(init.path)) throw new TypeError('request path must be an array of segments');
      label = new RequestLabel(init.method, init.path);
      const pathOptions = this.uriPathOptions(init.path);
      // the path's options may be a shared list (see uriPathOptions): copied when more options join them
      const more = (init.query !== undefined && init.query.length > 0) || init.contentFormat !== undefined || init.accept !== undefined || init.options !== undefined;
      base = more ? pathOptions.slice() : pathOptions;
      if (init.query && init.query.length > 0) base.push(...queryOptions(init.query));
      if (init.contentFormat !== undefined) base.push(numberOption(this.formatOptions, 'Content-Format', init.contentFormat));
      if (init.accept !== undefined) base.push(numberOption(this.acceptOptions, 'Accept', init.accept));
      if (init.observe !== undefined) {
        if (!Number.isInteger(init.observe) || init.observe < 0 || init.observe > 0xffffff) {
          throw new RangeError('observe must be 0..2^24-1');
        }
        observeOption = { name: 'Observe', value: encodeUint(init.observe) };
      }
      if (init.options) base.push(...init.options);
      if (init.token !== undefined && (!Buffer.isBuffer(init.token) || init.token.length > 8)) {
        throw new RangeError('token must be a Buffer of at most 8 bytes');
      }
      if (init.payload !== undefined && !Buffer.isBuffer(init.payload)) throw new TypeError('payload must be a Buffer');
      if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) throw new RangeError('timeoutMs must be positive');
      confirmable = init.confirmable !== false;
      block1Szx = blockSzxOf(init.blockSize, 'blockSize') ?? this.blockSzx;
      block2Szx = blockSzxOf(init.block2Size, 'block2Size');
      automatic = true;
      for (let i = 0; i < base.length; i++) {
        const n = optionNumber(base[i].name);
        if (n === BLOCK1 || n === BLOCK2) automatic = false;
      }
    } catch (err) {
      return sink.failed(ctx, err as Error);
    }

    const state = this.stateFor(channel);
    let token: Buffer;
    try {
      token = init.token !== undefined ? Buffer.from(init.token) : this.newToken(state);
    } catch (err) {
      return sink.failed(ctx, err as Error);
    }
    const payload = init.payload;
    const spec: ExchangeSpec = {
      code,
      label,
      options: observeOption ? [...base, observeOption] : base,
      payload,
      confirmable,
      token,
      tokenKey: init.token !== undefined ? undefined : this.newTokenKey,
      explicitToken: init.token !== undefined,
      template: undefined,
      autoBlock2: automatic,
    };
    if (!automatic) return this.beginExchange(state, spec, opts, sink, ctx);
    const block1 = payload !== undefined && payload.length > blockSize(block1Szx);
    if (opts.onNotification) spec.template = blockTemplate(spec, !block1);
    if (block1) {
      spec.autoBlock2 = false; // sendBlock1 completes the final response's Block2 itself
      handOver(this.sendBlock1(this.transferOf(state, label, opts), spec, spec.template ?? blockTemplate(spec, false), payload,
        block1Szx, block2Szx, observeOption, opts), sink, ctx);
      return;
    }
    if (block2Szx !== undefined) spec.options = [...spec.options, blockOption(BLOCK2_NAME, 0, false, block2Szx)];
    // A response with more Block2 blocks to come is completed by deliverResponse (completeBlock2).
    this.beginExchange(state, spec, opts, sink, ctx);
  }

  /** A new block-wise transfer's context, its clock starting now. */
  private transferOf(state: ChannelState, label: Label, opts: CoapRequestOptions, startedAt = this.now()): TransferCtx {
    return {
      state,
      label,
      startedAt,
      deadline: opts.timeoutMs !== undefined ? startedAt + opts.timeoutMs : undefined,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      blocks: 0,
    };
  }

  /** Sends `payload` in Block1 blocks (RFC 7959 §2.5) and resolves with the final response. */
  private async sendBlock1(
    ctx: TransferCtx,
    spec: ExchangeSpec,
    template: BlockTemplate,
    payload: Buffer,
    startSzx: number,
    block2Szx: number | undefined,
    observeOption: CoapOption | undefined,
    opts: CoapRequestOptions,
  ): Promise<CoapMessage> {
    const base = spec.options.filter((o) => o !== observeOption);
    let szx = startSzx;
    let offset = 0;
    let restarted = false;
    let final: CoapMessage;
    try {
      if (payload.length > blockSize(szx) * 0x100000) throw new RangeError(`payload of ${payload.length} bytes needs more than 2^20 blocks`);
      for (;;) {
        const size = blockSize(szx);
        const num = offset / size;
        const more = offset + size < payload.length;
        const options = [...base, blockOption(BLOCK1_NAME, num, more, szx)];
        if (num === 0) options.push({ name: 'Size1', value: encodeUint(payload.length) });
        if (!more) {
          if (observeOption) options.push(observeOption);
          if (block2Szx !== undefined) options.push(blockOption(BLOCK2_NAME, 0, false, block2Szx));
        }
        const step: ExchangeSpec = {
          ...spec,
          label: `${ctx.label} (block1 ${num}${more ? '+' : ''})`,
          options,
          payload: payload.subarray(offset, offset + size),
          // The caller's token semantics apply to the first block only; later blocks reuse the transfer's token.
          explicitToken: spec.explicitToken && offset === 0,
          template: more ? undefined : spec.template,
        };
        const res = await this.transferStep(ctx, step, more ? {} : { onNotification: opts.onNotification });
        if (!more) {
          final = res;
          break;
        }
        if (!isSuccessCode(res.code)) {
          const b = blockOf(res, BLOCK1_NAME);
          if (res.code === '4.13' && num === 0 && !restarted && b && b.szx < szx) {
            // RFC 7959 §2.9.3: the server prefers smaller blocks; start over with its size.
            szx = b.szx;
            restarted = true;
            continue;
          }
          this.stats.blockTransferErrors++;
          return res;
        }
        const b = blockOf(res, BLOCK1_NAME);
        if (b && b.num !== num) {
          throw new CoapProtocolError(`${ctx.label} to ${ctx.state.key}: block1 ${num} acknowledged as block ${b.num}`);
        }
        offset += size;
        if (b && b.szx < szx) szx = b.szx; // honour the smaller size the peer asked for
      }
    } catch (err) {
      this.stats.blockTransferErrors++;
      throw err;
    }
    return this.completeBlock2(ctx, template, final, opts);
  }

  /**
   * When `first` carries Block2 with more blocks to come, fetches the rest and resolves with the whole body;
   * otherwise resolves with `first` unchanged.
   */
  private async completeBlock2(
    ctx: TransferCtx,
    template: BlockTemplate,
    first: CoapMessage,
    opts: CoapRequestOptions,
  ): Promise<CoapMessage> {
    const b = blockOf(first, BLOCK2_NAME);
    if (!b || !b.more || !isSuccessCode(first.code)) return first;
    const observing = opts.onNotification !== undefined && first.observe !== undefined;
    try {
      // RFC 7959 §2.6: the observation's token stays with the observation; the rest comes with another one.
      const token = observing ? this.newToken(ctx.state) : first.token;
      return await this.fetchBlock2(ctx, template, first, b, token);
    } catch (err) {
      this.stats.blockTransferErrors++;
      if (observing && !this.closed) this.cancelObservation(ctx.state.channel, first.token);
      throw err;
    }
  }

  /** Fetches blocks after `first` (RFC 7959 §2.4) and returns `first` with the whole body and without Block2. */
  private async fetchBlock2(
    ctx: TransferCtx,
    template: BlockTemplate,
    first: CoapMessage,
    b0: BlockValue,
    token: Buffer,
  ): Promise<CoapMessage> {
    const where = `${ctx.label} to ${ctx.state.key}`;
    if (b0.num !== 0) throw new CoapProtocolError(`${where}: first response is block ${b0.num}, not block 0`);
    if (first.payload.length !== blockSize(b0.szx)) {
      throw new CoapProtocolError(`${where}: block 0 has ${first.payload.length} bytes, expected ${blockSize(b0.szx)}`);
    }
    const size2 = getUintOption(first.options, 'Size2');
    if (size2 !== undefined && size2 > this.maxBodySize) {
      throw new CoapBodyTooLargeError(`${where}: response body of ${size2} bytes (Size2) exceeds the limit of ${this.maxBodySize}`, this.maxBodySize, size2);
    }
    const etag = getOption(first.options, 'ETag');
    const chunks: Buffer[] = [first.payload];
    let offset = first.payload.length;
    let szx = b0.szx;
    for (;;) {
      const num = offset / blockSize(szx);
      if (num > 0xfffff) throw new CoapProtocolError(`${where}: response has more than 2^20 blocks`);
      const res = await this.transferStep(ctx, {
        code: template.code,
        label: `${ctx.label} (block2 ${num})`,
        options: [...template.options, blockOption(BLOCK2_NAME, num, false, szx)],
        payload: template.payload,
        confirmable: template.confirmable,
        token,
        explicitToken: false,
      });
      if (!isSuccessCode(res.code)) return res;
      const b = blockOf(res, BLOCK2_NAME);
      if (!b) throw new CoapProtocolError(`${where}: answer to block2 ${num} has no Block2 option`);
      if (b.szx > szx || b.num * blockSize(b.szx) !== offset) {
        throw new CoapProtocolError(`${where}: asked for block ${num} (${blockSize(szx)} bytes), got block ${b.num} (${blockSize(b.szx)} bytes)`);
      }
      if (b.more && res.payload.length !== blockSize(b.szx)) {
        throw new CoapProtocolError(`${where}: block ${b.num} has ${res.payload.length} bytes, expected ${blockSize(b.szx)}`);
      }
      const tag = getOption(res.options, 'ETag');
      if (etag !== undefined && (tag === undefined || !tag.equals(etag))) {
        throw new CoapProtocolError(`${where}: the representation changed during the block-wise transfer (ETag)`);
      }
      offset += res.payload.length;
      if (offset > this.maxBodySize) {
        throw new CoapBodyTooLargeError(`${where}: response body exceeds the limit of ${this.maxBodySize} bytes`, this.maxBodySize, offset);
      }
      chunks.push(res.payload);
      szx = b.szx;
      if (!b.more) break;
    }
    return {
      ...first,
      payload: Buffer.concat(chunks, offset),
      options: first.options.filter((o) => optionNumber(o.name) !== BLOCK2),
    };
  }

  /** One exchange of a block-wise transfer: checks the transfer is still wanted and within its deadline. */
  private async transferStep(
    ctx: TransferCtx,
    spec: ExchangeSpec,
    extra: { onNotification?: (msg: CoapMessage) => void } = {},
  ): Promise<CoapMessage> {
    if (this.closed) throw new EndpointClosedError('CoAP endpoint closed');
    if (this.channels.get(ctx.state.key) !== ctx.state) {
      throw new ChannelClosedError(`channel ${ctx.state.key} closed during the block-wise transfer of ${ctx.label}`, ctx.state.key);
    }
    if (ctx.signal?.aborted) throw abortError(ctx.signal);
    let timeoutMs: number | undefined;
    if (ctx.deadline !== undefined) {
      timeoutMs = ctx.deadline - this.now();
      if (timeoutMs <= 0) {
        this.stats.timeouts++;
        throw this.transferTimeout(ctx, 0);
      }
    }
    this.stats.blocksSent++;
    try {
      const res = await this.startExchange(ctx.state, spec, { timeoutMs, signal: ctx.signal, ...extra });
      ctx.blocks++;
      return res;
    } catch (err) {
      // a block's time limit is what is left of the transfer's, so its deadline is the transfer's (a Node timer may
      // fire a few milliseconds before the clock reaches it, when the event loop's cached time was behind)
      if (err instanceof CoapTimeoutError && ctx.deadline !== undefined &&
          (err.atDeadline || this.now() >= ctx.deadline - 1)) {
        throw this.transferTimeout(ctx, err.transmissions);
      }
      throw err;
    }
  }

  /** The transfer-level timeout error (the exchange that ran out already counted the timeout, if any). */
  private transferTimeout(ctx: TransferCtx, transmissions: number): CoapTimeoutError {
    const elapsed = Math.round(this.now() - ctx.startedAt);
    return new CoapTimeoutError(
      `${ctx.label} to ${ctx.state.key}: block-wise transfer not finished within ${ctx.timeoutMs} ms (${ctx.blocks} blocks exchanged)`,
      transmissions,
      elapsed,
    );
  }

  /** Puts one request on the wire and resolves with its response (the first one, for an observation). */
  private startExchange(state: ChannelState, spec: ExchangeSpec, opts: CoapRequestOptions): Promise<CoapMessage> {
    return new Promise<CoapMessage>((resolve, reject) => this.beginExchange(state, spec, opts, PROMISE_SINK, { resolve, reject }));
  }

  /** Sends one message of a request and registers its exchange; the outcome goes to `sink` (see requestWith). */
  private beginExchange<C>(state: ChannelState, spec: ExchangeSpec, opts: CoapRequestOptions, sink: ExchangeSink<C>, ctx: C): void {
    const token = spec.token;
    const tokenKey = spec.tokenKey ?? tokenKeyOf(token);
    const existing = state.byToken.get(tokenKey);
    if (existing) {
      if (spec.explicitToken && existing.settled && existing.observing) this.finish(existing);
      else return sink.failed(ctx, new Error(`token ${token.toString('hex')} is in use by a pending request`));
    }
    if (spec.explicitToken) state.cancelledTokens.delete(tokenKey);
    const confirmable = spec.confirmable;
    const messageId = this.nextMessageId(state);
    let bytes: Buffer;
    try {
      bytes = encodeMessage(
        { type: confirmable ? 'CON' : 'NON', code: spec.code, messageId, token, options: spec.options, payload: spec.payload },
        this.maxMessageSize,
      );
    } catch (err) {
      return sink.failed(ctx, err instanceof Error ? err : new Error(String(err)));
    }

    const startedAt = this.now();
    const ex: Exchange = {
      state,
      token,
      tokenKey,
      messageId,
      bytes,
      confirmable,
      label: spec.label,
      startedAt,
      transmissions: 0,
      timeoutMs: 0,
      awaitingAck: confirmable,
      settled: false,
      sink: sink as ExchangeSink<unknown>,
      sinkCtx: ctx,
      overallTimeoutMs: opts.timeoutMs,
      onNotification: opts.onNotification,
      observing: false,
      cancelled: false,
      lastObserve: 0,
      lastObserveAt: 0,
      signal: opts.signal,
      template: spec.template,
      notifyGen: 0,
      autoBlock2: spec.autoBlock2 === true,
      // set later on some exchanges; in the literal so that every exchange has one shape
      deadlineTimer: undefined,
      deadlineAt: undefined,
      deadlineMs: undefined,
      onAbort: undefined,
      timerDue: 0,
      timerPrev: undefined,
      timerNext: undefined,
      timerList: undefined,
    };
    state.byToken.set(ex.tokenKey, ex);
    state.byMessageId.set(messageId, ex);
    state.keepUntil = startedAt + this.exchangeLifetimeMs;
    this.stats.requestsSent++;
    this.transmit(ex);
    // One timer per exchange: a deadline after the first retransmission waits (deadlineAt) and is armed by the
    // retransmission timer or an empty ACK when it comes next.
    const deadline = opts.timeoutMs ?? (confirmable ? undefined : this.nonTimeoutMs);
    if (confirmable) ex.timeoutMs = this.initialAckTimeout();
    if (deadline !== undefined && (!confirmable || deadline <= ex.timeoutMs)) {
      ex.deadlineTimer = setTimeout(() => this.onDeadline(ex, deadline), deadline);
    } else if (confirmable) {
      if (deadline !== undefined) {
        ex.deadlineAt = performance.now() + deadline;
        ex.deadlineMs = deadline;
      }
      this.retransmits.add(ex, ex.timeoutMs);
    }
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
  }

  /**
   * Forgets an observation (or marks a still-pending observe request so it will not be kept). A later
   * notification carrying the token is answered with RST, which cancels it at the peer (RFC 7641 §3.6).
   */
  cancelObservation(channel: Channel, token: Buffer): void {
    if (this.closed || !Buffer.isBuffer(token)) return;
    const state = this.stateFor(channel);
    const key = tokenKeyOf(token);
    const ex = state.byToken.get(key);
    if (ex) {
      if (ex.settled) this.finish(ex);
      else ex.cancelled = true;
    }
    state.cancelledTokens.set(key, this.now() + this.exchangeLifetimeMs);
  }

  /**
   * Takes over an observation established by another endpoint instance (a server handed over on redeploy or
   * restored after a restart): notifications with `token` on `channel` go to `onNotification`. The first one is
   * accepted whatever its sequence number (RFC 7641 §3.4: more than 128 s may have passed).
   */
  adoptObservation(channel: Channel, token: Buffer, onNotification: (msg: CoapMessage) => void): void {
    if (this.closed || !Buffer.isBuffer(token) || token.length === 0 || token.length > 8) return;
    const state = this.stateFor(channel);
    const tokenKey = tokenKeyOf(token);
    const old = state.byToken.get(tokenKey);
    if (old) this.finish(old);
    state.cancelledTokens.delete(tokenKey);
    const now = this.now();
    const ex: Exchange = {
      state, token: Buffer.from(token), tokenKey, messageId: -1, bytes: Buffer.alloc(0), confirmable: false,
      label: `adopted observation tok=${token.toString('hex')}`, startedAt: now, transmissions: 0, timeoutMs: 0,
      awaitingAck: false, settled: true, sink: NO_SINK as ExchangeSink<unknown>, sinkCtx: undefined,
      onNotification, observing: true, cancelled: false, lastObserve: 0, lastObserveAt: now - 129_000, notifyGen: 0, autoBlock2: false,
      timerDue: 0, timerPrev: undefined, timerNext: undefined, timerList: undefined,
    };
    state.byToken.set(tokenKey, ex);
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
    this.retransmits.clear();
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
    if (this.tracing) this.log('trace', `coap ${channel.key} <- ${describeMessage(msg)}`);
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
    const state = this.existingState(channel);
    const ex = state?.byMessageId.get(msg.messageId);
    if (!state || !ex || !ex.confirmable || !ex.awaitingAck) {
      if (this.tracing) this.log('trace', `coap ${channel.key} ignoring unmatched ACK mid=${msg.messageId}`);
      return;
    }
    state.channel = channel;
    if (msg.code === '0.00') {
      // Separate response follows (RFC 7252 §5.2.2).
      this.stopTransmitting(ex);
      // the caller's deadline, if it was waiting behind the retransmissions, else the separate response's
      if (!this.armDeadlineBefore(ex, Infinity) && ex.deadlineTimer === undefined) {
        const wait = this.separateResponseTimeoutMs;
        ex.deadlineTimer = setTimeout(() => this.onDeadline(ex, wait, true), wait);
      }
      return;
    }
    if (!sameBytes(msg.token, ex.token)) {
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
    const key = tokenKeyOf(msg.token);
    const ex = state.byToken.get(key);
    const reject = (why: string): void => {
      if (this.tracing) this.log('trace', `coap ${channel.key} rejecting ${msg.type} response mid=${msg.messageId}: ${why}`);
      const rst = emptyMessage('RST', msg.messageId);
      if (entry) entry.reply = rst.toString('latin1');
      this.stats.resetsSent++;
      this.sendRaw(channel, rst);
    };
    if (!ex) {
      if (state._cancelledTokens?.has(key)) {
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
      if (entry) entry.reply = ack.toString('latin1');
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
        if (this.tracing) this.log('trace', `coap ${ex.state.key} observing ${ex.label} tok=${ex.token.toString('hex')}`);
      } else {
        this.finish(ex);
        ex.settled = true;
      }
      if (ex.autoBlock2 && isSuccessCode(msg.code) && blockOf(msg, BLOCK2_NAME)?.more) {
        // the rest of the body first (RFC 7959 §2.4); the request resolves with the whole of it
        const opts: CoapRequestOptions = { timeoutMs: ex.overallTimeoutMs, signal: ex.signal, onNotification: ex.onNotification };
        const ctx = this.transferOf(ex.state, ex.label, opts, ex.startedAt);
        handOver(this.completeBlock2(ctx, ex.template ?? sentTemplate(ex), msg, opts), ex.sink, ex.sinkCtx);
      } else {
        ex.sink.answered(ex.sinkCtx, msg);
      }
      ex.autoBlock2 = false;
      ex.bytes = NO_BYTES;
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
      if (this.tracing) this.log('trace', `coap ${ex.state.key} stale notification obs=${msg.observe} (last ${ex.lastObserve}) dropped`);
      return;
    }
    ex.lastObserve = msg.observe;
    ex.lastObserveAt = t;
    ex.notifyGen++;
    const b = ex.template ? blockOf(msg, BLOCK2_NAME) : undefined;
    if (b && b.more) this.completeNotification(ex, msg, b);
    else this.notify(ex, msg);
  }

  /**
   * RFC 7959 §2.6: a notification carrying the first Block2 block; fetch the rest (GET without Observe, with
   * a token of its own) and deliver the whole body, unless a newer notification arrived meanwhile.
   */
  private completeNotification(ex: Exchange, msg: CoapMessage, b: BlockValue): void {
    const template = ex.template as BlockTemplate;
    const gen = ex.notifyGen;
    const ctx: TransferCtx = { state: ex.state, label: template.label, startedAt: this.now(), blocks: 0 };
    let token: Buffer;
    try {
      token = this.newToken(ex.state);
    } catch (err) {
      this.log('debug', `coap ${ex.state.key} notification for ${ex.label} dropped: ${errorText(err)}`);
      return;
    }
    this.fetchBlock2(ctx, template, msg, b, token).then(
      (full) => {
        if (!ex.observing || ex.notifyGen !== gen) {
          if (this.tracing) this.log('trace', `coap ${ex.state.key} block-wise notification obs=${msg.observe} superseded, dropped`);
          return;
        }
        if (!isSuccessCode(full.code)) {
          this.stats.blockTransferErrors++;
          this.log('debug', `coap ${ex.state.key} notification for ${ex.label} dropped: its blocks were answered ${describeCode(full.code)}`);
          return;
        }
        this.notify(ex, full);
      },
      (err: unknown) => {
        this.stats.blockTransferErrors++;
        this.log('debug', `coap ${ex.state.key} notification for ${ex.label} dropped: ${errorText(err)}`);
      },
    );
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
    const key = transferKey(msg);
    let block2: BlockValue | undefined;
    let block1Echo: CoapOption | undefined;
    /** `direct`: already shaped (2.31, errors, cached blocks); otherwise block-wise rules apply to the payload. */
    const reply = (res: CoapResponseInit, direct = false): void => {
      if (answered) return;
      answered = true;
      state.handling--;
      if (this.closed || this.channels.get(state.key) !== state) return; // forgotten meanwhile
      const shaped = direct ? res : this.blockwiseResponse(state, msg, key, res, block2, block1Echo);
      const bytes = this.encodeResponse(state, msg, shaped);
      if (entry) entry.reply = bytes.toString('latin1');
      this.sendRaw(state.channel, bytes, true);
    };

    if (!methodName(msg.code)) {
      reply({ code: '4.05' }, true);
      return;
    }
    const bad = findUnrecognisedCritical(msg.options);
    if (bad !== undefined) {
      reply({ code: '4.02', payload: Buffer.from(`unrecognised critical option ${bad}`) }, true);
      return;
    }
    if (getOption(msg.options, 'Proxy-Uri') || getOption(msg.options, 'Proxy-Scheme')) {
      reply({ code: '5.05' }, true);
      return;
    }
    const rawBlock2 = getOption(msg.options, BLOCK2_NAME);
    if (rawBlock2 !== undefined) {
      block2 = decodeBlock(rawBlock2);
      if (!block2) {
        reply({ code: '4.00', payload: Buffer.from('invalid Block2 option') }, true);
        return;
      }
    }
    let req = msg;
    const rawBlock1 = getOption(msg.options, BLOCK1_NAME);
    if (rawBlock1 !== undefined) {
      const step = this.acceptBlock1(state, msg, key, rawBlock1);
      if (step.reply) {
        reply(step.reply, true);
        return;
      }
      req = step.request as CoapMessage;
      block1Echo = step.echo;
    }
    if (block2 && block2.num > 0) {
      const cached = this.serveCached(state, msg, key, block2);
      if (cached) {
        reply(cached, true);
        return;
      }
      if (msg.code !== '0.01' && msg.code !== '0.05') {
        // Calling the handler again would repeat an unsafe request; the response is gone.
        reply({ code: '4.08', payload: Buffer.from('no block-wise response in progress for this request') }, true);
        return;
      }
    }
    const failed = (err: unknown): void => {
      this.log('warn', `coap ${channel.key} request handler failed for ${describeMessage(msg)}: ${errorText(err)}`);
      reply({ code: '5.00', payload: DIAGNOSTIC_HANDLER_FAILED }, true);
    };
    let result: CoapResponseInit | Promise<CoapResponseInit>;
    try {
      result = this.onRequest(req, channel);
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

  /**
   * One block of an incoming Block1 request (RFC 7959 §2.5). Returns the reply to send now (2.31 Continue or
   * an error), or, for the last block, the whole request for the handler and the Block1 option to echo.
   * Reassembly is keyed by method and URI, not by token.
   */
  private acceptBlock1(
    state: ChannelState,
    msg: CoapMessage,
    key: string,
    raw: Buffer,
  ): { reply?: CoapResponseInit; request?: CoapMessage; echo?: CoapOption } {
    const b = decodeBlock(raw);
    const fail = (code: string, text: string, options?: CoapOption[]): { reply: CoapResponseInit } => {
      this.stats.blockTransferErrors++;
      this.log('debug', `coap ${state.key} block-wise request ${describeMessage(msg)} refused: ${text}`);
      return { reply: { code, payload: Buffer.from(text), options } };
    };
    const tooLarge = (): { reply: CoapResponseInit } =>
      fail('4.13', `request body larger than ${this.maxBodySize} bytes`, [
        { name: 'Size1', value: encodeUint(Math.min(this.maxBodySize, 0xffffffff)) },
      ]);
    if (!b) return fail('4.00', 'invalid Block1 option');
    const size = blockSize(b.szx);
    if (msg.payload.length > size || (b.more && msg.payload.length !== size)) {
      return fail('4.00', `Block1 block ${b.num} has ${msg.payload.length} bytes, block size is ${size}`);
    }
    const t = this.now();
    let r = state.reassemblies.get(key);
    if (r && r.expiresAt <= t) {
      this.dropReassembly(state, key);
      r = undefined;
    }
    const cont = (): { reply: CoapResponseInit } => ({
      reply: { code: '2.31', options: [blockOption(BLOCK1_NAME, b.num, true, b.szx)] },
    });
    if (b.num === 0) {
      if (r) this.dropReassembly(state, key); // the client started over
      const size1 = getUintOption(msg.options, 'Size1');
      if (size1 !== undefined && size1 > this.maxBodySize) return tooLarge();
      this.stats.blocksReceived++;
      if (!b.more) return { request: withBody(msg, msg.payload), echo: blockOption(BLOCK1_NAME, 0, false, b.szx) };
      while (state.reassemblies.size >= this.maxBlockTransfersPerChannel) {
        const oldest = state.reassemblies.keys().next().value as string;
        this.log('debug', `coap ${state.key} dropping block-wise request ${oldest}: too many in progress`);
        this.dropReassembly(state, oldest);
      }
      if (this.blockBufferBytes + msg.payload.length > this.maxBlockBufferBytes) {
        return fail('5.03', 'block-wise buffer full, try again later');
      }
      state.reassemblies.set(key, {
        chunks: [msg.payload],
        bytes: msg.payload.length,
        lastNum: 0,
        lastSzx: b.szx,
        expiresAt: t + this.blockTransferTimeoutMs,
      });
      this.blockBufferBytes += msg.payload.length;
      return cont();
    }
    if (!r) return fail('4.08', `no block-wise request in progress for block ${b.num}`);
    if (b.num === r.lastNum && b.szx === r.lastSzx && b.more) {
      r.expiresAt = t + this.blockTransferTimeoutMs;
      return cont(); // the same block again under a new message id: acknowledged already
    }
    if (b.num * size !== r.bytes) {
      this.dropReassembly(state, key);
      return fail('4.08', `Block1 block ${b.num} (${size} bytes) does not continue the ${r.bytes} bytes received`);
    }
    if (r.bytes + msg.payload.length > this.maxBodySize) {
      this.dropReassembly(state, key);
      return tooLarge();
    }
    if (this.blockBufferBytes + msg.payload.length > this.maxBlockBufferBytes) {
      this.dropReassembly(state, key);
      return fail('5.03', 'block-wise buffer full, try again later');
    }
    this.stats.blocksReceived++;
    r.chunks.push(msg.payload);
    r.bytes += msg.payload.length;
    this.blockBufferBytes += msg.payload.length;
    r.lastNum = b.num;
    r.lastSzx = b.szx;
    r.expiresAt = t + this.blockTransferTimeoutMs;
    state.reassemblies.delete(key); // keep least-recently-used order
    state.reassemblies.set(key, r);
    if (b.more) return cont();
    const body = Buffer.concat(r.chunks, r.bytes);
    this.dropReassembly(state, key);
    return { request: withBody(msg, body), echo: blockOption(BLOCK1_NAME, b.num, false, b.szx) };
  }

  private dropReassembly(state: ChannelState, key: string): void {
    const r = state._reassemblies?.get(key);
    if (!r) return;
    state.reassemblies.delete(key);
    this.blockBufferBytes -= r.bytes;
  }

  private dropServed(state: ChannelState, key: string): void {
    const s = state._served?.get(key);
    if (!s) return;
    state.served.delete(key);
    this.blockBufferBytes -= s.payload.length;
  }

  /** A later Block2 block of a response still cached for `key`, or undefined. */
  private serveCached(state: ChannelState, req: CoapMessage, key: string, want: BlockValue): CoapResponseInit | undefined {
    const cached = state._served?.get(key);
    if (!cached) return undefined;
    if (cached.expiresAt <= this.now()) {
      this.dropServed(state, key);
      return undefined;
    }
    cached.expiresAt = this.now() + this.blockTransferTimeoutMs;
    state.served.delete(key);
    state.served.set(key, cached);
    return this.sliceBlock2(state, req, key, cached.res, cached.payload, want, false);
  }

  /**
   * Applies block-wise rules to a handler's response: echoes Block1 for a reassembled request, and serves a
   * payload larger than the block size (or a request that asked for Block2) as one Block2 block, caching the
   * rest. A response that already carries Block2 is left alone. Never throws.
   */
  private blockwiseResponse(
    state: ChannelState,
    req: CoapMessage,
    key: string,
    res: CoapResponseInit,
    want: BlockValue | undefined,
    block1Echo: CoapOption | undefined,
  ): CoapResponseInit {
    try {
      if (!res || typeof res !== 'object') return res;
      let out = res;
      if (block1Echo) out = { ...out, options: [...(out.options ?? []), block1Echo] };
      const payload = out.payload;
      if (!Buffer.isBuffer(payload)) return out;
      if ((out.options ?? []).some((o) => optionNumber(o.name) === BLOCK2)) return out;
      const szx = Math.min(want?.szx ?? this.blockSzx, this.blockSzx);
      if (!want && payload.length <= blockSize(szx)) return out;
      return this.sliceBlock2(state, req, key, out, payload, want ?? { num: 0, more: false, szx }, true);
    } catch (err) {
      this.log('warn', `coap ${state.key} cannot serve block-wise response to ${describeMessage(req)}: ${errorText(err)}`);
      return res;
    }
  }

  /** The requested Block2 block of `payload` (RFC 7959 §2.4), at most this endpoint's block size. */
  private sliceBlock2(
    state: ChannelState,
    req: CoapMessage,
    key: string,
    res: CoapResponseInit,
    payload: Buffer,
    want: BlockValue,
    store: boolean,
  ): CoapResponseInit {
    const szx = Math.min(want.szx, this.blockSzx);
    const size = blockSize(szx);
    const offset = want.num * blockSize(want.szx);
    if (offset > 0 && offset >= payload.length) {
      if (!store) this.dropServed(state, key);
      return { code: '4.02', payload: Buffer.from(`Block2 block ${want.num} is beyond the end of the response`) };
    }
    const more = offset + size < payload.length;
    const options = (res.options ?? []).filter((o) => {
      const n = optionNumber(o.name);
      return n !== BLOCK2 && n !== SIZE2;
    });
    options.push(blockOption(BLOCK2_NAME, offset / size, more, szx));
    if (offset === 0 || getOption(req.options, 'Size2') !== undefined) {
      options.push({ name: 'Size2', value: encodeUint(Math.min(payload.length, 0xffffffff)) });
    }
    this.stats.blocksServed++;
    const successful = isSuccessCode(normaliseCode(res.code) ?? '');
    if (store && more && successful) {
      this.dropServed(state, key);
      while (state.served.size >= this.maxBlockTransfersPerChannel) {
        this.dropServed(state, state.served.keys().next().value as string);
      }
      if (this.blockBufferBytes + payload.length <= this.maxBlockBufferBytes) {
        state.served.set(key, { res, payload, expiresAt: this.now() + this.blockTransferTimeoutMs });
        this.blockBufferBytes += payload.length;
      }
    } else if (!store && !more) {
      this.dropServed(state, key); // last block served
    }
    return { ...res, options, payload: payload.subarray(offset, offset + size) };
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
    const entry = state._dedup?.get(msg.messageId);
    if (!entry) return false;
    if (entry.expiresAt <= this.now()) {
      state.dedup.delete(msg.messageId);
      this.dedupCount--;
      return false;
    }
    this.stats.duplicates++;
    if (this.tracing) this.log('trace', `coap ${channel.key} duplicate ${msg.type} mid=${msg.messageId}${entry.reply ? ', replying again' : ''}`);
    if (msg.type === 'CON' && entry.reply) this.sendRaw(channel, Buffer.from(entry.reply, 'latin1'));
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
    if (this.tracing) {
      this.log('trace', `coap ${ex.state.key} -> ${ex.confirmable ? 'CON' : 'NON'} ${ex.label} mid=${ex.messageId} tok=${ex.token.toString('hex')}` +
        (ex.transmissions > 1 ? ` (transmission ${ex.transmissions})` : ''));
    }
    this.sendRaw(ex.state.channel, ex.bytes);
  }

  /**
   * The first retransmission timeout: random between ACK_TIMEOUT and ACK_TIMEOUT × ACK_RANDOM_FACTOR (RFC 7252
   * §4.2), in sixteenths of that range, so concurrent exchanges share Node's timer lists for a few durations instead
   * of each making its own.
   */
  private initialAckTimeout(): number {
    return Math.round(this.ackTimeoutMs * (1 + (Math.floor(Math.random() * 17) / 16) * (this.ackRandomFactor - 1)));
  }

  private onRetransmitTimer(ex: Exchange): void {
    if (ex.settled || !ex.awaitingAck) return;
    if (this.armDeadlineBefore(ex, 0)) return;
    if (ex.transmissions - 1 < this.maxRetransmit) {
      this.stats.retransmissions++;
      this.transmit(ex);
      ex.timeoutMs *= 2;
      if (!this.armDeadlineBefore(ex, ex.timeoutMs)) this.retransmits.add(ex, ex.timeoutMs);
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

  /**
   * When the exchange has a deadline waiting (deadlineAt) that comes within `withinMs` (or has passed), arms its timer
   * and returns true; the exchange then waits for nothing else.
   */
  private armDeadlineBefore(ex: Exchange, withinMs: number): boolean {
    if (ex.deadlineAt === undefined) return false;
    const left = ex.deadlineAt - performance.now();
    if (left > withinMs) return false;
    const ms = ex.deadlineMs as number;
    ex.deadlineAt = undefined;
    ex.deadlineTimer = setTimeout(() => this.onDeadline(ex, ms), Math.max(0, left));
    return true;
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
        !afterAck,
      ),
    );
  }

  /** Stops retransmitting and forgets the message id (the ACK, or a response, arrived). */
  private stopTransmitting(ex: Exchange): void {
    ex.awaitingAck = false;
    // Nothing is sent again: let the datagram go (a long observation would otherwise keep it, and the shared
    // buffer-pool slab it was cut from, alive); an automatic block-wise request's goes at its first response.
    if (!ex.autoBlock2) ex.bytes = NO_BYTES;
    this.retransmits.remove(ex);
    if (ex.state.byMessageId.get(ex.messageId) === ex) ex.state.byMessageId.delete(ex.messageId);
  }

  private clearDeadline(ex: Exchange): void {
    if (ex.deadlineTimer) clearTimeout(ex.deadlineTimer);
    ex.deadlineTimer = undefined;
    ex.deadlineAt = undefined;
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
    if (this.tracing) this.log('trace', `coap ${ex.state.key} ${ex.label} failed: ${err.message}`);
    ex.sink.failed(ex.sinkCtx, err);
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
    let state = this.existingState(channel);
    if (!state) {
      state = new ChannelState(channel.key, channel, randomBytes(2).readUInt16BE(0), this);
      this.channels.set(channel.key, state);
      if ('coapState' in channel) channel.coapState = state;
      this.ensureSweep();
    } else {
      state.channel = channel;
    }
    return state;
  }

  /**
   * The state of `channel`, if it has one: from the channel object's own slot when it has one (Channel.coapState: a
   * pooled session's channel is the same object for every request and answer, so no lookup by key string), else from
   * the map by key.
   */
  private existingState(channel: Channel): ChannelState | undefined {
    const cached = channel.coapState;
    if (cached instanceof ChannelState && cached.live && cached.owner === this && cached.key === channel.key) return cached;
    const state = this.channels.get(channel.key);
    if (state !== undefined && 'coapState' in channel) channel.coapState = state;
    return state;
  }

  /** Forgets a channel's state (and takes it out of the slot of the channel object it last came through). */
  private removeState(state: ChannelState): void {
    if (this.channels.get(state.key) === state) this.channels.delete(state.key);
    state.live = false;
    if (state.channel.coapState === state) state.channel.coapState = undefined;
  }

  /**
   * The Uri-Path options of a request's path. For a frozen path (the object model's request targets are, one per
   * distinct path) the list is made once and shared; another path gets a new list. A shared list is never changed
   * (request copies it before adding options). It is not frozen itself: optimised code reads the elements of a
   * frozen array through a generic lookup, and every message encoded reads its option list.
   */
  private uriPathOptions(segments: readonly string[]): CoapOption[] {
    if (Object.isFrozen(segments)) {
      let shared = this.pathOptionLists.get(segments);
      if (!shared) {
        shared = this.newPathOptions(segments);
        this.pathOptionLists.set(segments, shared);
      }
      return shared;
    }
    return this.newPathOptions(segments);
  }

  /**
   * A new list of Uri-Path options. The option of a short segment ("3", "0", "rd", …) is made once and shared by
   * every request that names it (options are never changed after they are made; at most 1,024 are kept, then the
   * cache starts over).
   */
  private newPathOptions(segments: readonly string[]): CoapOption[] {
    const out: CoapOption[] = [];
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const cacheable = seg.length <= 16;
      let o = cacheable ? this.segmentOptions.get(seg) : undefined;
      if (!o) {
        [o] = pathOptions([seg]);
        if (cacheable) {
          if (this.segmentOptions.size >= 1024) this.segmentOptions.clear();
          this.segmentOptions.set(seg, o);
        }
      }
      out.push(o);
    }
    return out;
  }

  private nextMessageId(state: ChannelState): number {
    for (let i = 0; i < 65536; i++) {
      const id = state.nextMessageId;
      state.nextMessageId = (state.nextMessageId + 1) & 0xffff;
      if (!state._byMessageId?.has(id)) return id;
    }
    throw new Error('no free message id'); // unreachable: at most one pending exchange per id
  }

  /**
   * A fresh random token (RFC 7252 §5.3.1: unpredictable, so an off-path attacker cannot spoof a response over plain
   * UDP). Taken from a block of CSPRNG output refilled when used up: one OpenSSL call per 512 tokens instead of one
   * per request. Every byte is used once.
   */
  private newToken(state: ChannelState): Buffer {
    const n = this.tokenLength;
    for (let i = 0; i < 32; i++) {
      if (this.tokenPoolOffset + n > this.tokenPool.length) {
        randomFillSync(this.tokenPool);
        this.tokenPoolOffset = 0;
      }
      const t = Buffer.allocUnsafe(n);
      const pool = this.tokenPool;
      for (let j = 0, o = this.tokenPoolOffset; j < n; j++) t[j] = pool[o + j];
      this.tokenPoolOffset += n;
      const key = tokenKeyOf(t);
      if (!state._byToken?.has(key) && !state._cancelledTokens?.has(key)) {
        this.newTokenKey = key;
        return t;
      }
    }
    throw new Error('could not allocate a unique token');
  }

  private ensureSweep(): void {
    if (this.sweepTimer || this.closed) return;
    const interval = Math.max(
      20,
      Math.floor(Math.min(30000, this.exchangeLifetimeMs / 4, this.blockTransferTimeoutMs / 4)),
    );
    this.sweepTimer = setInterval(() => this.sweep(), interval);
  }

  /** Expires dedup entries and cancelled tokens, drops idle channel state; stops itself when nothing is left. */
  private sweep(): void {
    const t = this.now();
    for (const [key, state] of this.channels) {
      if (state._dedup) {
        for (const [mid, entry] of state._dedup) {
          if (entry.expiresAt <= t) {
            state._dedup.delete(mid);
            this.dedupCount--;
          }
        }
      }
      if (state._cancelledTokens) for (const [tok, exp] of state._cancelledTokens) if (exp <= t) state._cancelledTokens.delete(tok);
      if (state._reassemblies) {
        for (const [k, r] of state._reassemblies) {
          if (r.expiresAt <= t) {
            this.log('debug', `coap ${key} block-wise request ${k} timed out after ${r.bytes} bytes`);
            this.stats.blockTransferErrors++;
            this.dropReassembly(state, k);
          }
        }
      }
      if (state._served) for (const [k, c] of state._served) if (c.expiresAt <= t) this.dropServed(state, k);
      if (state.releaseEmpty() && state.keepUntil <= t) this.removeState(state);
    }
    if (this.channels.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private dropState(state: ChannelState, makeError: () => Error): void {
    this.removeState(state);
    if (state._dedup) this.dedupCount -= state._dedup.size;
    state._dedup = undefined;
    state._cancelledTokens = undefined;
    if (state._reassemblies) for (const k of [...state._reassemblies.keys()]) this.dropReassembly(state, k);
    if (state._served) for (const k of [...state._served.keys()]) this.dropServed(state, k);
    const exchanges = new Set([...(state._byToken?.values() ?? []), ...(state._byMessageId?.values() ?? [])]);
    for (const ex of exchanges) this.fail(ex, makeError());
    state._byToken?.clear();
    state._byMessageId?.clear();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Sending, logging

  private sendReset(channel: Channel, messageId: number): void {
    this.stats.resetsSent++;
    if (this.tracing) this.log('trace', `coap ${channel.key} -> RST mid=${messageId}`);
    this.sendRaw(channel, emptyMessage('RST', messageId));
  }

  private sendRaw(channel: Channel, bytes: Buffer, traceIt = false): void {
    if (traceIt && this.tracing) {
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

const BLOCK1 = 27;
const BLOCK2 = 23;
const SIZE2 = 28;
const BLOCK1_NAME = 'Block1';
const BLOCK2_NAME = 'Block2';
/** Options a Block2 follow-up request does not repeat from the original request. */
const TRANSFER_OPTIONS: ReadonlySet<number> = new Set([6, BLOCK2, BLOCK1, SIZE2, 60]);

/** SZX for a configured block size (16..1024, a power of two); undefined when not given. */
function blockSzxOf(size: number | undefined, name: string): number | undefined {
  if (size === undefined) return undefined;
  if (!Number.isInteger(size) || size < 16 || size > 1024 || (size & (size - 1)) !== 0) {
    throw new RangeError(`${name} must be 16, 32, 64, 128, 256, 512 or 1024`);
  }
  return szxForSize(size);
}

function blockOption(name: string, num: number, more: boolean, szx: number): CoapOption {
  return { name, value: encodeBlock({ num, more, szx }) };
}

/** The message's Block1 or Block2 value; undefined when absent or invalid. */
const FETCH_CODE = methodCode('FETCH');

/**
 * What follow-up Block2 requests of `spec` repeat: its options without Observe and the block options, and a FETCH
 * body when it went in the first request (`withBody`: it was not sent block-wise, RFC 8132 §2.3.2).
 */
function blockTemplate(spec: Pick<ExchangeSpec, 'code' | 'label' | 'options' | 'payload' | 'confirmable'>, withBody: boolean): BlockTemplate {
  return {
    code: spec.code,
    label: spec.label,
    options: spec.options.filter((o) => !TRANSFER_OPTIONS.has(optionNumber(o.name) ?? -1)),
    payload: withBody && spec.code === FETCH_CODE ? spec.payload : undefined,
    confirmable: spec.confirmable,
  };
}

/** The Block2 template of an exchange's request (with its body), read back from the bytes it sent. */
function sentTemplate(ex: Exchange): BlockTemplate {
  const sent = decodeMessage(ex.bytes);
  return blockTemplate({
    code: sent.code, label: ex.label, options: sent.options, payload: sent.payload.length > 0 ? sent.payload : undefined, confirmable: ex.confirmable,
  }, true);
}

function blockOf(msg: CoapMessage, name: string): BlockValue | undefined {
  const raw = getOption(msg.options, name);
  return raw === undefined ? undefined : decodeBlock(raw);
}

/** The request with a reassembled body, without Block1/Size1. */
function withBody(msg: CoapMessage, body: Buffer): CoapMessage {
  return {
    ...msg,
    payload: body,
    options: msg.options.filter((o) => {
      const n = optionNumber(o.name);
      return n !== BLOCK1 && n !== 60;
    }),
  };
}

/** Identifies a block-wise transfer of an incoming request: method and URI (RFC 7959 §2.5: not the token). */
function transferKey(msg: CoapMessage): string {
  return `${msg.code} /${msg.path.map(encodeURIComponent).join('/')}?${msg.query.map(encodeURIComponent).join('&')}`;
}

function positive(value: number | undefined, dflt: number, name: string): number {
  if (value === undefined) return dflt;
  if (!(typeof value === 'number' && value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive number`);
  return value;
}

/** The option `name` with a 16-bit value, from (or put in) `cache` (bounded: cleared past 64 values). */
function numberOption(cache: Map<number, CoapOption>, name: string, value: number): CoapOption {
  let o = cache.get(value);
  if (!o) {
    o = { name, value: uint16(value) };
    if (cache.size >= 64) cache.clear();
    cache.set(value, o);
  }
  return o;
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

/**
 * The key of a token in a channel's maps: its bytes as a one-byte string (hex only in log lines). Buffer's
 * toString('hex') is a call into C++ of about 1,100 instructions for 8 bytes, and a request makes one key.
 */
function tokenKeyOf(t: Buffer): string {
  if (t.length === 8) return String.fromCharCode(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
  let key = '';
  for (let i = 0; i < t.length; i++) key += String.fromCharCode(t[i]);
  return key;
}

function safeKey(channel: Channel): string {
  try {
    return String(channel.key);
  } catch {
    return '?';
  }
}

