// Every bound of the gateway, with its default and the values it may take. The configuration schema
// (config/schema.ts) turns LIMIT_RANGES into its `limits` block; `normalizeBusOptions` (options.ts) checks what a schema
// cannot (one limit against another).

export interface Limits {
  /** Largest invocation or event payload, in bytes. */
  readonly maxPayloadBytes: number
  /** Largest MQTT frame; a connection that declares a larger one is cut. Default: maxPayloadBytes + 64 KiB. */
  readonly maxFrameBytes: number
  /** Calls waiting for a free worker, per function. */
  readonly maxQueuedCalls: number
  /** Calls one worker may declare it runs at once. */
  readonly maxConcurrency: number
  /** Timeout of a call that names none. */
  readonly defaultTimeoutMs: number
  /** Longest timeout a call may ask for. */
  readonly maxTimeoutMs: number
  /** Longest topic or topic filter a client may publish or subscribe, in UTF-8 bytes. */
  readonly maxTopicBytes: number
  /** Most levels (`/`-separated) in a topic or filter; aedes' router cannot go beyond 100. */
  readonly maxTopicLevels: number
  /** Subscriptions one connection may hold; one more is refused (SUBACK 0x80). */
  readonly maxSubscriptionsPerClient: number
  /** Open client connections, all listeners together; one more is closed at once. */
  readonly maxConnections: number
  /** How long a new connection may take to deliver its whole CONNECT packet before it is cut. */
  readonly connectTimeoutMs: number
  /**
   * Connections not yet authenticated, all listeners together: one more takes the place of the oldest that has not
   * sent its CONNECT yet, or is closed at once when all of them are logging in.
   */
  readonly maxPendingConnections: number
  /** Logins from one source address (IPv6: one /64) waiting for their secret check; one more is refused (CONNACK 3, HTTP 403). */
  readonly maxPendingLoginsPerAddress: number
  /** Calls one connection may have in flight (Sync awaiting their answer, Async awaiting storage); then FNBUS_RATE_LIMITED. */
  readonly maxInFlightPerClient: number
  /** Calls per second one identity may make, all its connections together; 0: no limit. Then FNBUS_RATE_LIMITED. */
  readonly invokeRatePerSec: number
  /** Calls an identity may make at once above its rate (the token bucket's size). Default: one second's worth. */
  readonly invokeBurst: number
  /**
   * Bytes the gateway has written to one connection that its peer has not read yet. From half of it the connection
   * gets no invocations and its new calls are refused (FNBUS_RATE_LIMITED); past it, the connection is cut.
   */
  readonly maxBufferedBytesPerClient: number
  /** Payload bytes of the calls waiting for a worker of one function; then FNBUS_QUEUE_FULL. */
  readonly maxQueuedBytes: number
  /** Payload bytes of the calls one connection has waiting for workers, all functions together; then FNBUS_QUEUE_FULL. */
  readonly maxQueuedBytesPerClient: number
  /** Functions one connection may serve; one more registration is FNBUS_INVALID_ARGUMENT. */
  readonly maxRegistrationsPerClient: number
  /** Function names the gateway tracks at once (served, or with calls waiting for a first worker); then FNBUS_QUEUE_FULL. */
  readonly maxFunctions: number
  /** Stored (Async) invocations waiting, all functions together; one more is FNBUS_QUEUE_FULL. */
  readonly maxStoredTotal: number
  /** Largest invoker context a call may carry, as MessagePack bytes; then FNBUS_PAYLOAD_TOO_LARGE. */
  readonly maxContextBytes: number
  /** Free bytes the data directory's filesystem keeps: below it new Async invocations are FNBUS_QUEUE_FULL; 0: no check. */
  readonly minFreeDiskBytes: number
  /**
   * Bytes of event messages waiting to be written to one subscriber's connection. Past it the subscriber's QoS 0
   * messages are dropped and a QoS 1/2 delivery cuts its connection: a slow subscriber never holds others back.
   */
  readonly maxEventBufferBytes: number
  /** How long a subscriber may stay over maxEventBufferBytes before its connection is cut. */
  readonly eventBufferTimeoutMs: number
  /** QoS 1/2 messages queued for one persistent session (clean = 0), offline or not yet acknowledged; newer ones are dropped. */
  readonly maxSessionQueueMessages: number
  /** Bytes (payload and topic) queued for one persistent session; newer messages are dropped. */
  readonly maxSessionQueueBytes: number
  /** Bytes queued for all persistent sessions together; newer messages are dropped. */
  readonly maxSessionQueueBytesTotal: number
  /** Retained messages stored; a retained message on one topic more is routed but not retained. */
  readonly maxRetainedMessages: number
  /** Bytes (payload and topic) of all retained messages together; same consequence. */
  readonly maxRetainedBytes: number
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxPayloadBytes: 1024 * 1024,
  maxFrameBytes: 1024 * 1024 + 64 * 1024,
  maxQueuedCalls: 1000,
  maxConcurrency: 1024,
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 15 * 60_000,
  maxTopicBytes: 1024,
  maxTopicLevels: 32,
  maxSubscriptionsPerClient: 100,
  maxConnections: 1000,
  connectTimeoutMs: 5_000,
  maxPendingConnections: 128,
  maxPendingLoginsPerAddress: 32,
  maxInFlightPerClient: 10_000,
  invokeRatePerSec: 0,
  invokeBurst: 0,
  maxBufferedBytesPerClient: 32 * 1024 * 1024,
  maxQueuedBytes: 64 * 1024 * 1024,
  maxQueuedBytesPerClient: 16 * 1024 * 1024,
  maxRegistrationsPerClient: 1024,
  maxFunctions: 10_000,
  maxStoredTotal: 1_000_000,
  // with the largest payload, still well inside a frame's 64 KiB allowance for everything but the payload
  maxContextBytes: 16 * 1024,
  minFreeDiskBytes: 64 * 1024 * 1024,
  maxEventBufferBytes: 8 * 1024 * 1024,
  eventBufferTimeoutMs: 30_000,
  maxSessionQueueMessages: 1000,
  maxSessionQueueBytes: 8 * 1024 * 1024,
  maxSessionQueueBytesTotal: 64 * 1024 * 1024,
  maxRetainedMessages: 10_000,
  maxRetainedBytes: 16 * 1024 * 1024,
})

/** setTimeout's longest delay: a longer one fires at once (Node warns and uses 1 ms). */
export const MAX_TIMER_MS = 2_147_483_647

/** MQTT's remaining-length field cannot express a larger frame. */
export const MQTT_MAX_FRAME_BYTES = 268_435_455

/** aedes' topic router (qlobber) throws beyond this many levels. */
export const ROUTER_MAX_LEVELS = 100

/**
 * The values each limit may take, `[min, max]`; max undefined: any safe integer. A limit whose 0 means "none" or
 * "off" starts at 0; durations stop where a timer can still hold them.
 */
export const LIMIT_RANGES: { readonly [K in keyof Limits]: readonly [number, number?] } = Object.freeze({
  maxPayloadBytes: [1],
  maxFrameBytes: [1, MQTT_MAX_FRAME_BYTES],
  maxQueuedCalls: [0],
  maxConcurrency: [1],
  defaultTimeoutMs: [1, MAX_TIMER_MS],
  maxTimeoutMs: [1, MAX_TIMER_MS],
  // a topic's length is a 16-bit field in MQTT
  maxTopicBytes: [1, 65_535],
  maxTopicLevels: [1, ROUTER_MAX_LEVELS],
  maxSubscriptionsPerClient: [1],
  maxConnections: [1],
  connectTimeoutMs: [1, MAX_TIMER_MS],
  maxPendingConnections: [1],
  maxPendingLoginsPerAddress: [1],
  maxInFlightPerClient: [1],
  invokeRatePerSec: [0],
  invokeBurst: [0],
  maxBufferedBytesPerClient: [1],
  maxQueuedBytes: [1],
  maxQueuedBytesPerClient: [1],
  maxRegistrationsPerClient: [1],
  maxFunctions: [1],
  maxStoredTotal: [1],
  maxContextBytes: [1],
  minFreeDiskBytes: [0],
  maxEventBufferBytes: [1],
  eventBufferTimeoutMs: [1, MAX_TIMER_MS],
  maxSessionQueueMessages: [1],
  maxSessionQueueBytes: [1],
  maxSessionQueueBytesTotal: [1],
  maxRetainedMessages: [0],
  maxRetainedBytes: [0],
})

/** Invocations a function's process runs at once unless its configuration or `--concurrency` says otherwise. */
export const DEFAULT_FUNCTION_CONCURRENCY = 8
