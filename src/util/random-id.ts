/**
 * Random ids for the SDK (client id suffixes, the prefix of automatic idempotency keys) without loading `node:crypto`:
 * loading it costs a process 2 MB resident (measured: 39.4 → 41.4 MB for a bare node), a fifth of what a supervised
 * function's process adds to a bare one. The bytes come from /dev/urandom (the kernel's CSPRNG, as OpenSSL's seed
 * does) where there is one, else from the platform's `crypto.getRandomValues` (browsers, Windows).
 */
export function randomBytes (size: number): Uint8Array {
  const bytes = new Uint8Array(size)
  if (!fromUrandom(bytes)) globalThis.crypto.getRandomValues(bytes)
  return bytes
}

function fromUrandom (bytes: Uint8Array): boolean {
  if (typeof process === 'undefined' || typeof process.getBuiltinModule !== 'function') return false
  const fs = process.getBuiltinModule('node:fs')
  let fd: number
  try {
    fd = fs.openSync('/dev/urandom', 'r')
  } catch {
    return false
  }
  try {
    for (let at = 0; at < bytes.length;) {
      const read = fs.readSync(fd, bytes, at, bytes.length - at, null)
      if (read <= 0) return false
      at += read
    }
    return true
  } catch {
    return false
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Ids of `size` characters of `alphabet` (at most 256), each character uniform: random bytes masked to the next
 * power of two above the alphabet, those past its end dropped (nanoid's customAlphabet, on randomBytes).
 */
export function randomIdOf (alphabet: string, size: number): () => string {
  const mask = (2 << (31 - Math.clz32((alphabet.length - 1) | 1))) - 1
  // enough bytes for one id most of the time: 1.6× what the mask's rejections take on average
  const step = Math.ceil((1.6 * mask * size) / alphabet.length)
  return () => {
    let id = ''
    for (;;) {
      const bytes = randomBytes(step)
      for (let i = 0; i < step; i++) {
        const char = alphabet[(bytes[i] as number) & mask]
        if (char === undefined) continue
        id += char
        if (id.length === size) return id
      }
    }
  }
}
