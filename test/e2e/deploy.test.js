// Deploying: settings from the environment (flags win over it, it over the file), the systemd unit in deploy/
// (checked by systemd-analyze where the machine has it), and the package as npm installs it, CLI on PATH.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { defined, tempDir } from '../helpers.js'
import { BIN, freePort, ROOT, runCli, startCli } from './cli.js'

test('FNBUS_PORT, FNBUS_HOST, FNBUS_CONFIG, FNBUS_DATA_DIR and FNBUS_HTTP_PORT stand for their flags; a flag wins over its variable, a variable over the file', async t => {
  const dir = await tempDir(t)
  const filePort = await freePort()
  await writeFile(join(dir, 'site.json'), JSON.stringify({ port: filePort, dataDir: './from-file' }))
  const envPort = await freePort()
  const httpPort = await freePort()
  const env = { FNBUS_PORT: String(envPort), FNBUS_HOST: '127.0.0.1', FNBUS_CONFIG: 'site.json', FNBUS_DATA_DIR: join(dir, 'from-env'), FNBUS_HTTP_PORT: String(httpPort) }
  const fromEnv = await startCli(t, [], { cwd: dir, env })
  // startCli adds --port: the flag wins over FNBUS_PORT
  assert.equal(fromEnv.url, `mqtt://127.0.0.1:${fromEnv.port}`)
  await fromEnv.waitFor(`data directory ${join(dir, 'from-env')}`)
  await fromEnv.waitFor(`fnbus http listening on http://127.0.0.1:${httpPort}`, { stream: 'stdout' })
  await fromEnv.waitFor(`configuration from ${join(dir, 'site.json')}`)
  fromEnv.child.kill('SIGTERM')
  await fromEnv.exited
  // without --port: FNBUS_PORT wins over the file's port
  const { spawnCli } = await import('./cli.js')
  const run = spawnCli(t, ['start'], { cwd: dir, env: { ...env, FNBUS_HTTP_PORT: '' } })
  await run.waitFor(`fnbus gateway listening on mqtt://127.0.0.1:${envPort}`, { stream: 'stdout' })
  run.child.kill('SIGTERM')
  await run.exited
  const bad = await runCli(t, ['start', '--memory'], { cwd: dir, env: { FNBUS_PORT: 'eighteen' } })
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /FNBUS_PORT must be an integer between 0 and 65535, got "eighteen"/)
})

test('the systemd unit in deploy/ passes systemd-analyze verify', async t => {
  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find(existsSync)
  if (analyze === undefined) {
    t.skip('systemd-analyze is not on this machine')
    return
  }
  const unit = await readFile(join(ROOT, 'deploy', 'fnbus.service'), 'utf8')
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/fnbus start$/m)
  // verify checks that the command exists: point it at this checkout's CLI
  const dir = await tempDir(t)
  const file = join(dir, 'fnbus.service')
  await writeFile(file, unit.replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} ${BIN} start`))
  const result = spawnSync(analyze, ['verify', file], { encoding: 'utf8' })
  assert.equal(result.status, 0, result.stderr)
  // warnings (an unknown key, a value it ignores) exit 0 too: none may appear
  assert.equal(result.stderr.trim(), '', result.stderr)
})

test('npm pack, then npm install of the tarball: the fnbus command is on the PATH npm gives, and require("fnbus") works', { timeout: 240_000 }, async t => {
  const dir = await tempDir(t)
  const tarball = execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').at(-1)
  const prefix = join(dir, 'app')
  execFileSync('npm', ['install', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(dir, defined(tarball))], { stdio: 'ignore' })
  const help = spawnSync(join(prefix, 'node_modules', '.bin', 'fnbus'), ['--help'], { encoding: 'utf8' })
  assert.equal(help.status, 0, help.stderr)
  assert.match(help.stdout, /^Usage: fnbus COMMAND/m)
  const required = spawnSync(process.execPath, ['-e', "const f = require('fnbus'); console.log(typeof f.FCClient, typeof f.createGateway)"], { cwd: prefix, encoding: 'utf8' })
  assert.equal(required.stdout.trim(), 'function function', required.stderr)
})
