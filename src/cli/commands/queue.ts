import type { DeadLetter, FCClient, QueueCounts } from '../../client/fc-client.js'
import { parseFunctionName } from '../../protocol/names.js'
import { connectClient } from '../connect.js'
import { toJson } from '../output.js'
import {
  ExitCode, HELP_OPTION, integerOption, stringOption, CONNECTION_OPTIONS, UsageError,
  type CommandSpec, type Io, type ParsedArgs,
} from '../spec.js'

const ACTIONS = ['ls', 'dead', 'retry', 'cancel', 'purge'] as const
type Action = typeof ACTIONS[number]

export const queueCommand: CommandSpec = {
  name: 'queue',
  summary: 'Inspect and manage stored Async invocations on a running gateway.',
  description: [
    'Actions:',
    '  ls [SERVICE/FUNCTION]              counts per function: pending, in flight, dead',
    '  dead [SERVICE/FUNCTION]            dead-lettered invocations with their last error (--limit N)',
    '  retry ID | --all [SERVICE/FUNCTION] send dead-lettered invocations back to their queue',
    '  cancel ID                          cancel a stored invocation that has not started',
    '  purge --dead [SERVICE/FUNCTION]    delete dead-lettered invocations',
  ].join('\n'),
  arguments: [
    { name: 'ACTION', description: `One of ${ACTIONS.join(', ')}.`, required: true },
    { name: 'TARGET', description: 'SERVICE/FUNCTION, or an invocation id (retry, cancel).', required: false },
  ],
  options: {
    all: { type: 'boolean', description: 'retry: every dead-lettered invocation (of SERVICE/FUNCTION when given).' },
    dead: { type: 'boolean', description: 'purge: required, to say what is deleted.' },
    limit: { type: 'string', value: 'N', description: 'dead: list at most N (default 100).' },
    json: { type: 'boolean', description: 'Print the result as JSON.' },
    ...CONNECTION_OPTIONS,
    ...HELP_OPTION,
  },
  run: queue,
}

async function queue ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const action = positionals[0] as Action
  if (!(ACTIONS as readonly string[]).includes(action)) throw new UsageError(`unknown action ${JSON.stringify(action)}; one of ${ACTIONS.join(', ')}`)
  const target = positionals[1]
  const json = values.json === true
  const limit = integerOption(values, 'limit') ?? 100
  const fnOf = (value: string | undefined): string | undefined => {
    if (value === undefined) return undefined
    try {
      return parseFunctionName(value, 'SERVICE/FUNCTION').name
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  }
  // check the whole command line before connecting
  let perform: (client: FCClient) => Promise<void>
  switch (action) {
    case 'ls': {
      const fn = fnOf(target)
      perform = async client => { printCounts(io, await client.queueCounts(fn), json) }
      break
    }
    case 'dead': {
      const fn = fnOf(target)
      perform = async client => { printDead(io, await client.deadLetters(fn, limit), json) }
      break
    }
    case 'retry': {
      if (values.all === true) {
        const fn = fnOf(target)
        perform = async client => { printCount(io, 'revived', await client.retryDead({ fn }), json) }
      } else {
        if (target === undefined) throw new UsageError('retry needs an invocation ID, or --all')
        perform = async client => { printCount(io, 'revived', await client.retryDead({ invocationId: target }), json) }
      }
      break
    }
    case 'cancel': {
      if (target === undefined) throw new UsageError('cancel needs an invocation ID')
      perform = async client => {
        await client.cancel(target)
        io.stdout.write(json ? toJson({ cancelled: target }) + '\n' : `cancelled ${target}\n`)
      }
      break
    }
    case 'purge': {
      if (values.dead !== true) throw new UsageError('purge deletes dead-lettered invocations only: say so with --dead')
      const fn = fnOf(target)
      perform = async client => { printCount(io, 'purged', await client.purgeDead(fn), json) }
      break
    }
  }
  const client = await connectClient(stringOption(values, 'url'), stringOption(values, 'ca'), { username: stringOption(values, 'username') })
  try {
    await perform(client)
  } finally {
    await client.close()
  }
  return ExitCode.Ok
}

function printCounts (io: Io, counts: readonly QueueCounts[], json: boolean): void {
  if (json) {
    io.stdout.write(toJson(counts) + '\n')
    return
  }
  const rows = [['FUNCTION', 'PENDING', 'IN FLIGHT', 'DEAD'], ...counts.map(c => [c.function, String(c.pending), String(c.inFlight), String(c.dead)])]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map(row => row[i]!.length)))
  for (const row of rows) io.stdout.write(row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join('  ') + '\n')
}

function printDead (io: Io, dead: readonly DeadLetter[], json: boolean): void {
  if (json) {
    io.stdout.write(toJson(dead) + '\n')
    return
  }
  for (const d of dead) {
    io.stdout.write(`${d.invocationId}  ${d.function}  attempts=${d.attempts}  died=${new Date(d.diedAt).toISOString()}  ${d.error.code}: ${d.error.message}\n`)
  }
}

function printCount (io: Io, what: string, count: number, json: boolean): void {
  io.stdout.write(json ? toJson({ [what]: count }) + '\n' : `${count} ${what}\n`)
}
