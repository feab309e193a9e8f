// What Prometheus and Grafana users expect of a gateway started as users start it: per-instance metrics of the
// supervised functions, and a dashboard in deploy/ whose every query names a metric the gateway exports.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { defined, tempDir, waitFor } from '../helpers.js'
import { freePort, ROOT, startCli } from './cli.js'

function samples (text) {
  return text.split('\n').filter(line => line !== '' && !line.startsWith('#')).map(line => {
    const match = defined(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line), `a sample: ${line}`)
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(m => [m[1], m[2]]))
    return { name: match[1], labels, value: Number(match[3]) }
  })
}

test('supervised instances are exported (up, restarts, resident memory), and every metric the Grafana dashboard queries exists', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'echo.cjs'), 'exports.handler = async event => event\n')
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ functions: [{ service: 'Site', function: 'echo', module: './echo.cjs' }] }))
  const httpPort = await freePort()
  await startCli(t, ['--memory', '--http-port', String(httpPort), '--plugin', 'metrics'], { cwd: dir })
  const text = async () => await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const scrape = async () => samples(await text())
  const exported = await waitFor(async () => {
    const all = await scrape()
    return all.some(s => s.name === 'fnbus_instance_resident_memory_bytes' && s.value > 0) ? all : undefined
  }, 15_000, 'the instance up and its first heartbeat')
  const of = name => exported.find(s => s.name === name && s.labels.instance === 'Site/echo#1')
  assert.equal(of('fnbus_instance_up')?.value, 1)
  assert.equal(of('fnbus_instance_up').labels.function, 'Site/echo')
  assert.equal(of('fnbus_instance_restarts_total')?.value, 0)
  assert.ok(of('fnbus_instance_resident_memory_bytes').value > 10 * 1024 * 1024)

  const dashboard = JSON.parse(await readFile(join(ROOT, 'deploy', 'grafana-dashboard.json'), 'utf8'))
  const queried = new Set()
  for (const panel of dashboard.panels) {
    for (const target of panel.targets) {
      for (const [, name] of target.expr.matchAll(/([a-z_:][a-z0-9_:]*)\{/g)) queried.add(name)
    }
  }
  assert.ok(queried.size >= 15, `the dashboard queries ${queried.size} metrics`)
  // a counter nobody has counted yet has no sample, but is declared: what the dashboard needs to find it later
  const declared = new Set([...(await text()).matchAll(/^# TYPE (\S+) /gm)].map(m => m[1]))
  for (const name of queried) {
    assert.ok(declared.has(name) || declared.has(name.replace(/_(bucket|sum|count)$/, '')), `${name} (queried by the dashboard) is exported`)
  }
})
