/**
 * Durable consumers and self-healing replicas across real process crashes (kill -9). Member
 * processes (test/fixtures/stream-member.mjs, each with its own data directory) host the
 * stream; the test process publishes with `ack: 'all'` from a node of its own (not a member);
 * consumers are processes of their own (test/fixtures/stream-consumer.mjs) that print every
 * message just before acknowledging it.
 *
 * - a consumer with durable name `billing` killed mid-stream: a second one with the same name
 *   resumes at the committed position — no gap in any partition, and only messages the first
 *   acknowledged in its last moments (positions are committed every 100 ms) come again, once;
 * - two consumers sharing the durable name: while both live no message is acknowledged by both
 *   and each partition has one reader; the survivor of a kill takes the dead one's partitions
 *   over within the lease time and consumes the stream to its end;
 * - the member process of a replica killed for good (4 members, replicas 3, replaceReplicaAfter
 *   1 s): the spare member replaces it in the placement, the partition is back to three in-sync
 *   replicas, and publishing with ack 'all' and reading from the start work.
 *
 * Randomness (kill points, victims, consumer pace, payloads) comes from TEST_SEED; a failure
 * prints the seed and the tail of the timeline (test events, the processes' output and a
 * summary of what each consumer acknowledged); STREAM_CRASH_VERBOSE=1 prints the timeline of
 * passing tests too.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { localDirectory } from '../../src/discovery/local.js'
import { generateKey, type PartitionInfo, type PlexusNode, type PublishAck } from '../../src/index.js'
import { LEASE_TTL_MS } from '../../src/streams/consumer/consumer-durable.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { exited, spawnNode, waitForLine } from '../helpers/procs.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const MEMBER = 'test/fixtures/stream-member.mjs'
const CONSUMER = 'test/fixtures/stream-consumer.mjs'
const CLUSTER = 'db'
const STREAM = 'events'
const DURABLE = 'billing'
/**
 * How long before a kill a consumer's ack may be and still be delivered again. Positions are
 * committed 100 ms after the previous commit finished; a commit is a replicated (fsynced)
 * write through the metadata group's leader, and a lease renewal shares the tick every
 * second. An ack that lands just after a commit started waits for it, the pause and the next
 * one: 100 ms plus two or three replicated writes, each of which took up to ~300 ms in CI on
 * a loaded two-core machine (a 580 ms case was seen).
 */
const REDELIVERY_WINDOW_MS = 1000
/** Takeover of a dead consumer's partitions: lease expiry plus this much. */
const TAKEOVER_SLACK_MS = 4000

/** One member process; `dir` and `id` stay the same across restarts. */
interface Member {
  name: string
  dir: string
  id: string
  child: ChildProcess | undefined
}

/** One line `acked …` of a consumer process. */
interface Ack {
  partition: number
  offset: number
  deliveryCount: number
  /** The consumer's clock when it printed the line (just before acking). */
  at: number
  payload: string
}

/** One consumer process and everything it acknowledged, in order. */
interface ConsumerProc {
  name: string
  child: ChildProcess
  id: string
  acks: Ack[]
  /** Its "failed …" lines: the consumer ended with an error (the fixture starts another). */
  failures: string[]
  killedAt?: number
}

/** A published (and acknowledged) message. */
interface Published {
  payload: string
  topic: string
  partition: number
  offset: number
}

/** What one test works with. */
interface Ctx {
  seed: number
  rand: () => number
  t0: number
  network: string
  key: string
  members: Member[]
  pub: PlexusNode
  partitions: number
  log(line: string): void
}

const roots: string[] = []
const running: ChildProcess[] = []
const publishers: PlexusNode[] = []
const networks: string[] = []
let timeline: string[] = []

afterEach(async () => {
  // Kill what is left first (and wait for it), so no process writes into a removed directory.
  await Promise.all(
    running.splice(0).map(async (c) => {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await exited(c)
      }
    }),
  )
  await Promise.all(publishers.splice(0).map((n) => n.stop()))
  for (const d of roots.splice(0)) await rm(d, { recursive: true, force: true })
  for (const n of networks.splice(0)) await rm(localDirectory(n), { recursive: true, force: true })
  timeline = []
})

interface SetupOptions {
  members: number
  partitions: number
  /** The members' `streams.replaceReplicaAfter` (ms). */
  replaceAfter?: number
}

/** A test with a seeded random source; on failure prints the seed and the timeline. */
function crashTest(title: string, ms: number, opts: SetupOptions, body: (ctx: Ctx) => Promise<void>): void {
  it(
    title,
    async () => {
      const seed = testSeed()
      const t0 = Date.now()
      const log = (line: string) => void timeline.push(`+${Date.now() - t0}ms ${line}`)
      log(`seed ${seed}`)
      try {
        await body(await setup(seed, t0, log, opts))
        if (process.env.STREAM_CRASH_VERBOSE) console.log(`[${title}]\n${timeline.join('\n')}`)
      } catch (err) {
        console.error(
          `[${title}] failed, TEST_SEED=${seed}\n--- timeline (last 400 lines) ---\n${timeline.slice(-400).join('\n')}`,
        )
        if (err instanceof Error) err.message = `${err.message} (TEST_SEED=${seed})`
        throw err
      }
    },
    ms,
  )
}

/**
 * Hands a child's stdout lines to `onLine` (the timeline gets those it returns false for),
 * and its stderr lines to `onErr` and the timeline; its exit goes to the timeline too.
 */
function watch(
  ctx: Pick<Ctx, 'log'>,
  child: ChildProcess,
  tag: string,
  onLine: (line: string) => boolean,
  onErr: (line: string) => void = () => {},
): void {
  const clip = (line: string) => (line.length > 400 ? `${line.slice(0, 400)}…` : line)
  const lines = (stream: NodeJS.ReadableStream | null, each: (line: string) => void) => {
    let rest = ''
    stream?.on('data', (d: Buffer) => {
      const all = (rest + d.toString()).split('\n')
      rest = all.pop()!
      for (const line of all) if (line !== '') each(line)
    })
  }
  lines(child.stdout, (line) => {
    if (!onLine(line)) ctx.log(`${tag} out: ${clip(line)}`)
  })
  lines(child.stderr, (line) => {
    onErr(line)
    ctx.log(`${tag} err: ${clip(line)}`)
  })
  child.on('exit', (code, sig) => ctx.log(`${tag} exited (${code ?? sig})`))
}

/** Starts a member process; resolves once it joined the cluster. */
async function launchMember(ctx: Pick<Ctx, 'network' | 'key' | 'log'>, m: Member, replaceAfter?: number) {
  const args = [MEMBER, ctx.network, CLUSTER, ctx.key, m.dir]
  if (replaceAfter !== undefined) args.push(String(replaceAfter))
  const child = spawnNode(args)
  m.child = child
  running.push(child)
  const tag = `[${m.name} pid ${child.pid}]`
  watch(ctx, child, tag, () => false)
  m.id = (await waitForLine(child, /^ready (\S+)/, 20_000))[1]!
  ctx.log(`${tag} ready as ${m.id}`)
}

/**
 * Starts a consumer process (durable name `billing`, `pace` ms after each ack); with `hold` it
 * starts consuming only on `send(c, 'start')`.
 */
async function launchConsumer(ctx: Ctx, name: string, pace: number, hold = false): Promise<ConsumerProc> {
  const args = [CONSUMER, ctx.network, STREAM, DURABLE, String(pace)]
  if (hold) args.push('hold')
  const child = spawnNode(args)
  running.push(child)
  const c: ConsumerProc = { name, child, id: '', acks: [], failures: [] }
  const tag = `[${name} pid ${child.pid}]`
  const ready = waitForLine(child, /^ready (\S+)$/, 30_000)
  const onErr = (line: string) => {
    if (line.startsWith('failed ')) c.failures.push(line)
  }
  watch(
    ctx,
    child,
    tag,
    (line) => {
      const a = line.match(/^acked (\d+) (\d+) (\d+) (\d+) (\S*)$/)
      if (a === null) return false
      const ack: Ack = {
        partition: Number(a[1]),
        offset: Number(a[2]),
        deliveryCount: Number(a[3]),
        at: Number(a[4]),
        payload: a[5]!,
      }
      c.acks.push(ack)
      // The timeline gets a sample (the summary at the end has the rest).
      if (ack.deliveryCount !== 1 || ack.offset % 25 === 0 || c.acks.length === 1)
        ctx.log(`${tag} out: ${line}`)
      return true
    },
    onErr,
  )
  c.id = (await ready)[1]!
  ctx.log(`${tag} consuming as ${c.id}, pace ${pace} ms`)
  return c
}

/** A command on the consumer's stdin (`start`, `pace <ms>`, `close`). */
function send(ctx: Ctx, c: ConsumerProc, command: string): void {
  c.child.stdin!.write(`${command}\n`)
  ctx.log(`[${c.name}] <- ${command}`)
}

/** kill -9, and wait until the process is gone; returns the time of the kill. */
async function kill9(ctx: Ctx, name: string, child: ChildProcess): Promise<number> {
  const at = Date.now()
  child.kill('SIGKILL')
  ctx.log(`[${name}] kill -9 sent`)
  await exited(child)
  return at
}

/** Member processes, a publisher node outside the cluster, and the stream (replicas 3). */
async function setup(seed: number, t0: number, log: (line: string) => void, o: SetupOptions): Promise<Ctx> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-consumer-crash-'))
  roots.push(root)
  const network = uniqueNetwork('ccrash')
  networks.push(network)
  const key = generateKey()
  const members: Member[] = ['a', 'b', 'c', 'd', 'e'].slice(0, o.members).map((name) => ({
    name,
    dir: join(root, name),
    id: '',
    child: undefined,
  }))
  await Promise.all(members.map((m) => launchMember({ network, key, log }, m, o.replaceAfter)))
  const pub = await startNode({ network, credentials: { clusterKeys: { [CLUSTER]: key } } })
  publishers.push(pub)
  await waitForMembers(pub, CLUSTER, o.members, 15_000)
  await pub.streams.create(STREAM, {
    cluster: CLUSTER,
    subject: 'ev.>',
    replicas: 3,
    partitions: o.partitions,
  })
  const ctx: Ctx = {
    seed,
    rand: mulberry32(seed),
    t0,
    network,
    key,
    members,
    pub,
    partitions: o.partitions,
    log,
  }
  const parts = await settled(ctx, 20_000)
  log(
    `stream created: ${parts.map((p) => `p${p.partition} on ${p.replicas.map((r) => nameOf(ctx, r)).join(',')} led by ${nameOf(ctx, p.leader)}`).join('; ')}`,
  )
  return ctx
}

function nameOf(ctx: Ctx, id: string | null): string {
  return ctx.members.find((m) => m.id === id)?.name ?? String(id)
}

async function partitionsInfo(ctx: Ctx): Promise<PartitionInfo[]> {
  return (await ctx.pub.streams.info(STREAM, { timeout: 3000 })).partitions
}

/**
 * Waits until every partition is led by its preferred replica (the first placed) with its 3
 * replicas in sync. Leaders hand leadership to the preferred replica once it has caught up;
 * a publish reaching the leader during that handover is currently rejected ("RemoteError:
 * leadership transfer in progress", not retried by the client), so the tests publish only
 * on a quiet cluster.
 */
async function settled(ctx: Ctx, ms: number): Promise<PartitionInfo[]> {
  let last: PartitionInfo[] | undefined
  await waitFor(
    async () => {
      last = await partitionsInfo(ctx).catch(() => undefined)
      const ok = (p: PartitionInfo) =>
        p.leader === p.replicas[0] && p.inSync.length === p.replicas.length && p.replicas.length === 3
      return last?.every(ok) ?? false
    },
    ms,
    'the preferred leader and 3 in-sync replicas in every partition',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last info: ${JSON.stringify(last)}`)
  })
  return last!
}

/** Publishes message `i` with ack 'all'; any failure fails the test (no member is down). */
async function publishOne(ctx: Ctx, i: number): Promise<Published> {
  const topic = `ev.${['eu', 'us', 'ap'][Math.floor(ctx.rand() * 3)]}.${i % 7}`
  const payload = `m${i}:${'x'.repeat(Math.floor(ctx.rand() * 100))}`
  try {
    const ack = (await ctx.pub.publish(topic, payload, { ack: 'all', timeout: 10_000 })) as PublishAck
    return { payload, topic, partition: ack.partition, offset: ack.offset }
  } catch (err) {
    throw new Error(
      `publish m${i} failed with no member down: ${(err as Error).name}: ${(err as Error).message}`,
    )
  }
}

/** Publishes messages `from … from + n - 1`, `concurrency` at a time. */
async function publishMany(ctx: Ctx, from: number, n: number, concurrency: number): Promise<Published[]> {
  const out: Published[] = []
  let next = from
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < from + n) out.push(await publishOne(ctx, next++))
    }),
  )
  return out
}

/**
 * Per partition, the payload at every offset; checks that the acks name each offset of each
 * partition exactly once, dense from 0, and that `streams.info` agrees.
 */
async function layout(ctx: Ctx, published: Published[]): Promise<string[][]> {
  const table: string[][] = Array.from({ length: ctx.partitions }, () => [])
  for (const p of published) {
    expect(table[p.partition]![p.offset], `offset ${p.partition}/${p.offset} acked twice`).toBeUndefined()
    table[p.partition]![p.offset] = p.payload
  }
  const info = await partitionsInfo(ctx)
  for (const [p, row] of table.entries()) {
    expect(row.every((x) => x !== undefined) && Object.keys(row).length === row.length).toBe(true)
    expect(info[p]!.nextOffset, `partition ${p} holds exactly the acked messages`).toBe(row.length)
  }
  ctx.log(`published: ${table.map((row, p) => `p${p} ${row.length}`).join(', ')}`)
  return table
}

/** True once the consumers together acknowledged every offset of every partition. */
function covered(table: string[][], consumers: ConsumerProc[]): boolean {
  const seen = table.map((row) => new Uint8Array(row.length))
  let n = 0
  for (const c of consumers)
    for (const a of c.acks) {
      const row = seen[a.partition]
      if (row !== undefined && a.offset < row.length && row[a.offset] === 0) {
        row[a.offset] = 1
        n++
      }
    }
  return n === table.reduce((s, row) => s + row.length, 0)
}

/** Logs, per consumer and partition, the runs of offsets it acked (times relative to t0). */
function summarize(ctx: Ctx, consumers: ConsumerProc[]): void {
  for (const c of consumers) {
    const parts: string[] = []
    for (let p = 0; p < ctx.partitions; p++) {
      const acks = c.acks.filter((a) => a.partition === p)
      const runs: string[] = []
      let start: Ack | undefined
      for (const [k, a] of acks.entries()) {
        start ??= a
        const next = acks[k + 1]
        if (next === undefined || next.offset !== a.offset + 1)
          runs.push(`${start.offset}..${a.offset} (+${start.at - ctx.t0}..+${a.at - ctx.t0}ms)`)
        if (next === undefined || next.offset !== a.offset + 1) start = undefined
      }
      parts.push(`p${p}: ${runs.join(' ') || 'none'}`)
    }
    const killed = c.killedAt === undefined ? '' : `, killed at +${c.killedAt - ctx.t0}ms`
    ctx.log(`summary ${c.name} (${c.acks.length} acks${killed}): ${parts.join('; ')}`)
  }
}

/**
 * What every consumption must satisfy, for consumers on one durable name of which `victim`
 * was killed (at `victim.killedAt`):
 * - every ack names a published message (payload at its partition and offset);
 * - each consumer acks each partition in one run of consecutive offsets (so never twice);
 *   with `handovers` (consumers sharing a name hand partitions over for a fair share, see
 *   consumer-durable.ts), in increasing offsets, the others' runs filling what it skipped;
 * - together they cover every offset of every partition (no gap);
 * - a message acked twice was acked by the victim at most `REDELIVERY_WINDOW_MS` before the
 *   kill and by the other consumer after it; nothing is acked three times;
 * - delivery counts: 1 on the first delivery (every message is acked at once, far below
 *   ackWait); a message delivered again after the kill may say 1 or 2 (the count of the
 *   consumer that died is not necessarily known to the next);
 * - no consumer ended with an error (the cluster stays healthy throughout).
 * Returns the offsets acked twice, per partition.
 */
function checkConsumption(
  ctx: Ctx,
  table: string[][],
  consumers: ConsumerProc[],
  victim: ConsumerProc,
  handovers = false,
) {
  const killedAt = victim.killedAt!
  for (const c of consumers) expect(c.failures, `${c.name}'s consumer failures`).toEqual([])
  const byOffset = table.map((row) => row.map(() => [] as Array<{ c: ConsumerProc; a: Ack }>))
  for (const c of consumers) {
    for (const a of c.acks) {
      const expected = table[a.partition]?.[a.offset]
      if (a.payload !== expected)
        throw new Error(
          `${c.name} acked ${a.partition}/${a.offset} = ${a.payload.split(':')[0]}, published there: ${expected?.split(':')[0]}`,
        )
      byOffset[a.partition]![a.offset]!.push({ c, a })
    }
    for (let p = 0; p < ctx.partitions; p++) {
      const offsets = c.acks.filter((a) => a.partition === p).map((a) => a.offset)
      for (let k = 1; k < offsets.length; k++)
        if (handovers ? offsets[k]! <= offsets[k - 1]! : offsets[k] !== offsets[k - 1]! + 1)
          throw new Error(
            `${c.name} acked ${p}/${offsets[k]} right after ${p}/${offsets[k - 1]} (not one run)`,
          )
    }
  }
  const twice: number[][] = table.map(() => [])
  let oldest = 0
  const counts = new Set<number>()
  for (const [p, row] of byOffset.entries())
    for (const [o, list] of row.entries()) {
      if (list.length === 0) throw new Error(`gap: nobody acked ${p}/${o}`)
      if (list.length === 1) continue
      const desc = list.map((x) => `${x.c.name} at ${x.a.at - killedAt}ms from the kill`).join(', ')
      if (list.length > 2) throw new Error(`${p}/${o} acked ${list.length} times: ${desc}`)
      const first = list.find((x) => x.c === victim)
      const second = list.find((x) => x.c !== victim)
      if (first === undefined || second === undefined || second.a.at < killedAt)
        throw new Error(`${p}/${o} acked by two consumers while both were alive: ${desc}`)
      if (first.a.at < killedAt - REDELIVERY_WINDOW_MS)
        throw new Error(
          `${p}/${o} delivered again though ${victim.name} acked it ${killedAt - first.a.at} ms before its kill ` +
            `(positions are committed every 100 ms; allowed ${REDELIVERY_WINDOW_MS} ms): ${desc}`,
        )
      twice[p]!.push(o)
      oldest = Math.max(oldest, killedAt - first.a.at)
      counts.add(second.a.deliveryCount)
      expect(first.a.deliveryCount, `${first.c.name}: delivery count of ${p}/${o}`).toBe(1)
      expect([1, 2], `${second.c.name}: delivery count of ${p}/${o}, delivered again`).toContain(
        second.a.deliveryCount,
      )
    }
  for (const c of consumers)
    for (const a of c.acks)
      if (byOffset[a.partition]![a.offset]!.length === 1)
        expect(a.deliveryCount, `${c.name}: delivery count of ${a.partition}/${a.offset}`).toBe(1)
  const n = twice.reduce((k, row) => k + row.length, 0)
  ctx.log(
    n === 0
      ? 'nothing delivered again'
      : `${n} delivered again (delivery counts ${[...counts]}), acked by ${victim.name} at most ${oldest} ms before its kill`,
  )
  return twice
}

describe('durable consumers and replicas across kill -9 of processes', () => {
  crashTest(
    'a consumer killed mid-stream: the next one resumes after its last committed ack, no gap',
    60_000,
    { members: 3, partitions: 2 },
    async (ctx) => {
      const { rand, log } = ctx
      // Half the messages before c1 starts, half while it reads (live tail, both partitions).
      const N = 300
      const published = await publishMany(ctx, 0, N / 2, 8)
      const killAfter = Math.floor(N * (0.2 + 0.6 * rand()))
      const pace = 5 + Math.floor(rand() * 10)
      const jitter = Math.floor(rand() * 150)
      log(`c1 killed after ${killAfter} acks + ${jitter} ms`)

      const c1 = await launchConsumer(ctx, 'c1', pace)
      published.push(...(await publishMany(ctx, N / 2, N / 2, 4)))
      await waitFor(() => c1.acks.length >= killAfter, 30_000, `${killAfter} acks by c1`)
      await sleep(jitter)
      c1.killedAt = await kill9(ctx, 'c1', c1.child)
      log(`c1 acked ${c1.acks.length} before the kill`)
      expect(c1.acks.length, 'c1 killed part-way').toBeLessThan(N)
      const table = await layout(ctx, published)

      const c2 = await launchConsumer(ctx, 'c2', 0)
      const consumers = [c1, c2]
      await waitFor(() => covered(table, consumers), 30_000, 'every message acked by c1 or c2').catch(
        (err: Error) => {
          summarize(ctx, consumers)
          throw err
        },
      )
      await sleep(500) // anything delivered beyond the end, or again, would show up meanwhile
      summarize(ctx, consumers)
      log(`c2 resumed ${c2.acks[0]!.at - c1.killedAt} ms after the kill`)

      const twice = checkConsumption(ctx, table, consumers, c1)
      for (let p = 0; p < ctx.partitions; p++) {
        const mine = (c: ConsumerProc) => c.acks.filter((a) => a.partition === p)
        const a1 = mine(c1)
        const a2 = mine(c2)
        // c1 read from the start; c2 from the committed position to the end.
        if (a1.length > 0) expect(a1[0]!.offset, `c1 starts partition ${p} at 0`).toBe(0)
        const end1 = a1.length === 0 ? 0 : a1.at(-1)!.offset + 1
        const start2 = a2[0]?.offset ?? table[p]!.length
        if (a2.length > 0)
          expect(a2.at(-1)!.offset, `c2 reads partition ${p} to the end`).toBe(table[p]!.length - 1)
        // The committed position (where c2 starts) is past everything c1 acked before the
        // redelivery window, and at most c1's end.
        const older = a1.filter((a) => a.at < c1.killedAt! - REDELIVERY_WINDOW_MS)
        const floor = older.length === 0 ? 0 : older.at(-1)!.offset + 1
        expect(start2, `c2 starts partition ${p} at or after c1's committed position`).toBeGreaterThanOrEqual(
          floor,
        )
        expect(start2, `c2 starts partition ${p} at most at c1's end (no gap)`).toBeLessThanOrEqual(end1)
        const again = a1.filter((a) => a.offset >= start2)
        log(
          `p${p}: c1 acked 0..${end1 - 1}, c2 resumed at ${start2}; ${twice[p]!.length} delivered again` +
            (again.length > 0
              ? ` (acked by c1 ${c1.killedAt! - again[0]!.at}..${c1.killedAt! - again.at(-1)!.at} ms before the kill)`
              : ''),
        )
        expect(twice[p]).toEqual(again.map((a) => a.offset))
      }
    },
  )

  crashTest(
    'two consumers on one durable name: one reader per partition; a kill hands its partitions over',
    60_000,
    { members: 3, partitions: 2 },
    async (ctx) => {
      const { rand, log } = ctx
      // A small backlog, then a live tail: both partitions are read before the kill.
      const N0 = 40
      const published = await publishMany(ctx, 0, N0, 8)
      const pace = 10 + Math.floor(rand() * 10)
      const killAfter = 40 + Math.floor(rand() * 60)
      log(`kill after ${killAfter} acks in all`)
      // Both start at once, in a seeded order (each partition goes to whichever asks first).
      const consumers = await Promise.all([
        launchConsumer(ctx, 'ca', pace, true),
        launchConsumer(ctx, 'cb', pace, true),
      ])
      const [ca, cb] = consumers as [ConsumerProc, ConsumerProc]
      for (const c of rand() < 0.5 ? [ca, cb] : [cb, ca]) send(ctx, c, 'start')

      // More messages keep coming (live tail) until a while after the kill.
      let stopPublishing = false
      let publishError: unknown
      const publishing = (async () => {
        for (let i = N0; !stopPublishing; i++) {
          published.push(await publishOne(ctx, i))
          await sleep(10)
        }
      })().catch((err) => {
        publishError = err
      })
      try {
        await waitFor(
          () => {
            if (publishError !== undefined) throw publishError
            return ca.acks.length + cb.acks.length >= killAfter
          },
          30_000,
          `${killAfter} acks`,
        )
        const holders = consumers.filter((c) => c.acks.length > 0)
        const victim = holders[Math.floor(rand() * holders.length)]!
        const held = (c: ConsumerProc) => [...new Set(c.acks.map((a) => a.partition))].sort()
        log(`before the kill: ca reads [${held(ca)}], cb reads [${held(cb)}]; victim ${victim.name}`)
        victim.killedAt = await kill9(ctx, victim.name, victim.child)
        // The survivor drains at full speed, so its first ack in a partition it takes over
        // tells when it got the lease (not when it got through its backlog).
        send(ctx, consumers.find((c) => c !== victim)!, 'pace 0')
        await sleep(1500)
      } finally {
        stopPublishing = true
        await publishing
      }
      if (publishError !== undefined) throw publishError
      const victim = consumers.find((c) => c.killedAt !== undefined)!
      const survivor = consumers.find((c) => c !== victim)!
      const killedAt = victim.killedAt!
      const table = await layout(ctx, published)

      await waitFor(() => covered(table, consumers), 30_000, 'every message acked').catch((err: Error) => {
        summarize(ctx, consumers)
        throw err
      })
      await sleep(500)
      summarize(ctx, consumers)
      const twice = checkConsumption(ctx, table, consumers, victim, true)

      for (let p = 0; p < ctx.partitions; p++) {
        // While both lived, one reader at a time per partition: the acks in time order form
        // runs of one consumer each (a new run is a handover for the fair share, at most one
        // per lease lifetime per consumer, so a few in these seconds; readers taking turns
        // message by message would make many).
        const before = consumers
          .flatMap((c) => c.acks.filter((a) => a.partition === p && a.at < killedAt).map((a) => ({ c, a })))
          .sort((x, y) => x.a.at - y.a.at || x.a.offset - y.a.offset)
        const runs = before.filter((x, k) => k === 0 || before[k - 1]!.c !== x.c).length
        expect(runs, `turns at partition ${p} while both consumers lived`).toBeLessThanOrEqual(3)
        if (!victim.acks.some((a) => a.partition === p)) continue
        // The victim's partition: the survivor takes it over once the lease expires.
        const firstAfter = survivor.acks.find((a) => a.partition === p && a.at >= killedAt)
        expect(firstAfter, `${survivor.name} reads partition ${p} after the kill`).toBeDefined()
        const takeover = firstAfter!.at - killedAt
        log(
          `p${p}: ${survivor.name} took over ${takeover} ms after the kill; ${twice[p]!.length} delivered again`,
        )
        expect(takeover).toBeLessThanOrEqual(LEASE_TTL_MS + TAKEOVER_SLACK_MS)
      }
    },
  )

  crashTest(
    'a replica killed for good is replaced by the spare member: back to 3 in-sync replicas',
    60_000,
    { members: 4, partitions: 1, replaceAfter: 1000 },
    async (ctx) => {
      const { rand, members, pub, log } = ctx
      const first = await publishMany(ctx, 0, 30, 1)
      const before = (await settled(ctx, 10_000))[0]!
      const placed = members.filter((m) => before.replicas.includes(m.id))
      const spare = members.find((m) => !before.replicas.includes(m.id))!
      expect(placed).toHaveLength(3)
      const victim = placed[Math.floor(rand() * 3)]!
      log(
        `victim ${victim.name} (${victim.id === before.leader ? 'leader' : 'follower'}), spare ${spare.name}`,
      )
      const killedAt = await kill9(ctx, victim.name, victim.child!)

      let last: PartitionInfo | undefined
      await waitFor(
        async () => {
          last = (await partitionsInfo(ctx).catch(() => undefined))?.[0]
          return (
            last !== undefined &&
            last.leader !== null &&
            !last.replicas.includes(victim.id) &&
            last.replicas.includes(spare.id) &&
            last.inSync.length === 3 &&
            last.replicas.every((r) => last!.inSync.includes(r))
          )
        },
        20_000,
        `${spare.name} replacing ${victim.name}, 3 in sync`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last info: ${JSON.stringify(last)}`)
      })
      log(
        `healed ${Date.now() - killedAt} ms after the kill: replicas ${last!.replicas.map((r) => nameOf(ctx, r))}, ` +
          `in sync ${last!.inSync.map((r) => nameOf(ctx, r))}, leader ${nameOf(ctx, last!.leader)}`,
      )

      const quiet = (await settled(ctx, 15_000))[0]!
      log(`leader ${nameOf(ctx, quiet.leader)} (preferred) ${Date.now() - killedAt} ms after the kill`)
      const more = await publishMany(ctx, 30, 20, 1)
      expect(more.map((p) => p.offset)).toEqual(Array.from({ length: 20 }, (_, i) => 30 + i))
      const all = [...first, ...more]
      expect(all.map((p) => p.offset)).toEqual(Array.from({ length: 50 }, (_, i) => i))

      const got: string[] = []
      const c = pub.consume(STREAM, { from: 'earliest' })
      const timer = setTimeout(() => c.close(), 20_000)
      try {
        for await (const m of c) {
          expect(m.offset).toBe(got.length)
          got.push(new TextDecoder().decode(m.data))
          if (got.length === all.length) break
        }
      } finally {
        clearTimeout(timer)
        c.close()
      }
      expect(got).toEqual(all.map((p) => p.payload))

      // The spare's own replica holds everything.
      let hosted: unknown
      await waitFor(
        async () => {
          const line = waitForLine(spare.child!, /^status (.*)$/, 5000)
          spare.child!.stdin!.write('status\n')
          const s: ReturnType<PlexusNode['status']> = JSON.parse((await line)[1]!)
          const h = s.streams.find((x) => x.name === STREAM)?.hosted.find((p) => p.partition === 0)
          hosted = h
          return h !== undefined && h.nextOffset === all.length
        },
        10_000,
        `${spare.name}'s replica reaching offset ${all.length}`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; its last view: ${JSON.stringify(hosted)}`)
      })
      log(`${spare.name} hosts ${JSON.stringify(hosted)}`)
    },
  )
})
