/**
 * The `http` option (src/observe/): real nodes over loopback serve /metrics, /healthz and
 * /readyz; the metric values move as the traffic made says; readiness fails while a joined
 * cluster's metadata is unreachable or a hosted partition has no leader; bad options are
 * refused naming the field; the server is gone after stop.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createNode, generateKey, InvalidArgumentError, type PlexusNode } from '../src/index.js'
import {
  startNode,
  startNodes,
  startStreamCluster,
  uniqueNetwork,
  waitFor,
  waitForMembers,
} from './helpers/nodes.js'

const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  await Promise.all(mine.splice(0).map((n) => n.stop()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** Parsed exposition text: `name{a="x",b="y"}` (labels sorted) → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`bad exposition line: ${line}`)
    const labels = m[2]
      ? [...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`)
      : []
    out.set(`${m[1]}{${labels.sort().join(',')}}`, Number(m[3]))
  }
  return out
}

/** The value of a sample (undefined when absent). */
function val(
  s: Map<string, number>,
  name: string,
  labels: Record<string, string | number> = {},
): number | undefined {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')
  return s.get(`${name}{${l}}`)
}

async function get(
  node: PlexusNode,
  path: string,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${node.httpAddress}${path}`, { method })
  return { status: res.status, body: await res.text() }
}

async function scrape(node: PlexusNode): Promise<Map<string, number>> {
  const r = await get(node, '/metrics')
  expect(r.status).toBe(200)
  return parse(r.body)
}

async function ready(
  node: PlexusNode,
): Promise<{ status: number; failing: Array<{ check: string; detail: string }> }> {
  const r = await get(node, '/readyz')
  return { status: r.status, failing: (JSON.parse(r.body) as { failing: [] }).failing }
}

describe('http option', () => {
  it('refuses bad options naming the field, and a port in use', async () => {
    const bad: Array<[unknown, RegExp]> = [
      ['yes', /^http must be false or an object/],
      [{ port: -1 }, /^http\.port must be an integer port/],
      [{ port: 1.5 }, /^http\.port/],
      [{ host: 5 }, /^http\.host must be/],
      [{ host: '' }, /^http\.host must be/],
      [{ prot: 1 }, /http.*prot/],
    ]
    for (const [http, msg] of bad) {
      const err = await createNode({ http: http as never, listen: ['/ip4/127.0.0.1/tcp/0'] }).catch((e) => e)
      expect(err).toBeInstanceOf(InvalidArgumentError)
      expect((err as Error).message).toMatch(msg)
    }
    const blocker = createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = (blocker.address() as { port: number }).port
    try {
      const err = await createNode({
        network: uniqueNetwork(),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        http: { port },
      }).catch((e) => e)
      expect((err as Error).message).toMatch(
        new RegExp(`http: port ${port} on 127\\.0\\.0\\.1 is already in use`),
      )
    } finally {
      blocker.close()
    }
    const off = await startNode({ network: uniqueNetwork() })
    expect(off.httpAddress).toBeUndefined()
  })

  it('serves the routes on 127.0.0.1 and closes on stop', async () => {
    const node = await createNode({
      network: uniqueNetwork(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      http: { port: 0 },
    })
    mine.push(node)
    expect(node.httpAddress).toMatch(/^127\.0\.0\.1:\d+$/)
    expect((await get(node, '/healthz')).status).toBe(200)
    expect(await ready(node)).toEqual({ status: 200, failing: [] })
    expect((await get(node, '/nothing')).status).toBe(404)
    const page = await get(node, '/')
    expect(page.status).toBe(200) // the dashboard, mounted through startHttp's handlers
    expect(page.body).toMatch(/<html/i)
    expect((await get(node, '/metrics', 'POST')).status).toBe(405)
    const s = await scrape(node)
    expect(val(s, 'plexus_node_info', { id: node.id, network: node.network })).toBe(1)
    // Process metrics, event-loop lag and GC included.
    expect(val(s, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(val(s, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0)
    expect([...s.keys()].some((k) => k.startsWith('process_cpu_seconds_total'))).toBe(true)
    const addr = node.httpAddress
    await node.stop()
    await expect(fetch(`http://${addr}/healthz`)).rejects.toThrow()
  })

  it('leaves nothing that keeps the process alive once the node stopped', async () => {
    // A child process (the built library): start with http, scrape with a keep-alive
    // connection left open, stop; the process must then exit on its own.
    const lib = resolve('dist/src/index.js')
    const script = `
      const { createNode } = await import(${JSON.stringify(lib)})
      const node = await createNode({ network: 'exit-${Date.now()}', listen: ['/ip4/127.0.0.1/tcp/0'], discovery: { local: false }, http: { port: 0 } })
      const res = await fetch('http://' + node.httpAddress + '/metrics', { keepalive: true })
      await res.text()
      await node.stop()
      console.log('stopped')
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)))
    clearTimeout(timer)
    expect({ code, out: out.trim(), err }).toEqual({ code: 0, out: 'stopped', err: '' })
  }, 30_000)

  it('metrics move as requests, broadcasts, publishes and tunnels say', async () => {
    const [a, b] = await startNodes(2, { http: { port: 0 } })
    const key = generateKey()
    let fail = false
    await b!.join('svc', {
      key,
      onRequest: (d) => {
        if (fail) throw new Error('refused')
        return d
      },
      onBroadcast: () => {},
      onTunnel: async (t) => {
        for await (const m of t) await t.send(m)
      },
    })
    await waitForMembers(a!, 'svc', 1)
    for (let i = 0; i < 5; i++) await a!.request('svc', `r${i}`)
    fail = true
    await expect(a!.request('svc', 'x')).rejects.toThrow('refused')
    expect(await a!.broadcast('svc', 'b1')).toBe(1)
    expect(await a!.broadcast('svc', 'b2')).toBe(1)
    const sub = b!.subscribe('news.>')
    await sub.ready
    for (let i = 0; i < 7; i++) await a!.publish('news.x', `m${i}`)
    const got: string[] = []
    for await (const m of sub) {
      got.push(new TextDecoder().decode(m.data))
      if (got.length === 7) break
    }
    const t = await a!.tunnel('svc')
    await t.send(new Uint8Array(1000))
    const it = t[Symbol.asyncIterator]()
    expect((await it.next()).value.length).toBe(1000)
    await t.close()
    // Link latency comes from heartbeats (one a second).
    await waitFor(() => a!.status().peers.some((p) => p.latencyMs !== null), 5000, 'a latency sample')

    const sa = await scrape(a!)
    const sb = await scrape(b!)
    expect(val(sa, 'plexus_requests_sent_total', { cluster: 'svc', outcome: 'ok' })).toBe(5)
    expect(val(sa, 'plexus_requests_sent_total', { cluster: 'svc', outcome: 'remote_error' })).toBe(1)
    expect(val(sa, 'plexus_request_duration_seconds_count', { cluster: 'svc' })).toBe(6)
    expect(val(sa, 'plexus_request_duration_seconds_bucket', { cluster: 'svc', le: '+Inf' })).toBe(6)
    expect(val(sa, 'plexus_request_duration_seconds_sum', { cluster: 'svc' })).toBeGreaterThan(0)
    expect(val(sb, 'plexus_requests_served_total', { cluster: 'svc', outcome: 'ok' })).toBe(5)
    expect(val(sb, 'plexus_requests_served_total', { cluster: 'svc', outcome: 'error' })).toBe(1)
    expect(val(sa, 'plexus_broadcasts_sent_total')).toBe(2)
    expect(val(sb, 'plexus_broadcasts_delivered_total')).toBe(2)
    expect(val(sa, 'plexus_pubsub_messages_published_total')).toBe(7)
    expect(val(sa, 'plexus_pubsub_messages_sent_total')).toBe(7)
    expect(val(sb, 'plexus_pubsub_messages_received_total')).toBe(7)
    expect(val(sa, 'plexus_tunnel_sent_bytes_total')).toBe(1000)
    expect(val(sb, 'plexus_tunnel_received_bytes_total')).toBe(1000)
    expect(val(sb, 'plexus_tunnel_sent_bytes_total')).toBe(1000)
    expect(val(sa, 'plexus_tunnel_received_bytes_total')).toBe(1000)
    expect(val(sa, 'plexus_links')).toBe(1)
    expect(val(sa, 'plexus_link_latency_seconds', { peer: b!.id })).toBeGreaterThan(0)
    expect(val(sa, 'plexus_link_sent_bytes_total', { peer: b!.id })).toBeGreaterThan(7 * 2 + 1000)
    expect(val(sb, 'plexus_link_received_bytes_total', { peer: a!.id })).toBeGreaterThan(7 * 2 + 1000)
    expect(val(sa, 'plexus_link_queue_bytes', { peer: b!.id })).toBe(0)
    expect(val(sa, 'plexus_cluster_members', { cluster: 'svc' })).toBe(1)
    expect(val(sa, 'plexus_cluster_members_connected', { cluster: 'svc' })).toBe(1)
    // Two nodes in one process keep separate registries.
    expect(val(sb, 'plexus_requests_sent_total', { cluster: 'svc', outcome: 'ok' })).toBeUndefined()
    expect((await ready(a!)).status).toBe(200)
  }, 30_000)

  it('streams: partition and consumer metrics, fsyncs, and readiness', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-metrics-'))
    dirs.push(root)
    const { members, key } = await startStreamCluster(root, { outside: 0, options: { http: { port: 0 } } })
    const c = await startNode({
      network: members[0]!.network,
      credentials: { clusterKeys: { db: key } },
      http: { port: 0 },
    })
    await waitForMembers(c, 'db', 3, 10_000)
    mine.push(...members, c)
    await c!.streams.create('jobs', { cluster: 'db', subject: 'jobs.>', replicas: 3, partitions: 1 })
    for (let i = 0; i < 20; i++) await c!.publish('jobs.x', `j${i}`, { ack: 'all' })
    const consumer = c!.consume('jobs', { durable: 'w' })
    const it = consumer[Symbol.asyncIterator]()
    for (let i = 0; i < 20; i++) {
      const m = (await it.next()).value
      if (i < 15) await m.ack()
    }
    const sc = await scrape(c!)
    expect(val(sc, 'plexus_consumer_unacked_messages', { stream: 'jobs', consumer: 'w' })).toBe(5)
    expect(val(sc, 'plexus_consumer_pending_messages', { stream: 'jobs', consumer: 'w' })).toBe(5)
    const p = { stream: 'jobs', partition: 0 }
    // Every replica applied the 20 messages and knows the leader (a leadership hand-back to
    // the preferred replica may be under way right after the create: wait it out).
    let scrapes: Array<Map<string, number>> = []
    await waitFor(
      async () => {
        scrapes = await Promise.all(members.map((m) => scrape(m)))
        const leaders = scrapes.reduce((n, s) => n + (val(s, 'plexus_partition_leader', p) ?? 0), 0)
        return (
          leaders === 1 &&
          scrapes.every(
            (s) =>
              val(s, 'plexus_partition_log_messages', p) === 20 &&
              val(s, 'plexus_partition_has_leader', p) === 1,
          )
        )
      },
      10_000,
      'one leader known to all, 20 messages on every replica',
    )
    for (const s of scrapes) {
      expect(val(s, 'plexus_partition_commit_index', p)).toBeGreaterThanOrEqual(20)
      expect(val(s, 'plexus_partition_applied_index', p)).toBeGreaterThanOrEqual(20)
      expect(val(s, 'plexus_partition_raft_term', p)).toBeGreaterThanOrEqual(1)
      expect(val(s, 'plexus_partition_log_bytes', p)).toBeGreaterThan(0)
      expect(val(s, 'plexus_partition_follower_lag_entries', p)).toBeGreaterThanOrEqual(0)
      expect(val(s, 'plexus_log_fsync_duration_seconds_count')).toBeGreaterThanOrEqual(20)
    }
    for (const m of members)
      await waitFor(async () => (await ready(m)).status === 200, 10_000, 'member ready')
    await waitFor(async () => (await ready(c)).status === 200, 10_000, 'the outside node ready')
    consumer.close()
    // Two of three replicas gone: the last one has no leader, and readiness says so.
    const [m0, m1, m2] = members
    await Promise.all([m1!.stop(), m2!.stop()])
    await waitFor(
      async () => (await ready(m0!)).failing.some((f) => f.check === 'partitions'),
      10_000,
      'leaderless partition',
    )
    const r = await ready(m0!)
    expect(r.status).toBe(503)
    expect(r.failing.find((f) => f.check === 'partitions')!.detail).toMatch(/^jobs\/0: no leader for \d+ ms$/)
  }, 60_000)

  it("readiness waits for a joined cluster's metadata", async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-metrics-'))
    dirs.push(root)
    const node = await startNode({ network: uniqueNetwork(), dataDir: join(root, 'a'), http: { port: 0 } })
    await node.join('db', { key: generateKey() })
    const before = await ready(node)
    expect(before.status).toBe(503)
    expect(before.failing).toEqual([{ check: 'metadata', detail: 'db: metadata group has no leader' }])
    await waitFor(async () => (await ready(node)).status === 200, 15_000, 'metadata leader')
  }, 30_000)
})
