// Plexus dashboard: the network map, drawn as plain SVG from one node's view.
// drawMap(svg, { self, nodes: [{ id, state, label, sub, latencyMs }] }) where state is
// 'self' | 'up' (linked) | 'down' (a known member without a link) | 'gone' (seen before, now
// unknown). This node sits in the middle, the others on an ellipse around it, each with an
// edge to this node labelled with the link's round trip.
const NS = 'http://www.w3.org/2000/svg'
const W = 640
const MAX_NODES = 24

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}

/** Draws the map of `model` into `svg` (replacing what it held). */
export function drawMap(svg, model) {
  const others = model.nodes.filter((n) => n.id !== model.self)
  const shown = others.slice(0, MAX_NODES)
  // Two peers or fewer sit on one line: a flat picture leaves room for the tables below.
  const flat = shown.length <= 2
  const H = flat ? 170 : 400
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`)
  const cx = W / 2
  const cy = flat ? 70 : H / 2
  const rx = flat ? 200 : 240
  const ry = flat ? 110 : 140
  const pos = new Map()
  pos.set(model.self, { x: cx, y: cy })
  shown.forEach((n, i) => {
    const a =
      -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, shown.length) + (shown.length === 2 ? Math.PI / 2 : 0)
    pos.set(n.id, { x: cx + rx * Math.cos(a), y: cy + ry * Math.sin(a) })
  })
  const edges = el('g')
  const nodes = el('g')
  for (const n of shown) {
    const p = pos.get(n.id)
    if (n.state === 'gone') continue
    edges.append(el('line', { class: `edge ${n.state}`, x1: cx, y1: cy, x2: p.x, y2: p.y }))
    const label = n.state === 'down' ? 'no link' : n.latencyMs == null ? '' : `${fmtMs(n.latencyMs)} ms`
    if (label) {
      edges.append(
        el(
          'text',
          { class: 'edge-label', x: (cx + p.x) / 2, y: (cy + p.y) / 2 - 4, 'text-anchor': 'middle' },
          label,
        ),
      )
    }
  }
  const all = [model.nodes.find((n) => n.id === model.self), ...shown].filter(Boolean)
  for (const n of all) {
    const p = pos.get(n.id)
    const g = el('g', { class: `node ${n.state}`, 'data-node': n.id, 'data-state': n.state })
    g.append(el('title', {}, `${n.id} (${n.state})`))
    g.append(el('circle', { cx: p.x, cy: p.y, r: n.state === 'self' ? 14 : 11 }))
    const below = p.y >= cy
    const ty = below ? p.y + 28 : p.y - 30
    g.append(el('text', { x: p.x, y: ty, 'text-anchor': 'middle' }, n.label))
    if (n.sub) g.append(el('text', { class: 'sub', x: p.x, y: ty + 14, 'text-anchor': 'middle' }, n.sub))
    nodes.append(g)
  }
  if (others.length > shown.length) {
    nodes.append(el('text', { class: 'edge-label', x: 8, y: H - 8 }, `+${others.length - shown.length} more`))
  }
  svg.replaceChildren(edges, nodes)
}

function fmtMs(v) {
  return v < 10 ? v.toFixed(1) : Math.round(v).toString()
}
