// The cluster's configuration as the file, `createGateway` and `fnbus start --cluster` give it (the schema,
// src/config/schema.ts, checks its shape), and what is made of it before the gateway joins: secrets filled in from
// the environment (FNBUS_CLUSTER_*), TLS and credentials files read, names checked, defaults set (docs/cluster.md).
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import { configError } from '../errors.js'

export interface ClusterTlsConfig {
  /** PEM: the contents, or the path of a file (relative to the configuration file, or to the working directory). */
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
}

export interface ClusterConfig {
  /** NATS servers' urls (`nats://HOST:PORT`, `tls://…`); or `FNBUS_CLUSTER_SERVERS`, comma-separated. */
  readonly servers?: readonly string[]
  /** This gateway's name in the cluster, unique there. Default: the machine's host name (or `FNBUS_CLUSTER_NAME`). */
  readonly name?: string
  /** The first token of every subject and the streams' names: several clusters can share NATS servers. Default `fnbus`. */
  readonly prefix?: string
  readonly user?: string
  readonly password?: string
  readonly token?: string
  /** An NKey seed (`SU…`). */
  readonly nkey?: string
  /** A NATS credentials file (JWT and seed), as `nsc` writes it. */
  readonly creds?: string
  readonly tls?: ClusterTlsConfig
  /** Copies JetStream keeps of what the cluster stores. Default min(3, servers given). */
  readonly replicas?: number
  /** How often each gateway tells the others what it serves, ms; one silent for 3 of these has left. Default 1000. */
  readonly heartbeatMs?: number
}

/** A cluster configuration ready to join. */
export interface ResolvedCluster {
  readonly servers: readonly string[]
  readonly name: string
  readonly prefix: string
  readonly user: string | undefined
  readonly password: string | undefined
  readonly token: string | undefined
  readonly nkey: string | undefined
  /** The credentials file's contents. */
  readonly creds: Buffer | undefined
  readonly tls: { readonly ca?: string, readonly cert?: string, readonly key?: string } | undefined
  readonly replicas: number
  readonly heartbeatMs: number
}

/** Gateway names, incarnations and prefixes: one NATS token each, and what a stream's name may hold. */
export const TOKEN = /^[A-Za-z0-9_-]{1,64}$/

/** Keys the environment may fill in, by the suffix of their `FNBUS_CLUSTER_` variable. */
const ENV_KEYS = { NAME: 'name', PREFIX: 'prefix', USER: 'user', PASSWORD: 'password', TOKEN: 'token', NKEY: 'nkey', CREDS: 'creds' } as const

/** Makes the cluster's configuration ready; every problem is an FNBUS_CONFIG_INVALID error naming `cluster`. */
export function resolveCluster (config: ClusterConfig, env: NodeJS.ProcessEnv = process.env, base: string = process.cwd()): ResolvedCluster {
  const fromEnv: Record<string, string> = {}
  for (const [suffix, key] of Object.entries(ENV_KEYS)) {
    const value = env['FNBUS_CLUSTER_' + suffix]
    // the configuration wins: the environment fills in what it leaves out
    if (value !== undefined && value !== '' && config[key] === undefined) fromEnv[key] = value
  }
  const merged = { ...config, ...fromEnv }
  const servers = merged.servers ?? splitServers(env.FNBUS_CLUSTER_SERVERS)
  if (servers === undefined || servers.length === 0) throw configError('cluster: give the NATS servers as cluster.servers, --cluster or FNBUS_CLUSTER_SERVERS')
  for (const server of servers) {
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(server) && !/^[^\s/:]+:\d+$/.test(server)) {
      throw configError(`cluster.servers: ${JSON.stringify(server)} is not a NATS url (nats://HOST:PORT or tls://HOST:PORT)`)
    }
  }
  const name = merged.name ?? defaultName()
  if (!TOKEN.test(name)) throw configError(`cluster.name: ${JSON.stringify(name)} must be 1 to 64 letters, digits, _ or -`)
  const prefix = merged.prefix ?? 'fnbus'
  if (!TOKEN.test(prefix)) throw configError(`cluster.prefix: ${JSON.stringify(prefix)} must be 1 to 64 letters, digits, _ or -`)
  const ways = ['user', 'token', 'nkey', 'creds'].filter(key => merged[key as keyof typeof merged] !== undefined)
  if (ways.length > 1) throw configError(`cluster: give one way to log in to NATS, not ${ways.join(' and ')}`)
  if (merged.password !== undefined && merged.user === undefined) throw configError('cluster: a password needs a user')
  return Object.freeze({
    servers: Object.freeze([...servers]),
    name,
    prefix,
    user: merged.user,
    password: merged.password,
    token: merged.token,
    nkey: merged.nkey,
    creds: merged.creds === undefined ? undefined : readFile(merged.creds, base, 'cluster.creds'),
    tls: merged.tls === undefined ? undefined : readTls(merged.tls, base),
    replicas: merged.replicas ?? Math.min(3, servers.length),
    heartbeatMs: merged.heartbeatMs ?? 1000,
  })
}

/** Whether the configuration logs in to NATS at all (a gateway without credentials warns once at start). */
export function hasCredentials (cluster: ResolvedCluster): boolean {
  return cluster.user !== undefined || cluster.token !== undefined || cluster.nkey !== undefined || cluster.creds !== undefined || cluster.tls?.cert !== undefined
}

function splitServers (value: string | undefined): string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined
  return value.split(',').map(server => server.trim()).filter(server => server !== '')
}

/** The host name as a token: its first label, anything a token may not hold as `-`. */
function defaultName (): string {
  const host = hostname().split('.')[0] ?? ''
  const name = host.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64)
  return name === '' ? 'gateway' : name
}

function readFile (value: string, base: string, where: string): Buffer {
  try {
    return readFileSync(resolve(base, value))
  } catch (err) {
    throw configError(`${where}: cannot read ${value}: ${(err as Error).message}`)
  }
}

function readTls (tls: ClusterTlsConfig, base: string): NonNullable<ResolvedCluster['tls']> {
  const pem = (key: 'ca' | 'cert' | 'key'): string | undefined => {
    const value = tls[key]
    if (value === undefined) return undefined
    return value.includes('-----BEGIN') ? value : readFile(value, base, `cluster.tls.${key}`).toString('utf8')
  }
  const out = { ca: pem('ca'), cert: pem('cert'), key: pem('key') }
  if ((out.cert === undefined) !== (out.key === undefined)) throw configError('cluster.tls: give cert and key together')
  return Object.freeze(out)
}
