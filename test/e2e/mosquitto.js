// Helpers for the bridge's end-to-end tests: MQTT.js clients that keep what they receive, a gateway with bridges, Mosquitto brokers of their own, on free ports, with a generated
// configuration in a temporary directory (never the machine's 127.0.0.1:1883), and certificates made with openssl.
// (Not a test file; node --test loads it and finds no tests.)
import { execFileSync, spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { freePort, startCli, waitForPort } from './cli.js'

export const MOSQUITTO = '/usr/sbin/mosquitto'

/**
 * A Mosquitto broker, stopped after the test. `stop()` and `start()` make an outage on the same port, persistence
 * kept (SIGTERM: Mosquitto saves it as it exits).
 * @param {import('node:test').TestContext} t
 * @param {string} dir
 * @param {{ users?: Record<string, string>, tls?: { ca: string, cert: string, key: string }, port?: number, start?: boolean }} [options]
 */
export async function mosquitto (t, dir, options = {}) {
  const port = options.port ?? await freePort()
  const lines = [
    `listener ${port} 127.0.0.1`,
    `allow_anonymous ${options.users === undefined && options.tls === undefined}`,
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'max_queued_messages 0',
    'max_inflight_messages 0',
    // run as root, Mosquitto would switch to the user "mosquitto", who cannot read the test's private temporary files
    `user ${userInfo().username}`,
  ]
  if (options.users !== undefined) {
    const file = join(dir, 'passwords')
    await writeFile(file, '')
    for (const [user, password] of Object.entries(options.users)) execFileSync('mosquitto_passwd', ['-b', file, user, password])
    lines.push(`password_file ${file}`)
  }
  if (options.tls !== undefined) {
    lines.push(`cafile ${options.tls.ca}`, `certfile ${options.tls.cert}`, `keyfile ${options.tls.key}`, 'require_certificate true', 'use_identity_as_username true')
  }
  const conf = join(dir, 'mosquitto.conf')
  await writeFile(conf, lines.join('\n') + '\n')
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child
  let log = ''
  const broker = {
    port,
    url: `${options.tls === undefined ? 'mqtt' : 'mqtts'}://127.0.0.1:${port}`,
    get log () { return log },
    async start () {
      const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
      child = proc
      proc.stderr?.setEncoding('utf8')
      proc.stderr?.on('data', chunk => { log += chunk })
      await waitForPort(port, () => proc.exitCode !== null, () => log, 'mosquitto')
    },
    async stop () {
      const proc = child
      child = undefined
      if (proc === undefined || proc.exitCode !== null) return
      const exited = new Promise(resolve => proc.once('exit', resolve))
      proc.kill('SIGTERM')
      await exited
    },
  }
  t.after(() => broker.stop())
  if (options.start !== false) await broker.start()
  return broker
}

/**
 * A CA, a server certificate for 127.0.0.1/localhost and a client certificate (CN `client`) signed by it, made with
 * openssl in `dir`. Returns their paths.
 * @param {string} dir
 */
export function makeCertificates (dir) {
  const path = (/** @type {string} */ name) => join(dir, name)
  const openssl = (/** @type {string[]} */ args) => execFileSync('openssl', args, { stdio: 'pipe' })
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=fnbus test CA', '-keyout', path('ca.key'), '-out', path('ca.crt')])
  const sign = (/** @type {string} */ name, /** @type {string} */ cn, /** @type {string | undefined} */ san) => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', path(`${name}.key`), '-out', path(`${name}.csr`)])
    const args = ['x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.crt'), '-CAkey', path('ca.key'), '-CAcreateserial', '-days', '2', '-out', path(`${name}.crt`)]
    if (san !== undefined) {
      execFileSync('sh', ['-c', `printf 'subjectAltName=${san}\\n' > ${path(`${name}.ext`)}`])
      args.push('-extfile', path(`${name}.ext`))
    }
    openssl(args)
  }
  sign('server', 'localhost', 'IP:127.0.0.1,DNS:localhost')
  sign('client', 'client', undefined)
  return { ca: path('ca.crt'), serverCert: path('server.crt'), serverKey: path('server.key'), clientCert: path('client.crt'), clientKey: path('client.key') }
}

/**
 * An MQTT.js client, connected, ended after the test, with every message it receives kept in `messages`.
 * @param {import('node:test').TestContext} t
 * @param {string} url
 * @param {import('mqtt').IClientOptions} [options]
 */
export async function client (t, url, options = {}) {
  const c = mqtt.connect(url, { reconnectPeriod: 100, ...options })
  t.after(() => c.endAsync(true))
  /** @type {{ topic: string, payload: Buffer, qos: number, retain: boolean }[]} */
  const messages = []
  /** @type {(() => void)[]} */
  let wakes = []
  c.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload, qos: packet.qos, retain: packet.retain })
    const woken = wakes
    wakes = []
    for (const wake of woken) wake()
  })
  await new Promise((resolve, reject) => {
    c.once('connect', resolve)
    c.once('error', reject)
  })
  return {
    mqtt: c,
    messages,
    /**
     * Resolves with the first message that `match` accepts, once it has arrived.
     * @param {(m: { topic: string, payload: Buffer, qos: number, retain: boolean }) => boolean} match
     */
    async next (match, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs
      for (;;) {
        const found = messages.find(match)
        if (found !== undefined) return found
        if (Date.now() > until) throw new Error(`no such message; got ${messages.map(m => m.topic).join(', ')}`)
        await new Promise(resolve => {
          wakes.push(() => resolve(undefined))
          setTimeout(resolve, 200)
        })
      }
    },
  }
}

/**
 * Writes fnbus.config.json in `dir` and starts the gateway on it; resolves once its bridges have connected.
 * @param {import('node:test').TestContext} t
 * @param {string} dir
 * @param {object} config
 * @param {{ env?: Record<string, string>, connected?: number }} [options]
 */
export async function gatewayWith (t, dir, config, { env = {}, connected = 1 } = {}) {
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify(config))
  const gateway = await startCli(t, [], { cwd: dir, env })
  for (let i = 0; i < connected; i++) await gateway.waitFor(new RegExp(`(.*bridge connected.*\\n){${i + 1}}`), { timeoutMs: 20_000 })
  return gateway
}

/**
 * The bridges of `/api/status` on the gateway's HTTP port.
 * @param {number} httpPort
 * @returns {Promise<import('../../dist/index.js').BridgeStatus[]>}
 */
export async function bridgeStatus (httpPort) {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/status`)
  if (res.status !== 200) throw new Error(`/api/status answered ${res.status}`)
  const status = /** @type {import('../../dist/index.js').GatewayStatus} */ (await res.json())
  return [...status.bridges ?? []]
}
