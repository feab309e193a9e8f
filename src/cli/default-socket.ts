import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FnbusError } from '../errors.js'

/**
 * Longest Unix socket path to use: the kernel's field holds 108 bytes on Linux, 104 on macOS, the terminating NUL
 * included.
 */
const MAX_SOCKET_PATH_BYTES = 103

/**
 * Where `fnbus start` listens for the functions it supervises when neither `--socket` nor the configuration names a
 * socket: `fnbus.sock` in the data directory (one gateway per data directory, which the store's lock already
 * enforces), or, for a gateway in memory, `fnbus-PID.sock` in `$XDG_RUNTIME_DIR` or the temporary directory. A hop
 * through it costs about two thirds of one through loopback TCP, and function processes are where most hops start.
 * Undefined, with the reason, when that path is too long for a socket: the functions then use TCP.
 */
export function defaultSocketPath (dataDir: string | undefined, env: Readonly<Record<string, string | undefined>>): { path?: string, reason?: string } {
  const runtimeDir = env.XDG_RUNTIME_DIR !== undefined && env.XDG_RUNTIME_DIR !== '' ? env.XDG_RUNTIME_DIR : tmpdir()
  const path = dataDir === undefined ? join(runtimeDir, `fnbus-${process.pid}.sock`) : join(dataDir, 'fnbus.sock')
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) return { reason: `${path} is longer than a Unix socket path may be (${MAX_SOCKET_PATH_BYTES} bytes)` }
  return { path }
}

/** Whether `err` is the gateway's failure to listen on the Unix socket `path` (rather than anything else). */
export function isSocketFailure (err: unknown, path: string): boolean {
  return err instanceof FnbusError && (err.code === 'FNBUS_CONFIG_INVALID' || err.code === 'FNBUS_ADDRESS_IN_USE') && err.message.includes(path)
}
