/**
 * End-to-end durable throughput: publish with ack to a 3-replica stream and consume with a
 * durable consumer that acks every message, at the same time, Plexus beside JetStream.
 *
 * Topology, the same for both systems: the 3-replica stream cluster of bench/stream-clusters.ts
 * (3 member processes / 3 clustered nats-servers); one publisher process and one consumer
 * process (bench/stream-client.ts), each a client of the cluster (Plexus: a non-member node;
 * JetStream: a `nats` connection, the publisher to the stream leader's server, the consumer
 * to the consumer leader's server: JetStream's best case, no forwarding hop).
 *
 * - Publisher: 1 KB messages, `DURABLE_IN_FLIGHT` (256) publishes outstanding; Plexus
 *   `publish(..., { ack: 'all' })`, JetStream `js.publish` (PubAck).
 * - Consumer: Plexus `consume('bench', { durable, from: { offset } })` with `await m.ack()`
 *   (and, in a second phase with its own consumer, `m.ack()` not awaited); JetStream a durable
 *   pull consumer (explicit ack, `max_ack_pending` 1024 like Plexus' default `maxAckPending`)
 *   read with `consume({ max_messages: 1024 })`, `m.ack()` per message.
 *
 * The consumer starts first, positioned at the stream's end; then the publisher publishes for
 * a warm-up and the measured window. End-to-end rate: messages consumed and acked inside the
 * window per second. Latency: from the publisher handing the message to `publish` (a
 * timestamp in the payload) to the consumer receiving it, for the messages consumed in the
 * window. Afterwards the consumer must see every acknowledged publish (missing, duplicates).
 */
import { resolve } from 'node:path'
import { AckPolicy, DeliverPolicy } from 'nats'
import { CPU_PER_MSG, CpuWindow } from './cpu.js'
import { DURABLE_IN_FLIGHT, DURABLE_PATTERN, DURABLE_SUBJECT } from './jetstream.js'
import { type ConsumeResult, nowMs, type PublishResult } from './stream-client.js'
import {
  BENCH_STREAM,
  type JetStreamCluster,
  retry,
  startJetStreamCluster,
  startPlexusStreamCluster,
} from './stream-clusters.js'
import { type Row, spawnTracked, stopChild, waitForLine } from './util.js'

type Child = ReturnType<typeof spawnTracked>

/** One end-to-end phase of one system. */
export interface E2EFigures {
  /** How the consumer acks (`await m.ack()`, `m.ack()`). */
  ack: string
  /** Publishes kept outstanding. */
  inFlight: number
  /** Messages consumed and acked per second inside the window. */
  rate: number
  /** Publishes acknowledged per second inside the window. */
  publishRate: number
  /** Publish-to-consume latency (µs) of the messages consumed inside the window. */
  latency: { p50: number; p99: number }
  /** Publish-to-ack latency (µs). */
  publishAck: { p50: number; p99: number }
  publish: PublishResult
  consume: ConsumeResult
  /**
   * CPU µs per message consumed and acked in the window, summed over every process of the
   * system (publisher, consumer, the 3 members/servers), read from /proc at the window's ends.
   */
  cpuUs: number
}

export interface E2EResult {
  figures: E2EFigures[]
  durability: string
  notes: string[]
}

/** Window sizes; `quick` shortens them. */
export function e2ePhases(quick: boolean) {
  return quick ? { warmupMs: 1000, ms: 3000 } : { warmupMs: 1500, ms: 6000 }
}

const SCRIPT = () => new URL('./stream-client.js', import.meta.url).pathname

/** Spawns a stream-client process; `profileDir` runs it with --cpu-prof. */
export function spawnClient(args: string[], profileDir?: string): Child {
  const prof = profileDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(profileDir)] : []
  return spawnTracked(process.execPath, [...prof, SCRIPT(), ...args])
}

/** Sends one command line to a client. */
export function tell(child: Child, line: string): void {
  child.stdin?.write(`${line}\n`)
}

/** Waits for `RESULT <json>` from a client. */
export async function result<T>(child: Child, ms: number): Promise<T> {
  const m = await waitForLine(child, /^RESULT (.*)$/, ms)
  return JSON.parse(m[1]) as T
}

/** Runs one phase: the consumer (already spawned) and the publisher, then the drain. */
async function phase(
  publisher: Child,
  consumer: Child,
  ack: string,
  inFlight: number,
  opts: { quick: boolean; log: (s: string) => void; label: string; servers: Array<number | undefined> },
): Promise<E2EFigures> {
  const p = e2ePhases(opts.quick)
  await waitForLine(consumer, /^READY/, 30_000)
  const t1 = nowMs() + p.warmupMs
  const t2 = t1 + p.ms
  // CPU of every process of the system over the window (timers on the clients' clock).
  const cpu = new CpuWindow([publisher.pid, consumer.pid, ...opts.servers])
  const cpuStart = setTimeout(() => cpu.start(), t1 - nowMs())
  const cpuEnd = new Promise<void>((resolve) => setTimeout(resolve, t2 - nowMs())).then(() => cpu.stop())
  const pubDone = result<PublishResult>(publisher, p.warmupMs + p.ms + 60_000)
  opts.log(`${opts.label}: publishing (${inFlight} in flight) and consuming (${ack}) for ${p.ms} ms`)
  tell(consumer, `GO ${t1} ${t2}`)
  tell(publisher, `GO ${t1} ${t2} ${inFlight}`)
  const pub = await pubDone
  await cpuEnd
  clearTimeout(cpuStart)
  const consDone = result<ConsumeResult>(consumer, 120_000)
  tell(consumer, `END ${pub.acked}`)
  const cons = await consDone
  opts.log(
    `${opts.label}: ${Math.round((cons.windowConsumed / cons.windowMs) * 1000)} msg/s consumed, ` +
      `${Math.round((pub.windowAcked / pub.windowMs) * 1000)} msg/s published; drained ${Math.round(cons.drainMs)} ms after the publisher stopped`,
  )
  return {
    ack,
    inFlight,
    rate: (cons.windowConsumed / cons.windowMs) * 1000,
    publishRate: (pub.windowAcked / pub.windowMs) * 1000,
    latency: { p50: cons.latency.p50, p99: cons.latency.p99 },
    publishAck: pub.ack,
    publish: pub,
    consume: cons,
    cpuUs: cpu.us / cons.windowConsumed,
  }
}

/**
 * Plexus: one publisher process, then per ack mode a consumer process with a durable name of
 * its own starting at the stream's end. `profileDir`: the client processes run with
 * --cpu-prof; `profileMember`: the members do.
 */
export async function runPlexusE2E(opts: {
  quick: boolean
  log: (s: string) => void
  acks?: Array<'await' | 'nowait'>
  profileDir?: string
  profileMember?: string
}): Promise<E2EResult> {
  const cluster = await startPlexusStreamCluster({
    subject: DURABLE_PATTERN,
    log: opts.log,
    profileDir: opts.profileMember,
    tmpPrefix: 'plexus-bench-e2e-',
  })
  const children: Child[] = []
  const notes: string[] = []
  try {
    const base = ['--system', 'plexus', '--network', cluster.network, '--stream', BENCH_STREAM]
    const publisher = spawnClient(
      [...base, '--role', 'publish', '--subject', DURABLE_SUBJECT, '--in-flight', String(DURABLE_IN_FLIGHT)],
      opts.profileDir,
    )
    children.push(publisher)
    await waitForLine(publisher, /^READY/, 60_000)
    const figures: E2EFigures[] = []
    // 256 in flight with each ack mode, then one publish at a time (latency floor).
    const phases: Array<['await' | 'nowait', number]> = [
      ...(opts.acks ?? (['await', 'nowait'] as const)).map((a): ['await' | 'nowait', number] => [
        a,
        DURABLE_IN_FLIGHT,
      ]),
      ['await', 1],
    ]
    for (const [ack, inFlight] of phases) {
      const info = await cluster.node.streams.info(BENCH_STREAM)
      const from = info.partitions[0].nextOffset
      const name = `e2e-${ack}-${inFlight}`
      const consumer = spawnClient(
        [...base, '--role', 'consume', '--durable', name, '--from', String(from), '--ack', ack],
        opts.profileDir,
      )
      children.push(consumer)
      const label = ack === 'await' ? 'await m.ack()' : 'm.ack() not awaited'
      figures.push(
        await phase(publisher, consumer, label, inFlight, {
          ...opts,
          label: `Plexus (${label}, ${inFlight} in flight)`,
          servers: cluster.members.map((m) => m.pid),
        }),
      )
      if (opts.profileDir)
        notes.push(
          `Plexus profiles: publisher pid ${publisher.pid}, consumer (${label}, ${inFlight} in flight) pid ${consumer.pid}`,
        )
      await stopChild(consumer, 8000)
    }
    if (opts.profileMember)
      notes.push(`Plexus member profiles: the partition leader is pid ${cluster.leader?.pid ?? '?'}`)
    return {
      figures,
      notes,
      durability:
        "Plexus: publish ack 'all' once 2 of 3 replicas hold the message fsynced (fsync 'always', group commit); " +
        'acks are recorded by the consumer and its position committed to the cluster every 100 ms',
    }
  } finally {
    await Promise.all(children.map((c) => stopChild(c, 8000)))
    await cluster.stop()
  }
}

/** Creates a durable pull consumer and returns the server that leads it. */
export async function addDurable(cluster: JetStreamCluster, name: string, startSeq: number): Promise<string> {
  await cluster.jsm.consumers.add(BENCH_STREAM, {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: startSeq,
    max_ack_pending: 1024,
  })
  const ci = await retry('the consumer leader', 30_000, async () => {
    const i = await cluster.jsm.consumers.info(BENCH_STREAM, name)
    return i.cluster?.leader ? i : undefined
  })
  return ci.cluster!.leader!
}

/** JetStream: the same publisher, a durable pull consumer (explicit ack) in its own process. */
export async function runJetStreamE2E(opts: {
  quick: boolean
  log: (s: string) => void
}): Promise<E2EResult | undefined> {
  const cluster = await startJetStreamCluster({
    subject: DURABLE_PATTERN,
    log: opts.log,
    tmpPrefix: 'plexus-bench-js-e2e-',
  })
  if (!cluster) return undefined
  const children: Child[] = []
  try {
    const publisher = spawnClient([
      '--system',
      'jetstream',
      '--server',
      cluster.url(),
      '--role',
      'publish',
      '--subject',
      DURABLE_SUBJECT,
      '--in-flight',
      String(DURABLE_IN_FLIGHT),
    ])
    children.push(publisher)
    await waitForLine(publisher, /^READY/, 30_000)
    const figures: E2EFigures[] = []
    for (const inFlight of [DURABLE_IN_FLIGHT, 1]) {
      const last = (await cluster.jsm.streams.info(BENCH_STREAM)).state.last_seq
      const name = `e2e-${inFlight}`
      const leader = await addDurable(cluster, name, last + 1)
      opts.log(
        `JetStream: publisher on ${cluster.leader.name} (stream leader), consumer on ${leader} (its leader)`,
      )
      const consumer = spawnClient([
        '--system',
        'jetstream',
        '--server',
        cluster.url(leader),
        '--role',
        'consume',
        '--durable',
        name,
        '--batch',
        '1024',
      ])
      children.push(consumer)
      figures.push(
        await phase(publisher, consumer, 'm.ack()', inFlight, {
          ...opts,
          label: `JetStream (${inFlight} in flight)`,
          servers: cluster.servers.map((s) => s.child?.pid),
        }),
      )
      await stopChild(consumer, 5000)
    }
    return {
      figures,
      notes: [],
      durability:
        'JetStream (nats-server 2.9.10): PubAck once a majority of the R3 stream stored the message, not fsynced ' +
        '(file store fsync every 2 min); m.ack() is one fire-and-forget message to the consumer leader, whose ' +
        'state (R3) is replicated by its own Raft group',
    }
  } finally {
    await Promise.all(children.map((c) => stopChild(c, 5000)))
    await cluster.stop()
  }
}

/** The end-to-end table: every Plexus phase beside JetStream's phase with as many publishes in flight. */
export function e2eRows(plexus: E2EFigures[], js: E2EFigures[]): Row[] {
  const rows: Row[] = []
  const phases: Array<[E2EFigures | undefined, number]> =
    plexus.length > 0 ? plexus.map((f) => [f, f.inFlight]) : js.map((f) => [undefined, f.inFlight])
  for (const [f, inFlight] of phases) {
    const j = js.find((x) => x.inFlight === inFlight)
    const v = (pick: (x: E2EFigures) => number) => (f === undefined ? Number.NaN : pick(f))
    const n = (pick: (x: E2EFigures) => number) => (j === undefined ? undefined : pick(j))
    const how = `${inFlight === 1 ? 'one publish at a time' : `${inFlight} in flight`}${f ? `, Plexus ${f.ack}` : ''}`
    rows.push(
      {
        name: `end-to-end, consumed and acked (${how})`,
        value: v((x) => x.rate),
        nats: n((x) => x.rate),
        unit: 'msg/s',
        better: 'higher',
      },
      {
        name: `  ${CPU_PER_MSG} (per message consumed)`,
        value: v((x) => x.cpuUs),
        nats: n((x) => x.cpuUs),
        unit: 'µs',
        better: 'lower',
      },
      {
        name: '  published (acked) meanwhile',
        value: v((x) => x.publishRate),
        nats: n((x) => x.publishRate),
        unit: 'msg/s',
      },
      {
        name: '  publish -> consume latency p50',
        value: v((x) => x.latency.p50),
        nats: n((x) => x.latency.p50),
        unit: 'µs',
        better: 'lower',
      },
      {
        name: '  publish -> consume latency p99',
        value: v((x) => x.latency.p99),
        nats: n((x) => x.latency.p99),
        unit: 'µs',
        better: 'lower',
      },
      {
        name: '  publish -> ack latency p50 (for comparison)',
        value: v((x) => x.publishAck.p50),
        nats: n((x) => x.publishAck.p50),
        unit: 'µs',
      },
      {
        name: '  backlog drained after publishing stopped',
        value: v((x) => x.consume.drainMs),
        nats: n((x) => x.consume.drainMs),
        unit: 'ms',
      },
      {
        name: '  acked publishes never consumed / duplicates',
        value: v((x) => x.consume.missing + x.consume.duplicates),
        nats: n((x) => x.consume.missing + x.consume.duplicates),
        unit: 'msgs',
      },
    )
  }
  return rows
}
