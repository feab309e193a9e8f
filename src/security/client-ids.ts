/**
 * Who owns each client id. A client id is its connection's session (aedes hands a new connection with the same id
 * the old one's subscriptions and queued messages, and disconnects the old one), and names its inbox
 * (`$fn/in/{clientId}`): an identity must not be able to take over another's. So the first identity to use an id
 * owns it while a connection of its holds it, and for as long as a persistent session (clean = 0) of that id
 * exists; everyone else is refused it. Owners are identity names, or `$anonymous` for anonymous clients.
 *
 * Persistent owners are kept in a store beside aedes' persistence, so that they survive a restart with the
 * sessions they protect.
 */

/** Where persistent owners are kept: the gateway's LevelDB, or nothing (in memory, as aedes' sessions are then). */
export interface ClientIdOwnerStore {
  /** Every recorded client id and its owner. */
  entries (): AsyncIterable<readonly [string, string]> | Iterable<readonly [string, string]>
  put (clientId: string, owner: string): Promise<void>
  delete (clientId: string): Promise<void>
}

/** One connection's hold on a client id, taken when its login is decided. */
export interface ClientIdClaim {
  /**
   * The connection was accepted: a persistent session keeps the id for its owner beyond the connection (written
   * before this resolves); a clean one ends any session of the id there was, and its record with it.
   */
  keep (persistent: boolean): Promise<void>
  /** The connection is gone (or was refused after all); idempotent. */
  release (): void
}

interface Live {
  readonly owner: string
  /** Connections holding the id: two while a connection takes over its own session from an older one. */
  holders: number
}

export class ClientIdOwners {
  readonly #store: ClientIdOwnerStore | undefined
  readonly #live = new Map<string, Live>()
  readonly #persistent = new Map<string, string>()

  constructor (store?: ClientIdOwnerStore) {
    this.#store = store
  }

  /** Reads the recorded owners; until it resolves nobody should be admitted. */
  async open (): Promise<void> {
    if (this.#store === undefined) return
    for await (const [clientId, owner] of this.#store.entries()) this.#persistent.set(clientId, owner)
  }

  /** The owner of `clientId` (a connected client's, or a persistent session's); undefined when it is free. */
  ownerOf (clientId: string): string | undefined {
    return this.#live.get(clientId)?.owner ?? this.#persistent.get(clientId)
  }

  /** Client ids held by connections or persistent sessions. */
  get size (): number {
    let count = this.#live.size
    for (const clientId of this.#persistent.keys()) if (!this.#live.has(clientId)) count++
    return count
  }

  /**
   * Holds `clientId` for `owner`. The caller checked `ownerOf` in the same turn of the event loop, so no other
   * connection can have taken it in between.
   */
  claim (clientId: string, owner: string): ClientIdClaim {
    let live = this.#live.get(clientId)
    if (live === undefined) this.#live.set(clientId, live = { owner, holders: 0 })
    live.holders++
    const held = live
    let released = false
    return {
      keep: async (persistent: boolean) => {
        if (persistent) {
          if (this.#persistent.get(clientId) === owner) return
          this.#persistent.set(clientId, owner)
          await this.#store?.put(clientId, owner)
        } else if (this.#persistent.has(clientId)) {
          this.#persistent.delete(clientId)
          await this.#store?.delete(clientId)
        }
      },
      release: () => {
        if (released) return
        released = true
        held.holders--
        if (held.holders === 0 && this.#live.get(clientId) === held) this.#live.delete(clientId)
      },
    }
  }
}
