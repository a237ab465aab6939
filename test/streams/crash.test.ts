/**
 * Durable streams across real process crashes: three member processes (each with its own
 * data directory) host the replicas of a one-partition, three-replica stream; the test
 * process publishes with `ack: 'all'` from a node of its own (not a member) and kills
 * members with kill -9.
 *
 * - the partition leader dies in the middle of a publish loop: publishing resumes on a new
 *   leader within seconds, and reading back finds every acknowledged message exactly once,
 *   at the offset its ack named, in ack order, offsets dense from 0; attempts that failed
 *   (outcome unknown) are there at most once;
 * - all three replicas die at once and restart on the same data directories: same messages
 *   at the same offsets, and publishing continues at the next offset;
 * - one replica is down while more messages are acknowledged by the other two, then
 *   restarts: it is back in the in-sync set and its own log reaches the leader's end.
 *
 * Members run with `streams.raftLogBytes` = 16 KiB, so raft logs are compacted every hundred
 * messages or so during all of this, and the returning replica catches up by snapshot plus a
 * copy of the partition log from the others.
 *
 * Randomness (kill point, victim, payload sizes, topics) comes from TEST_SEED; a failure
 * prints the seed and the tail of the timeline (test events and the members' output);
 * STREAM_CRASH_VERBOSE=1 prints the timeline of passing tests too.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { localDirectory } from '../../src/discovery/local.js'
import {
  generateKey,
  type PlexusNode,
  type PublishAck,
  type StreamInfo,
  type StreamMessage,
} from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { exited, spawnNode, waitForLine } from '../helpers/procs.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const FIXTURE = 'test/fixtures/stream-member.mjs'
const CLUSTER = 'db'
const STREAM = 'events'
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** One member process; `child` changes on every restart, `dir` and `id` do not. */
interface Member {
  name: string
  dir: string
  id: string
  child: ChildProcess | undefined
}

/** One publish attempt and its outcome. */
interface Attempt {
  payload: string
  topic: string
  startedAt: number
  ack?: PublishAck
  error?: string
}

/** What one test works with. */
interface Ctx {
  seed: number
  rand: () => number
  network: string
  key: string
  members: Member[]
  pub: PlexusNode
  /** Timeline: test events and every member's output, for failure reports. */
  log(line: string): void
}

const roots: string[] = []
const running: Member[] = []
const publishers: PlexusNode[] = []
const networks: string[] = []
let timeline: string[] = []

afterEach(async () => {
  // Kill what is left first (and wait for it), so no process writes into a removed directory.
  await Promise.all(
    running.splice(0).map(async (m) => {
      const c = m.child
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await exited(c)
      }
    }),
  )
  await Promise.all(publishers.splice(0).map((n) => n.stop()))
  // Data directories, and the same-host discovery records that killed processes left behind.
  for (const d of roots.splice(0)) await rm(d, { recursive: true, force: true })
  for (const n of networks.splice(0)) await rm(localDirectory(n), { recursive: true, force: true })
  timeline = []
})

/** A test with a seeded random source; on failure prints the seed and the timeline. */
function crashTest(title: string, ms: number, body: (ctx: Ctx) => Promise<void>): void {
  it(
    title,
    async () => {
      const seed = testSeed()
      const t0 = Date.now()
      const log = (line: string) => void timeline.push(`+${Date.now() - t0}ms ${line}`)
      log(`seed ${seed}`)
      try {
        await body(await setup(seed, log))
        if (process.env.STREAM_CRASH_VERBOSE) console.log(`[${title}]\n${timeline.join('\n')}`)
      } catch (err) {
        console.error(
          `[${title}] failed, TEST_SEED=${seed}\n--- timeline (last 300 lines) ---\n${timeline.slice(-300).join('\n')}`,
        )
        if (err instanceof Error) err.message = `${err.message} (TEST_SEED=${seed})`
        throw err
      }
    },
    ms,
  )
}

/** Starts (or restarts, same data directory) a member process; resolves once it joined. */
async function launch(ctx: Pick<Ctx, 'network' | 'key' | 'log'>, m: Member): Promise<void> {
  // A small raft log window: partitions compact every ~100 messages here, so every scenario
  // also crosses compactions, and a replica back from the dead catches up by snapshot + copy.
  const child = spawnNode([FIXTURE, ctx.network, CLUSTER, ctx.key, m.dir], { RAFT_LOG_BYTES: '16384' })
  m.child = child
  if (!running.includes(m)) running.push(m)
  const tag = `[${m.name} pid ${child.pid}]`
  const forward = (stream: string) => (d: Buffer) => {
    for (const line of d.toString().split('\n'))
      if (line !== '') ctx.log(`${tag} ${stream}: ${line.length > 400 ? `${line.slice(0, 400)}…` : line}`)
  }
  child.stdout?.on('data', forward('out'))
  child.stderr?.on('data', forward('err'))
  child.on('exit', (code, sig) => ctx.log(`${tag} exited (${code ?? sig})`))
  const id = (await waitForLine(child, /^ready (\S+)/, 20_000))[1]!
  if (m.id !== '' && id !== m.id) throw new Error(`${m.name} restarted as ${id}, was ${m.id} (same dataDir)`)
  m.id = id
  ctx.log(`${tag} ready as ${id}`)
}

/** kill -9, and wait until the process is gone. */
async function kill9(ctx: Ctx, m: Member): Promise<void> {
  const c = m.child!
  c.kill('SIGKILL')
  ctx.log(`[${m.name}] kill -9 sent`)
  await exited(c)
}

/** The member's own view (`node.status()`), asked over its stdin. */
async function memberStatus(m: Member): Promise<ReturnType<PlexusNode['status']>> {
  const c = m.child!
  const line = waitForLine(c, /^status (.*)$/, 5000)
  c.stdin!.write('status\n')
  return JSON.parse((await line)[1]!)
}

/** Three member processes, a publisher node outside the cluster, and the stream. */
async function setup(seed: number, log: (line: string) => void): Promise<Ctx> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-stream-crash-'))
  roots.push(root)
  const network = uniqueNetwork('scrash')
  networks.push(network)
  const key = generateKey()
  const members: Member[] = ['a', 'b', 'c'].map((name) => ({
    name,
    dir: join(root, name),
    id: '',
    child: undefined,
  }))
  const base = { network, key, log }
  await Promise.all(members.map((m) => launch(base, m)))
  const pub = await startNode({ network })
  publishers.push(pub)
  await waitForMembers(pub, CLUSTER, 3, 15_000)
  const info = await pub.streams.create(STREAM, {
    cluster: CLUSTER,
    subject: 'ev.>',
    replicas: 3,
    partitions: 1,
  })
  expect(new Set(info.partitions[0]!.replicas)).toEqual(new Set(members.map((m) => m.id)))
  const ctx: Ctx = { seed, rand: mulberry32(seed), network, key, members, pub, log }
  await settled(ctx, 3, 20_000)
  log(`stream created, leader ${nameOf(ctx, (await info0(ctx)).leader)}`)
  return ctx
}

async function info0(ctx: Ctx): Promise<StreamInfo['partitions'][number]> {
  return (await ctx.pub.streams.info(STREAM, { timeout: 3000 })).partitions[0]!
}

function nameOf(ctx: Ctx, id: string | null): string {
  return ctx.members.find((m) => m.id === id)?.name ?? String(id)
}

/** Waits until the partition has a leader and `n` in-sync replicas; returns that view. */
async function settled(ctx: Ctx, n: number, ms: number): Promise<StreamInfo['partitions'][number]> {
  let last: StreamInfo['partitions'][number] | undefined
  await waitFor(
    async () => {
      last = await info0(ctx).catch(() => undefined)
      return last !== undefined && last.leader !== null && last.inSync.length === n
    },
    ms,
    `a leader and ${n} in-sync replicas`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last info: ${JSON.stringify(last)}`)
  })
  return last!
}

/** One publish with a payload never used before (never retried: its outcome may be unknown). */
async function publishOnce(ctx: Ctx, i: number, timeout: number): Promise<Attempt> {
  const topic = `ev.${['eu', 'us', 'ap'][Math.floor(ctx.rand() * 3)]}.${i % 7}`
  const payload = `m${i}:${'x'.repeat(Math.floor(ctx.rand() * 200))}`
  const a: Attempt = { payload, topic, startedAt: Date.now() }
  try {
    a.ack = (await ctx.pub.publish(topic, payload, { ack: 'all', timeout })) as PublishAck
  } catch (err) {
    a.error = `${(err as Error).name}: ${(err as Error).message}`
  }
  return a
}

/** Publishes `n` messages that must all be acknowledged (no fault in progress). */
async function publishAcked(ctx: Ctx, from: number, n: number): Promise<Attempt[]> {
  const out: Attempt[] = []
  for (let i = from; i < from + n; i++) {
    const a = await publishOnce(ctx, i, 10_000)
    if (a.error) throw new Error(`publish m${i} failed with no fault in progress: ${a.error}`)
    out.push(a)
  }
  return out
}

/** Reads `count` messages from the start of the stream (bounded by `ms`). */
async function readFromStart(node: PlexusNode, count: number, ms: number): Promise<StreamMessage[]> {
  const got: StreamMessage[] = []
  if (count === 0) return got
  const c = node.consume(STREAM, { from: 'earliest' })
  const timer = setTimeout(() => c.close(), ms)
  try {
    for await (const m of c) {
      got.push(m)
      if (got.length >= count) break
    }
  } finally {
    clearTimeout(timer)
    c.close()
  }
  if (got.length < count) throw new Error(`read ${got.length} of ${count} messages within ${ms} ms`)
  return got
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** Acked attempts: offsets strictly increasing in ack order, stream and partition right. */
function checkAcks(acked: Attempt[]): void {
  for (const a of acked) expect(a.ack).toMatchObject({ stream: STREAM, partition: 0 })
  const offsets = acked.map((a) => a.ack!.offset)
  for (let k = 1; k < offsets.length; k++)
    if (!(offsets[k]! > offsets[k - 1]!))
      throw new Error(
        `acks out of order: ${acked[k]!.payload.split(':')[0]} got offset ${offsets[k]} after ${offsets[k - 1]}`,
      )
}

describe('durable streams across kill -9 of member processes', () => {
  crashTest(
    'leader killed during an ack:all publish loop: every ack read back once, in order',
    60_000,
    async (ctx) => {
      const { rand, members, pub, log } = ctx
      const before = await info0(ctx)
      const leader = members.find((m) => m.id === before.leader)
      expect(leader, `leader ${before.leader} is one of the member processes`).toBeDefined()
      const killAfter = 20 + Math.floor(rand() * 40)
      const killDelay = Math.floor(rand() * 4)
      const ACKS_AFTER_KILL = 40
      log(`leader is ${leader!.name}; kill after ${killAfter} acks + ${killDelay} ms`)

      const attempts: Attempt[] = []
      let killedAt: number | undefined
      let killing: Promise<void> | undefined
      let firstAckAfterKill: number | undefined
      let acksAfterKill = 0
      const deadline = Date.now() + 30_000
      for (let i = 0; acksAfterKill < ACKS_AFTER_KILL; i++) {
        if (Date.now() > deadline)
          throw new Error(
            `only ${acksAfterKill} acks in 30 s after the kill; last errors: ${attempts
              .slice(-5)
              .map((a) => a.error)
              .join(' | ')}`,
          )
        const acked = attempts.filter((a) => a.ack).length
        if (killing === undefined && acked === killAfter)
          killing = new Promise<void>((resolve) =>
            setTimeout(() => {
              killedAt = Date.now()
              kill9(ctx, leader!).then(resolve)
            }, killDelay),
          )
        const a = await publishOnce(ctx, i, 5000)
        attempts.push(a)
        if (a.error) log(`m${i} failed: ${a.error}`)
        if (a.ack && killedAt !== undefined && a.startedAt > killedAt) {
          acksAfterKill++
          if (firstAckAfterKill === undefined) {
            firstAckAfterKill = Date.now()
            log(`first ack after the kill: m${i} at offset ${a.ack.offset}`)
          }
        }
      }
      await killing
      const resumedMs = firstAckAfterKill! - killedAt!
      const failed = attempts.filter((a) => a.error)
      log(`publishing resumed ${resumedMs} ms after the kill; ${failed.length} attempts failed`)
      expect(resumedMs, 'publishes resume on a new leader within a few seconds').toBeLessThan(5000)
      const during = await info0(ctx)
      expect(during.leader).not.toBeNull()
      expect(during.leader).not.toBe(leader!.id)

      // The old leader comes back on its data directory (its log may end in entries that were
      // never committed) and catches up while publishing goes on.
      await launch(ctx, leader!)
      attempts.push(...(await publishAcked(ctx, attempts.length, 20)))
      const after = await settled(ctx, 3, 20_000)
      const acked = attempts.filter((a) => a.ack)
      checkAcks(acked)
      expect(after.nextOffset).toBeGreaterThanOrEqual(acked.at(-1)!.ack!.offset + 1)
      expect(after.nextOffset).toBeLessThanOrEqual(attempts.length)

      const got = await readFromStart(pub, after.nextOffset, 20_000)
      expect(got.map((m) => m.offset)).toEqual(range(after.nextOffset))
      expect(got.every((m) => m.partition === 0 && m.stream === STREAM)).toBe(true)
      const payloads = got.map((m) => text(m.data))
      const byPayload = new Map(attempts.map((a) => [a.payload, a]))
      const strangers = payloads.filter((p) => !byPayload.has(p))
      expect(strangers, 'only attempted payloads are stored').toEqual([])
      const seen = new Map<string, number>()
      for (const p of payloads) seen.set(p, (seen.get(p) ?? 0) + 1)
      const twice = [...seen].filter(([, n]) => n > 1).map(([p]) => p.split(':')[0])
      expect(twice, 'no attempt is stored twice').toEqual([])
      for (const a of acked) {
        const m = got[a.ack!.offset]!
        if (text(m.data) !== a.payload)
          throw new Error(
            `offset ${a.ack!.offset} acked for ${a.payload.split(':')[0]} holds ${text(m.data).split(':')[0]}`,
          )
        expect(m.topic).toBe(a.topic)
      }
      // Acked payloads in ack order (a subsequence of the log, which the checks above imply).
      const ackedSet = new Set(acked.map((a) => a.payload))
      expect(payloads.filter((p) => ackedSet.has(p))).toEqual(acked.map((a) => a.payload))
      const storedUnacked = failed.filter((a) => seen.has(a.payload)).length
      log(
        `${acked.length} acked, ${failed.length} failed (${storedUnacked} of them stored), ${got.length} read`,
      )
      // Nothing else turned up meanwhile.
      expect((await info0(ctx)).nextOffset).toBe(after.nextOffset)
    },
  )

  crashTest(
    'all three replicas killed and restarted: data intact, publishing continues',
    60_000,
    async (ctx) => {
      const { members, pub, log } = ctx
      const N = 60
      const acked = await publishAcked(ctx, 0, N)
      checkAcks(acked)
      expect(acked.map((a) => a.ack!.offset)).toEqual(range(N))

      await Promise.all(members.map((m) => kill9(ctx, m)))
      log('all three killed')
      await Promise.all(members.map((m) => launch(ctx, m)))
      await waitForMembers(pub, CLUSTER, 3, 15_000)
      await settled(ctx, 3, 30_000)
      // A new leader may learn the commit point only after committing in its own term.
      let back = await info0(ctx)
      await waitFor(async () => (back = await info0(ctx)).nextOffset >= N, 10_000, 'nextOffset back').catch(
        (err: Error) => {
          throw new Error(`${err.message}: expected ${N}, last info ${JSON.stringify(back)}`)
        },
      )
      log(`back: leader ${nameOf(ctx, back.leader)}, nextOffset ${back.nextOffset}`)
      expect(back.nextOffset).toBe(N)

      const got = await readFromStart(pub, N, 20_000)
      expect(got.map((m) => m.offset)).toEqual(range(N))
      expect(got.map((m) => text(m.data))).toEqual(acked.map((a) => a.payload))
      expect(got.map((m) => m.topic)).toEqual(acked.map((a) => a.topic))

      const more = await publishAcked(ctx, N, 10)
      expect(more.map((a) => a.ack!.offset)).toEqual(range(10).map((k) => N + k))
      const all = await readFromStart(pub, N + 10, 20_000)
      expect(all.map((m) => text(m.data))).toEqual([...acked, ...more].map((a) => a.payload))
    },
  )

  crashTest('a replica down while 300 messages are acked catches up after restart', 60_000, async (ctx) => {
    const { rand, members, pub, log } = ctx
    const first = await publishAcked(ctx, 0, 20)
    await settled(ctx, 3, 10_000)
    const victim = members[Math.floor(rand() * 3)]!
    const wasLeader = (await info0(ctx)).leader === victim.id
    log(`victim ${victim.name} (${wasLeader ? 'leader' : 'follower'})`)
    await kill9(ctx, victim)

    // 300 more acks from the other two (more than the 256-entry in-sync lag allowance).
    const attempts: Attempt[] = []
    let acks = 0
    const deadline = Date.now() + 30_000
    for (let i = 20; acks < 300; i++) {
      if (Date.now() > deadline) throw new Error(`only ${acks} of 300 acks in 30 s with ${victim.name} down`)
      const a = await publishOnce(ctx, i, 5000)
      attempts.push(a)
      if (a.ack) acks++
      else log(`m${i} failed: ${a.error}`)
    }
    const failed = attempts.filter((a) => a.error)
    if (!wasLeader) expect(failed.map((a) => a.error)).toEqual([])
    const acked = [...first, ...attempts.filter((a) => a.ack)]
    checkAcks(acked)
    const down = await settled(ctx, 2, 10_000)
    expect(down.inSync).not.toContain(victim.id)
    expect(down.leader).not.toBe(victim.id)
    log(`with ${victim.name} down: nextOffset ${down.nextOffset}, ${failed.length} failed`)

    await launch(ctx, victim)
    const caught = await settled(ctx, 3, 20_000)
    expect(caught.inSync).toContain(victim.id)
    expect(caught.nextOffset).toBe(down.nextOffset)
    // Its own log reaches the end, not just "within the lag allowance".
    let hosted: unknown
    await waitFor(
      async () => {
        const s = await memberStatus(victim)
        const h = s.streams.find((x) => x.name === STREAM)?.hosted.find((p) => p.partition === 0)
        hosted = h
        return h !== undefined && h.nextOffset === down.nextOffset
      },
      10_000,
      `${victim.name}'s replica reaching offset ${down.nextOffset}`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; its last view: ${JSON.stringify(hosted)}`)
    })
    log(`${victim.name} caught up: ${JSON.stringify(hosted)}`)
    // The entries it missed were compacted away on the others: it came back through a snapshot.
    expect((hosted as { snapshotIndex: number }).snapshotIndex).toBeGreaterThan(0)

    const got = await readFromStart(pub, down.nextOffset, 20_000)
    expect(got.map((m) => m.offset)).toEqual(range(down.nextOffset))
    for (const a of acked) expect(text(got[a.ack!.offset]!.data)).toBe(a.payload)
  })
})
