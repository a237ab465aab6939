/**
 * Harness of the kill -9 tests of durable streams (crash.test.ts, crash-window.test.ts):
 * three member processes on their own data directories host a one-partition, three-replica
 * stream; a publisher node of the test process publishes with `ack: 'all'`; randomness comes
 * from TEST_SEED and a failure prints the seed and the timeline of test events and member
 * output (STREAM_CRASH_VERBOSE=1 prints it for passing tests too).
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
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
/**
 * A small raft log window: partitions compact every ~100 messages, so every scenario also
 * crosses compactions, and a replica back from the dead catches up by snapshot + copy.
 */
export const SMALL_RAFT_LOG = { RAFT_LOG_BYTES: '16384' }
export const CLUSTER = 'db'
export const STREAM = 'events'
export const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** One member process; `child` changes on every restart, `dir` and `id` do not. */
export interface Member {
  name: string
  dir: string
  id: string
  child: ChildProcess | undefined
}

/** One publish attempt and its outcome. */
export interface Attempt {
  payload: string
  topic: string
  startedAt: number
  ack?: PublishAck
  error?: string
}

/** What one test works with. */
export interface Ctx {
  seed: number
  rand: () => number
  network: string
  key: string
  members: Member[]
  pub: PlexusNode
  /** Extra environment of every member process (see test/fixtures/stream-member.mjs). */
  memberEnv: Record<string, string>
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
export function crashTest(
  title: string,
  ms: number,
  body: (ctx: Ctx) => Promise<void>,
  memberEnv: Record<string, string> = SMALL_RAFT_LOG,
): void {
  it(
    title,
    async () => {
      const seed = testSeed()
      const t0 = Date.now()
      const log = (line: string) => void timeline.push(`+${Date.now() - t0}ms ${line}`)
      log(`seed ${seed}`)
      try {
        await body(await setup(seed, log, memberEnv))
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
export async function launch(
  ctx: Pick<Ctx, 'network' | 'key' | 'log' | 'memberEnv'>,
  m: Member,
): Promise<void> {
  const child = spawnNode([FIXTURE, ctx.network, CLUSTER, ctx.key, m.dir], ctx.memberEnv)
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
export async function kill9(ctx: Ctx, m: Member): Promise<void> {
  const c = m.child!
  c.kill('SIGKILL')
  ctx.log(`[${m.name}] kill -9 sent`)
  await exited(c)
}

/** The member's own view (`node.status()`), asked over its stdin. */
export async function memberStatus(m: Member): Promise<ReturnType<PlexusNode['status']>> {
  const c = m.child!
  const line = waitForLine(c, /^status (.*)$/, 5000)
  c.stdin!.write('status\n')
  return JSON.parse((await line)[1]!)
}

/** Three member processes, a publisher node outside the cluster, and the stream. */
export async function setup(
  seed: number,
  log: (line: string) => void,
  memberEnv: Record<string, string>,
): Promise<Ctx> {
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
  const base = { network, key, log, memberEnv }
  await Promise.all(members.map((m) => launch(base, m)))
  const pub = await startNode({ network, credentials: { clusterKeys: { [CLUSTER]: key } } })
  publishers.push(pub)
  await waitForMembers(pub, CLUSTER, 3, 15_000)
  const info = await pub.streams.create(STREAM, {
    cluster: CLUSTER,
    subject: 'ev.>',
    replicas: 3,
    partitions: 1,
  })
  expect(new Set(info.partitions[0]!.replicas)).toEqual(new Set(members.map((m) => m.id)))
  const ctx: Ctx = { seed, rand: mulberry32(seed), network, key, members, pub, memberEnv, log }
  await settled(ctx, 3, 20_000)
  log(`stream created, leader ${nameOf(ctx, (await info0(ctx)).leader)}`)
  return ctx
}

export async function info0(ctx: Ctx): Promise<StreamInfo['partitions'][number]> {
  return (await ctx.pub.streams.info(STREAM, { timeout: 3000 })).partitions[0]!
}

export function nameOf(ctx: Ctx, id: string | null): string {
  return ctx.members.find((m) => m.id === id)?.name ?? String(id)
}

/** Waits until the partition has a leader and `n` in-sync replicas; returns that view. */
export async function settled(ctx: Ctx, n: number, ms: number): Promise<StreamInfo['partitions'][number]> {
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
export async function publishOnce(ctx: Ctx, i: number, timeout: number): Promise<Attempt> {
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
export async function publishAcked(ctx: Ctx, from: number, n: number): Promise<Attempt[]> {
  const out: Attempt[] = []
  for (let i = from; i < from + n; i++) {
    const a = await publishOnce(ctx, i, 10_000)
    if (a.error) throw new Error(`publish m${i} failed with no fault in progress: ${a.error}`)
    out.push(a)
  }
  return out
}

/** Reads `count` messages from the start of the stream (bounded by `ms`). */
export async function readFromStart(node: PlexusNode, count: number, ms: number): Promise<StreamMessage[]> {
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

export const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** Acked attempts: offsets strictly increasing in ack order, stream and partition right. */
export function checkAcks(acked: Attempt[]): void {
  for (const a of acked) expect(a.ack).toMatchObject({ stream: STREAM, partition: 0 })
  const offsets = acked.map((a) => a.ack!.offset)
  for (let k = 1; k < offsets.length; k++)
    if (!(offsets[k]! > offsets[k - 1]!))
      throw new Error(
        `acks out of order: ${acked[k]!.payload.split(':')[0]} got offset ${offsets[k]} after ${offsets[k - 1]}`,
      )
}
