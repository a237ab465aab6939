/**
 * Queue groups (issue 16): `subscribe(p, { queue })` hands each message to exactly one
 * member of the group network-wide, while plain subscribers all get it. Real nodes over
 * loopback; publishers and topics drawn from a seeded PRNG (seed printed).
 */
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, type Message, type PlexusNode } from '../src/index.js'
import {
  InterestMode,
  type PublishQueues,
  readInterest,
  readPublishRest,
  writeInterest,
  writePublish,
} from '../src/pubsub/frames.js'
import { BinaryReader, BinaryWriter } from '../src/util/binary.js'
import { startNodes, waitFor } from './helpers/nodes.js'
import { mulberry32, testSeed } from './helpers/rng.js'

async function linked(nodes: PlexusNode[]): Promise<void> {
  await waitFor(() => nodes.every((n) => n.status().peers.length >= nodes.length - 1), 10_000, 'links')
}

/** Message ids (the payload) each receiver got. */
function recorder(): { ids: number[]; on: (m: Message) => void } {
  const ids: number[] = []
  return { ids, on: (m) => void ids.push(Number(m.string())) }
}

/** Every id in 0..n-1 exactly once over all `lists`. */
function exactlyOnce(lists: number[][], n: number): void {
  const seen = new Map<number, number>()
  for (const l of lists) for (const id of l) seen.set(id, (seen.get(id) ?? 0) + 1)
  expect(seen.size).toBe(n)
  for (const [, c] of seen) expect(c).toBe(1)
}

describe('queue groups', () => {
  it('each message reaches one member of each group, evenly; plain subscribers get all', async () => {
    const seed = testSeed()
    console.log(`queue groups: seed ${seed} (TEST_SEED to replay)`)
    const rand = mulberry32(seed)
    const nodes = await startNodes(3)
    await linked(nodes)
    const workers = nodes.map(() => recorder())
    const subs = nodes.map((n, i) => n.subscribe('jobs.>', workers[i]!.on, { queue: 'workers' }))
    // A second group on another pattern matching the same topics: its own copy of each.
    const audit = [recorder(), recorder()]
    subs.push(nodes[1]!.subscribe('jobs.*.*', audit[0]!.on, { queue: 'audit' }))
    subs.push(nodes[2]!.subscribe('jobs.>', audit[1]!.on, { queue: 'audit' }))
    const plain = recorder()
    subs.push(nodes[0]!.subscribe('jobs.>', plain.on))
    expect(subs[0]!.queue).toBe('workers')
    expect(subs.at(-1)!.queue).toBeUndefined()
    await Promise.all(subs.map((s) => s.ready))

    const N = 900
    for (let i = 0; i < N; i++) {
      const pub = nodes[Math.floor(rand() * 3)]!
      await pub.publish(`jobs.${Math.floor(rand() * 4)}.x`, String(i))
    }
    await waitFor(
      () =>
        plain.ids.length === N &&
        workers.reduce((s, w) => s + w.ids.length, 0) === N &&
        audit.reduce((s, w) => s + w.ids.length, 0) === N,
      10_000,
      'deliveries',
    )
    exactlyOnce(
      workers.map((w) => w.ids),
      N,
    )
    exactlyOnce(
      audit.map((w) => w.ids),
      N,
    )
    expect(new Set(plain.ids).size).toBe(N)
    // Every publisher takes the members in turn (skipping only crowded links, rare at this
    // rate): each member gets about N/3. Bound: at least half its fair share, which an
    // uneven pick (say, always the local member) fails.
    const split = workers.map((w) => w.ids.length)
    console.log(`split of ${N} messages over 3 members: ${split.join(' / ')}`)
    for (const n of split) expect(n).toBeGreaterThanOrEqual(N / 6)
    for (const a of audit) expect(a.ids.length).toBeGreaterThanOrEqual(N / 4)
  }, 30_000)

  it('a member that unsubscribes or stops gets nothing afterwards; the others get everything', async () => {
    const nodes = await startNodes(3)
    await linked(nodes)
    const [a, b, c] = nodes as [PlexusNode, PlexusNode, PlexusNode]
    const got = nodes.map(() => recorder())
    const subs = nodes.map((n, i) => n.subscribe('tasks.*', got[i]!.on, { queue: 'q' }))
    // An iterator member too (on a), beside a's handler member.
    const iter = a.subscribe('tasks.*', { queue: 'q' })
    const iterIds: number[] = []
    void (async () => {
      for await (const m of iter) iterIds.push(Number(m.string()))
    })()
    await Promise.all([...subs, iter].map((s) => s.ready))

    // c leaves: after its flush (peers applied the removal) nothing more reaches it.
    subs[2]!.unsubscribe()
    await c.flush({ timeout: 5000 })
    let next = 0
    const send = async (from: PlexusNode[], n: number) => {
      const first = next
      for (let i = 0; i < n; i++) await from[i % from.length]!.publish('tasks.t', String(next++))
      return first
    }
    const first = await send([a, b, c], 300)
    const total = () => got[0]!.ids.length + got[1]!.ids.length + iterIds.length
    await waitFor(() => total() === 300, 10_000, 'deliveries after unsubscribe')
    expect(got[2]!.ids.length).toBe(0)
    exactlyOnce([got[0]!.ids, got[1]!.ids, iterIds], 300)
    expect(Math.min(...got[0]!.ids, ...got[1]!.ids, ...iterIds)).toBe(first)
    // a's two members share a's picks in turn; b gets its own share.
    expect(iterIds.length).toBeGreaterThan(0)
    expect(got[1]!.ids.length).toBeGreaterThanOrEqual(50)

    // b stops: once a and c see its link gone, every message goes to a's members.
    const bId = b.id
    await b.stop()
    await waitFor(
      () => !a.status().peers.some((p) => p.id === bId) && !c.status().peers.some((p) => p.id === bId),
    )
    const before = got[1]!.ids.length
    await send([a, c], 200)
    await waitFor(() => total() === 500, 10_000, 'deliveries after stop')
    expect(got[1]!.ids.length).toBe(before)
    exactlyOnce([got[0]!.ids, got[1]!.ids, iterIds], 500)
    iter.unsubscribe()
  }, 30_000)

  it('refuses bad queue names and options, naming the field', async () => {
    const [a] = (await startNodes(1)) as [PlexusNode]
    const bad: unknown[] = ['', 'has space', 'a.b', 'x'.repeat(65), 5, null]
    for (const q of bad) {
      expect(() => a.subscribe('t', { queue: q as string })).toThrow(InvalidArgumentError)
      expect(() => a.subscribe('t', () => {}, { queue: q as string })).toThrow(/options\.queue/)
    }
    expect(() => a.subscribe('t', { qeueu: 'w' } as never)).toThrow(/options\.qeueu/)
    expect(() => a.subscribe('t', 'w' as never)).toThrow(InvalidArgumentError)
    expect(a.subscribe('t', { queue: 'Work_ers-1' }).queue).toBe('Work_ers-1')
  })

  it('frames: Interest without queues is the old encoding; queue tails and publish groups round-trip', () => {
    const w = new BinaryWriter(64)
    writeInterest(w, InterestMode.Add, ['a.b'])
    const plain = w.finish().slice()
    // Before queue groups: u8 mode | u16 n | str pattern (u16 length + bytes).
    expect([...plain]).toEqual([1, 0, 1, 0, 3, 97, 46, 98])
    expect(readInterest(new BinaryReader(plain))).toEqual({ mode: 1, patterns: ['a.b'], queued: [] })
    w.reset()
    writeInterest(w, InterestMode.Replace, [], [{ pattern: 'a.*', queue: 'w' }])
    expect(readInterest(new BinaryReader(w.finish().slice()))).toEqual({
      mode: 0,
      patterns: [],
      queued: [{ pattern: 'a.*', queue: 'w' }],
    })
    w.reset()
    writeInterest(w, InterestMode.Add, [], [{ pattern: 'a.*', queue: 'bad queue' }])
    expect(() => readInterest(new BinaryReader(w.finish().slice()))).toThrow(/queue/)

    w.reset()
    writePublish(w, 't', new Uint8Array([7]), undefined, { h: 'v' }, { queues: ['w', 'v'], only: true })
    const r = new BinaryReader(w.finish().slice())
    const topic = r.str('topic')
    const q: PublishQueues = { queues: [], only: false }
    const m = readPublishRest(r, topic, 'peer', 1024, q)
    expect(q).toEqual({ queues: ['w', 'v'], only: true })
    expect(m.headers).toEqual({ h: 'v' })
    expect([...m.data]).toEqual([7])
  })
})
