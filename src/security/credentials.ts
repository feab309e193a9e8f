import { createHash, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { FnbusError } from '../errors.js'
import { identityNameError, isValidIdentityName } from './identity-names.js'

/**
 * Identities, their stored credentials, and the client ids they may use.
 *
 * An identity is a plain name (`alice`, `dashboard`: `[a-zA-Z][\w-]{0,127}`, the rule of function names) or a
 * function's name (`EdgeFC/helloworld`), the identity its supervised workers act as. Only a hash of each secret
 * is stored: scrypt with a random salt, written as a PHC string (`$scrypt$ln=15,r=8,p=1$SALT$HASH`, base64
 * without padding) so the cost can be raised later without breaking hashes already written.
 */

export { CLIENT_ID_RULE, clientIdBelongsTo, clientIdStem, identityNameError, identityOfClientId, isValidIdentityName, isWellFormedClientId } from './identity-names.js'

// --- secrets and hashes -------------------------------------------------------------------------------------

/** scrypt cost: N = 2^15, r = 8 (128 · N · r = 32 MiB of memory per hash), about 0.1 s on the development machine. */
export const SCRYPT_DEFAULTS = Object.freeze({ ln: 15, r: 8, p: 1 })
const SALT_BYTES = 16
const KEY_BYTES = 32
const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/

interface ParsedHash {
  readonly ln: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly key: Buffer
}

/** A random secret for a token or a supervised instance: 32 bytes, base64url (43 characters). */
export function generateSecret (): string {
  return randomBytes(32).toString('base64url')
}

function scrypt (secret: string, salt: Buffer, keyLength: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(secret, salt, keyLength, options, (err, key) => { if (err) reject(err); else resolve(key) })
  })
}

function scryptOptions ({ ln, r, p }: { ln: number, r: number, p: number }): ScryptOptions {
  // node's default maxmem (32 MiB) is exactly 128 · 2^15 · 8, which it refuses: leave room
  return { N: 2 ** ln, r, p, maxmem: 256 * r * 2 ** ln }
}

/** Hashes a secret for storage. */
export async function hashSecret (secret: string, cost: { ln: number, r: number, p: number } = SCRYPT_DEFAULTS): Promise<string> {
  if (typeof secret !== 'string' || secret.length === 0) throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'a secret must be a non-empty string')
  const salt = randomBytes(SALT_BYTES)
  const key = await scrypt(secret, salt, KEY_BYTES, scryptOptions(cost))
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${b64(key)}`
}

export function isValidHash (value: unknown): value is string {
  return typeof value === 'string' && parseHash(value) !== undefined
}

function parseHash (value: string): ParsedHash | undefined {
  const match = PHC.exec(value)
  if (match === null) return undefined
  const [ln, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])]
  // bounds that keep a tampered file from asking for gigabytes of memory
  if (ln < 10 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 16) return undefined
  const salt = Buffer.from(match[4] as string, 'base64')
  const key = Buffer.from(match[5] as string, 'base64')
  // the lengths hashSecret writes: a truncated key would still verify its prefix
  if (salt.length < SALT_BYTES || key.length !== KEY_BYTES) return undefined
  return { ln, r, p, salt, key }
}

/**
 * Checks a secret against a stored hash. The comparison takes the same time wherever the first differing byte
 * is (timingSafeEqual), and a malformed hash is simply a mismatch.
 */
export async function verifySecret (secret: string, stored: string): Promise<boolean> {
  const hash = parseHash(stored)
  if (hash === undefined) return false
  const key = await scrypt(secret, hash.salt, KEY_BYTES, scryptOptions(hash))
  return timingSafeEqual(key, hash.key)
}

/** The scrypt cost a stored hash was made with; undefined for a malformed hash. */
export function hashCost (stored: string): { readonly ln: number, readonly r: number, readonly p: number } | undefined {
  const hash = parseHash(stored)
  return hash === undefined ? undefined : { ln: hash.ln, r: hash.r, p: hash.p }
}

/**
 * Spends the time of one verification without a hash to compare with: a username that does not exist then
 * takes as long to refuse as a wrong password (at the cost the stored hashes use), so timing does not tell which
 * identities exist.
 */
export async function verifyNothing (secret: string, cost: { ln: number, r: number, p: number } = SCRYPT_DEFAULTS): Promise<false> {
  await scrypt(secret, DUMMY_SALT, KEY_BYTES, scryptOptions(cost))
  return false
}
const DUMMY_SALT = randomBytes(SALT_BYTES)

/**
 * Secrets the gateway issues to the instances it supervises live in memory only, for the life of the process:
 * they are random (256 bits), so a fast hash is as good as scrypt there, and a restart of an instance is not
 * slowed by it. Compared with timingSafeEqual all the same.
 */
export function digestSecret (secret: string): Buffer {
  return createHash('sha256').update(secret).digest()
}

export function secretMatchesDigest (secret: string, digest: Buffer): boolean {
  return timingSafeEqual(digestSecret(secret), digest)
}

function b64 (bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '')
}

// --- the identities file ------------------------------------------------------------------------------------

/** The file `fnbus identity add` writes and `fnbus start` reads when the configuration names none. */
export const IDENTITIES_FILE_NAME = 'fnbus.identities.json'
export const IDENTITIES_FILE_VERSION = 1

export interface StoredIdentity {
  /** PHC string of the secret's scrypt hash. */
  readonly hash: string
  /** ISO 8601; informational. */
  readonly created?: string
}

/** Identities by name. */
export type IdentityTable = Readonly<Record<string, StoredIdentity>>

/**
 * Validates an identity table (the inline `identities` of the configuration, or a file's). `where` prefixes
 * every message; every problem is FNBUS_CONFIG_INVALID naming the identity.
 */
export function parseIdentityTable (raw: unknown, where: string): IdentityTable {
  const fail = (message: string): FnbusError => new FnbusError('FNBUS_CONFIG_INVALID', `${where}${message}`)
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw fail('identities must be an object of { "NAME": { "hash": "$scrypt$…" } }')
  const table: Record<string, StoredIdentity> = Object.create(null)
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (!isValidIdentityName(name)) throw fail(`identities: ${identityNameError(name)}`)
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw fail(`identities.${name} must be an object with a "hash"`)
    for (const key of Object.keys(entry)) {
      if (key !== 'hash' && key !== 'created') throw fail(`identities.${name}: unknown key "${key}" (known: hash, created)`)
    }
    const { hash, created } = entry as { hash?: unknown, created?: unknown }
    if (!isValidHash(hash)) {
      throw fail(`identities.${name}.hash must be a scrypt hash as "fnbus identity add" writes it ($scrypt$ln=…,r=…,p=…$SALT$HASH); plaintext secrets are not accepted`)
    }
    if (created !== undefined && typeof created !== 'string') throw fail(`identities.${name}.created must be a string`)
    table[name] = Object.freeze(created === undefined ? { hash } : { hash, created })
  }
  return Object.freeze(table)
}

/** Reads an identities file; a missing file is an empty table when `missingOk`. */
export async function readIdentitiesFile (file: string, missingOk = false): Promise<IdentityTable> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (missingOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return Object.freeze({})
    throw new FnbusError('FNBUS_CONFIG_INVALID', `${file}: cannot read the identities file: ${(err as Error).message}`, { cause: err })
  }
  return parseIdentitiesFile(text, file)
}

export function parseIdentitiesFile (text: string, file: string): IdentityTable {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new FnbusError('FNBUS_CONFIG_INVALID', `${file}: not valid JSON: ${(err as Error).message}`)
  }
  const fail = (message: string): FnbusError => new FnbusError('FNBUS_CONFIG_INVALID', `${file}: ${message}`)
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw fail('an identities file is a JSON object { "version": 1, "identities": { … } }')
  const { version, identities, ...rest } = raw as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) throw fail(`unknown key "${unknown}" (known: version, identities)`)
  if (version !== IDENTITIES_FILE_VERSION) throw fail(`version ${JSON.stringify(version)} is not one this fnbus reads (${IDENTITIES_FILE_VERSION})`)
  return parseIdentityTable(identities ?? {}, `${file}: `)
}

/**
 * Writes an identities file atomically (a temporary file renamed over it, so a gateway reading it never sees
 * half of one), readable by its owner only.
 */
export async function writeIdentitiesFile (file: string, table: IdentityTable): Promise<void> {
  const sorted = Object.fromEntries(Object.entries(table).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
  const text = JSON.stringify({ version: IDENTITIES_FILE_VERSION, identities: sorted }, null, 2) + '\n'
  const temporary = `${file}.${process.pid}.tmp`
  await writeFile(temporary, text, { mode: 0o600 })
  await rename(temporary, file)
}
