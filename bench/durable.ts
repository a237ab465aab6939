/**
 * Plexus side of the durable publish benchmark, on the same topology as JetStream's
 * (bench/jetstream.ts): three member processes (bench/durable-member.ts), each with a fresh
 * data directory, joined to cluster `bench`, host the replicas; the publisher is a Plexus
 * node in the bench process (not a member, as the JetStream publisher is a client), which
 * creates the stream (`bench.durable.>`, 3 replicas, 1 partition) and publishes 1 KB
 * messages with `ack: 'all'`, one at a time and 256 in flight.
 *
 * Durability: the replicas' Raft logs run with the commit log's default, fsync 'always'
 * (group commit: appends waiting together share one fdatasync); `ack: 'all'` resolves once
 * a majority of the partition's replicas (2 of 3) hold the message fsynced.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createNode, generateKey, type PlexusNode, type StreamInfo } from '../src/index.js'
import {
  DURABLE_IN_FLIGHT,
  DURABLE_PATTERN,
  DURABLE_SUBJECT,
  type DurableFigures,
  durablePayload,
  measureDurable,
} from './jetstream.js'
import { sleep, spawnTracked, stopChild, waitForLine } from './util.js'

/** Cluster that owns the benchmark stream. */
const CLUSTER = 'bench'
/** Name of the benchmark stream. */
const STREAM = 'bench'

type Child = ReturnType<typeof spawnTracked>

/** One member process and what it said when ready. */
interface Member {
  child: Child
  id: string
  pid: number
}

/** What the Plexus durable run reports besides the figures (for the notes under the table). */
export interface PlexusDurableResult {
  figures: DurableFigures
  notes: string[]
}

function connectedMembers(node: PlexusNode): number {
  return (
    node
      .status()
      .clusters.find((c) => c.name === CLUSTER)
      ?.members.filter((m) => m.connected).length ?? 0
  )
}

/** Retries `probe` until it returns a value (errors count as "not yet") or `ms` passes. */
async function retry<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms
  let lastErr: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}`,
        lastErr ? { cause: lastErr } : undefined,
      )
    await sleep(100)
  }
}

/**
 * Runs the Plexus durable benchmark. `profileDir`: every member runs with `--cpu-prof`
 * into that directory (the notes say which pid led the partition).
 */
export async function runPlexusDurableBench(opts: {
  quick?: boolean
  log?: (s: string) => void
  profileDir?: string
}): Promise<PlexusDurableResult> {
  const log = opts.log ?? (() => {})
  const network = `bench-${randomBytes(6).toString('hex')}`
  const key = generateKey()
  const root = await mkdtemp(join(tmpdir(), 'plexus-bench-durable-'))
  const script = new URL('./durable-member.js', import.meta.url).pathname
  const nodeArgs = opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(opts.profileDir)] : []
  const members: Member[] = []
  let children: Child[] = []
  let publisher: PlexusNode | undefined
  try {
    const spawnedAt = performance.now()
    children = [0, 1, 2].map((i) =>
      spawnTracked(process.execPath, [
        ...nodeArgs,
        script,
        '--network',
        network,
        '--key',
        key,
        '--cluster',
        CLUSTER,
        '--data-dir',
        join(root, `m${i}`),
      ]),
    )
    for (const child of children) {
      const m = await waitForLine(child, /^READY (\S+) (\d+)/, 30_000)
      members.push({ child, id: m[1], pid: Number(m[2]) })
    }
    publisher = await createNode({
      network,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      discovery: { local: true, mdns: false },
    })
    const node = publisher
    const t0 = Date.now()
    await retry('the publisher to see 3 members of bench', 20_000, async () =>
      connectedMembers(node) >= 3 ? true : undefined,
    )
    log(`Plexus: network ${network}, publisher sees 3 members after ${Date.now() - t0} ms`)
    await retry('the stream to be created', 30_000, () =>
      node.streams.create(STREAM, { cluster: CLUSTER, subject: DURABLE_PATTERN, replicas: 3, partitions: 1 }),
    )
    const ready = (i: StreamInfo) => i.partitions[0]?.leader && i.partitions[0].inSync.length >= 3
    const info = await retry('a partition leader and 3 in-sync replicas', 30_000, async () => {
      const i = await node.streams.info(STREAM)
      return ready(i) ? i : undefined
    })
    const leaderId = info.partitions[0].leader
    const leader = members.find((m) => m.id === leaderId)
    log(
      `Plexus: stream ${STREAM} R3, partition 0 led by member pid ${leader?.pid ?? '?'} after ${Date.now() - t0} ms`,
    )
    const payload = durablePayload()
    const publish = () => node.publish(DURABLE_SUBJECT, payload, { ack: 'all', timeout: 30_000 })
    // The first publishes may race the publisher learning where the leader is: retry them.
    let probes = 0
    await retry('a first acknowledged publish', 30_000, async () => {
      const ack = await publish()
      probes++
      if (!ack) throw new Error('publish with ack: all resolved without an ack')
      return ack
    })
    const m = await measureDurable(publish, { quick: opts.quick === true, log, label: 'Plexus' })
    const end = await node.streams.info(STREAM)
    const stored = end.partitions[0].nextOffset
    const notes: string[] = []
    if (opts.profileDir) {
      const at = ([a, b]: [number, number]) =>
        `--from ${Math.round(a - spawnedAt)} --to ${Math.round(b - spawnedAt)}`
      notes.push(
        `profiles in ${resolve(opts.profileDir)}: the partition leader is pid ${leader?.pid ?? '?'}; ` +
          `followers ${members
            .filter((x) => x !== leader)
            .map((x) => x.pid)
            .join(', ')}; phases (ms since the members started, warm-up included): one at a time ` +
          `${at(m.phases.sequential)}, ${DURABLE_IN_FLIGHT} in flight ${at(m.phases.pipelined)}`,
      )
    }
    return {
      figures: {
        ...m,
        acked: m.acked + probes,
        stored,
        durability:
          "Plexus: ack 'all' resolves once 2 of the partition's 3 replicas hold the message in their " +
          "Raft log, fsynced (commit log fsync 'always', its default: group commit, one fdatasync " +
          'for the appends waiting together)',
      },
      notes,
    }
  } finally {
    await publisher?.stop().catch(() => {})
    // SIGTERM first so members stop their nodes (and write --cpu-prof output), then SIGKILL.
    await Promise.all(children.map((c) => stopChild(c, 8000)))
    await rm(root, { recursive: true, force: true }).catch(() => {})
    // Same-host discovery leaves this network's (now empty) directory behind: remove it.
    await rmdir(join(tmpdir(), 'plexus-local', `${network}-open`)).catch(() => {})
  }
}
