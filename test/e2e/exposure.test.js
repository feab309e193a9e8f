// fnbus start applies the loopback rule to every listener: a WebSocket listener or an HTTP port beyond loopback
// without identities is a configuration error (exit 2) as --host 0.0.0.0 is.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { spawnCli, startCli } from './cli.js'

/** `fnbus start ARGS…` expected to stop at once: its exit, or a failure if it still runs after 15 s (it started). */
async function startRefused (t, args, options) {
  const run = spawnCli(t, ['start', ...args], options)
  const timeout = new Promise(resolve => setTimeout(resolve, 15_000, 'running').unref())
  const exit = await Promise.race([run.exited, timeout])
  assert.notEqual(exit, 'running', `the gateway started:\n${run.stderr}`)
  return { code: exit.code, stderr: run.stderr }
}

test('fnbus start refuses plugins.websocket.host or http.host beyond loopback with no identity, unless --allow-anonymous', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true, plugins: { websocket: { port: 0, host: '0.0.0.0' } } }))
  const ws = await startRefused(t, ['--port', '0'], { cwd: dir })
  assert.equal(ws.code, 2, ws.stderr)
  assert.match(ws.stderr, /^FNBUS_CONFIG_INVALID: plugin websocket: plugins\.websocket\.host 0\.0\.0\.0 is reachable beyond this machine, and no identity is configured/m)
  const open = await startCli(t, ['--allow-anonymous'], { cwd: dir })
  await open.waitFor(/"url":"ws:\/\/0\.0\.0\.0:\d+\/mqtt","msg":"MQTT over WebSocket listening"/)

  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true, http: { port: 0, host: '0.0.0.0' } }))
  const http = await startRefused(t, ['--port', '0'], { cwd: dir })
  assert.equal(http.code, 2, http.stderr)
  assert.match(http.stderr, /^FNBUS_CONFIG_INVALID: http\.host 0\.0\.0\.0 is reachable beyond this machine, and no identity is configured/m)
})
