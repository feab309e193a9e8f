declare module 'aedes-persistence-level' {
  /** aedes' persistence on any abstract-level database (a sublevel here). */
  function aedesPersistenceLevel (db: object): unknown
  export default aedesPersistenceLevel
}
