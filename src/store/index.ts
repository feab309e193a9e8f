export { openDatabase, STORE_FORMAT_VERSION, type Database } from './database.js'
export { LevelInvocationStore, type LevelInvocationStoreOptions } from './level-store.js'
export { MemoryInvocationStore, type MemoryInvocationStoreOptions } from './memory-store.js'
export type * from './types.js'
