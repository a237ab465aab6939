/**
 * The self-healing path of partition replicas (issue 19): a replica that cannot recover by
 * itself says why through the node's logger and is rebuilt from the other replicas
 * automatically, never left dead silently. Real nodes over loopback with data directories.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey, type Logger, type PlexusNode } from '../../src/index.js'
import { canRebuild, HEALTHY_MS, ReplicaSupervisor } from '../../src/streams/host/replica-supervisor.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'

const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  await Promise.all(mine.splice(0).map((n) => n.stop()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** A logger that keeps every line. */
function memoryLogger(): Logger & {
  lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }>
} {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = []
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => {
    lines.push({ level, msg, fields })
  }
  return { lines, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }
}

async function publishMany(node: PlexusNode, from: number, n: number): Promise<void> {
  let next = from
  const worker = async () => {
    while (next < from + n) {
      const i = next++
      await node.publish('heal.x', `m${i}:${'x'.repeat(1000)}`, { ack: 'all' })
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker))
}

const hosted = (node: PlexusNode) => node.status().streams.find((s) => s.name === 'heal')?.hosted[0]

describe('ReplicaSupervisor (pure)', () => {
  it('restarts with a doubling backoff, rebuilds after 3 failures in a row or on corruption', () => {
    const s = new ReplicaSupervisor()
    s.started(0)
    expect(s.failed(10, 'E: a', false, true)).toEqual({ action: 'restart', delayMs: 500, failures: 1 })
    s.started(600)
    expect(s.failed(700, 'E: b', false, true)).toEqual({ action: 'restart', delayMs: 1000, failures: 2 })
    s.started(1700)
    expect(s.failed(1800, 'E: c', false, true)).toMatchObject({ action: 'rebuild', failures: 3 })
    expect(s.rebuilds).toBe(1)
    // A minute of running resets the count.
    s.started(10_000)
    expect(s.failed(10_000 + HEALTHY_MS, 'E: d', false, true)).toMatchObject({
      action: 'restart',
      failures: 1,
    })
    // Corrupt state: rebuilt at once, unless a rebuild is not allowed now.
    expect(new ReplicaSupervisor().failed(0, 'C: x', true, true).action).toBe('rebuild')
    expect(new ReplicaSupervisor().failed(0, 'C: x', true, false).action).toBe('restart')
    // The backoff stops growing at 30 s.
    const t = new ReplicaSupervisor()
    let last = 0
    for (let i = 0; i < 12; i++) last = t.failed(i, 'E', false, false).delayMs
    expect(last).toBe(30_000)
  })

  it('allows a rebuild only when the other reachable replicas form a majority without it', () => {
    const up = (ids: string[]) => (p: string) => ids.includes(p)
    expect(canRebuild(['a', 'b', 'c'], 'a', up(['b', 'c']))).toBe(true)
    expect(canRebuild(['a', 'b', 'c'], 'a', up(['b']))).toBe(false)
    expect(canRebuild(['a'], 'a', up([]))).toBe(false)
    expect(canRebuild(['a', 'b', 'c', 'd', 'e'], 'a', up(['b', 'c']))).toBe(false)
    expect(canRebuild(['a', 'b', 'c', 'd', 'e'], 'a', up(['b', 'c', 'd']))).toBe(true)
  })
})

describe('self-healing stream replicas on real nodes', () => {
  it('a replica whose raft state is corrupt on disk is logged, rebuilt from the others and serves again', {
    timeout: 60_000,
  }, async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-heal-'))
    dirs.push(root)
    const network = uniqueNetwork()
    const key = generateKey()
    const options = { network, streams: { raftLogBytes: 64 * 1024 } }
    const members = await Promise.all(
      [0, 1, 2].map((i) => startNode({ ...options, dataDir: join(root, `m${i}`) })),
    )
    mine.push(...members)
    for (const m of members) await m.join('db', { key })
    const outside = await startNode({ network, credentials: { clusterKeys: { db: key } } })
    mine.push(outside)
    await waitForMembers(outside, 'db', 3, 10_000)
    await outside.streams.create('heal', { cluster: 'db', subject: 'heal.>', replicas: 3 })
    await publishMany(outside, 0, 300)

    const leader = (await outside.streams.info('heal')).partitions[0]!.leader
    const i = members.findIndex((m) => m.id !== leader)
    const victim = members[i]!
    await victim.stop()
    mine.splice(mine.indexOf(victim), 1)
    // Its raft hard state becomes garbage: the replica cannot be opened any more.
    const sdir = join(root, `m${i}`, 'streams', 'db', 's')
    const [streamDir] = await readdir(sdir)
    await writeFile(join(sdir, streamDir!, '0', 'raft', 'hardstate'), 'not a state file')
    await publishMany(outside, 300, 100) // the other two go on meanwhile

    const logger = memoryLogger()
    const back = await startNode({ ...options, dataDir: join(root, `m${i}`), logger })
    mine.push(back)
    expect(back.id).toBe(victim.id)
    await back.join('db', { key })
    await waitFor(
      () => {
        const h = hosted(back)
        return h !== undefined && h.health === 'running' && h.rebuilds === 1 && h.nextOffset === 400
      },
      30_000,
      'the rebuilt replica holding all 400 messages',
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}; hosted ${JSON.stringify(hosted(back))}; log ${JSON.stringify(logger.lines)}`,
      )
    })
    const failure = logger.lines.find((l) => l.level === 'error')
    expect(failure?.msg).toMatch(/rebuilding it from the other replicas/)
    expect(failure?.fields).toMatchObject({ stream: 'heal', partition: 0, next: 'rebuild' })
    expect(String(failure?.fields.err)).toMatch(/^CorruptReplicaStateError: /)
    expect(hosted(back)!.lastError).toMatch(/^CorruptReplicaStateError: /)
    expect(back.status().counters['streams.replicaErrors']).toBe(1)

    // It is a full replica again: in sync, and publishing goes on with it.
    await publishMany(outside, 400, 50)
    await waitFor(() => hosted(back)?.nextOffset === 450, 10_000, 'the rebuilt replica following')
    const info = (await outside.streams.info('heal')).partitions[0]!
    expect(info.inSync).toContain(back.id)
  })
})
