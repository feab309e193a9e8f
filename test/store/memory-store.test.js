import { MemoryInvocationStore } from '../../dist/store/memory-store.js'
import { invocationStoreSuite } from './invocation-store.suite.js'

invocationStoreSuite('MemoryInvocationStore', async (t, storeOptions) => {
  const store = new MemoryInvocationStore(storeOptions)
  await store.open()
  t.after(() => store.close())
  return { store, reopen: async () => store }
}, { persistent: false })
