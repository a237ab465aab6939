// Plexus dashboard: small DOM helpers shared by the page's modules. Everything from the
// network goes into the page as text (textContent), never as HTML.

/** Rows per table (the rest is counted). */
export const MAX_ROWS = 50

/** The element with this id. */
export const $ = (id) => document.getElementById(id)
/** A new element: `attrs` as attributes (`class` too), children as nodes or text. */
export function h(tag, attrs, ...children) {
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
export const short = (id) => (id && id.length > 8 ? `…${id.slice(-6)}` : String(id))
/** A peer id, short, with the whole id as its tooltip. */
export const idCell = (id, self) =>
  h('span', { class: 'mono', title: id }, short(id), id === self ? ' (here)' : '')

/** The last row of a capped table. */
export function moreRow(n, columns) {
  return h('tr', {}, h('td', { colspan: columns, class: 'muted' }, `and ${n} more`))
}
