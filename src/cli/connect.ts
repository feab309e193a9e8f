import { readFileSync } from 'node:fs'
import { FCClient, type FCClientOptions } from '../client/fc-client.js'
import { FnbusError } from '../errors.js'
import { UsageError } from './spec.js'

/** How long a one-shot command waits for the gateway to answer its first connection. */
const CONNECT_TIMEOUT_MS = 10_000

/**
 * A client for one-shot commands. The SDK keeps retrying a gateway it cannot reach, which is right for a
 * function, but a command typed in a shell should say so at once: the first connection failure ends it.
 */
export async function connectClient (url: string | undefined, caFile?: string, options: FCClientOptions = {}): Promise<FCClient> {
  // a command's own --timeout bounds the wait for the gateway too
  const waitMs = Math.min(CONNECT_TIMEOUT_MS, options.timeout ?? CONNECT_TIMEOUT_MS)
  let client: FCClient
  const ca = caFile === undefined ? undefined : readCa(caFile)
  try {
    client = new FCClient({ handshakeTimeout: Math.min(waitMs, 3000), ...options, url, ...(ca === undefined ? {} : { ca }) })
  } catch (err) {
    throw new UsageError(`--url ${JSON.stringify(url)}: ${(err as Error).message}`)
  }
  let onWarning: ((err: Error) => void) | undefined
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      client.ready(),
      new Promise<never>((_resolve, reject) => {
        // a refusal (FNBUS_NOT_AUTHORIZED) says what it is; anything else is a connection that failed
        onWarning = err => reject(err instanceof FnbusError ? err : new FnbusError('FNBUS_DISCONNECTED', `cannot connect to the gateway at ${client.url}: ${err.message}`, { cause: err }))
        client.once('warning', onWarning)
        // a little past the handshake's own bound, so that a broker that is not fnbus is named as such first
        timer = setTimeout(() => reject(new FnbusError('FNBUS_TIMEOUT', `no answer from the gateway at ${client.url} within ${waitMs} ms`)), waitMs + 500)
      }),
    ])
  } catch (err) {
    await client.close()
    throw withHint(err, options.username)
  } finally {
    clearTimeout(timer)
    if (onWarning !== undefined) client.off('warning', onWarning)
  }
  return client
}

/** A refused connection says how to connect as an identity: the first thing a user of a secured gateway trips on. */
function withHint (err: unknown, username: string | undefined): unknown {
  if (!(err instanceof FnbusError) || err.code !== 'FNBUS_NOT_AUTHORIZED') return err
  const hint = username === undefined && process.env.FNBUS_USERNAME === undefined
    ? 'connect as an identity: set FNBUS_USERNAME and FNBUS_PASSWORD (or --username NAME with FNBUS_PASSWORD); `fnbus identity add NAME` on the gateway creates one'
    : 'check the identity and its secret (FNBUS_PASSWORD); `fnbus identity add NAME --force` on the gateway gives it a new one'
  return new FnbusError('FNBUS_NOT_AUTHORIZED', `${err.message}: ${hint}`, { cause: err })
}

/** The CA file of `--ca`, read (a file that cannot be read is a usage error). */
export function readCa (file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw new UsageError(`--ca ${JSON.stringify(file)}: ${(err as Error).message}`)
  }
}
