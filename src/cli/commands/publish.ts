import { checkEventTopic } from '../../protocol/events.js'
import { connectClient } from '../connect.js'
import { readPayload } from './invoke.js'
import { ExitCode, HELP_OPTION, integerOption, stringOption, CONNECTION_OPTIONS, UsageError, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'

export const publishCommand: CommandSpec = {
  name: 'publish',
  summary: 'Publish an event on a topic.',
  description: 'Plain MQTT subscribers (mosquitto_sub, MQTT.js) receive it too. Without a payload the event is empty.',
  arguments: [
    { name: 'TOPIC', description: 'The topic, e.g. /hello/world (no wildcards, not under $fn/).', required: true },
    { name: 'PAYLOAD', description: 'The payload, as text.', required: false },
  ],
  options: {
    payload: { type: 'string', value: 'TEXT', description: 'The payload, as text; "-" reads it from stdin.' },
    qos: { type: 'string', value: 'N', description: 'MQTT QoS 0, 1 or 2. Default 0.' },
    retain: { type: 'boolean', description: 'Ask the gateway to retain the event for later subscribers.' },
    ...CONNECTION_OPTIONS,
    ...HELP_OPTION,
  },
  run: publish,
}

async function publish ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const topic = positionals[0] as string
  try {
    checkEventTopic(topic)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const qos = integerOption(values, 'qos', 0, 2) as 0 | 1 | 2 | undefined
  const payload = await readPayload(values, io, positionals[1])
  const client = await connectClient(stringOption(values, 'url'), stringOption(values, 'ca'), { username: stringOption(values, 'username') })
  try {
    await client.publish(topic, payload ?? '', { qos: qos ?? 0, retain: values.retain === true })
  } finally {
    await client.close()
  }
  return ExitCode.Ok
}
