import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { InvocationResult } from '../../client/fc-client.js'
import { connectClient } from '../connect.js'
import { toJson, toJsonResult, writeValue } from '../output.js'
import {
  ExitCode, HELP_OPTION, integerOption, readAll, stringOption, CONNECTION_OPTIONS, UsageError,
  type CommandSpec, type Io, type ParsedArgs,
  functionArgument,
} from '../spec.js'

export const invokeCommand: CommandSpec = {
  name: 'invoke',
  summary: 'Invoke a function and print its result.',
  description: [
    'The result goes to stdout: strings and Buffers as they are, other values as JSON.',
    'Exit status: 0 success, 1 transport or gateway error (its code and message on stderr),',
    '2 usage error, 3 the function failed (functionError and its message on stderr).',
  ].join('\n'),
  arguments: [{ name: 'SERVICE/FUNCTION', description: 'The function, e.g. EdgeFC/helloworld.', required: true }],
  options: {
    payload: { type: 'string', value: 'TEXT', description: 'The payload, as text; "-" reads it from stdin.' },
    'payload-file': { type: 'string', value: 'FILE', description: "Send the file's content (as text)." },
    async: { type: 'boolean', description: 'Invoke asynchronously (invocationType Async): prints the invocation id.' },
    context: { type: 'string', value: 'JSON', description: 'Invoker context, a JSON object the function sees as context.invokerContext.' },
    timeout: { type: 'string', value: 'MS', description: 'How long to wait for the result. Default 30000.' },
    'wait-for-worker': { type: 'string', value: 'MS', description: 'Wait this long for a worker to appear instead of failing at once.' },
    json: { type: 'boolean', description: 'Print the whole result object as JSON ({"statusCode", "payload", "functionError"}).' },
    ...CONNECTION_OPTIONS,
    ...HELP_OPTION,
  },
  run: invoke,
}

async function invoke ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const fn = functionArgument(positionals[0] as string)
  const invokerContext = parseContext(stringOption(values, 'context'))
  const timeout = integerOption(values, 'timeout')
  const waitForWorker = integerOption(values, 'wait-for-worker', 0)
  const payload = await readPayload(values, io)

  const client = await connectClient(stringOption(values, 'url'), stringOption(values, 'ca'), { username: stringOption(values, 'username'), timeout })
  let result: InvocationResult
  try {
    result = await client.invokeFunction({
      serviceName: fn.serviceName,
      functionName: fn.functionName,
      invocationType: values.async === true ? 'Async' : 'Sync',
      invokerContext,
      payload,
      timeout,
      waitForWorker,
    })
  } finally {
    await client.close()
  }

  if (values.json === true) {
    io.stdout.write(toJson(toJsonResult(result)) + '\n')
  } else if (result.statusCode === 202) {
    io.stdout.write(result.invocationId + '\n')
  } else if (result.functionError === undefined) {
    writeValue(io.stdout, result.payload)
  }
  if (result.statusCode === 200 && result.functionError !== undefined) {
    const message = typeof result.payload === 'string' ? result.payload : toJson(toJsonResult(result).payload)
    io.stderr.write(`${result.functionError}: ${message}\n`)
    return ExitCode.FunctionFailed
  }
  return ExitCode.Ok
}

function parseContext (text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`--context must be a JSON object: ${(err as Error).message}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError('--context must be a JSON object')
  return value as Record<string, unknown>
}

/** Text from `--payload`, stdin (`--payload -`) or `--payload-file`; undefined when none is given. */
export async function readPayload (values: ParsedArgs['values'], io: Io, positional?: string): Promise<string | undefined> {
  const inline = stringOption(values, 'payload')
  const file = stringOption(values, 'payload-file')
  const given = [inline, file, positional].filter(v => v !== undefined).length
  if (given > 1) throw new UsageError(positional === undefined ? 'give --payload or --payload-file, not both' : 'give the payload as an argument or --payload, not both')
  if (inline === '-') return (await readAll(io.stdin)).toString('utf8')
  if (file !== undefined) {
    try {
      return await readFile(resolve(io.cwd, file), 'utf8')
    } catch (err) {
      throw new UsageError(`cannot read --payload-file ${file}: ${(err as Error).message}`)
    }
  }
  return inline ?? positional
}
