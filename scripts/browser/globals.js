// Injected into the browser bundle of the SDK (scripts/build-browser.js): the two Node globals the SDK uses.
// `Buffer` is the `buffer` package, the same API; `process` carries only what the SDK reads.
import { Buffer } from 'buffer'

const process = {
  // FCClient reads FNBUS_URL as its default address: a page has no environment, it passes `url`
  env: {},
  // the envelope batcher flushes at the end of the current tick; a microtask is the browser's nearest equivalent
  nextTick (callback, ...args) { queueMicrotask(() => callback(...args)) },
}

export { Buffer, process }
