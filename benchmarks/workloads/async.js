// Workload 3: durable work queues. Each run starts from empty storage: a caller process stores N invocations
// (64 in flight, nothing consuming) — the accepted-and-durable rate — then a worker process comes online and
// drains them — the drain rate.
//   fnbus:     a gateway process with its LevelDB in a fresh temporary folder; `fc.invokeAsync`, then a worker
//              `fc.serve` with concurrency 64.
//   JetStream: a fresh file-storage work-queue stream on the local nats-server; `js.publish` awaiting each ack,
//              then a durable pull consumer (`consume`, 64 messages at most unacked) acking each message.
// Neither fsyncs each write (fnbus with "fsync": false, not its default; nats-server's default sync interval): both
// survive a kill of the server process, not a power loss. fnbus' default, fsync on, accepts about a fifth fewer.
import { rm } from 'node:fs/promises'
import { AckPolicy, connect, RetentionPolicy, StorageType } from 'nats'
import { alternate, group } from '../lib/alternate.js'
import { pidOf, withCpuPerCall } from '../lib/cpu.js'
import { ProcessGroup } from '../lib/processes.js'

export const SYSTEMS = {
  fnbus: 'fnbus invokeAsync (LevelDB) / worker fc.serve',
  jetstream: 'NATS JetStream file stream: js.publish with ack / pull consumer acking each',
}

const SIZE = 64

export async function run ({ options, log, tempDir }) {
  const count = options.asyncCount
  // an unrecorded start, stored and drained with the rest: the first calls of a fresh process are not the rate
  const warmup = Math.min(1000, Math.floor(count / 10))
  const total = count + warmup
  const load = { size: SIZE, concurrency: options.inFlight, count, warmup }
  const timeoutMs = 300_000

  async function fnbus () {
    const procs = new ProcessGroup()
    const dataDir = await tempDir('async')
    try {
      const gateway = await procs.start('fnbus', 'gateway', {
        dataDir,
        fsync: false,
        // the default bound of stored invocations per function could refuse part of a big backlog
        functions: { 'Bench/async': { async: { maxStored: total * 2 } } },
      })
      const caller = await procs.start('fnbus', 'asyncCaller', { url: gateway.info.url })
      const accept = await withCpuPerCall({ broker: gateway.pid, client: caller.pid }, () => caller.call('run', load, { timeoutMs }))
      await caller.stop()
      const drainer = await procs.start('fnbus', 'drainer', { url: gateway.info.url })
      const drain = await withCpuPerCall({ broker: gateway.pid, client: drainer.pid },
        () => drainer.call('drain', { total, concurrency: options.inFlight }, { timeoutMs }))
      return { accept, drain }
    } finally {
      await procs.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }

  const natsServer = pidOf('nats-server')
  const nc = await connect({ servers: options.nats })
  const jsm = await nc.jetstreamManager()
  const streams = new Set()
  async function jetstream (round) {
    const procs = new ProcessGroup()
    const stream = `FNBUS_BENCH_${process.pid}_${round}`
    const subject = `fnbus-bench.${process.pid}.async.${round}`
    try {
      streams.add(stream)
      await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File, retention: RetentionPolicy.Workqueue })
      await jsm.consumers.add(stream, { durable_name: 'drain', ack_policy: AckPolicy.Explicit })
      const publisher = await procs.start('nats', 'jsPublisher', { natsUrl: options.nats, subject })
      const accept = await withCpuPerCall({ broker: natsServer, client: publisher.pid }, () => publisher.call('run', load, { timeoutMs }))
      await publisher.stop()
      const consumer = await procs.start('nats', 'jsConsumer', { natsUrl: options.nats, stream, durable: 'drain' })
      const drain = await withCpuPerCall({ broker: natsServer, client: consumer.pid },
        () => consumer.call('drain', { total, concurrency: options.inFlight }, { timeoutMs }))
      return { accept, drain }
    } finally {
      await procs.close()
      await jsm.streams.delete(stream).catch(() => {})
      streams.delete(stream)
    }
  }

  try {
    const runs = await alternate({
      systems: Object.keys(SYSTEMS),
      pairs: options.pairs,
      label: `async ${count} invocations`,
      log,
      measure: (system, round) => system === 'fnbus' ? fnbus() : jetstream(round),
    })
    const pick = key => Object.fromEntries(Object.entries(runs).map(([system, samples]) => [system, samples.map(sample => sample[key])]))
    return {
      systems: SYSTEMS,
      groups: [
        group('async-accept', `accepted and durable, ${options.inFlight} in flight, ${SIZE} B`, load, pick('accept')),
        group('async-drain', `backlog of ${total} drained, ${options.inFlight} unacknowledged at most`, { total, concurrency: options.inFlight }, pick('drain')),
      ],
    }
  } finally {
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => {})
    await nc.close()
  }
}
