/**
 * Catch-up read: how fast a consumer starting from the earliest offset reads a stream that
 * already holds N 1 KB messages (1,000,000 by default, 100,000 with `--quick`), Plexus
 * beside JetStream, on the 3-replica clusters of bench/stream-clusters.ts.
 *
 * 1. Fill: the bench process publishes N messages (1 KB, `FILL_IN_FLIGHT` outstanding; Plexus
 *    `ack: 'all'`, JetStream `js.publish`), printing progress; bounded by `maxFillMs` (the
 *    part then reads what was filled, and JetStream is filled with the same count).
 * 2. Plain read: a reader process (bench/stream-client.ts) connects first, then on GO opens
 *    the consumer and reads to the N-th message. Plexus: `consume('bench', { from: { offset:
 *    0 } })` (non-durable, no acks); JetStream: an ordered consumer (ephemeral pull consumer,
 *    no acks) from sequence 1.
 * 3. Durable read: the same with a durable consumer that acks every message (Plexus
 *    `durable`, `await m.ack()`; JetStream a durable pull consumer, explicit ack,
 *    `max_ack_pending` 1024, batches of 1024, `m.ack()`).
 * Then every process is stopped and every data directory removed.
 *
 * The stream was just written, so the reads are served from the page cache, not the disk.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { connect } from 'nats'
import { CPU_PER_MSG, CpuWindow } from './cpu.js'
import { addDurable, spawnClient, tell } from './e2e.js'
import { DURABLE_PATTERN, DURABLE_SUBJECT, durablePayload } from './jetstream.js'
import type { CatchupResult } from './stream-client.js'
import { BENCH_STREAM, startJetStreamCluster, startPlexusStreamCluster } from './stream-clusters.js'
import { type Row, sleep, type spawnTracked, stopChild, waitForLine } from './util.js'

type Child = ReturnType<typeof spawnTracked>

/** Publishes outstanding while filling. */
const FILL_IN_FLIGHT = 1024

export interface CatchupFigures {
  /** Messages in the stream when reading started. */
  count: number
  fillMs: number
  /** Bytes the three replicas' data directories hold after the fill (du). */
  diskBytes: number
  /** Largest peak resident memory (VmHWM) among the three server/member processes after the fill. */
  peakRssBytes: number
  /** Publishes that failed during the fill (retried). */
  fillFailures: number
  plain: CatchupResult
  durable?: CatchupResult
  /**
   * CPU µs per message summed over every process of the system (/proc): the fill (publisher,
   * i.e. the bench process, and the 3 members/servers), each read (reader and the 3).
   */
  cpuUs: { fill: number; plain: number; durable: number }
}

export interface CatchupResultSet {
  figures: CatchupFigures
  notes: string[]
}

/** Default message counts and the fill bound. */
export function catchupSizes(quick: boolean) {
  return quick ? { count: 100_000, maxFillMs: 60_000 } : { count: 1_000_000, maxFillMs: 300_000 }
}

/**
 * Publishes `count` messages with `FILL_IN_FLIGHT` outstanding, until `maxMs`; a failed publish
 * (e.g. during a leader change) is retried after a pause, and the fill gives up only after
 * 30 s without any success. Returns how many were acknowledged.
 */
async function fill(
  publish: () => Promise<unknown>,
  opts: { count: number; maxMs: number; log: (s: string) => void; label: string },
): Promise<{ filled: number; ms: number; failures: number }> {
  const t0 = performance.now()
  const end = t0 + opts.maxMs
  let started = 0
  let done = 0
  let failures = 0
  let lastOk = t0
  let firstErr: unknown
  const progress = setInterval(() => {
    const s = (performance.now() - t0) / 1000
    opts.log(
      `${opts.label}: filled ${done.toLocaleString('en-US')} of ${opts.count.toLocaleString('en-US')} ` +
        `(${Math.round(done / s).toLocaleString('en-US')} msg/s)`,
    )
  }, 10_000)
  try {
    const worker = async () => {
      while (started < opts.count && performance.now() < end) {
        started++
        try {
          await publish()
          done++
          lastOk = performance.now()
        } catch (err) {
          firstErr ??= err
          failures++
          started-- // publish it again (an unknown outcome may leave a duplicate: counted from the stream)
          if (performance.now() - lastOk > 30_000) throw firstErr
          await sleep(100)
        }
      }
    }
    await Promise.all(Array.from({ length: FILL_IN_FLIGHT }, worker))
  } finally {
    clearInterval(progress)
  }
  const ms = performance.now() - t0
  opts.log(
    `${opts.label}: filled ${done.toLocaleString('en-US')} messages in ${(ms / 1000).toFixed(1)} s` +
      (failures ? ` (${failures} failed publishes retried; first: ${String(firstErr)})` : ''),
  )
  return { filled: done, ms, failures }
}

/** The largest peak resident set (VmHWM, /proc) among `pids`, in bytes; NaN when unreadable. */
async function peakRss(pids: Array<number | undefined>): Promise<number> {
  let max = Number.NaN
  for (const pid of pids) {
    if (pid === undefined) continue
    try {
      const m = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
      if (m) max = Math.max(Number.isNaN(max) ? 0 : max, Number(m[1]) * 1024)
    } catch {
      // gone or not Linux: unknown
    }
  }
  return max
}

/** Bytes under `dir` (du -sb), 0 when du fails. */
async function diskUsage(dir: string): Promise<number> {
  try {
    const { stdout } = await promisify(execFile)('du', ['-sb', dir])
    return Number(stdout.split(/\s/)[0]) || 0
  } catch {
    return 0
  }
}

/** One reader process: READY, GO, progress lines to the log, RESULT. */
async function read(
  child: Child,
  count: number,
  log: (s: string) => void,
  label: string,
  servers: Array<number | undefined>,
): Promise<CatchupResult & { cpuUs: number }> {
  await waitForLine(child, /^READY/, 60_000)
  const cpu = new CpuWindow([child.pid, ...servers])
  const onData = (d: Buffer) => {
    for (const m of d.toString().matchAll(/^PROGRESS (\d+)$/gm))
      log(`${label}: read ${Number(m[1]).toLocaleString('en-US')} of ${count.toLocaleString('en-US')}`)
  }
  child.stdout?.on('data', onData)
  const done = waitForLine(child, /^RESULT (.*)$/, 600_000)
  cpu.start()
  tell(child, 'GO 0 0')
  try {
    const r = JSON.parse((await done)[1]) as CatchupResult
    const cpuUs = cpu.stop() / r.count
    log(
      `${label}: ${r.count.toLocaleString('en-US')} messages in ${(r.totalMs / 1000).toFixed(2)} s ` +
        `(${Math.round((r.count / r.totalMs) * 1000).toLocaleString('en-US')} msg/s)`,
    )
    return { ...r, cpuUs }
  } finally {
    child.stdout?.off('data', onData)
    await stopChild(child, 8000)
  }
}

/** Plexus: fill, plain read, durable read. */
export async function runPlexusCatchup(opts: {
  count: number
  maxFillMs: number
  log: (s: string) => void
  durable?: boolean
  profileDir?: string
  profileMember?: string
}): Promise<CatchupResultSet> {
  const cluster = await startPlexusStreamCluster({
    subject: DURABLE_PATTERN,
    log: opts.log,
    profileDir: opts.profileMember,
    tmpPrefix: 'plexus-bench-catchup-',
  })
  const notes: string[] = []
  try {
    const { node } = cluster
    const payload = durablePayload()
    const servers = cluster.members.map((m) => m.pid)
    const fillCpu = new CpuWindow([process.pid, ...servers])
    fillCpu.start()
    const f = await fill(() => node.publish(DURABLE_SUBJECT, payload, { ack: 'all', timeout: 60_000 }), {
      count: opts.count,
      maxMs: opts.maxFillMs,
      log: opts.log,
      label: 'Plexus',
    })
    const fillCpuUs = fillCpu.stop() / f.filled
    const count = (await node.streams.info(BENCH_STREAM)).partitions[0].nextOffset
    const diskBytes = await diskUsage(cluster.root)
    const peakRssBytes = await peakRss(cluster.members.map((m) => m.pid))
    const base = ['--system', 'plexus', '--network', cluster.network, '--stream', BENCH_STREAM]
    const plainChild = spawnClient(
      [...base, '--role', 'consume', '--count', String(count), '--from', '0'],
      opts.profileDir,
    )
    if (opts.profileDir) notes.push(`Plexus plain reader profile: pid ${plainChild.pid}`)
    if (opts.profileMember)
      notes.push(`Plexus member profiles: the partition leader is pid ${cluster.leader?.pid ?? '?'}`)
    const plain = await read(plainChild, count, opts.log, 'Plexus plain reader', servers)
    let durable: (CatchupResult & { cpuUs: number }) | undefined
    if (opts.durable !== false) {
      const child = spawnClient(
        [
          ...base,
          '--role',
          'consume',
          '--count',
          String(count),
          '--from',
          '0',
          '--durable',
          'catchup',
          '--ack',
          'await',
        ],
        opts.profileDir,
      )
      if (opts.profileDir) notes.push(`Plexus durable reader profile: pid ${child.pid}`)
      durable = await read(child, count, opts.log, 'Plexus durable reader', servers)
    }
    notes.push(
      "Plexus fill: ack 'all' (2 of 3 replicas fsynced, group commit); durable reader: acks recorded locally, " +
        'position committed to the cluster every 100 ms',
    )
    return {
      figures: {
        count,
        fillMs: f.ms,
        fillFailures: f.failures,
        diskBytes,
        peakRssBytes,
        plain,
        durable,
        cpuUs: { fill: fillCpuUs, plain: plain.cpuUs, durable: durable?.cpuUs ?? Number.NaN },
      },
      notes,
    }
  } finally {
    await cluster.stop()
  }
}

/** JetStream: fill, ordered-consumer read, durable pull consumer read. */
export async function runJetStreamCatchup(opts: {
  count: number
  maxFillMs: number
  log: (s: string) => void
  durable?: boolean
}): Promise<CatchupResultSet | undefined> {
  const cluster = await startJetStreamCluster({
    subject: DURABLE_PATTERN,
    log: opts.log,
    tmpPrefix: 'plexus-bench-js-catchup-',
  })
  if (!cluster) return undefined
  const pc = await connect({ servers: cluster.url(), noEcho: true })
  try {
    const js = pc.jetstream()
    const payload = durablePayload()
    const servers = cluster.servers.map((s) => s.child?.pid)
    const fillCpu = new CpuWindow([process.pid, ...servers])
    fillCpu.start()
    const f = await fill(() => js.publish(DURABLE_SUBJECT, payload), {
      count: opts.count,
      maxMs: opts.maxFillMs,
      log: opts.log,
      label: 'JetStream',
    })
    const fillCpuUs = fillCpu.stop() / f.filled
    const count = (await cluster.jsm.streams.info(BENCH_STREAM)).state.messages
    const diskBytes = await diskUsage(cluster.root)
    const peakRssBytes = await peakRss(cluster.servers.map((s) => s.child?.pid))
    const plain = await read(
      spawnClient([
        '--system',
        'jetstream',
        '--server',
        cluster.url(),
        '--role',
        'consume',
        '--count',
        String(count),
        '--from',
        '1',
      ]),
      count,
      opts.log,
      'JetStream ordered consumer',
      servers,
    )
    let durable: (CatchupResult & { cpuUs: number }) | undefined
    if (opts.durable !== false) {
      const leader = await addDurable(cluster, 'catchup', 1)
      durable = await read(
        spawnClient([
          '--system',
          'jetstream',
          '--server',
          cluster.url(leader),
          '--role',
          'consume',
          '--count',
          String(count),
          '--durable',
          'catchup',
          '--batch',
          '1024',
        ]),
        count,
        opts.log,
        'JetStream durable pull consumer',
        servers,
      )
    }
    return {
      figures: {
        count,
        fillMs: f.ms,
        fillFailures: f.failures,
        diskBytes,
        peakRssBytes,
        plain,
        durable,
        cpuUs: { fill: fillCpuUs, plain: plain.cpuUs, durable: durable?.cpuUs ?? Number.NaN },
      },
      notes: [
        'JetStream fill: PubAck from a majority of the R3 stream, not fsynced (2.9: fsync every 2 min); ordered ' +
          'consumer: ephemeral, R1, no acks; durable: R3 consumer state',
      ],
    }
  } finally {
    await pc.close().catch(() => {})
    await cluster.stop()
  }
}

const rate = (r: CatchupResult | undefined) => (r ? (r.count / r.totalMs) * 1000 : Number.NaN)
const mbps = (r: CatchupResult | undefined) => (r ? r.bytes / 1e6 / (r.totalMs / 1000) : Number.NaN)

/** The catch-up table: Plexus beside JetStream. */
export function catchupRows(plexus: CatchupFigures | undefined, js: CatchupFigures | undefined): Row[] {
  const row = (
    name: string,
    pick: (f: CatchupFigures) => number,
    unit: string,
    better?: 'higher' | 'lower',
  ): Row => ({
    name,
    value: plexus ? pick(plexus) : Number.NaN,
    nats: js ? pick(js) : undefined,
    unit,
    better,
  })
  const n = plexus?.count ?? js?.count ?? 0
  return [
    row(
      `catch-up read from earliest, ${n.toLocaleString('en-US')} x 1 KB, plain`,
      (f) => rate(f.plain),
      'msg/s',
      'higher',
    ),
    row('  payload read rate, plain', (f) => mbps(f.plain), 'MB/s', 'higher'),
    row('  first message after', (f) => f.plain.firstMs, 'ms'),
    row(`  ${CPU_PER_MSG}, plain`, (f) => f.cpuUs.plain, 'µs', 'lower'),
    row('catch-up read, durable consumer, ack each', (f) => rate(f.durable), 'msg/s', 'higher'),
    row('  payload read rate, durable', (f) => mbps(f.durable), 'MB/s', 'higher'),
    row(`  ${CPU_PER_MSG}, durable`, (f) => f.cpuUs.durable, 'µs', 'lower'),
    row('messages in the stream (read)', (f) => f.count, 'msgs'),
    row('fill rate (1,024 publishes in flight)', (f) => (f.count / f.fillMs) * 1000, 'msg/s'),
    row(`  ${CPU_PER_MSG}, fill`, (f) => f.cpuUs.fill, 'µs', 'lower'),
    row('disk used by 3 replicas after the fill', (f) => f.diskBytes / 1e6, 'MB'),
    row('peak RSS of the largest member/server after the fill', (f) => f.peakRssBytes / 1e6, 'MB'),
  ]
}
