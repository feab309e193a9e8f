import type { Client } from 'aedes'

/**
 * The identity a connection authenticated as. It is bound once, when the connection is accepted, and every
 * later decision (which functions it may invoke, which topics it may use, whose $fn/ inbox is its own) reads it
 * from here, never from anything the client can send again.
 *
 * A WeakMap rather than a property on aedes' client object: nothing a client sends can set it, and it goes
 * away with the connection.
 */
const identities = new WeakMap<Client, string>()

/** Name of the identity a gateway-internal caller (in-process serve/invoke, routes) acts as by default. */
export const GATEWAY_IDENTITY = '$gateway'

export function bindIdentity (client: Client, name: string): void {
  identities.set(client, name)
}

/** The connection's identity, or undefined for an anonymous connection (allowed only when the operator says so). */
export function identityOf (client: Client | null | undefined): string | undefined {
  return client == null ? undefined : identities.get(client)
}
