// Routes: configuration rules that turn events into invocations, as Greengrass subscriptions and Azure IoT Edge
// routes do. Built on the public surface only: `gateway.subscribe` sees the events, `gateway.invoke` and
// `gateway.bus.invokeAsync` make the calls, as the rule's identity.
import { nanoid } from 'nanoid'
import { FnbusError, parseRoutesOptions, type GatewayPlugin, type Logger, type PluginContext, type RouteRule } from 'fnbus'

export { DEFAULT_ROUTE_IDENTITY, PAYLOAD_FORMATS, parseRouteRules, parseRoutesOptions, type PayloadFormat, type RouteRule, type RouteRuleInput } from 'fnbus'

export const ROUTES_PLUGIN_NAME = 'routes'

/** A route's failures are each logged at debug; at warn, at most one line per rule per this many ms says how many. */
const WARN_INTERVAL_MS = 10_000
/**
 * Failures of a Sync route that never reached the dispatcher, so that nothing observed them: the event did not
 * decode, or the policy refused the rule's identity the call (or its rate).
 */
const REFUSED_BEFORE_DISPATCH = new Set(['FNBUS_BAD_MESSAGE', 'FNBUS_NOT_AUTHORIZED', 'FNBUS_RATE_LIMITED'])

/** What a rule did since the gateway started. */
export interface RouteStats {
  readonly from: string
  readonly to: string
  readonly invocationType: 'Sync' | 'Async'
  /** Events on a topic matching `from`. */
  readonly matched: number
  /** Async: stored. Sync: answered by the function without an error. */
  readonly routed: number
  /** Not stored, refused, timed out, or the function failed. */
  readonly failed: number
}

/**
 * The invoker context a routed invocation carries: the function reads the event's topic as
 * `context.invokerContext.topic`; a Greengrass v1 function finds it where it always did,
 * `clientContext.custom.subject`, here `invokerContext.custom.subject`.
 */
export function routeContext (topic: string): Record<string, unknown> {
  return { topic, custom: { subject: topic } }
}

class Route {
  matched = 0
  routed = 0
  failed = 0
  /** Failures not yet reported at warn level. */
  unreported = 0
  /** Monotonic (performance.now()): a wall clock set back must not silence the warnings for as long. */
  lastWarnAt = -Infinity

  constructor (readonly rule: RouteRule) {}

  stats (): RouteStats {
    const { from, to, invocationType } = this.rule
    return { from, to, invocationType, matched: this.matched, routed: this.routed, failed: this.failed }
  }
}

/**
 * The `routes` plugin. Switched on by the configuration's `routes` key (or `plugins.routes.rules`); an embedding
 * application passes `createGateway({ plugins: { routes: { rules: [...] } } })`.
 */
export class RoutesPlugin implements GatewayPlugin {
  readonly name = ROUTES_PLUGIN_NAME
  readonly #routes: Route[] = []
  readonly #unsubscribes: (() => Promise<void>)[] = []
  /**
   * Async store writes under way: stop() waits for them, so that the store is not closed under them. Sync calls
   * are not waited for here: the bus's own shutdown answers them within its grace, or fails them.
   */
  readonly #storing = new Set<Promise<void>>()
  #context: PluginContext | undefined
  #stopped = false

  async start (context: PluginContext): Promise<void> {
    const { rules } = parseRoutesOptions(context.config)
    this.#context = context
    try {
      for (const rule of rules) {
        const route = new Route(rule)
        this.#routes.push(route)
        // gateway.subscribe refuses $fn/ filters, and MQTT's own rule keeps `#` and `+/…` away from `$` topics
        this.#unsubscribes.push(await context.gateway.subscribe(rule.from, (topic, payload) => this.#route(route, topic, payload)))
        context.logger.info({ from: rule.from, to: rule.to, invocationType: rule.invocationType, identity: rule.identity },
          `routing events on ${rule.from} to ${rule.to} (${rule.invocationType}, as ${rule.identity})`)
      }
    } catch (err) {
      // a plugin that failed to start is not stopped: leave no subscription behind
      await this.stop()
      throw err
    }
  }

  /** Stops routing; events being stored finish first. */
  async stop (): Promise<void> {
    this.#stopped = true
    await Promise.allSettled(this.#unsubscribes.map(unsubscribe => unsubscribe()))
    this.#unsubscribes.length = 0
    while (this.#storing.size > 0) await Promise.allSettled([...this.#storing])
  }

  /** What each rule did, in configuration order. */
  stats (): RouteStats[] {
    return this.#routes.map(route => route.stats())
  }

  #route (route: Route, topic: string, bytes: Buffer): void {
    const context = this.#context
    if (this.#stopped || context === undefined) return
    route.matched++
    const rule = route.rule
    const startedAt = performance.now()
    let event: unknown
    try {
      event = eventOf(rule, topic, bytes)
    } catch (err) {
      this.#failed(route, topic, err as FnbusError, undefined, startedAt)
      return
    }
    const invokerContext = routeContext(topic)
    const work = rule.invocationType === 'Async'
      ? context.gateway.bus.invokeAsync(rule.to, event, { context: invokerContext, identity: rule.identity }).then(
        ({ invocationId }) => {
          route.routed++
          this.#trace(context.logger, { from: rule.from, to: rule.to, topic, requestId: invocationId }, 'event routed (stored)')
        },
        (err: unknown) => this.#failed(route, topic, err, nanoid(), startedAt)
      )
      : context.gateway.invoke(rule.to, event, { context: invokerContext, identity: rule.identity, timeout: rule.timeoutMs }).then(
        async result => {
          route.routed++
          this.#trace(context.logger, { from: rule.from, to: rule.to, topic, replyTo: rule.replyTo }, 'event routed (answered)')
          if (rule.replyTo !== undefined) await context.gateway.publish(rule.replyTo, result)
        },
        // the dispatcher has observed this call already (an `invocation` with the route's identity), unless the
        // policy refused it first (REFUSED_BEFORE_DISPATCH)
        (err: unknown) => this.#failed(route, topic, err, undefined, startedAt)
      )
    const settled = work.catch((err: unknown) => {
      // only publishing the result to replyTo can get here
      context.logger.warn({ err, from: rule.from, to: rule.to, replyTo: rule.replyTo }, `publishing ${rule.to}'s result to ${String(rule.replyTo)} failed`)
    })
    if (rule.invocationType === 'Async') {
      this.#storing.add(settled)
      void settled.finally(() => this.#storing.delete(settled))
    }
  }

  /**
   * A routed event that did not become a successful invocation. Refusals the dispatcher never saw (the event could
   * not be decoded, the policy refused the call, an Async invocation could not be stored) are emitted as `invocation`
   * observations, with an id of their own that the log line carries too. The bus counts its own refusals in the
   * function's tally (what metrics export); an event that could not be decoded is the route's, counted here.
   */
  #failed (route: Route, topic: string, err: unknown, requestId: string | undefined, startedAt: number): void {
    route.failed++
    const context = this.#context
    if (context === undefined) return
    const rule = route.rule
    const code = err instanceof FnbusError ? err.code : 'FNBUS_BAD_MESSAGE'
    const message = err instanceof Error ? err.message : String(err)
    const undelivered = rule.invocationType === 'Async' || REFUSED_BEFORE_DISPATCH.has(code)
    if (code === 'FNBUS_BAD_MESSAGE') context.gateway.bus.countRefused(rule.to, rule.invocationType, code)
    const id = requestId ?? (undelivered ? nanoid() : undefined)
    if (undelivered && context.events.observed('invocation')) {
      const [service] = rule.to.split('/')
      context.events.emit('invocation', {
        requestId: id as string,
        function: rule.to,
        service: service as string,
        type: rule.invocationType,
        outcome: code,
        durationMs: performance.now() - startedAt,
        identity: rule.identity,
      })
    }
    const fields = { from: rule.from, to: rule.to, topic, requestId: id, code, error: message }
    this.#trace(context.logger, fields, 'routed event failed')
    route.unreported++
    const now = performance.now()
    if (now - route.lastWarnAt < WARN_INTERVAL_MS) return
    const count = route.unreported
    route.unreported = 0
    route.lastWarnAt = now
    context.logger.warn({ ...fields, failures: count },
      count === 1
        ? `an event on ${topic} could not be routed to ${rule.to}: ${code}: ${message}`
        : `${count} events could not be routed to ${rule.to} in the last ${WARN_INTERVAL_MS / 1000} s; the latest, on ${topic}: ${code}: ${message}`)
  }

  #trace (logger: Logger, fields: Record<string, unknown>, message: string): void {
    if (typeof logger.isLevelEnabled !== 'function' || logger.isLevelEnabled('debug')) logger.debug(fields, message)
  }
}

/** The function's `event`: the bytes as they came (a Buffer), or as text, or parsed as JSON (empty: null). */
function eventOf (rule: RouteRule, topic: string, bytes: Buffer): unknown {
  switch (rule.payloadFormat) {
    case 'bytes': return bytes
    case 'text': return bytes.toString('utf8')
    case 'json':
      if (bytes.length === 0) return null
      try {
        return JSON.parse(bytes.toString('utf8')) as unknown
      } catch (err) {
        throw new FnbusError('FNBUS_BAD_MESSAGE', `the event on ${topic} is not JSON (payloadFormat "json"): ${(err as Error).message}`)
      }
  }
}

/** The built-in's factory, as `plugins: { routes: {…} }` loads it. */
export default function createRoutesPlugin (): RoutesPlugin {
  return new RoutesPlugin()
}
