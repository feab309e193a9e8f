import { connectClient } from '../connect.js'
import { ExitCode, HELP_OPTION, stringOption, CONNECTION_OPTIONS, type CommandSpec, type Io, type ParsedArgs, functionArgument } from '../spec.js'

export const restartCommand: CommandSpec = {
  name: 'restart',
  summary: 'Restart a function the gateway supervises (after editing its module).',
  description: [
    'Asks the running gateway (at --url) to start new processes of SERVICE/FUNCTION: each instance drains its',
    'calls in flight, then starts again at once with the module read anew. Only functions of the gateway\'s',
    'configuration with a module can be restarted. An operator\'s request: under a policy it needs manage.',
  ].join('\n'),
  arguments: [{ name: 'SERVICE/FUNCTION', description: 'The function, e.g. EdgeFC/helloworld.', required: true }],
  options: {
    ...CONNECTION_OPTIONS,
    ...HELP_OPTION,
  },
  run: restart,
}

async function restart ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const target = functionArgument(positionals[0] as string).name
  const client = await connectClient(stringOption(values, 'url'), stringOption(values, 'ca'), { username: stringOption(values, 'username') })
  try {
    const { restarted } = await client.restartFunction(target)
    io.stdout.write(`restarting ${restarted} instance${restarted === 1 ? '' : 's'} of ${target}\n`)
    return ExitCode.Ok
  } finally {
    await client.close()
  }
}
