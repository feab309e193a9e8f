import { spawn } from 'node:child_process'
import { stat } from 'node:fs/promises'

/** How long `node --check` of one module may take: it only parses. */
const CHECK_TIMEOUT_MS = 10_000

/**
 * Why the function module at `file` cannot run, or undefined when it may: it must exist, be a file, and parse.
 * It is parsed by `node --check` in a process of its own, so no line of it runs in the gateway (its imports are
 * not followed either: a missing dependency shows when its first instance loads it).
 */
export async function moduleProblem (file: string): Promise<string | undefined> {
  let kind
  try {
    kind = await stat(file)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read: ${(err as Error).message}`
  }
  if (!kind.isFile()) return 'is not a file'
  const { code, stderr } = await run(process.execPath, ['--check', file])
  if (code === 0) return undefined
  return `does not compile: ${syntaxErrorOf(stderr, file)}`
}

/** `node --check` prints `FILE:LINE`, the line, a caret and the error: the place and the error, on one line. */
function syntaxErrorOf (stderr: string, file: string): string {
  const lines = stderr.split('\n').map(line => line.trimEnd())
  const where = lines.find(line => line.startsWith(file + ':'))
  const error = lines.find(line => /^\w*Error\b/.test(line)) ?? lines.find(line => line.length > 0) ?? 'node --check failed'
  return where === undefined ? error : `${error} (line ${where.slice(file.length + 1)})`
}

function run (command: string, args: readonly string[]): Promise<{ code: number | null, stderr: string }> {
  return new Promise(resolve => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: CHECK_TIMEOUT_MS })
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => { if (stderr.length < 64 * 1024) stderr += chunk })
    child.on('error', err => resolve({ code: -1, stderr: err.message }))
    child.on('close', code => resolve({ code, stderr }))
  })
}
