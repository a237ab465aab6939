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
import { resolve } from 'node:path'
import {
  DURABLE_IN_FLIGHT,
  DURABLE_PATTERN,
  DURABLE_SUBJECT,
  type DurableFigures,
  durablePayload,
  measureDurable,
} from './jetstream.js'
import { BENCH_STREAM, retry, startPlexusStreamCluster } from './stream-clusters.js'

/** What the Plexus durable run reports besides the figures (for the notes under the table). */
export interface PlexusDurableResult {
  figures: DurableFigures
  notes: string[]
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
  const cluster = await startPlexusStreamCluster({
    subject: DURABLE_PATTERN,
    log,
    profileDir: opts.profileDir,
  })
  try {
    const { node, members, leader, spawnedAt } = cluster
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
    const m = await measureDurable(publish, {
      quick: opts.quick === true,
      log,
      label: 'Plexus',
      pids: [process.pid, ...members.map((x) => x.pid)],
    })
    const end = await node.streams.info(BENCH_STREAM)
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
    await cluster.stop()
  }
}
