// What the figures were measured on: the machine, Node, every package's version, the peers' servers, and the
// fnbus commit (the hot paths change while the suite is used, so a figure without its commit means little).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import { connect } from 'nats'

const benchDir = fileURLToPath(new URL('..', import.meta.url))
const rootDir = fileURLToPath(new URL('../..', import.meta.url))

function packageVersion (dir, name) {
  try {
    return JSON.parse(readFileSync(`${dir}node_modules/${name}/package.json`, 'utf8')).version
  } catch {
    return null
  }
}

function git (...args) {
  try {
    return execFileSync('git', ['-C', rootDir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

async function natsServerVersion (url) {
  try {
    const nc = await connect({ servers: url, timeout: 2000 })
    const version = nc.info?.version ?? null
    await nc.close()
    return version
  } catch {
    return null
  }
}

/** Mosquitto tells its version on `$SYS/broker/version`. */
async function mosquittoVersion (url) {
  let client
  try {
    client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 2000 })
    const version = new Promise(resolve => {
      client.on('message', (topic, payload) => resolve(payload.toString()))
      setTimeout(resolve, 2000, null)
    })
    await client.subscribeAsync('$SYS/broker/version')
    return await version
  } catch {
    return null
  } finally {
    await client?.endAsync()
  }
}

export async function machine (options) {
  const cpus = os.cpus()
  const root = JSON.parse(readFileSync(`${rootDir}package.json`, 'utf8'))
  const dirty = git('status', '--porcelain', '--', 'src')
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg().map(load => Math.round(load * 100) / 100),
    node: process.version,
    fnbus: {
      version: root.version,
      commit: git('rev-parse', '--short', 'HEAD'),
      // the build measured was made from a tree with uncommitted changes under src/
      srcModified: dirty === null ? null : dirty !== '',
      aedes: packageVersion(rootDir, 'aedes'),
      mqtt: packageVersion(rootDir, 'mqtt'),
      msgpackr: packageVersion(rootDir, 'msgpackr'),
    },
    peers: {
      aedes: packageVersion(benchDir, 'aedes'),
      mqtt: packageVersion(benchDir, 'mqtt'),
      msgpackr: packageVersion(benchDir, 'msgpackr'),
      moleculer: packageVersion(benchDir, 'moleculer'),
      nats: packageVersion(benchDir, 'nats'),
      natsServer: await natsServerVersion(options.nats),
      mosquitto: await mosquittoVersion(options.mosquitto),
    },
  }
}
