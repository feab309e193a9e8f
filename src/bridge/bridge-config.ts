// A bridge's configuration as the file and `createGateway` give it (the schema, src/config/schema.ts, checks its
// shape), and what is made of it before it starts: secrets filled in from the environment, TLS files read, rules
// parsed, bounds defaulted (docs/bridge.md#configuration).
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { configError } from '../errors.js'
import { DEFAULT_QUEUE_BOUNDS, type QueueBounds } from './outbound-queue.js'
import { parseTopicRule, type TopicRule, type TopicRuleConfig } from './topic-rules.js'

export interface BridgeTlsConfig {
  /** PEM: the contents, or the path of a file (relative to the configuration file, or to the working directory). */
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
  /** Default true: the remote broker's certificate must be valid for its host name. */
  readonly rejectUnauthorized?: boolean
}

export interface BridgeConfig {
  /** `[a-zA-Z][\w-]{0,127}`: names the bridge in status, metrics, its identity `$bridge/NAME` and its environment variables. */
  readonly name: string
  /** `mqtt://`, `mqtts://`, `ws://` or `wss://` url of the remote broker; or `FNBUS_BRIDGE_<NAME>_URL`. */
  readonly url?: string
  /** Default `fnbus-bridge-NAME`. */
  readonly clientId?: string
  readonly username?: string
  readonly password?: string
  readonly tls?: BridgeTlsConfig
  readonly out?: readonly TopicRuleConfig[]
  readonly in?: readonly TopicRuleConfig[]
  readonly queue?: Partial<QueueBounds>
  /** MQTT keep-alive, seconds. Default 60. */
  readonly keepaliveSec?: number
  /** Pauses between connection attempts: from minDelayMs (default 500), doubling, up to maxDelayMs (default 10,000). */
  readonly reconnect?: { readonly minDelayMs?: number, readonly maxDelayMs?: number }
}

/** A bridge ready to start. */
export interface ResolvedBridge {
  readonly name: string
  readonly url: string
  readonly clientId: string
  readonly username: string | undefined
  readonly password: string | undefined
  readonly tls: { readonly ca?: Buffer, readonly cert?: Buffer, readonly key?: Buffer, readonly rejectUnauthorized: boolean } | undefined
  readonly out: readonly TopicRule[]
  readonly in: readonly TopicRule[]
  readonly queue: QueueBounds
  readonly keepaliveSec: number
  readonly minDelayMs: number
  readonly maxDelayMs: number
}

/** `FNBUS_BRIDGE_<NAME>_` : the name upper-cased, `-` as `_`. */
export function envPrefix (name: string): string {
  return `FNBUS_BRIDGE_${name.toUpperCase().replace(/-/g, '_')}_`
}

/** Keys the environment may fill in, by the suffix of their variable. */
const ENV_KEYS = { URL: 'url', CLIENT_ID: 'clientId', USERNAME: 'username', PASSWORD: 'password' } as const

/** Makes each bridge ready to start; every problem is an FNBUS_CONFIG_INVALID error naming `bridges[i]`. */
export function resolveBridges (bridges: readonly BridgeConfig[], env: NodeJS.ProcessEnv = process.env, base: string = process.cwd()): ResolvedBridge[] {
  const names = new Set<string>()
  return bridges.map((bridge, index) => {
    const where = `bridges[${index}]`
    if (names.has(bridge.name)) throw configError(`${where}: the bridge name ${bridge.name} is used twice`)
    names.add(bridge.name)
    const prefix = envPrefix(bridge.name)
    const fromEnv: Record<string, string> = {}
    for (const [suffix, key] of Object.entries(ENV_KEYS)) {
      const value = env[prefix + suffix]
      // the configuration wins: the environment fills in what it leaves out
      if (value !== undefined && value !== '' && bridge[key] === undefined) fromEnv[key] = value
    }
    const merged = { ...bridge, ...fromEnv }
    const rules = (key: 'out' | 'in'): TopicRule[] => (merged[key] ?? []).map((rule, i) => {
      try {
        return parseTopicRule(rule, `${where}.${key}[${i}]`)
      } catch (err) {
        throw configError((err as Error).message)
      }
    })
    const out = rules('out')
    const inbound = rules('in')
    if (out.length === 0 && inbound.length === 0) throw configError(`${where}: a bridge needs an "out" or an "in" rule`)
    const queue = { ...DEFAULT_QUEUE_BOUNDS, ...merged.queue }
    const minDelayMs = merged.reconnect?.minDelayMs ?? 500
    const maxDelayMs = merged.reconnect?.maxDelayMs ?? 10_000
    if (minDelayMs > maxDelayMs) throw configError(`${where}.reconnect: minDelayMs (${minDelayMs}) is above maxDelayMs (${maxDelayMs})`)
    if (merged.url === undefined) throw configError(`${where}: give the remote broker's url as "url" or in ${prefix}URL`)
    if (!/^(mqtts?|wss?):\/\//.test(merged.url)) throw configError(`${where}.url must be an mqtt://, mqtts://, ws:// or wss:// url, got ${JSON.stringify(merged.url)}`)
    return Object.freeze({
      name: merged.name,
      url: merged.url,
      clientId: merged.clientId ?? `fnbus-bridge-${merged.name}`,
      username: merged.username,
      password: merged.password,
      tls: merged.tls === undefined ? undefined : readTls(merged.tls, base, `${where}.tls`),
      out,
      in: inbound,
      queue,
      keepaliveSec: merged.keepaliveSec ?? 60,
      minDelayMs,
      maxDelayMs,
    })
  })
}

function readTls (tls: BridgeTlsConfig, base: string, where: string): NonNullable<ResolvedBridge['tls']> {
  const pem = (key: 'ca' | 'cert' | 'key'): Buffer | undefined => {
    const value = tls[key]
    if (value === undefined) return undefined
    if (value.includes('-----BEGIN')) return Buffer.from(value)
    try {
      return readFileSync(resolve(base, value))
    } catch (err) {
      throw configError(`${where}.${key}: cannot read ${value}: ${(err as Error).message}`)
    }
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw configError(`${where}: a client certificate needs both "cert" and "key"`)
  const out: { ca?: Buffer, cert?: Buffer, key?: Buffer, rejectUnauthorized: boolean } = { rejectUnauthorized: tls.rejectUnauthorized !== false }
  const ca = pem('ca')
  const cert = pem('cert')
  const key = pem('key')
  if (ca !== undefined) out.ca = ca
  if (cert !== undefined) out.cert = cert
  if (key !== undefined) out.key = key
  return Object.freeze(out)
}

/** `url` without a user name or password in it, for status and logs. */
export function publicUrl (url: string): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    return parsed.toString().replace(/\/$/, '')
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//')
  }
}
