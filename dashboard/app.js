// Plexus dashboard: reads the node's live feed (/api/events, one snapshot a second, see
// src/observe/dashboard.ts) and draws the network, the rates and the incidents; tables.js
// draws the clusters and streams.
import { $, h, idCell, MAX_ROWS, moreRow, short } from './dom.js'
import { drawMap } from './map.js'
import { cipher, renderClusters, renderStreams } from './tables.js'

const HISTORY = 120 // chart points (seconds)
const GONE_MS = 10 * 60_000 // how long a node no longer known stays on the map
const STALE_MS = 5000 // no update for this long: the feed is shown as down
const CHART_HEIGHT = 90 // px

// ---------- rates ----------
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim()
const charts = {}
const series = {
  requests: [
    ['sent', 'requestsSent'],
    ['served', 'requestsServed'],
  ],
  messages: [
    ['published', 'messagesPublished'],
    ['received', 'messagesReceived'],
    ['stream appends', 'streamMessages'],
  ],
  bytes: [
    ['sent', 'bytesSent'],
    ['received', 'bytesReceived'],
  ],
}
const times = []
const values = { requests: [], messages: [], bytes: [] }

function fmtRate(v, bytes) {
  if (v == null) return '–'
  const units = bytes ? ['B', 'KB', 'MB', 'GB'] : ['', 'k', 'M', 'G']
  let i = 0
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000
    i++
  }
  const n = v >= 100 || i === 0 ? Math.round(v).toString() : v.toFixed(1)
  return `${n}${units[i] ? ` ${units[i]}` : ''}/s`
}

/** Creates the charts (again when the colour scheme changes: uPlot takes colours as values). */
function setupCharts() {
  if (typeof uPlot !== 'function') return
  const colors = [css('--s1'), css('--s2'), css('--s3')]
  for (const [name, list] of Object.entries(series)) {
    const box = document.querySelector(`[data-rate="${name}"] .chart`)
    charts[name]?.destroy()
    if (values[name].length !== list.length) values[name] = list.map(() => [])
    const opts = {
      width: Math.max(200, box.clientWidth),
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        {
          stroke: css('--muted'),
          grid: { stroke: css('--line'), width: 1 },
          size: 24,
          incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300],
          values: (_u, ticks) =>
            ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false })),
        },
        {
          stroke: css('--muted'),
          grid: { stroke: css('--line'), width: 1 },
          size: 64,
          space: 20,
          values: (_u, ticks) => ticks.map((t) => fmtRate(t, name === 'bytes').replace('/s', '')),
        },
      ],
      series: [{}, ...list.map(([label], i) => ({ label, stroke: colors[i], width: 1.5 }))],
    }
    charts[name] = new uPlot(opts, [times, ...values[name]], box)
    // The series' names, in their colours, beside the chart's title (uPlot's legend takes a line).
    const legend = document.querySelector(`[data-rate="${name}"] .rate-legend`)
    legend.replaceChildren(
      ...list.map(([label], i) => h('span', { style: `color: ${colors[i]}` }, `■ ${label}`)),
    )
  }
}

function renderRates(snap) {
  const r = snap.rates
  if (!r) return
  times.push(snap.time / 1000)
  if (times.length > HISTORY) times.shift()
  for (const [name, list] of Object.entries(series)) {
    let total = 0
    list.forEach(([, key], i) => {
      const arr = values[name][i] || (values[name][i] = [])
      arr.push(r[key])
      if (arr.length > HISTORY) arr.shift()
      total += r[key]
    })
    const box = document.querySelector(`[data-rate="${name}"]`)
    box.dataset.value = String(total)
    box.querySelector('.rate-value').textContent = fmtRate(total, name === 'bytes')
    charts[name]?.setData([times, ...values[name]])
  }
}

// ---------- model ----------
const seen = new Map() // node id -> last time it was known (for 'gone')

function model(snap) {
  const s = snap.status
  const linked = new Map(s.peers.map((p) => [p.id, p]))
  const up = (id) => id === s.id || linked.has(id)
  const memberOf = new Map()
  const knownDown = new Set()
  for (const c of s.clusters) {
    for (const m of c.members) {
      if (!memberOf.has(m.id)) memberOf.set(m.id, [])
      memberOf.get(m.id).push(c.name)
      if (!m.connected) knownDown.add(m.id)
    }
  }
  const ids = new Set([s.id, ...linked.keys(), ...memberOf.keys()])
  for (const id of ids) seen.set(id, snap.time)
  for (const [id, t] of seen) {
    if (snap.time - t > GONE_MS) seen.delete(id)
    else ids.add(id)
  }
  const nodes = [...ids].sort().map((id) => {
    const state = id === s.id ? 'self' : up(id) ? 'up' : knownDown.has(id) ? 'down' : 'gone'
    const clusters = memberOf.get(id) || []
    return {
      id,
      state,
      label: short(id),
      sub: clusters.length ? clusters.join(', ') : state === 'gone' ? 'gone' : '',
      latencyMs: linked.get(id)?.latencyMs ?? null,
    }
  })
  return { s, up, nodes }
}

/** Incidents, worst first: [{ level: 'bad' | 'warn', text }]. */
function alerts(m) {
  const out = []
  for (const c of m.s.clusters) {
    for (const mem of c.members) {
      if (!mem.connected)
        out.push({ level: 'bad', text: `member ${short(mem.id)} of ${c.name} is down (no link)` })
    }
  }
  for (const st of m.s.streams) {
    for (const p of st.hosted) {
      const name = `${st.name}/${p.partition}`
      if (p.leader === null) out.push({ level: 'bad', text: `partition ${name} has no leader` })
      else if (!m.up(p.leader)) {
        out.push({ level: 'bad', text: `partition ${name}: its leader ${short(p.leader)} is down` })
      }
      if (p.health === 'failed') {
        out.push({ level: 'warn', text: `replica of ${name} here failed: ${p.lastError ?? 'restarting'}` })
      }
      if (p.inSync) {
        for (const r of p.replicas || []) {
          if (!p.inSync.includes(r))
            out.push({ level: 'warn', text: `replica ${short(r)} of ${name} is not in sync` })
        }
      }
    }
  }
  return out.sort((a, b) => (a.level === b.level ? 0 : a.level === 'bad' ? -1 : 1))
}

// ---------- render ----------
function renderHeader(m, snap) {
  $('node').textContent = `network ${m.s.network} · node ${short(m.s.id)}`
  $('node').title = m.s.id
  $('updated').textContent = `updated ${new Date(snap.time).toLocaleTimeString()}`
  const list = alerts(m)
  const box = $('alerts')
  if (list.length === 0) {
    const members = new Set(m.s.clusters.flatMap((c) => c.members.map((x) => x.id))).size
    box.replaceChildren(
      h('div', { class: 'alert ok' }, `All healthy: ${m.s.peers.length} peers linked, ${members} members up`),
    )
  } else {
    const shown = list.slice(0, 12).map((a) => h('div', { class: `alert ${a.level}` }, a.text))
    if (list.length > 12) shown.push(h('div', { class: 'alert warn' }, `and ${list.length - 12} more`))
    box.replaceChildren(...shown)
  }
  document.body.dataset.alerts = String(list.length)
}

function renderNetwork(m) {
  drawMap($('map'), { self: m.s.id, nodes: m.nodes })
  const down = m.nodes.filter((n) => n.state === 'down').length
  $('network-summary').textContent = `${m.s.peers.length} linked${down ? `, ${down} down` : ''}`
  const rows = m.s.peers
    .slice(0, MAX_ROWS)
    .map((p) =>
      h(
        'tr',
        { 'data-peer': p.id },
        h('td', {}, idCell(p.id, m.s.id)),
        h('td', {}, p.latencyMs == null ? '–' : `${p.latencyMs.toFixed(1)} ms`),
        h('td', {}, cipher(p.encryption)),
        h('td', { class: 'mono muted', title: p.addresses.join('\n') }, p.addresses[0] ?? ''),
      ),
    )
  if (m.s.peers.length > MAX_ROWS) rows.push(moreRow(m.s.peers.length - MAX_ROWS, 4))
  $('links').replaceChildren(
    ...(rows.length === 0
      ? [h('p', { class: 'muted' }, 'no peer linked')]
      : [
          h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              {},
              h('tr', {}, ...['peer', 'round trip', 'encryption', 'address'].map((t) => h('th', {}, t))),
              ...rows,
            ),
          ),
        ]),
  )
}

let updates = 0
let lastEvent = 0
function render(snap) {
  lastEvent = Date.now()
  setLive('live', 'live')
  const m = model(snap)
  renderHeader(m, snap)
  renderNetwork(m)
  renderClusters(m)
  renderStreams(m)
  renderRates(snap)
  document.body.dataset.updates = String(++updates)
}

function setLive(state, text) {
  const b = $('live')
  b.dataset.state = state
  b.textContent = text
}

setupCharts()
new ResizeObserver(() => {
  for (const [name, c] of Object.entries(charts)) {
    const box = document.querySelector(`[data-rate="${name}"] .chart`)
    c.setSize({ width: Math.max(200, box.clientWidth), height: CHART_HEIGHT })
  }
}).observe($('rates-card'))
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', setupCharts)
const feed = new EventSource('api/events')
feed.onmessage = (e) => {
  try {
    render(JSON.parse(e.data))
  } catch (err) {
    console.error('dashboard: bad update', err)
  }
}
feed.onerror = () => setLive('down', 'node unreachable, retrying…')
setInterval(() => {
  if (lastEvent && Date.now() - lastEvent > STALE_MS) setLive('down', 'no updates')
}, 1000)
