import type { AbstractSublevel } from 'abstract-level'
import type { ClientIdOwnerStore } from '../security/client-ids.js'
import type { Database } from './database.js'

/**
 * The owners of persistent sessions' client ids, in a `client-ids` sublevel of the gateway's LevelDB, beside aedes'
 * sessions (client id → owner's name). A record is written before the session it protects is accepted; LevelDB's
 * log keeps writes in order, so whenever a session's own records survive a crash, its owner's record, written
 * before them, does too.
 */
export class LevelClientIdStore implements ClientIdOwnerStore {
  readonly #db: AbstractSublevel<Database, string | Buffer | Uint8Array, string, string>

  constructor (db: Database) {
    const sublevel = db.sublevel<string, string>('client-ids', { valueEncoding: 'utf8' })
    this.#db = sublevel
    // after a failed write the database closes and reopens, its sublevels with it
    db.onReopen(() => sublevel.open())
  }

  async * entries (): AsyncIterable<readonly [string, string]> {
    for await (const [clientId, owner] of this.#db.iterator()) yield [clientId, owner]
  }

  async put (clientId: string, owner: string): Promise<void> {
    await this.#db.put(clientId, owner)
  }

  async delete (clientId: string): Promise<void> {
    await this.#db.del(clientId)
  }
}
