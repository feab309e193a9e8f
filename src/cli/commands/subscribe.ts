import { checkEventFilter } from '../../protocol/events.js'
import { connectClient } from '../connect.js'
import { toJson } from '../output.js'
import { ExitCode, HELP_OPTION, integerOption, stringOption, CONNECTION_OPTIONS, UsageError, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'
import { untilSignal } from '../signals.js'

export const subscribeCommand: CommandSpec = {
  name: 'subscribe',
  summary: 'Print the events published on topics matching a filter, one line each.',
  description: [
    'Each event is printed as its payload and a newline; with --json, as {"topic": …, "payload": …}',
    '(a payload that is not UTF-8 text is base64, with "payloadEncoding": "base64").',
    'Runs until interrupted, or until --count events arrived.',
  ].join('\n'),
  arguments: [{ name: 'FILTER', description: 'An MQTT topic filter, e.g. /hello/# or sensors/+/temperature.', required: true }],
  options: {
    json: { type: 'boolean', description: 'Print each event as a JSON line with its topic.' },
    count: { type: 'string', value: 'N', description: 'Exit after N events.' },
    qos: { type: 'string', value: 'N', description: 'MQTT QoS of the subscription, 0, 1 or 2. Default 0.' },
    ...CONNECTION_OPTIONS,
    ...HELP_OPTION,
  },
  run: subscribe,
}

async function subscribe ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const filter = positionals[0] as string
  try {
    checkEventFilter(filter)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const count = integerOption(values, 'count')
  const qos = integerOption(values, 'qos', 0, 2) as 0 | 1 | 2 | undefined
  const client = await connectClient(stringOption(values, 'url'), stringOption(values, 'ca'), { username: stringOption(values, 'username') })
  try {
    let received = 0
    let done!: () => void
    const enough = new Promise<void>(resolve => { done = resolve })
    await client.subscribe(filter, (topic, payload) => {
      if (count !== undefined && received >= count) return
      received++
      if (values.json === true) io.stdout.write(toJson(eventJson(topic, payload)) + '\n')
      else io.stdout.write(Buffer.concat([payload, Buffer.from('\n')]))
      if (count !== undefined && received >= count) done()
    }, { qos: qos ?? 0 })
    // handlers first: a script that sends SIGINT on reading the line below must not meet Node's default (a kill)
    const ended = untilSignal(enough)
    // on stderr, so that scripts (and tests) can wait for the subscription before they publish
    io.stderr.write(`fnbus: subscribed to ${filter} at ${client.url}\n`)
    await ended
  } finally {
    await client.close()
  }
  return ExitCode.Ok
}

function eventJson (topic: string, payload: Buffer): Record<string, unknown> {
  const text = payload.toString('utf8')
  // a lossless round trip means the bytes were UTF-8 text
  return Buffer.from(text, 'utf8').equals(payload) ? { topic, payload: text } : { topic, payload: payload.toString('base64'), payloadEncoding: 'base64' }
}
