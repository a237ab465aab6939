// Plexus dashboard: reads the node's live feed (/api/events, one snapshot a second, see
// src/observe/dashboard.ts) and draws the network, clusters, streams and rates. Everything
// from the network is put in the page as text (textContent), never as HTML.
import { drawMap } from './map.js'

const HISTORY = 120 // chart points (seconds)
const GONE_MS = 10 * 60_000 // how long a node no longer known stays on the map
const STALE_MS = 5000 // no update for this long: the feed is shown as down
const MAX_ROWS = 50 // rows per table (the rest is counted)
const MAX_STREAMS = 20 // streams drawn (the rest is counted)
const CHART_HEIGHT = 90 // px

const $ = (id) => document.getElementById(id)
function h(tag, attrs, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') e.className = v
    else e.setAttribute(k, String(v))
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue
    e.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return e
}
/** Peer ids are long: the last 6 characters tell nodes apart on one screen. */
const short = (id) => (id && id.length > 8 ? `…${id.slice(-6)}` : String(id))
const idCell = (id, self) => h('span', { class: 'mono', title: id }, short(id), id === self ? ' (here)' : '')

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

/** The last row of a capped table. */
function moreRow(n, columns) {
  return h('tr', {}, h('td', { colspan: columns, class: 'muted' }, `and ${n} more`))
}

/** The link's noise cipher, for humans. */
function cipher(protocol) {
  if (!protocol) return '–'
  if (protocol.includes('aes256gcm')) return 'noise AES-256-GCM'
  if (protocol === '/noise') return 'noise ChaCha20-Poly1305'
  return protocol
}

/** Durable consumers of a stream with their lag on the partitions hosted here. */
function consumersTable(st, byPartition) {
  if (!st.consumers || st.consumers.length === 0) return null
  const rows = st.consumers.slice(0, MAX_ROWS).map((c) => {
    let lag = 0
    let known = 0
    for (const pos of c.positions) {
      const p = byPartition.get(pos.partition)
      if (!p) continue
      lag += Math.max(0, p.nextOffset - pos.offset)
      known++
    }
    return h(
      'tr',
      { 'data-consumer': c.name, 'data-lag': known ? lag : '' },
      h('td', {}, c.name),
      h('td', {}, c.positions.map((pos) => `${pos.partition}:${pos.offset}`).join('  ') || '–'),
      h('td', {}, known ? String(lag) : '–'),
    )
  })
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'consumers' },
      h(
        'tr',
        {},
        ...['durable consumer', 'acknowledged up to (partition:offset)', 'lag (here)'].map((t) =>
          h('th', {}, t),
        ),
      ),
      ...rows,
    ),
  )
}

const roleNames = (r) => ['request', 'broadcast', 'tunnel', 'storage'].filter((k) => r[k]).join(' ') || 'none'

function renderClusters(m) {
  if (m.s.clusters.length === 0) {
    $('clusters').replaceChildren(h('p', { class: 'muted' }, 'no cluster known yet'))
    return
  }
  const parts = m.s.clusters.map((c) => {
    const down = c.members.filter((x) => !x.connected).length
    // Down members first, so a capped table still shows every incident it can.
    const shown = [...c.members].sort((a, b) => Number(a.connected) - Number(b.connected)).slice(0, MAX_ROWS)
    const rows = shown.map((mem) => {
      const state = mem.connected ? 'up' : 'down'
      return h(
        'tr',
        { class: state, 'data-member': mem.id, 'data-cluster': c.name, 'data-state': state },
        h('td', {}, idCell(mem.id, m.s.id)),
        h('td', {}, h('span', { class: `state ${state}` }, state)),
        h('td', { class: 'roles' }, roleNames(mem.roles)),
        h('td', {}, mem.latencyMs == null ? '–' : `${mem.latencyMs.toFixed(1)} ms`),
        h('td', {}, String(mem.outstanding)),
      )
    })
    if (c.members.length > shown.length) rows.push(moreRow(c.members.length - shown.length, 5))
    return h(
      'div',
      { 'data-cluster-card': c.name },
      h(
        'h3',
        {},
        c.name,
        h('span', { class: 'muted' }, ` · ${c.members.length} members${c.joined ? ' · joined here' : ''}`),
        down ? h('span', { class: 'state bad' }, ` · ${down} down`) : null,
      ),
      h(
        'table',
        {},
        h('tr', {}, ...['member', 'state', 'roles', 'latency', 'outstanding'].map((t) => h('th', {}, t))),
        ...rows,
      ),
    )
  })
  $('clusters').replaceChildren(...parts)
}

function renderStreams(m) {
  if (m.s.streams.length === 0) {
    $('streams').replaceChildren(h('p', { class: 'muted' }, 'no stream known yet'))
    return
  }
  const parts = m.s.streams.slice(0, MAX_STREAMS).map((st) => {
    const byPartition = new Map(st.hosted.map((p) => [p.partition, p]))
    const rows = []
    let hidden = 0
    for (let i = 0; i < st.partitions; i++) {
      const p = byPartition.get(i)
      // Past MAX_ROWS only partitions in trouble here get a row; the rest are counted.
      if (rows.length >= MAX_ROWS && (!p || (p.leader !== null && p.health !== 'failed'))) {
        hidden++
        continue
      }
      if (!p) {
        rows.push(
          h(
            'tr',
            { 'data-stream': st.name, 'data-partition': i, 'data-state': 'remote' },
            h('td', {}, String(i)),
            h('td', { colspan: 5, class: 'muted' }, 'not hosted on this node'),
          ),
        )
        continue
      }
      const lagging = (p.inSync ? (p.replicas || []).filter((r) => !p.inSync.includes(r)) : []).length
      // A leader this node has no link to is as good as none until a new one is elected.
      const state =
        p.leader === null || !m.up(p.leader)
          ? 'noleader'
          : p.health === 'failed' || lagging
            ? 'degraded'
            : 'ok'
      const chips = (p.replicas || []).map((r) => {
        const cls = !m.up(r) ? 'down' : p.inSync ? (p.inSync.includes(r) ? 'isr' : 'lag') : ''
        const title = `${r}${r === p.leader ? ' (leader)' : ''}${cls === 'down' ? ' (down)' : cls === 'lag' ? ' (not in sync)' : ''}`
        return h('span', { class: `chip mono ${cls} ${r === p.leader ? 'leader' : ''}`, title }, short(r))
      })
      rows.push(
        h(
          'tr',
          { class: state, 'data-stream': st.name, 'data-partition': i, 'data-state': state },
          h('td', {}, String(i)),
          h(
            'td',
            {},
            p.leader === null
              ? h('span', { class: 'state bad' }, 'no leader')
              : m.up(p.leader)
                ? idCell(p.leader, m.s.id)
                : h('span', { class: 'state bad' }, idCell(p.leader, m.s.id), ' down'),
          ),
          h('td', {}, chips),
          h(
            'td',
            {},
            p.inSync
              ? `${p.inSync.length}/${(p.replicas || []).length}`
              : h('span', { class: 'muted', title: 'only the leader knows the in-sync set' }, '–'),
          ),
          h('td', {}, String(p.nextOffset)),
          h(
            'td',
            {},
            h(
              'span',
              {
                // Electing (candidate, preCandidate) or failed: amber; leader or follower: green.
                class: `state ${p.health === 'failed' || !['leader', 'follower'].includes(p.role) ? 'warn' : 'ok'}`,
                title: p.lastError ?? '',
              },
              p.health === 'failed' ? `${p.role}, failed` : p.role,
            ),
          ),
        ),
      )
    }
    return h(
      'div',
      { 'data-stream-card': st.name },
      h(
        'h3',
        {},
        st.name,
        h(
          'span',
          { class: 'muted' },
          ` · cluster ${st.cluster} · subject ${st.subject} · ${st.partitions} × R${st.replicas}`,
        ),
      ),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          {},
          h(
            'tr',
            {},
            ...['partition', 'leader', 'replicas', 'in sync', 'next offset', 'here'].map((t) =>
              h('th', {}, t),
            ),
          ),
          ...rows,
          hidden > 0 ? moreRow(hidden, 6) : null,
        ),
      ),
      consumersTable(st, byPartition),
    )
  })
  if (m.s.streams.length > MAX_STREAMS) {
    parts.push(h('p', { class: 'muted' }, `and ${m.s.streams.length - MAX_STREAMS} more streams`))
  }
  $('streams').replaceChildren(...parts)
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
