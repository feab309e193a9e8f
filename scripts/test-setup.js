#!/usr/bin/env node
// What `npm test` needs beyond npm's own packages, installed when missing: the tests start real peers rather than
// mocks. Today that is Debian's paho-mqtt and msgpack for the system Python, which runs docs/protocol.md's Python
// worker (test/e2e/python-worker.test.js), Mosquitto with its clients, and nats-server. Chromium comes from the npm registry
// (@sparticuz/chromium), nothing to do.
// Installs with apt-get as root, or through `sudo -n`; otherwise it says what to install and fails.
import { spawnSync } from 'node:child_process'

/** Each need: how to tell it is met, and the Debian packages that meet it. */
const NEEDS = [
  {
    what: 'paho-mqtt and msgpack for the system Python (the protocol guide\'s Python worker)',
    met: () => ['/usr/bin/python3', 'python3'].some(python => run(python, ['-c', 'import paho.mqtt, msgpack']).status === 0),
    packages: ['python3-paho-mqtt', 'python3-msgpack'],
  },
  {
    what: 'Mosquitto and its clients (a broker that is not fnbus, and mosquitto_pub/mosquitto_sub as users run them)',
    met: () => ['mosquitto', 'mosquitto_pub', 'mosquitto_sub'].every(command => onPath(command)),
    packages: ['mosquitto', 'mosquitto-clients'],
  },
  {
    what: 'nats-server (the cluster\'s tests start their own JetStream clusters)',
    met: () => onPath('nats-server'),
    packages: ['nats-server'],
  },
]

/** Whether `command` is on the PATH, or in /usr/sbin where Debian puts daemons. */
function onPath (command) {
  return run('sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command}`]).status === 0
}

function run (command, args, options = {}) {
  return spawnSync(command, args, { stdio: 'ignore', ...options })
}

const missing = NEEDS.filter(need => !need.met())
if (missing.length > 0) {
  const packages = missing.flatMap(need => need.packages)
  const root = process.getuid?.() === 0
  const sudo = !root && run('sudo', ['-n', 'true']).status === 0
  if (!root && !sudo) {
    console.error(`npm test needs: ${missing.map(need => need.what).join('; ')}.\nInstall them: sudo apt-get install -y ${packages.join(' ')}`)
    process.exit(1)
  }
  const prefix = root ? [] : ['sudo', '-n']
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  console.error(`test setup: installing ${packages.join(' ')} (apt-get)`)
  for (const args of [['apt-get', 'update', '-q'], ['apt-get', 'install', '-y', '-q', ...packages]]) {
    const [command, ...rest] = [...prefix, ...args]
    const result = spawnSync(command, rest, { stdio: ['ignore', 'ignore', 'inherit'], env })
    if (result.status !== 0) {
      console.error(`test setup: ${args.join(' ')} failed (exit ${result.status})`)
      process.exit(1)
    }
  }
  const still = missing.filter(need => !need.met())
  if (still.length > 0) {
    console.error(`test setup: still missing after the install: ${still.map(need => need.what).join('; ')}`)
    process.exit(1)
  }
}
