// Workload 1: Sync request/reply between two processes through a third (the broker), serially and with many
// calls in flight, at three payload sizes. fnbus is measured as users run it (the CLI's gateway, a supervised
// function, both handler forms) and as it embeds (createGateway). Every system's three processes stay up for the whole workload; only
// the one being measured is busy.
import { join } from 'node:path'
import { alternate, group } from '../lib/alternate.js'
import { pidOf, withCpuPerCall } from '../lib/cpu.js'
import { ProcessGroup } from '../lib/processes.js'
import { FUNCTIONS as CLI_FUNCTIONS } from '../roles/cli.js'

export const SYSTEMS = {
  fnbus: 'fnbus as users run it: `fnbus start`, the echo a supervised function in Link IoT Edge\'s callback form, the caller an FCClient',
  'fnbus-async': 'the same gateway, the echo an async handler',
  'fnbus-unix': 'the same gateway and callback echo, the caller on the gateway\'s Unix socket (`--socket`; the gateway\'s own functions connect so)',
  'fnbus-threads': 'caller and worker functions as threads of `fnbus start` (`isolation: "thread"`): a driver function runs the loop, the echo answers',
  'fnbus-processes': 'the same two functions as processes (`fnbus run`, on the gateway\'s Unix socket by default)',
  'fnbus-embedded': 'fnbus embedded: `createGateway` in a process of its own, the worker an FCClient serving an async handler (`fc.serve`)',
  'mosquitto-rpc': 'naive RPC over the machine\'s Mosquitto (MQTT.js, msgpack): the peer a user would write first',
  'aedes-rpc': 'naive RPC over bare aedes (MQTT.js, msgpack)',
  'moleculer-nats': 'Moleculer 0.15, NATS transporter',
  'nats-request': 'NATS request/reply (nats.js)',
  'raw-forward': 'not a peer, the floor: a Node process copying bytes between raw TCP sockets, messages framed by length (no MQTT, no broker logic)',
  'bus-floor': 'not a peer, a floor: fnbus\' SDK worker and caller through a gateway that only frames MQTT and forwards bus envelopes (no aedes, no authentication, limits, policy or dispatcher)',
}

export async function run ({ options, log, tempDir }) {
  const procs = new ProcessGroup()
  const id = `${process.pid}`
  try {
    // the gateway users run, as a child of a role process: its pid and its functions' are in its info
    const cli = await procs.start('cli', 'gateway', {
      dataDir: await tempDir('sync-cli'), socket: join(await tempDir('sync-socket'), 'gw.sock'), concurrency: options.inFlight,
    })
    const threads = await procs.start('cli', 'gateway', { dataDir: await tempDir('sync-threads'), concurrency: options.inFlight, isolation: 'thread' })
    const embedded = await procs.start('fnbus', 'gateway', { dataDir: await tempDir('sync') })
    const embeddedWorker = await procs.start('fnbus', 'worker', { url: embedded.info.url, concurrency: options.inFlight })
    const broker = await procs.start('aedes', 'broker')
    const aedesWorker = await procs.start('aedes', 'rpcWorker', { url: broker.info.url })
    // its own request topic: the machine's Mosquitto may carry other traffic
    const mosquittoTopic = `fnbus-bench/${id}/echo`
    const mosquittoWorker = await procs.start('aedes', 'rpcWorker', { url: options.mosquitto, topic: mosquittoTopic })
    const namespace = `fnbus-bench-${id}`
    const moleculerWorker = await procs.start('moleculer', 'worker', { natsUrl: options.nats, namespace })
    const subject = `fnbus-bench.${id}.echo`
    const natsWorker = await procs.start('nats', 'worker', { natsUrl: options.nats, subject })
    const forwarder = await procs.start('raw', 'forwarder')
    const rawWorker = await procs.start('raw', 'worker', { port: forwarder.info.workerPort })
    const busFloor = await procs.start('bus-floor', 'gateway')
    const busFloorWorker = await procs.start('fnbus', 'worker', { url: busFloor.info.url, concurrency: options.inFlight })
    const callers = {
      fnbus: await procs.start('fnbus', 'caller', { url: cli.info.url, fn: CLI_FUNCTIONS.callback.name }),
      'fnbus-async': await procs.start('fnbus', 'caller', { url: cli.info.url, fn: CLI_FUNCTIONS.async.name }),
      'fnbus-unix': await procs.start('fnbus', 'caller', { url: cli.info.socketUrl, fn: CLI_FUNCTIONS.callback.name }),
      'fnbus-threads': await procs.start('cli', 'driverCaller', { url: threads.info.url, target: CLI_FUNCTIONS.callback.name }),
      'fnbus-processes': await procs.start('cli', 'driverCaller', { url: cli.info.url, target: CLI_FUNCTIONS.callback.name }),
      'fnbus-embedded': await procs.start('fnbus', 'caller', { url: embedded.info.url }),
      'mosquitto-rpc': await procs.start('aedes', 'rpcCaller', { url: options.mosquitto, topic: mosquittoTopic }),
      'aedes-rpc': await procs.start('aedes', 'rpcCaller', { url: broker.info.url }),
      'moleculer-nats': await procs.start('moleculer', 'caller', { natsUrl: options.nats, namespace }),
      'nats-request': await procs.start('nats', 'caller', { natsUrl: options.nats, subject }),
      'raw-forward': await procs.start('raw', 'caller', { port: forwarder.info.callerPort }),
      'bus-floor': await procs.start('fnbus', 'caller', { url: busFloor.info.url }),
    }
    // the three processes of each system, for CPU time per call (the NATS peers' broker is the machine's server)
    const natsServer = pidOf('nats-server')
    const cliWorker = form => cli.info.workerPids[CLI_FUNCTIONS[form].name]
    const pids = {
      fnbus: { broker: cli.info.gatewayPid, worker: cliWorker('callback'), caller: callers.fnbus.pid },
      'fnbus-async': { broker: cli.info.gatewayPid, worker: cliWorker('async'), caller: callers['fnbus-async'].pid },
      'fnbus-unix': { broker: cli.info.gatewayPid, worker: cliWorker('callback'), caller: callers['fnbus-unix'].pid },
      // one process: caller, worker and broker are its threads, its CPU is the whole call's
      'fnbus-threads': { broker: threads.info.gatewayPid },
      'fnbus-processes': { broker: cli.info.gatewayPid, worker: cliWorker('callback'), caller: cliWorker('driver') },
      'fnbus-embedded': { broker: embedded.pid, worker: embeddedWorker.pid, caller: callers['fnbus-embedded'].pid },
      'mosquitto-rpc': { broker: pidOf('mosquitto'), worker: mosquittoWorker.pid, caller: callers['mosquitto-rpc'].pid },
      'aedes-rpc': { broker: broker.pid, worker: aedesWorker.pid, caller: callers['aedes-rpc'].pid },
      'moleculer-nats': { broker: natsServer, worker: moleculerWorker.pid, caller: callers['moleculer-nats'].pid },
      'nats-request': { broker: natsServer, worker: natsWorker.pid, caller: callers['nats-request'].pid },
      'raw-forward': { broker: forwarder.pid, worker: rawWorker.pid, caller: callers['raw-forward'].pid },
      'bus-floor': { broker: busFloor.pid, worker: busFloorWorker.pid, caller: callers['bus-floor'].pid },
    }
    const systems = Object.keys(callers).filter(system => options.systems === undefined || options.systems.includes(system))

    const groups = []
    for (const concurrency of [1, options.inFlight]) {
      for (const size of options.sizes) {
        const label = `${sizeLabel(size)}, ${concurrency === 1 ? 'serial' : `${concurrency} in flight`}`
        const params = { size, concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs }
        const runs = await alternate({
          systems,
          pairs: options.pairs,
          label: `sync ${label}`,
          log,
          measure: system => withCpuPerCall(pids[system], () => callers[system].call('run', params, { timeoutMs: runTimeout(options) })),
        })
        groups.push(group(`sync-${size}-c${concurrency}`, label, params, runs))
      }
    }
    return { systems: SYSTEMS, groups }
  } finally {
    await procs.close()
  }
}

export function sizeLabel (size) {
  return size >= 1024 ? `${size / 1024} KiB` : `${size} B`
}

/** A run that takes far longer than it should is a hung system: its process is killed and the workload fails. */
export function runTimeout (options) {
  return options.warmupMs + options.durationMs + 30_000
}
