import { Packr, Unpackr, type Options } from 'msgpackr'

/**
 * The one MessagePack configuration of the bus: plain maps (no msgpackr records, so any MessagePack library
 * reads it), stateless between messages, binary fields decoded as views of the received buffer (no copy).
 * Map fields set to `undefined` are left out; an `undefined` value elsewhere travels as nil.
 */
// skipValues is a msgpackr option its type declarations do not list yet
export const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true, skipValues: [undefined] } as Options)
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })
