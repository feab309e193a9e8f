// The dashboard page: polls GET /api/dashboard (gateway.status(), the invoke series, recent errors) and draws it;
// the live event view is a bus client of its own, the SDK's browser bundle (/fnbus.js) over MQTT-over-WebSocket.
// Everything from the gateway is put in the page as text (textContent), never as HTML.

const POLL_MS = 2000
const LIVE_EVENTS_SHOWN = 50
/** ms before the live view tries again after it lost its credentials or could not fetch them. */
const LIVE_RETRY_MS = 5000

const $ = id => document.getElementById(id)

/** Builds an element: h('td', { class: 'n' }, 'text', child…). */
function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value)
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue
    el.append(child instanceof Node ? child : String(child))
  }
  return el
}

const number = new Intl.NumberFormat('en', { maximumFractionDigits: 1 })
const fmt = value => value === null || value === undefined ? '–' : number.format(value)
const time = ms => new Date(ms).toLocaleTimeString()

function duration (ms) {
  const s = Math.floor(ms / 1000)
  const d = Math.floor(s / 86400)
  const parts = [[d, 'd'], [Math.floor(s / 3600) % 24, 'h'], [Math.floor(s / 60) % 60, 'm'], [s % 60, 's']]
  const first = parts.findIndex(([n]) => n > 0)
  return parts.slice(first === -1 ? 3 : first, (first === -1 ? 3 : first) + 2).map(([n, unit]) => `${n}${unit}`).join(' ')
}

let canAct = false
let liveStarted = false

async function refresh () {
  let data
  try {
    const response = await fetch('/api/dashboard', { cache: 'no-store' })
    if (!response.ok) throw new Error(`${response.status} ${(await response.json().catch(() => ({}))).message ?? response.statusText}`)
    data = await response.json()
  } catch (err) {
    $('updated').textContent = `cannot reach the gateway: ${err.message}`
    $('updated').className = 'bad'
    return
  }
  canAct = data.canAct
  renderOperator(data.operator)
  renderHeader(data.status)
  renderOverview(data.status, data.series)
  renderChart(data.series)
  renderFunctions(data.status.functions, data.series.functions)
  renderBridges(data.status.bridges ?? [])
  renderCluster(data.status.cluster)
  renderDead(data.status.deadLetters)
  renderErrors(data.recentErrors)
  $('updated').className = ''
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`
  if (!liveStarted) {
    liveStarted = true
    startLive(data.live)
  }
}

function renderHeader (status) {
  $('version').textContent = `v${status.version}`
  $('gateway').textContent = `${status.url} · up ${duration(status.uptimeMs)}`
  const health = status.health
  $('health').replaceChildren(
    h('span', { class: health.ready ? 'up' : 'down', 'data-health': 'ready' }, health.ready ? 'ready' : 'not ready'),
    // a gateway in a cluster also says whether it is connected to it
    ...['broker', 'store', 'functions', ...'cluster' in health ? ['cluster'] : []].map(part => h('span', { class: health[part] ? 'up' : 'down' }, part))
  )
}

function renderOverview (status, series) {
  const last = series.points.slice(-10)
  const rate = last.reduce((sum, p) => sum + p.count, 0) / Math.max(last.length, 1)
  const async = status.functions.reduce((sum, f) => ({ pending: sum.pending + f.async.pending, dead: sum.dead + f.async.dead }), { pending: 0, dead: 0 })
  const card = (label, value, id) => h('div', { class: 'card', 'data-card': id }, h('b', {}, value), h('span', {}, label))
  $('overview').replaceChildren(
    card('functions', status.functions.length, 'functions'),
    card('workers', status.connections.workers, 'workers'),
    card('clients', status.connections.clients, 'clients'),
    card('calls/s (10 s)', fmt(rate), 'rate'),
    card('async waiting', async.pending, 'pending'),
    card('dead letters', async.dead, 'dead')
  )
}

function renderFunctions (functions, rates) {
  const rows = functions.map(f => {
    const rate = rates[f.name]
    const workers = f.workers.length === 0
      ? h('span', { class: 'bad' }, 'no worker')
      : f.workers.map(w => h('span', { class: 'chip', title: w.label }, `${w.label} ${w.inFlight}/${w.concurrency}`))
    // a failing instance says why in its tooltip (a module that does not load, a crash)
    const instances = f.instances.map(i => h('span', { class: `chip${i.ready ? '' : ' down'}`, title: i.lastFailure ?? instanceTitle(i), 'data-last-failure': i.lastFailure ?? '', 'data-isolation': i.isolation ?? 'process' },
      `${i.label} ${i.isolation ?? 'process'}${i.host === undefined ? '' : `@${i.host}`} ${i.ready ? 'up' : 'down'}${i.restarts > 0 ? ` ↻${i.restarts}` : ''}`))
    return h('tr', { 'data-function': f.name },
      h('td', {}, h('b', {}, f.name)),
      h('td', { 'data-workers': f.workers.length }, workers),
      h('td', {}, instances.length === 0 ? h('span', { class: 'empty' }, 'external') : instances),
      h('td', { class: 'n', 'data-calls': '' }, rate?.total ?? 0),
      h('td', { class: `n${rate?.totalErrors > 0 ? ' bad' : ''}`, 'data-errors': '' }, rate?.totalErrors ?? 0),
      h('td', { class: 'n', 'data-rate': '' }, fmt(rate?.rate)),
      h('td', { class: `n${rate?.errorRate > 0 ? ' bad' : ''}` }, fmt(rate?.errorRate)),
      h('td', { class: 'n' }, `${fmt(rate?.p50)} / ${fmt(rate?.p95)}`),
      h('td', { class: 'n', 'data-in-flight': '' }, f.inFlight),
      h('td', { class: 'n' }, f.queued),
      h('td', { class: 'n', 'data-async-pending': '' }, f.async.pending),
      h('td', { class: 'n' }, f.async.inFlight),
      h('td', { class: `n${f.async.dead > 0 ? ' bad' : ''}`, 'data-async-dead': '' }, f.async.dead)
    )
  })
  $('functions').tBodies[0].replaceChildren(...rows)
  $('no-functions').hidden = rows.length > 0
}

// the cluster: this gateway's link to NATS, then each other gateway with what it serves and the calls between them
function renderCluster (cluster) {
  $('cluster-section').hidden = cluster === undefined || cluster === null
  if (cluster === undefined || cluster === null) return
  const state = $('cluster-state')
  state.textContent = cluster.state === 'connected' ? `${cluster.name} · connected to ${cluster.server}` : `${cluster.name} · ${cluster.state}`
  state.className = `chip${cluster.state === 'connected' ? '' : ' down'}`
  state.title = cluster.lastError ?? ''
  const rows = cluster.members.map(m => h('tr', { 'data-peer': m.name },
    h('td', {}, h('b', {}, m.name)),
    h('td', {}, m.functions.join(', ') || '–'),
    h('td', { class: 'n', 'data-sent': '' }, m.calls.sent),
    h('td', { class: 'n' }, m.calls.answered),
    h('td', { class: 'n' }, m.latency.count === 0 ? '–' : `${(m.latency.sumSeconds / m.latency.count * 1000).toFixed(2)} ms`),
    h('td', { class: 'n' }, m.calls.served),
    h('td', { class: 'n' }, `${m.lastSeenMs} ms`)
  ))
  $('cluster').tBodies[0].replaceChildren(...rows)
}

// each bridge to a remote broker: whether it is up, what went wrong last (its tooltip), its queue and counts
function renderBridges (bridges) {
  const sum = counts => Object.values(counts).reduce((a, b) => a + b, 0)
  const rows = bridges.map(b => h('tr', { 'data-bridge': b.name },
    h('td', {}, h('b', {}, b.name)),
    h('td', {}, b.url),
    h('td', {}, h('span', { class: `chip${b.connected ? '' : ' down'}`, title: b.lastError ?? '', 'data-state': b.state }, b.connected ? 'connected' : `${b.state}${b.lastFailure ? ` (${b.lastFailure})` : ''}`)),
    h('td', { class: 'n', 'data-queued': '' }, b.queuedMessages),
    h('td', { class: 'n' }, b.queuedBytes),
    h('td', { class: 'n', 'data-sent': '' }, b.sent),
    h('td', { class: `n${sum(b.dropped) > 0 ? ' bad' : ''}`, title: JSON.stringify(b.dropped) }, sum(b.dropped)),
    h('td', { class: 'n' }, b.received),
    h('td', { class: `n${b.failures > 0 ? ' bad' : ''}` }, b.failures)
  ))
  $('bridges').tBodies[0].replaceChildren(...rows)
  $('bridges-section').hidden = rows.length === 0
}

// who the browser signed in as (HTTP Basic: the browser sends the credentials with every request once /login took them)
let signIn = false
function renderOperator (operator) {
  signIn = operator?.signIn === true
  $('sign-in').hidden = !signIn
  $('signed-in').textContent = operator?.identity ? `signed in as ${operator.identity}` : ''
}

function renderDead (deadLetters) {
  $('actions-note').textContent = canAct
    ? 'You may retry dead letters and cancel waiting invocations.'
    : signIn
      ? 'Read-only: sign in as an operator to retry dead letters and cancel waiting invocations.'
      : 'Read-only: actions need an authorized operator (see docs/operations.md, The HTTP port).'
  $('cancel-form').hidden = !canAct
  const byFunction = new Set(deadLetters.map(d => d.function))
  const rows = deadLetters.map(d => h('tr', { 'data-invocation': d.invocationId },
    h('td', {}, h('code', {}, d.invocationId)),
    h('td', {}, d.function),
    h('td', { class: 'n' }, d.attempts),
    h('td', {}, time(d.diedAt)),
    h('td', { class: 'bad' }, d.error === undefined || d.error === null ? '' : `${d.error.code}: ${d.error.message}`),
    h('td', {}, canAct ? h('button', { type: 'button', onclick: () => act('retry', { invocationId: d.invocationId }) }, 'Retry') : null)
  ))
  if (canAct) {
    for (const fn of byFunction) {
      rows.push(h('tr', {}, h('td', { colspan: 5, class: 'note' }, `all of ${fn}`), h('td', {},
        h('button', { type: 'button', onclick: () => act('retry', { function: fn }) }, 'Retry all'), ' ',
        h('button', { type: 'button', onclick: () => { if (confirm(`Delete every dead letter of ${fn}?`)) act('purge', { function: fn }) } }, 'Purge'))))
    }
  }
  $('dead').tBodies[0].replaceChildren(...rows)
  $('no-dead').hidden = deadLetters.length > 0
}

function renderErrors (errors) {
  $('errors').replaceChildren(...errors.map(e => h('li', { 'data-code': e.code },
    h('time', {}, time(e.at)),
    `${e.function} ${e.kind === 'invocation' ? e.type : e.kind} ${e.code}${e.message ? `: ${e.message}` : ''} `,
    h('span', { class: 'empty' }, e.requestId)
  )))
  $('no-errors').hidden = errors.length > 0
}

async function act (action, body) {
  const result = $('action-result')
  result.textContent = '…'
  try {
    const response = await fetch(`/api/dashboard/${action}`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    })
    const answer = await response.json()
    if (!response.ok) throw new Error(`${answer.error}: ${answer.message}`)
    result.textContent = action === 'retry' ? `${answer.revived} sent back to the queue` : action === 'purge' ? `${answer.purged} deleted` : `${answer.cancelled} cancelled`
    result.className = 'note'
  } catch (err) {
    result.textContent = err.message
    result.className = 'bad'
  }
  await refresh()
}

$('cancel-form')?.addEventListener('submit', event => {
  event.preventDefault()
  const input = event.target.elements.invocationId
  act('cancel', { invocationId: input.value.trim() }).then(() => { input.value = '' })
})

// ---- chart: calls per second (bars, errors in red) and p50/p95 latency (lines, right axis, log scale) ----

function renderChart (series) {
  const canvas = $('chart')
  const ratio = window.devicePixelRatio || 1
  const width = canvas.clientWidth
  const height = canvas.clientHeight || 200
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio)
  canvas.height = Math.round(height * ratio)
  const g = canvas.getContext('2d')
  g.setTransform(ratio, 0, 0, ratio, 0, 0)
  g.clearRect(0, 0, width, height)

  const points = series.points
  const left = 44
  const right = 52
  const top = 10
  const bottom = 20
  const plotW = width - left - right
  const plotH = height - top - bottom
  // at least 4 so that the 4 grid lines fall on whole calls
  const maxCount = niceCeiling(Math.max(4, ...points.map(p => p.count)))
  const latencies = points.flatMap(p => [p.p50, p.p95]).filter(v => v !== null)
  const maxLatency = niceCeiling(Math.max(1, ...latencies))
  const logMax = Math.log10(maxLatency * 10)
  const yCount = c => top + plotH - (c / maxCount) * plotH
  const yLatency = ms => top + plotH - (Math.log10(Math.max(ms, 0.1) * 10) / logMax) * plotH
  const step = plotW / Math.max(points.length, 1)

  g.font = '11px system-ui, sans-serif'
  g.strokeStyle = '#d0d7de'
  g.fillStyle = '#57606a'
  g.lineWidth = 1
  for (let i = 0; i <= 4; i++) {
    const y = top + (plotH * i) / 4
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + plotW, y); g.stroke()
    g.textAlign = 'right'
    g.fillText(fmt(maxCount * (1 - i / 4)), left - 4, y + 4)
  }
  g.textAlign = 'left'
  for (const ms of [0.1, 1, 10, 100, 1000, 10000].filter(ms => ms <= maxLatency)) g.fillText(`${ms} ms`, left + plotW + 4, yLatency(ms) + 4)
  g.textAlign = 'center'
  for (let i = points.length - 1; i >= 0; i -= 60) g.fillText(new Date(points[i].t).toLocaleTimeString(), left + step * (i + 0.5), height - 5)

  points.forEach((p, i) => {
    if (p.count === 0) return
    const x = left + step * i
    const w = Math.max(step - 1, 1)
    g.fillStyle = '#2da44e'
    g.fillRect(x, yCount(p.count), w, top + plotH - yCount(p.count))
    if (p.errors > 0) {
      g.fillStyle = '#cf222e'
      g.fillRect(x, yCount(p.errors), w, top + plotH - yCount(p.errors))
    }
  })
  for (const [key, color] of [['p50', '#0969da'], ['p95', '#8250df']]) {
    g.strokeStyle = color
    g.lineWidth = 1.5
    g.beginPath()
    let drawing = false
    points.forEach((p, i) => {
      if (p[key] === null) { drawing = false; return }
      const x = left + step * (i + 0.5)
      if (drawing) g.lineTo(x, yLatency(p[key])); else g.moveTo(x, yLatency(p[key]))
      drawing = true
    })
    g.stroke()
  }
  $('chart-legend').textContent = `last ${Math.round(points.length / 60)} min · bars: calls/s (red: errors) · lines: p50 (blue), p95 (purple) latency`
}

/** The smallest of 1, 2, 4, 10 × a power of ten that is ≥ value: a quarter of it is a round grid step. */
function niceCeiling (value) {
  const power = 10 ** Math.floor(Math.log10(value))
  return [1, 2, 4, 10].map(m => m * power).find(v => v >= value)
}

// ---- live events: the page as a bus client over MQTT-over-WebSocket ----

/** A busy gateway sends thousands of events a second: the latest are kept, and drawn a few times a second. */
const live = { latest: [], received: 0, drawnAt: Date.now(), label: '' }

async function startLive ({ url: configuredUrl, available, filter }) {
  const state = $('live-state')
  if (!available) {
    state.textContent = 'off: no MQTT-over-WebSocket on this port (switch on plugins.websocket, or set plugins.dashboard.websocketUrl)'
    return
  }
  const url = configuredUrl ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`
  let FCClient
  try {
    ({ FCClient } = await import('/fnbus.js'))
  } catch (err) {
    state.textContent = `SDK not loaded: ${err.message}`
    return
  }
  setInterval(() => drawLive(state), 250)
  connectLive(FCClient, url, filter, state)
}

/**
 * Connects with read-only credentials the gateway issues the page (they let it watch events, nothing more). The
 * gateway keeps them in memory: after it restarts they are refused, and the view starts over with fresh ones.
 */
async function connectLive (FCClient, url, filter, state) {
  const again = () => setTimeout(() => connectLive(FCClient, url, filter, state), LIVE_RETRY_MS)
  let credentials
  try {
    const response = await fetch('/api/dashboard/live', { cache: 'no-store' })
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`)
    credentials = await response.json()
  } catch (err) {
    state.textContent = `off: no credentials for the live view (${err.message}); trying again`
    again()
    return
  }
  const client = new FCClient({ url, reconnectPeriod: 5000, username: credentials.username, password: credentials.password })
  state.textContent = `connecting to ${url}…`
  let connectedOnce = false
  // nothing answers there (a wrong websocketUrl, a refused origin): stop knocking
  const giveUp = setTimeout(() => {
    if (connectedOnce) return
    state.textContent = `off: cannot connect to ${url}`
    client.close()
  }, 10_000)
  client.on('connect', () => {
    clearTimeout(giveUp)
    connectedOnce = true
    live.label = `${filter} via ${url}`
    state.textContent = live.label
  })
  client.on('disconnect', () => {
    live.label = ''
    state.textContent = `reconnecting to ${url}…`
  })
  client.on('warning', err => {
    if (err.code !== 'FNBUS_NOT_AUTHORIZED') return
    // the client stopped: refused credentials are those of a gateway that has restarted since
    clearTimeout(giveUp)
    state.textContent = `reconnecting to ${url}…`
    again()
  })
  const decoder = new TextDecoder('utf-8', { fatal: false })
  await client.subscribe(filter, (topic, payload) => {
    live.received++
    live.latest.push({ at: Date.now(), topic, size: payload.length, text: decoder.decode(payload.subarray(0, 200)) })
    if (live.latest.length > LIVE_EVENTS_SHOWN) live.latest = live.latest.slice(-LIVE_EVENTS_SHOWN)
  }).catch(err => { if (connectedOnce) state.textContent = `off: ${err.message}` })
  window.fnbusDashboardClient = client
}

function drawLive (state) {
  if (live.latest.length === 0) return
  const list = $('events')
  const items = live.latest.reverse().map(e => h('li', { 'data-topic': e.topic },
    h('time', {}, new Date(e.at).toLocaleTimeString()), h('b', {}, e.topic), ` ${e.size} B `, h('span', { class: 'empty' }, e.text)))
  live.latest = []
  list.prepend(...items)
  while (list.children.length > LIVE_EVENTS_SHOWN) list.lastElementChild.remove()
  const now = Date.now()
  if (live.label !== '') state.textContent = `${live.label} · ${fmt(live.received / ((now - live.drawnAt) / 1000))}/s`
  live.received = 0
  live.drawnAt = now
}

await refresh()
setInterval(refresh, POLL_MS)
window.addEventListener('resize', () => refresh())

/** An instance's tooltip: where it runs and its heap. */
function instanceTitle (i) {
  const where = (i.threadId === undefined ? `pid ${i.pid ?? '–'}` : `thread ${i.threadId} of pid ${i.pid ?? '–'}`) +
    (i.host === undefined ? '' : ` (host process "${i.host}")`)
  const heap = i.heapUsedBytes === undefined ? '' : `, heap ${mb(i.heapUsedBytes)} of ${mb(i.heapLimitBytes)} MB`
  return where + heap
}

function mb (bytes) {
  return bytes === undefined ? '?' : (bytes / 1048576).toFixed(1)
}
