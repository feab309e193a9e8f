import { stat } from 'node:fs/promises'
import { FnbusError } from '../errors.js'
import { DEFAULT_LIMITS } from '../limits.js'
import { silentLogger, type Logger } from '../logger.js'
import { ClientIdOwners, type ClientIdClaim, type ClientIdOwnerStore } from './client-ids.js'
import {
  CLIENT_ID_RULE, clientIdStem, digestSecret, generateSecret, hashCost, identityNameError, identityOfClientId, isValidIdentityName,
  isWellFormedClientId, parseIdentityTable, readIdentitiesFile, SCRYPT_DEFAULTS, secretMatchesDigest, verifyNothing, verifySecret,
  type IdentityTable,
} from './credentials.js'
import { GATEWAY_IDENTITY } from './identity.js'
import { LoginAbandoned, LoginQueue, LoginQueueFull } from './login-queue.js'
import { ANONYMOUS_IDENTITY } from './policy.js'

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
  /** Secret checks one source address may have waiting for their turn (`limits.maxPendingLoginsPerAddress`). */
  readonly maxPendingLoginsPerAddress?: number
  /** Where the owners of persistent sessions' client ids are kept; default: in memory. */
  readonly clientIdStore?: ClientIdOwnerStore
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
  ServerUnavailable: 3,
  BadUsernameOrPassword: 4,
  NotAuthorized: 5,
} as const
export type RefusalCode = typeof ConnackCode[keyof typeof ConnackCode]

/** What the broker knows of a login besides its CONNECT's fields. */
export interface LoginAttempt {
  /** A username fnbus does not know goes to the host program's own hook rather than being refused. */
  readonly hostDecidesUnknown?: boolean
  /** Where it comes from (`sourceOf` of its address): logins queue for their secret check per source. */
  readonly source?: string
  /** True once the connection is gone: a check still waiting for its turn is then dropped. */
  readonly gone?: () => boolean
  /** Hold the client id for the connection: the verdict then carries the claim, to keep or release. */
  readonly claim?: boolean
}

export type AuthVerdict =
  /**
   * The connection is `identity`; undefined: it is anonymous, as the operator allows. `readOnly`: its credentials
   * were issued for reading events only. `claim`: its hold on the client id, when the attempt asked for one.
   */
  | { readonly kind: 'accepted', readonly identity: string | undefined, readonly readOnly?: true, readonly claim?: ClientIdClaim }
  /** A username fnbus does not know, and the host program has its own authenticate hook: it decides. */
  | { readonly kind: 'delegated', readonly claim?: ClientIdClaim }
  /** `abandoned`: the connection closed while its check waited; nobody is left to tell. */
  | { readonly kind: 'refused', readonly code: RefusalCode, readonly reason: string, readonly abandoned?: true }

/** Credentials the gateway issued to one process it runs (or to a page it serves); `revoke()` when it is gone. */
export interface IssuedCredentials {
  readonly username: string
  readonly password: string
  /**
   * The prefix of the client ids kept for the identity, `stem` and `stem.SUFFIX`, where the SDK picks its ids;
   * undefined for a pseudo-identity (`$NAME`), which has none and uses any free client id.
   */
  readonly clientIdStem: string | undefined
  /** The credentials may read events and nothing else (they send no PUBLISH but the bus' `hello`). */
  readonly readOnly: boolean
  revoke (): void
}

interface IssuedSecret {
  readonly digest: Buffer
  readonly readOnly: boolean
}

/** `$NAME`: an identity only the gateway issues credentials for (the dashboard's live view, `$dashboard`). */
const PSEUDO_IDENTITY = /^\$[a-zA-Z][\w-]{0,127}$/

/** How a secret matched: fully, as read-only issued credentials, not at all, or for no identity there is. */
type Match = 'full' | 'read-only' | 'none' | 'unknown'

/**
 * Decides who a connecting client is, from its username, password and client id. Pure of aedes: the broker
 * layer (`src/broker/authenticate.ts`) calls it from aedes' authenticate hook and binds the identity it returns.
 *
 * The secret is checked first, the client id after: every refusal of a known or unknown username (wrong or
 * missing secret, a client id that is not its to use) then takes the time of one scrypt derivation, so timing does
 * not tell which identities exist, and a wrong secret is answered "bad user name or password" whatever the client id.
 */
export class Authenticator {
  /** The identities file, if the identities come from one. */
  readonly #file: IdentitiesFile | undefined
  readonly #allowAnonymous: boolean | undefined
  readonly #logger: Logger
  /** The first reading of the file and of the client ids' owners; until it succeeds nobody is accepted (fails closed). */
  readonly #opened: Promise<void>
  #table: IdentityTable = Object.freeze({})
  /** The scrypt cost most configured hashes use: what refusing an unknown username spends. */
  #cost: Cost = SCRYPT_DEFAULTS
  /** Set once any identity was configured: from then on anonymous connections need `allowAnonymous: true`. */
  #identitiesSeen = false
  /** The file's (mtime, size, inode) when last read, '' while there is none: a change of any reads it again. */
  #fileStamp = ''
  #refreshing: Promise<void> | undefined
  /** Secrets issued to supervised instances (and pages): identity → its live secrets. */
  readonly #issued = new Map<string, Set<IssuedSecret>>()
  readonly #turns: LoginQueue
  readonly #owners: ClientIdOwners

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
      this.#use(parseIdentityTable(source, ''), '')
    }
    this.#allowAnonymous = options.allowAnonymous
    this.#logger = options.logger ?? silentLogger
    this.#turns = new LoginQueue(MAX_CONCURRENT_DERIVATIONS, options.maxPendingLoginsPerAddress ?? DEFAULT_LIMITS.maxPendingLoginsPerAddress)
    this.#owners = new ClientIdOwners(options.clientIdStore)
    this.#opened = Promise.all([this.#open(), this.#owners.open()]).then(() => {})
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

  /** Secret checks waiting for their turn (a flood of logins shows here). */
  get loginsWaiting (): number {
    return this.#turns.waiting
  }

  /**
   * Issues a fresh random secret for `identity`, valid for this process' life or until revoked: what the
   * supervisor gives each instance it starts, so that supervised functions need no setup. `readOnly` credentials
   * may subscribe to events (as the policy allows the identity) and publish nothing but the bus' `hello`; they may
   * be issued for a pseudo-identity `$NAME` no identities file can hold (the dashboard's `$dashboard`).
   */
  issue (identity: string, options: { readonly readOnly?: boolean } = {}): IssuedCredentials {
    const readOnly = options.readOnly === true
    const pseudo = readOnly && PSEUDO_IDENTITY.test(identity) && identity !== GATEWAY_IDENTITY && identity !== ANONYMOUS_IDENTITY
    if (!pseudo && !isValidIdentityName(identity)) {
      throw new FnbusError('FNBUS_INVALID_ARGUMENT', readOnly ? `${identityNameError(identity)}, or $NAME for read-only credentials` : identityNameError(identity))
    }
    const password = generateSecret()
    const secret: IssuedSecret = { digest: digestSecret(password), readOnly }
    let live = this.#issued.get(identity)
    if (live === undefined) this.#issued.set(identity, live = new Set())
    live.add(secret)
    return {
      username: identity,
      password,
      clientIdStem: pseudo ? undefined : clientIdStem(identity),
      readOnly,
      revoke: () => {
        live.delete(secret)
        if (live.size === 0 && this.#issued.get(identity) === live) this.#issued.delete(identity)
      },
    }
  }

  /** The verdict on one CONNECT. */
  async authenticate (clientId: string, username: string | undefined, password: Buffer | undefined, attempt: LoginAttempt = {}): Promise<AuthVerdict> {
    await this.#opened
    await this.#refresh()
    if (username === undefined) {
      if (password !== undefined) return refused(ConnackCode.BadUsernameOrPassword, 'a password without a username')
      if (!this.anonymousAllowed) return refused(ConnackCode.NotAuthorized, 'this gateway requires a username and password')
      return this.#admit(clientId, ANONYMOUS_IDENTITY, attempt, { kind: 'accepted', identity: undefined })
    }
    // the host's users are no fnbus identity: they may not take over the session of one either
    if (attempt.hostDecidesUnknown === true && !this.#knows(username)) return this.#admit(clientId, `$host:${username}`, attempt, { kind: 'delegated' })
    let match: Match
    try {
      match = await this.#check(username, password?.toString('utf8') ?? '', attempt.source ?? 'local', attempt.gone)
    } catch (err) {
      if (err instanceof LoginAbandoned) return { kind: 'refused', code: ConnackCode.ServerUnavailable, reason: err.message, abandoned: true }
      if (err instanceof LoginQueueFull) return refused(ConnackCode.ServerUnavailable, err.message)
      throw err
    }
    switch (match) {
      case 'unknown': return refused(ConnackCode.BadUsernameOrPassword, `no identity ${JSON.stringify(username)} (or a wrong password)`)
      case 'none': return refused(ConnackCode.BadUsernameOrPassword, password === undefined ? `identity ${username} sent no password` : `wrong password for identity ${username}`)
      case 'read-only': return this.#admit(clientId, username, attempt, { kind: 'accepted', identity: username, readOnly: true })
      case 'full': return this.#admit(clientId, username, attempt, { kind: 'accepted', identity: username })
    }
  }

  /**
   * An operator's password outside MQTT (HTTP Basic on the gateway's HTTP port): true when `identity` is a
   * configured identity and `secret` its secret. Issued secrets (supervised functions') do not count: they are for
   * their process' MQTT connection only. An unknown identity costs one derivation, as a wrong password does. The
   * check waits its turn with the MQTT logins: rejects with LoginQueueFull when `source` has too many waiting.
   */
  async verifyPassword (identity: string, secret: string, attempt: Pick<LoginAttempt, 'source' | 'gone'> = {}): Promise<boolean> {
    await this.#opened
    await this.#refresh()
    const stored = Object.hasOwn(this.#table, identity) ? this.#table[identity] : undefined
    const source = attempt.source ?? 'local'
    if (stored === undefined) return await this.#turns.run(source, () => verifyNothing(secret, this.#cost), attempt.gone)
    return await this.#turns.run(source, () => verifySecret(secret, stored.hash), attempt.gone)
  }

  /**
   * How `secret` matches `username`'s: one derivation (in the login queue) whenever it does not match and for
   * every configured secret; an issued secret is checked against each live digest of the identity, all of them,
   * without a derivation (they are random: their (re)connections cost nothing).
   */
  async #check (username: string, secret: string, source: string, gone: (() => boolean) | undefined): Promise<Match> {
    if (!this.#knows(username)) {
      await this.#turns.run(source, () => verifyNothing(secret, this.#cost), gone)
      return 'unknown'
    }
    let full = false
    let readOnly = false
    for (const issued of this.#issued.get(username) ?? []) {
      if (secretMatchesDigest(secret, issued.digest)) {
        if (issued.readOnly) readOnly = true
        else full = true
      }
    }
    if (full) return 'full'
    if (readOnly) return 'read-only'
    const stored = Object.hasOwn(this.#table, username) ? this.#table[username] : undefined
    if (stored === undefined) {
      await this.#turns.run(source, () => verifyNothing(secret, this.#cost), gone)
      return 'none'
    }
    return await this.#turns.run(source, () => verifySecret(secret, stored.hash), gone) ? 'full' : 'none'
  }

  /**
   * The client-id rule, for `owner` (an identity, `$anonymous`, or a host program's user): a well-formed id, not in
   * the namespace of another identity fnbus knows, and not held by another owner (a connected client's, or a
   * persistent session's). Checked and claimed in one turn of the event loop.
   */
  #admit (clientId: string, owner: string, attempt: LoginAttempt, verdict: AuthVerdict & { readonly kind: 'accepted' | 'delegated' }): AuthVerdict {
    const shown = JSON.stringify(clientId.length > 140 ? `${clientId.slice(0, 140)}…` : clientId)
    if (!isWellFormedClientId(clientId)) return refused(ConnackCode.IdentifierRejected, `client id ${shown} is not ${CLIENT_ID_RULE}`)
    const namespace = identityOfClientId(clientId)
    if (namespace !== undefined && namespace !== owner && this.#knows(namespace)) {
      return refused(ConnackCode.IdentifierRejected, `client id ${shown} is of identity ${namespace}'s form (${clientIdStem(namespace)} or ${clientIdStem(namespace)}.SUFFIX)`)
    }
    const held = this.#owners.ownerOf(clientId)
    if (held !== undefined && held !== owner) return refused(ConnackCode.IdentifierRejected, `client id ${shown} is held by ${held}`)
    if (attempt.claim !== true) return verdict
    return { ...verdict, claim: this.#owners.claim(clientId, owner) }
  }

  #knows (identity: string): boolean {
    return Object.hasOwn(this.#table, identity) || this.#issued.has(identity)
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
    this.#cost = commonCost(table) ?? this.#cost
  }
}

type Cost = { readonly ln: number, readonly r: number, readonly p: number }

/** The cost most of the table's hashes use (the dearer one among equals); undefined for an empty table. */
function commonCost (table: IdentityTable): Cost | undefined {
  const counts = new Map<string, { readonly cost: Cost, count: number }>()
  for (const { hash } of Object.values(table)) {
    const cost = hashCost(hash)
    if (cost === undefined) continue
    const key = `${cost.ln},${cost.r},${cost.p}`
    const entry = counts.get(key) ?? { cost, count: 0 }
    entry.count++
    counts.set(key, entry)
  }
  const work = (cost: Cost): number => 2 ** cost.ln * cost.r * cost.p
  let best: { readonly cost: Cost, count: number } | undefined
  for (const entry of counts.values()) {
    if (best === undefined || entry.count > best.count || (entry.count === best.count && work(entry.cost) > work(best.cost))) best = entry
  }
  return best?.cost
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
