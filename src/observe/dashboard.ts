/**
 * The live web dashboard served on the node's HTTP port (`http` option, `plexus node
 * --http-port`): the page and its static files, a JSON snapshot of the node's view and a
 * Server-Sent Events feed pushing that snapshot with rates every second.
 *
 * Routes (GET or HEAD; anything else is left to the caller, `handle` returns false):
 * - `/`, `/index.html`: the page; `/dashboard/<file>`: its script, style sheet and uPlot
 *   (a fixed list of files, read once and kept in memory; no CDN);
 * - `/api/state`: `DashboardSnapshot` as JSON (rates as of the last feed tick, or null);
 * - `/api/events`: `text/event-stream`, one `DashboardSnapshot` per `data:` event, the first
 *   at once and then every `DASHBOARD.intervalMs`. The timer runs only while a page is
 *   connected; at most `DASHBOARD.maxClients` pages at once (503 beyond); a page that does
 *   not read is skipped while more than `DASHBOARD.maxBufferedBytes` wait for it.
 *
 * The page (`dashboard/` at the top of the repository, copied with uPlot into
 * `dist/dashboard/` by the build) draws everything from these snapshots.
 */
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DASHBOARD } from '../constants.js'
import type { NodeStatus } from '../types.js'
import { checkOptions, checkPositiveInt } from '../util/validate.js'

/** Options of `createDashboard`. */
export interface DashboardOptions {
  /** Feed interval (ms). @default DASHBOARD.intervalMs (1000) */
  intervalMs?: number
  /** Pages connected to the feed at once. @default DASHBOARD.maxClients (16) */
  maxClients?: number
  /** Folder of the page's files. @default `dist/dashboard/`, else the repository's `dashboard/` */
  assetsDir?: string
}

/** What the dashboard reads: the node's `status()`. */
export interface DashboardSource {
  status(): NodeStatus
}

/** Per-second rates computed from counter deltas between two feed ticks. */
export interface DashboardRates {
  /** Requests this node made. */
  requestsSent: number
  /** Requests this node's handlers answered. */
  requestsServed: number
  /** Pub/sub messages published from this node. */
  messagesPublished: number
  /** Pub/sub messages received from peers for subscriptions here. */
  messagesReceived: number
  /** Messages appended to the stream partitions hosted here (offsets advanced). */
  streamMessages: number
  /** Bytes written to links. */
  bytesSent: number
  /** Bytes read from links. */
  bytesReceived: number
}

/** One snapshot as `/api/state` and each feed event carry it. */
export interface DashboardSnapshot {
  /** Milliseconds since the epoch when it was taken. */
  time: number
  /** The node's `status()`. */
  status: NodeStatus
  /** Rates over the last feed interval; null before two ticks were seen. */
  rates: DashboardRates | null
}

/** A dashboard to mount on an HTTP server. */
export interface Dashboard {
  /** Serves the request when it is one of the dashboard's routes; false otherwise (untouched). */
  handle(req: IncomingMessage, res: ServerResponse): boolean
  /** Pages connected to the live feed now. */
  readonly clients: number
  /** Ends every feed and stops the timer; later requests get 503. Idempotent. */
  close(): void
}

/** The page's files: URL name → file name and content type. */
const ASSETS: Record<string, [file: string, type: string]> = {
  'index.html': ['index.html', 'text/html; charset=utf-8'],
  'app.js': ['app.js', 'text/javascript; charset=utf-8'],
  'map.js': ['map.js', 'text/javascript; charset=utf-8'],
  'tables.js': ['tables.js', 'text/javascript; charset=utf-8'],
  'dom.js': ['dom.js', 'text/javascript; charset=utf-8'],
  'style.css': ['style.css', 'text/css; charset=utf-8'],
  'uPlot.iife.min.js': ['uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
  'uPlot.min.css': ['uPlot.min.css', 'text/css; charset=utf-8'],
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'content-security-policy':
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  'cache-control': 'no-cache',
}

/** Counter totals the rates are computed from. */
type Totals = Record<keyof DashboardRates, number>

function totals(s: NodeStatus): Totals {
  const c = s.counters
  let offsets = 0
  for (const st of s.streams) for (const h of st.hosted) offsets += h.nextOffset
  return {
    requestsSent: c['requests.sent'] ?? 0,
    requestsServed: c['requests.served'] ?? 0,
    messagesPublished: c['pubsub.published'] ?? 0,
    messagesReceived: c['pubsub.received'] ?? 0,
    streamMessages: offsets,
    bytesSent: c['links.bytesSent'] ?? 0,
    bytesReceived: c['links.bytesReceived'] ?? 0,
  }
}

/**
 * Folders the page's files are looked for in, in order: next to the compiled module
 * (`dist/dashboard/`, filled by the build), else the sources (`dashboard/` at the top of the
 * repository, when run from source or built by `tsc` alone).
 */
function defaultAssetsDirs(): string[] {
  return ['../../dashboard/', '../../../dashboard/'].map((d) => fileURLToPath(new URL(d, import.meta.url)))
}

/**
 * The dashboard of `node`, to mount on an HTTP server (`handle` in its request listener).
 * Nothing runs until a page connects to the feed.
 */
export function createDashboard(node: DashboardSource, options: DashboardOptions = {}): Dashboard {
  checkOptions<DashboardOptions>(options, 'dashboard options')
  const intervalMs = checkPositiveInt(options.intervalMs, 'dashboard.intervalMs') ?? DASHBOARD.intervalMs
  const maxClients = checkPositiveInt(options.maxClients, 'dashboard.maxClients') ?? DASHBOARD.maxClients
  const dirs = options.assetsDir !== undefined ? [options.assetsDir] : defaultAssetsDirs()
  const files = new Map<string, Buffer>()
  const clients = new Set<ServerResponse>()
  let timer: NodeJS.Timeout | undefined
  let last: { time: number; totals: Totals } | undefined
  let rates: DashboardRates | null = null
  let closed = false

  const asset = (name: string): Buffer | undefined => {
    let body = files.get(name)
    if (body) return body
    const file = ASSETS[name]![0]
    const paths = dirs.map((d) => join(d, file))
    // uPlot is copied by the build only; otherwise it is read from its package.
    if (file.startsWith('uPlot')) paths.push(`uplot/dist/${file}`)
    for (const path of paths) {
      try {
        body = readFileSync(path.startsWith('uplot/') ? createRequire(import.meta.url).resolve(path) : path)
        break
      } catch {
        // not there: the next place
      }
    }
    if (body === undefined) return undefined
    files.set(name, body)
    return body
  }

  const snapshot = (): DashboardSnapshot => ({ time: Date.now(), status: node.status(), rates })

  /** Takes a snapshot, updates the rates from the previous tick, sends it to every page. */
  const tick = (): void => {
    const snap = snapshot()
    const now = totals(snap.status)
    if (last !== undefined && snap.time > last.time) {
      const seconds = (snap.time - last.time) / 1000
      const r = {} as DashboardRates
      for (const k of Object.keys(now) as Array<keyof DashboardRates>) {
        // A counter that went down (a replica restarted from scratch) counts as no traffic.
        r[k] = Math.max(0, now[k] - last.totals[k]) / seconds
      }
      rates = r
      snap.rates = r
    }
    last = { time: snap.time, totals: now }
    const event = `data: ${JSON.stringify(snap)}\n\n`
    for (const res of clients) if (res.writableLength <= DASHBOARD.maxBufferedBytes) res.write(event)
  }

  const drop = (res: ServerResponse): void => {
    if (!clients.delete(res)) return
    if (clients.size === 0 && timer !== undefined) {
      clearInterval(timer)
      timer = undefined
      last = undefined // a later page starts a fresh baseline
    }
  }

  const events = (req: IncomingMessage, res: ServerResponse): void => {
    if (clients.size >= maxClients) {
      unavailable(res, `at most ${maxClients} dashboard pages at once`)
      return
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
    })
    res.write(`retry: ${Math.max(1000, intervalMs)}\n\n`)
    clients.add(res)
    req.on('close', () => drop(res))
    res.on('close', () => drop(res))
    res.on('error', () => drop(res))
    if (timer === undefined) {
      timer = setInterval(tick, intervalMs)
      timer.unref()
      tick()
    } else {
      res.write(`data: ${JSON.stringify(snapshot())}\n\n`)
    }
  }

  const send = (req: IncomingMessage, res: ServerResponse, type: string, body: Buffer | string): void => {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': type,
      'content-length': Buffer.byteLength(body),
    })
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  return {
    handle(req, res) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return false
      const path = (req.url ?? '/').split('?', 1)[0]!
      let name: string | undefined
      if (path === '/' || path === '/index.html') name = 'index.html'
      else if (path.startsWith('/dashboard/')) name = path.slice('/dashboard/'.length)
      else if (path !== '/api/state' && path !== '/api/events') return false
      if (closed) {
        unavailable(res, 'the node is stopping')
        return true
      }
      if (path === '/api/events' && req.method === 'HEAD') {
        res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8' })
        res.end()
      } else if (path === '/api/events') events(req, res)
      else if (path === '/api/state')
        send(req, res, 'application/json; charset=utf-8', JSON.stringify(snapshot()))
      else {
        const body = name !== undefined && Object.hasOwn(ASSETS, name) ? asset(name) : undefined
        if (body === undefined) {
          res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
          res.end(`not found: ${path}\n`)
        } else send(req, res, ASSETS[name!]![1], body)
      }
      return true
    },
    get clients() {
      return clients.size
    },
    close() {
      if (closed) return
      closed = true
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      for (const res of [...clients]) res.end()
      clients.clear()
    },
  }
}

function unavailable(res: ServerResponse, why: string): void {
  res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '5' })
  res.end(`${why}\n`)
}
