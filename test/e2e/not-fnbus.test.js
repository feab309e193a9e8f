// Pointing fnbus at an MQTT broker that is not fnbus (Mosquitto on 1883, where the default URL points): the CLI
// says so within its timeout, naming the address and what to check, and `fnbus run` says so in its log.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { tempDir, waitFor } from '../helpers.js'
import { freePort, runCli, spawnCli } from './cli.js'
import { connect } from 'node:net'

/** A real Mosquitto of the test's own, on a free port. */
async function mosquitto (t) {
  const dir = await tempDir(t)
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  await writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`)
  const broker = spawn(existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto', ['-c', conf], { stdio: 'ignore' })
  t.after(() => broker.kill('SIGKILL'))
  await waitFor(() => new Promise(resolve => {
    const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) })
    socket.on('error', () => resolve(false))
  }), 5000, 'mosquitto listening')
  return `mqtt://127.0.0.1:${port}`
}

const NOT_FNBUS = /FNBUS_PROTOCOL_MISMATCH: mqtt:\/\/127\.0\.0\.1:\d+ accepted the MQTT connection but did not answer the fnbus handshake within \d+ ms: it is an MQTT broker, not an fnbus gateway\. Check the address \(FNBUS_URL, --url\)/

test('fnbus invoke and status against Mosquitto: "not an fnbus gateway" within ~3 s, or within --timeout', async t => {
  const url = await mosquitto(t)
  for (const [args, limitMs] of /** @type {[string[], number][]} */ ([[['status'], 5000], [['invoke', 'EdgeFC/helloworld', '--payload', 'hi'], 5000], [['invoke', 'EdgeFC/helloworld', '--timeout', '1000'], 2500]])) {
    const started = Date.now()
    const result = await runCli(t, args, { env: { FNBUS_URL: url } })
    const ms = Date.now() - started
    assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`)
    assert.match(result.stderr, NOT_FNBUS)
    assert.ok(ms < limitMs, `${args.join(' ')} answered in ${ms} ms`)
  }
})

test('fnbus run against Mosquitto logs that it is not an fnbus gateway', async t => {
  const url = await mosquitto(t)
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fn.cjs'), 'exports.handler = async e => e\n')
  const run = spawnCli(t, ['run', join(dir, 'fn.cjs'), '--service', 'A', '--function', 'b', '--url', url])
  await run.waitFor(/not an fnbus gateway/, { timeoutMs: 8000 })
})
