// Plexus dashboard: the clusters and streams tables (members, partitions with leader,
// replicas and in-sync set, durable consumers' lag), drawn from one snapshot's model.
import { $, h, idCell, MAX_ROWS, moreRow, short } from './dom.js'

/** Streams drawn (the rest is counted). */
const MAX_STREAMS = 20

/** The link's noise cipher, for humans. */
export function cipher(protocol) {
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

export function renderClusters(m) {
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

export function renderStreams(m) {
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
