import { invalidArgument } from '../errors.js'
import { randomIdOf } from '../util/random-id.js'
import { clientIdStem, isValidIdentityName } from '../security/identity-names.js'
import { DEFAULT_URL, type FCClientOptions } from './types.js'

const clientSuffix = randomIdOf('0123456789abcdefghijklmnopqrstuvwxyz', 16)

/** Who connects where, as every transport reads it from the client's options and the environment. */
export interface ConnectOptions {
  readonly url: string
  /** The url as messages and `FCClient.url` show it: a password in it replaced by `***` (errors end up in logs). */
  readonly displayUrl: string
  readonly clientId: string
  readonly username: string | undefined
  readonly password: string | Buffer | undefined
  /** The CA to trust for `mqtts://`; undefined: the option's MQTT.js `ca`, if any, or the system's roots. */
  readonly ca: string | Buffer | undefined
  readonly reconnectPeriod: number
}

export function connectOptions (options: FCClientOptions): ConnectOptions {
  const url = options.url ?? process.env.FNBUS_URL ?? DEFAULT_URL
  const fromUrl = urlCredentials(url)
  const username = options.username ?? options.mqtt?.username ?? fromUrl.username ?? nonEmpty(process.env.FNBUS_USERNAME)
  const password = options.password ?? options.mqtt?.password ?? fromUrl.password ?? nonEmpty(process.env.FNBUS_PASSWORD)
  // the gateway accepts an identity only on client ids of its own form: pick one by default
  const stem = username !== undefined && isValidIdentityName(username) ? clientIdStem(username) + '.' : 'fnbus-'
  const clientId = options.clientId ?? stem + clientSuffix()
  return { url, displayUrl: withoutPassword(url), clientId, username, password, ca: caOf(options), reconnectPeriod: options.reconnectPeriod ?? 1000 }
}

/** `mqtt://alice:***@host`: the url with its password hidden; a url that does not parse is shown as given. */
export function withoutPassword (url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return url
  }
  if (parsed.password === '') return url
  parsed.password = '***'
  return parsed.href
}

/** `mqtt://NAME:SECRET@host`: credentials in the url, as MQTT.js reads them (percent-decoded). */
function urlCredentials (url: string): { username?: string, password?: string } {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return {}
  }
  return {
    ...(parsed.username === '' ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === '' ? {} : { password: decodeURIComponent(parsed.password) }),
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/** The CA to trust for `mqtts://`: the option, else the file `FNBUS_CA` names (read once, at construction). */
function caOf (options: FCClientOptions): string | Buffer | undefined {
  if (options.ca !== undefined) return options.ca
  if (options.mqtt?.ca !== undefined) return undefined
  const file = nonEmpty(process.env.FNBUS_CA)
  if (file === undefined) return undefined
  try {
    // fetched here, not imported: the SDK's browser bundle has no node:fs, and a page never has FNBUS_CA
    return process.getBuiltinModule('node:fs').readFileSync(file)
  } catch (err) {
    throw invalidArgument(`FNBUS_CA: cannot read ${file}: ${(err as Error).message}`)
  }
}
