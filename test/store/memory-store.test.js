import { MemoryInvocationStore } from '../../dist/store/memory-store.js'
import { invocationStoreSuite } from './invocation-store.suite.js'

invocationStoreSuite('MemoryInvocationStore', async () => {
  const store = new MemoryInvocationStore()
  await store.open()
  return { store, reopen: async () => store }
}, { persistent: false })
