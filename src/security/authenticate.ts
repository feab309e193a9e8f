import { stat } from 'node:fs/promises'
import { FnbusError } from '../errors.js'
import { silentLogger, type Logger } from '../options.js'
import {
  clientIdBelongsTo, clientIdStem, digestSecret, generateSecret, identityNameError, identityOfClientId, isValidIdentityName,
  parseIdentityTable, readIdentitiesFile, secretMatchesDigest, verifyNothing, verifySecret, type IdentityTable,
} from './credentials.js'

/**
 * Where the gateway finds its identities: a table (inline in the configuration, or built by the embedding
 * program), or the path of an identities file, read again whenever it changes so that `fnbus identity add`
 * takes effect without a restart.
 */
export type IdentitySource = IdentityTable | string | IdentitiesFile

export interface IdentitiesFile {
  readonly file: string
  /** The file may be missing (the default file nobody created yet); it is read once it appears. */
  readonly optional?: boolean
}

export interface AuthenticatorOptions {
  readonly identities?: IdentitySource
  /**
   * Accept connections without a username. `undefined` (the default): only while no identity is configured;
   * once one is, anonymous connections are refused for the rest of the process' life, even if the file is
   * emptied again (deleting a file must not open the gateway).
   */
  readonly allowAnonymous?: boolean
  readonly logger?: Logger
}

/**
 * scrypt runs on libuv's thread pool (4 threads by default), which LevelDB's reads and writes share: a burst of
 * connections (or of wrong passwords) must not take all of it, so at most this many derivations run at once and
 * the others wait their turn.
 */
export const MAX_CONCURRENT_DERIVATIONS = 2

/** MQTT 3.1.1 CONNACK return codes the authenticator answers with ([MQTT-3.2.2-3]). */
export const ConnackCode = {
  IdentifierRejected: 2,
  BadUsernameOrPassword: 4,
  NotAuthorized: 5,
} as const
export type RefusalCode = typeof ConnackCode[keyof typeof ConnackCode]

export type AuthVerdict =
  /** The connection is `identity`; undefined: it is anonymous, as the operator allows. */
  | { readonly kind: 'accepted', readonly identity: string | undefined }
  /** A username fnbus does not know, and the host program has its own authenticate hook: it decides. */
  | { readonly kind: 'delegated' }
  | { readonly kind: 'refused', readonly code: RefusalCode, readonly reason: string }

/** Credentials the gateway issued to one process it runs; `revoke()` when that process is gone. */
export interface IssuedCredentials {
  readonly username: string
  readonly password: string
  /** The client id prefix the process' clients must use: `stem` or `stem.SUFFIX`. */
  readonly clientIdStem: string
  revoke (): void
}

/**
 * Decides who a connecting client is, from its username, password and client id. Pure of aedes: the broker
 * layer (`src/broker/authenticate.ts`) calls it from aedes' authenticate hook and binds the identity it returns.
 */
export class Authenticator {
  /** The identities file, if the identities come from one. */
  readonly #file: IdentitiesFile | undefined
  readonly #allowAnonymous: boolean | undefined
  readonly #logger: Logger
  /** The first reading of the file; until it succeeds nobody is accepted (a broken file fails closed). */
  readonly #opened: Promise<void>
  #table: IdentityTable = Object.freeze({})
  /** Set once any identity was configured: from then on anonymous connections need `allowAnonymous: true`. */
  #identitiesSeen = false
  /** The file's (mtime, size, inode) when last read, '' while there is none: a change of any reads it again. */
  #fileStamp = ''
  #refreshing: Promise<void> | undefined
  /** Secrets issued to supervised instances: identity → digests of its live secrets. */
  readonly #issued = new Map<string, Set<Buffer>>()
  readonly #derivations = new Slots(MAX_CONCURRENT_DERIVATIONS)

  constructor (options: AuthenticatorOptions = {}) {
    if (options.allowAnonymous !== undefined && typeof options.allowAnonymous !== 'boolean') {
      throw new FnbusError('FNBUS_CONFIG_INVALID', `allowAnonymous must be true or false, got ${JSON.stringify(options.allowAnonymous)}`)
    }
    const source = options.identities
    if (typeof source === 'string') {
      this.#file = { file: source }
    } else if (source !== undefined && isIdentitiesFile(source)) {
      this.#file = source
    } else if (source !== undefined) {
      this.#table = parseIdentityTable(source, '')
      this.#identitiesSeen = Object.keys(this.#table).length > 0
    }
    this.#allowAnonymous = options.allowAnonymous
    this.#logger = options.logger ?? silentLogger
    this.#opened = this.#open()
    // reported by ready() and by every authentication until then; not an unhandled rejection
    this.#opened.catch(() => {})
  }

  /** Resolves once the identities are read; rejects with FNBUS_CONFIG_INVALID when the file is missing or invalid. */
  ready (): Promise<void> {
    return this.#opened
  }

  async #open (): Promise<void> {
    if (this.#file === undefined) return
    const { file, optional } = this.#file
    const stamp = await fileStamp(file)
    if (stamp === '') {
      if (optional === true) return
      throw new FnbusError('FNBUS_CONFIG_INVALID', `${file}: the identities file does not exist`)
    }
    this.#use(await readIdentitiesFile(file), stamp)
  }

  /** Names of the configured identities (not the issued ones). */
  get identities (): readonly string[] {
    return Object.keys(this.#table)
  }

  /** Whether a connection without a username is accepted now. */
  get anonymousAllowed (): boolean {
    return this.#allowAnonymous ?? !this.#identitiesSeen
  }

  /**
   * Issues a fresh random secret for `identity`, valid for this process' life or until revoked: what the
   * supervisor gives each instance it starts, so that supervised functions need no setup.
   */
  issue (identity: string): IssuedCredentials {
    if (!isValidIdentityName(identity)) throw new FnbusError('FNBUS_INVALID_ARGUMENT', identityNameError(identity))
    const password = generateSecret()
    const digest = digestSecret(password)
    let live = this.#issued.get(identity)
    if (live === undefined) this.#issued.set(identity, live = new Set())
    live.add(digest)
    return {
      username: identity,
      password,
      clientIdStem: clientIdStem(identity),
      revoke: () => {
        live.delete(digest)
        if (live.size === 0 && this.#issued.get(identity) === live) this.#issued.delete(identity)
      },
    }
  }

  /**
   * The verdict on one CONNECT. `hostDecidesUnknown`: a username fnbus does not know goes to the host
   * program's own hook rather than being refused.
   */
  async authenticate (clientId: string, username: string | undefined, password: Buffer | undefined, hostDecidesUnknown = false): Promise<AuthVerdict> {
    await this.#opened
    await this.#refresh()
    if (username === undefined) {
      if (password !== undefined) return refused(ConnackCode.BadUsernameOrPassword, 'a password without a username')
      if (!this.anonymousAllowed) return refused(ConnackCode.NotAuthorized, 'this gateway requires a username and password')
      return this.#ownerRefusal(clientId) ?? { kind: 'accepted', identity: undefined }
    }
    if (!this.#knows(username)) {
      // the host's users are no fnbus identity: they may not take over the session of one either
      if (hostDecidesUnknown) return this.#ownerRefusal(clientId) ?? { kind: 'delegated' }
      // as slow as a wrong password: timing does not tell which identities exist
      await this.#derivations.run(() => verifyNothing(password?.toString('utf8') ?? ''))
      return refused(ConnackCode.BadUsernameOrPassword, `no identity ${JSON.stringify(username)} (or a wrong password)`)
    }
    if (!clientIdBelongsTo(clientId, username)) {
      const stem = clientIdStem(username)
      return refused(ConnackCode.IdentifierRejected, `identity ${username} must use client id "${stem}" or "${stem}.SUFFIX", not ${JSON.stringify(clientId)}`)
    }
    if (password === undefined) return refused(ConnackCode.BadUsernameOrPassword, `identity ${username} sent no password`)
    const secret = password.toString('utf8')
    if (await this.#verify(username, secret)) return { kind: 'accepted', identity: username }
    return refused(ConnackCode.BadUsernameOrPassword, `wrong password for identity ${username}`)
  }

  /**
   * An operator's password outside MQTT (HTTP Basic on the gateway's HTTP port): true when `identity` is a
   * configured identity and `secret` its secret. Issued secrets (supervised functions') do not count: they are for
   * their process' MQTT connection only. An unknown identity costs one derivation, as a wrong password does.
   */
  async verifyPassword (identity: string, secret: string): Promise<boolean> {
    await this.#opened
    await this.#refresh()
    const stored = Object.hasOwn(this.#table, identity) ? this.#table[identity] : undefined
    if (stored === undefined) {
      await this.#derivations.run(() => verifyNothing(secret))
      return false
    }
    return await this.#derivations.run(() => verifySecret(secret, stored.hash))
  }

  /** A refusal when `clientId` is of the form of an identity fnbus knows: only that identity may use it. */
  #ownerRefusal (clientId: string): AuthVerdict | undefined {
    const owner = identityOfClientId(clientId)
    if (owner === undefined || !this.#knows(owner)) return undefined
    return refused(ConnackCode.IdentifierRejected, `client id ${JSON.stringify(clientId)} belongs to identity ${owner}`)
  }

  #knows (identity: string): boolean {
    return Object.hasOwn(this.#table, identity) || this.#issued.has(identity)
  }

  async #verify (identity: string, secret: string): Promise<boolean> {
    // an issued secret is checked against each live digest of the identity, all of them, whatever matches first
    let matched = false
    for (const digest of this.#issued.get(identity) ?? []) matched = secretMatchesDigest(secret, digest) || matched
    if (matched) return true
    const stored = this.#table[identity]
    return stored !== undefined && await this.#derivations.run(() => verifySecret(secret, stored.hash))
  }

  /** Reads the identities file again if it changed; a file that became invalid keeps the last good table. */
  #refresh (): Promise<void> {
    if (this.#file === undefined) return Promise.resolve()
    this.#refreshing ??= this.#reread(this.#file.file).finally(() => { this.#refreshing = undefined })
    return this.#refreshing
  }

  async #reread (file: string): Promise<void> {
    try {
      const stamp = await fileStamp(file)
      if (stamp === this.#fileStamp) return
      if (stamp === '') {
        this.#logger.warn({ file }, 'the identities file is gone; no configured identity is accepted until it is back')
        this.#use(Object.freeze({}), '')
        return
      }
      this.#use(await readIdentitiesFile(file), stamp)
      this.#logger.info({ file, identities: Object.keys(this.#table).length }, 'identities file read')
    } catch (err) {
      this.#logger.error({ err, file }, 'the identities file is invalid; the identities read before stay in force')
    }
  }

  #use (table: IdentityTable, stamp: string): void {
    this.#table = table
    this.#fileStamp = stamp
    if (Object.keys(table).length > 0) this.#identitiesSeen = true
  }
}

/** At most `size` tasks at once; the others start in the order they came. */
class Slots {
  #free: number
  readonly #waiting: (() => void)[] = []

  constructor (size: number) {
    this.#free = size
  }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--
    else await new Promise<void>(resolve => this.#waiting.push(resolve))
    try {
      return await task()
    } finally {
      // hand the slot straight to the next in line, or give it back
      const next = this.#waiting.shift()
      if (next !== undefined) next()
      else this.#free++
    }
  }
}

function isIdentitiesFile (source: IdentityTable | IdentitiesFile): source is IdentitiesFile {
  return typeof (source as { file?: unknown }).file === 'string'
}

function refused (code: RefusalCode, reason: string): AuthVerdict {
  return { kind: 'refused', code, reason }
}

/** '' when there is no such file. */
async function fileStamp (file: string): Promise<string> {
  try {
    const info = await stat(file, { bigint: true })
    return `${info.mtimeNs}:${info.size}:${info.ino}`
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw err
  }
}
