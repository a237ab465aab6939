/**
 * The library's log (issue 14, docs/logging.md): nodes given a pino-compatible logger tell
 * their story with the right fields — links up and down, members joining and leaving,
 * streams created and deleted, partition leaders — and the helpers behind it (child loggers,
 * rate limits) behave. Real nodes over loopback with data directories.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FSYNC_STALL_MS } from '../src/constants.js'
import { generateKey, type Logger } from '../src/index.js'
import { logObserverFor } from '../src/log/observers.js'
import { childLogger, RateLimitedLog } from '../src/util/logger.js'
import { startNode, stopStartedNodes, uniqueNetwork, waitFor, waitForMembers } from './helpers/nodes.js'

/** One captured record: level, message and every field (bindings of child loggers included). */
interface Rec {
  level: string
  msg: string
  [field: string]: unknown
}

/** A pino-compatible logger keeping its records in memory (with `child`, as pino has). */
function memoryLogger(
  records: Rec[] = [],
  bindings: Record<string, unknown> = {},
): Logger & { records: Rec[] } {
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => {
    records.push({ ...bindings, ...fields, level, msg })
  }
  return {
    records,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => memoryLogger(records, { ...bindings, ...more }),
  }
}

const dirs: string[] = []
afterEach(async () => {
  await stopStartedNodes() // before their directories go
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

const find = (recs: Rec[], msg: string, match: Record<string, unknown> = {}) =>
  recs.filter((r) => r.msg === msg && Object.entries(match).every(([k, v]) => r[k] === v))

describe('node log', () => {
  it('links, members, streams and leaders appear with their fields', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-logs-'))
    dirs.push(root)
    const network = uniqueNetwork('logs')
    const key = generateKey()
    const logs = [memoryLogger(), memoryLogger(), memoryLogger()]
    const nodes = await Promise.all(
      logs.map((logger, i) => startNode({ network, dataDir: join(root, `m${i}`), logger })),
    )
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    for (const n of nodes) await n.join('db', { key })
    for (const n of nodes) await waitForMembers(n, 'db', 3, 15_000)

    // Start: peer id, network, data directory.
    const started = find(logs[0]!.records, 'node started')
    expect(started).toHaveLength(1)
    expect(started[0]).toMatchObject({ component: 'node', peer: a.id, network, dataDir: join(root, 'm0') })

    // Links up with each peer, members joined per cluster (ourselves included).
    await waitFor(() => find(logs[0]!.records, 'link up').length >= 2, 10_000, 'links up on a')
    expect(new Set(find(logs[0]!.records, 'link up').map((r) => r.peer))).toEqual(new Set([b.id, c.id]))
    expect(find(logs[0]!.records, 'link up')[0]).toMatchObject({ component: 'link', level: 'info' })
    const joined = find(logs[0]!.records, 'member joined', { cluster: 'db' })
    expect(new Set(joined.map((r) => r.peer))).toEqual(new Set([a.id, b.id, c.id]))
    expect(joined.find((r) => r.peer === a.id)).toMatchObject({ component: 'membership', self: true })

    // A stream: created (once, on the metadata leader), a partition leader on every replica.
    await a.streams.create('orders', { cluster: 'db', subject: 'orders.>', partitions: 1, replicas: 3 })
    const all = () => logs.flatMap((l) => l.records)
    const created = find(all(), 'stream created', { stream: 'orders' })
    expect(created).toHaveLength(1)
    expect(created[0]).toMatchObject({
      component: 'streams',
      cluster: 'db',
      subject: 'orders.>',
      partitions: 1,
      replicas: 3,
    })
    for (const l of logs)
      await waitFor(
        () => find(l.records, 'partition leader changed', { stream: 'orders', partition: 0 }).length > 0,
        10_000,
        'a partition leader logged on every replica',
      )
    const leaders = logs.map((l) => find(l.records, 'partition leader changed', { stream: 'orders' }).at(-1)!)
    expect(new Set(leaders.map((r) => r.leader)).size).toBe(1)
    expect(leaders[0]).toMatchObject({ cluster: 'db', term: expect.any(Number) })

    // c leaves and stops: the others log the member leaving and the link down with c.
    await c.stop()
    for (const l of logs.slice(0, 2)) {
      await waitFor(() => find(l.records, 'link down', { peer: c.id }).length > 0, 10_000, 'link down')
      expect(find(l.records, 'member left', { cluster: 'db', peer: c.id })).toHaveLength(1)
      expect(find(l.records, 'link down', { peer: c.id })[0]).toMatchObject({
        component: 'link',
        reason: expect.any(String),
        upMs: expect.any(Number),
      })
    }
    expect(find(logs[2]!.records, 'node stopped')).toHaveLength(1)

    // Deleted after c stopped: once, with its cluster. c left the metadata group as it stopped
    // (meta-group.ts, "Leaving"), so a and b have a leader whatever c was.
    await a.streams.delete('orders')
    const deleted = find(all(), 'stream deleted', { stream: 'orders' })
    expect(deleted).toHaveLength(1)
    expect(deleted[0]).toMatchObject({ component: 'streams', cluster: 'db' })

    // Nothing logged at error level along the way.
    expect(all().filter((r) => r.level === 'error')).toEqual([])
  }, 60_000)
})

describe('fsync stalls', () => {
  it('a synced write slower than FSYNC_STALL_MS is logged, at most once per interval', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-logs-'))
    dirs.push(root)
    const logger = memoryLogger()
    await startNode({ network: uniqueNetwork('logs'), dataDir: root, logger })
    // Every commit log under the data directory reports its synced writes to this observer.
    const observer = logObserverFor(join(root, 'streams', 'db', 'meta'))!
    observer.synced((FSYNC_STALL_MS - 1) / 1000)
    observer.synced(2.5)
    observer.synced(3)
    const stalls = find(logger.records, 'fsync stall: a synced write was slow')
    expect(stalls).toEqual([
      expect.objectContaining({ level: 'warn', component: 'storage', ms: 2500, dataDir: root }),
    ])
  })

  it('a failed background flush or maintenance of a commit log is logged as an error, rate-limited', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-logs-'))
    dirs.push(root)
    const logger = memoryLogger()
    await startNode({ network: uniqueNetwork('logs'), dataDir: root, logger })
    const dir = join(root, 'streams', 'db', 'meta')
    const observer = logObserverFor(dir)!
    observer.backgroundError('maintenance', dir, new Error('EIO: i/o error'))
    observer.backgroundError('maintenance', dir, new Error('EIO: i/o error'))
    observer.backgroundError('flush', dir, new Error('ENOSPC: no space left'))
    expect(find(logger.records, 'commit log background task failed')).toEqual([
      expect.objectContaining({
        level: 'error',
        component: 'storage',
        task: 'maintenance',
        dir,
        err: 'Error: EIO: i/o error',
      }),
      expect.objectContaining({
        level: 'error',
        component: 'storage',
        task: 'flush',
        dir,
        err: 'Error: ENOSPC: no space left',
      }),
    ])
  })
})

describe('log helpers', () => {
  it('childLogger adds the component field without pino (and uses child with it)', () => {
    const seen: Array<[Record<string, unknown>, string]> = []
    const plain: Logger = {
      error: () => {},
      warn: () => {},
      info: (f, m) => void seen.push([f, m]),
      debug: () => {},
    }
    childLogger(plain, 'link').info({ peer: 'p' }, 'link up')
    expect(seen).toEqual([[{ component: 'link', peer: 'p' }, 'link up']])
    const mem = memoryLogger()
    childLogger(mem, 'relay').info({ client: 1 }, 'relay client attached')
    expect(mem.records).toEqual([
      { component: 'relay', client: 1, level: 'info', msg: 'relay client attached' },
    ])
  })

  it('RateLimitedLog: one line per key per interval, then the count of those dropped', () => {
    let now = 0
    const mem = memoryLogger()
    const limited = new RateLimitedLog(mem, 1000, () => now, 2)
    for (let i = 0; i < 5; i++) limited.log('warn', 'stale', { reason: 'stale' }, 'announcement refused')
    limited.log('warn', 'signature', { reason: 'signature' }, 'announcement refused')
    expect(mem.records.map((r) => r.reason)).toEqual(['stale', 'signature'])
    now = 1000
    limited.log('warn', 'stale', { reason: 'stale' }, 'announcement refused')
    expect(mem.records.at(-1)).toMatchObject({ reason: 'stale', suppressed: 4 })
    // Bounded: a third key forgets the oldest, which then logs again at once.
    const small = memoryLogger()
    const two = new RateLimitedLog(small, 1000, () => now, 2)
    for (const k of ['a', 'b', 'c', 'a', 'c']) two.log('warn', k, { k }, 'refused')
    expect(small.records.map((r) => r.k)).toEqual(['a', 'b', 'c', 'a'])
  })
})
