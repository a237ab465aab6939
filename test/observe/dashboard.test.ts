/**
 * The dashboard's HTTP handler (src/observe/dashboard.ts) on a plain node:http server: its
 * routes and only those, the static files (uPlot included, no path outside the list), the
 * JSON snapshot, the live feed (first event at once, rates from counter deltas, the timer only
 * while a page listens, the client bound, close), bad options; and the counters the rates
 * come from moving on real nodes.
 */
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, type NodeStatus } from '../../src/index.js'
import { createDashboard, type Dashboard, type DashboardSnapshot } from '../../src/observe/dashboard.js'
import { startJoinedNodes, startNode, waitFor } from '../helpers/nodes.js'

const servers: Server[] = []
const dashboards: Dashboard[] = []
afterEach(() => {
  for (const d of dashboards.splice(0)) d.close()
  for (const s of servers.splice(0)) s.close()
})

/** A status whose counters grow by `step` at each call. */
function fakeNode(step = 10): { status(): NodeStatus; calls: number } {
  const f = {
    calls: 0,
    status(): NodeStatus {
      const n = ++f.calls * step
      return {
        id: 'self',
        network: 'n',
        addresses: [],
        peers: [],
        clusters: [],
        counters: { 'requests.sent': n, 'pubsub.published': 2 * n, 'links.bytesSent': 100 * n },
        streams: [],
      }
    },
  }
  return f
}

async function serve(d: Dashboard): Promise<string> {
  dashboards.push(d)
  const server = createServer((req, res) => {
    if (!d.handle(req, res)) {
      res.writeHead(418)
      res.end('not mine')
    }
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Reads `count` SSE data events from `url`, then hangs up. */
function readEvents(url: string, count: number): Promise<DashboardSnapshot[]> {
  return new Promise((resolve, reject) => {
    const got: DashboardSnapshot[] = []
    const req = httpRequest(url, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`))
      let buf = ''
      res.on('data', (c: Buffer) => {
        buf += c.toString()
        let i = buf.indexOf('\n\n')
        while (i >= 0) {
          const event = buf.slice(0, i)
          buf = buf.slice(i + 2)
          if (event.startsWith('data: ')) got.push(JSON.parse(event.slice(6)))
          if (got.length === count) {
            req.destroy()
            return resolve(got)
          }
          i = buf.indexOf('\n\n')
        }
      })
    })
    req.on('error', (e) => (got.length === count ? undefined : reject(e)))
    req.end()
  })
}

describe('dashboard handler', () => {
  it('serves the page, its files and the snapshot, and leaves other routes alone', async () => {
    const d = createDashboard(fakeNode())
    const base = await serve(d)
    const page = await fetch(`${base}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toContain('text/html')
    const html = await page.text()
    expect(html).toContain('dashboard/app.js')
    expect(html).not.toMatch(/https?:\/\//) // no CDN
    expect((await fetch(`${base}/index.html`)).status).toBe(200)
    for (const f of [
      'app.js',
      'map.js',
      'tables.js',
      'dom.js',
      'style.css',
      'uPlot.iife.min.js',
      'uPlot.min.css',
    ]) {
      const r = await fetch(`${base}/dashboard/${f}`)
      expect(r.status, f).toBe(200)
      expect((await r.arrayBuffer()).byteLength, f).toBeGreaterThan(100)
    }
    expect((await fetch(`${base}/dashboard/uPlot.iife.min.js`)).headers.get('content-type')).toContain(
      'javascript',
    )
    expect((await fetch(`${base}/dashboard/nope.js`)).status).toBe(404)
    expect((await fetch(`${base}/dashboard/..%2Fpackage.json`)).status).toBe(404)
    expect((await fetch(`${base}/dashboard/constructor`)).status).toBe(404)
    const head = await fetch(`${base}/`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
    expect((await fetch(`${base}/api/events`, { method: 'HEAD' })).status).toBe(200)
    expect(d.clients).toBe(0) // HEAD opens no feed
    // Not the dashboard's: handle() returns false and the server answers.
    expect((await fetch(`${base}/metrics`)).status).toBe(418)
    expect((await fetch(`${base}/`, { method: 'POST' })).status).toBe(418)
    const state = (await (await fetch(`${base}/api/state?x=1`)).json()) as DashboardSnapshot
    expect(state.status.id).toBe('self')
    expect(state.rates).toBeNull()
    expect(typeof state.time).toBe('number')
  })

  it('pushes a snapshot at once, then rates from counter deltas, only while a page listens', async () => {
    const node = fakeNode(10)
    const d = createDashboard(node, { intervalMs: 50 })
    const base = await serve(d)
    const calls = node.calls
    await new Promise((r) => setTimeout(r, 120))
    expect(node.calls).toBe(calls) // nobody listens: no timer
    const events = await readEvents(`${base}/api/events`, 3)
    expect(events[0]!.rates).toBeNull()
    const r = events[2]!.rates!
    // 10 requests, 20 messages and 1000 bytes per tick of about 50 ms.
    expect(r.requestsSent).toBeGreaterThan(0)
    expect(r.messagesPublished / r.requestsSent).toBeCloseTo(2, 5)
    expect(r.bytesSent / r.requestsSent).toBeCloseTo(100, 5)
    expect(r.requestsServed).toBe(0)
    await waitFor(() => d.clients === 0, 2000)
    const after = node.calls
    await new Promise((r) => setTimeout(r, 150))
    expect(node.calls).toBe(after) // the page left: the timer stopped
  })

  it('bounds the pages on the feed and ends them on close', async () => {
    const d = createDashboard(fakeNode(), { maxClients: 1, intervalMs: 1000 })
    const base = await serve(d)
    const ended = new Promise<void>((resolve, reject) => {
      httpRequest(`${base}/api/events`, (res) => {
        expect(res.headers['content-type']).toContain('text/event-stream')
        res.resume()
        res.on('end', resolve)
      })
        .on('error', reject)
        .end()
    })
    await waitFor(() => d.clients === 1, 2000)
    const second = await fetch(`${base}/api/events`)
    expect(second.status).toBe(503)
    expect(await second.text()).toContain('at most 1 dashboard pages')
    d.close()
    await ended
    expect(d.clients).toBe(0)
    expect((await fetch(`${base}/api/state`)).status).toBe(503)
    d.close() // idempotent
  })

  it('refuses bad options, naming the field', () => {
    expect(() => createDashboard(fakeNode(), { intervalMs: 0 })).toThrow(InvalidArgumentError)
    expect(() => createDashboard(fakeNode(), { intervalMs: 0 })).toThrow(/dashboard\.intervalMs/)
    expect(() => createDashboard(fakeNode(), { maxClients: 1.5 })).toThrow(/dashboard\.maxClients/)
    expect(() => createDashboard(fakeNode(), 'x' as never)).toThrow(InvalidArgumentError)
  })
})

describe("the dashboard on the node's HTTP port", () => {
  it('serves the page and a live feed that ends when the node stops', async () => {
    const node = await startNode({ http: { port: 0 } })
    const base = `http://${node.httpAddress}`
    expect(await (await fetch(`${base}/`)).text()).toContain('dashboard/app.js')
    const [first] = await readEvents(`${base}/api/events`, 1)
    expect(first!.status.id).toBe(node.id)
    // A page still connected when the node stops: its feed ends.
    let connected!: () => void
    const isConnected = new Promise<void>((r) => (connected = r))
    const ended = new Promise<string>((resolve, reject) => {
      httpRequest(`${base}/api/events`, (res) => {
        connected()
        res.resume()
        res.on('end', () => resolve('end'))
        res.on('close', () => resolve('close'))
        res.on('error', () => resolve('error'))
      })
        .on('error', reject)
        .end()
    })
    await isConnected
    await node.stop()
    expect(['end', 'close', 'error']).toContain(await ended)
  })
})

describe('the counters behind the rates', () => {
  it('move with requests, publishes and link bytes on real nodes', async () => {
    const [a, b] = await startJoinedNodes(2, 'db')
    const before = a!.status().counters
    const sub = b!.subscribe('t.>')
    await sub.ready
    await a!.flush()
    for (let i = 0; i < 20; i++) await a!.publish('t.x', `m${i}`)
    let made = 0
    for (let i = 0; i < 10; i++) {
      await a!.request('db', 'q').catch(() => {})
      made++
    }
    await waitFor(() => (b!.status().counters['pubsub.received'] ?? 0) >= 20, 5000)
    const c = a!.status().counters
    expect(c['pubsub.published']! - (before['pubsub.published'] ?? 0)).toBe(20)
    expect(c['requests.sent']! - (before['requests.sent'] ?? 0)).toBe(made)
    expect(c['links.bytesSent']!).toBeGreaterThan(before['links.bytesSent'] ?? 0)
    expect(c['links.bytesReceived']!).toBeGreaterThan(before['links.bytesReceived'] ?? 0)
    expect(b!.status().counters['pubsub.received']).toBe(20)
  })
})
