/**
 * JetStream side of the durable publish benchmark: three `nats-server` processes (the
 * Debian package, 2.9) clustered on loopback, JetStream on, each with its own fresh store
 * directory; a stream with three replicas on file storage capturing `bench.durable.>`; the
 * publisher is the bench process (`nats` npm client connected to the server that leads the
 * stream, JetStream's best case), publishing 1 KB messages with `js.publish()`, which
 * resolves on the stream's PubAck.
 *
 * Durability: nats-server 2.9 acks once the stream's Raft group has the message on a
 * majority of replicas, written but not fsynced; its file store fsyncs every 2 minutes.
 * 2.9 has no setting to change that (`jetstream { sync_interval: always }` came with 2.10;
 * 2.9.10 refuses the config with `unknown field "sync_interval"`).
 */
import { connect, type NatsConnection } from 'nats'
import { CPU_PER_MSG, idleCpu } from './cpu.js'
import { BENCH_STREAM, startJetStreamCluster } from './stream-clusters.js'
import { concurrent, type LatencySummary, type Row, sequential } from './util.js'

/** Subject the durable benchmarks publish to (both systems' streams capture `bench.durable.>`). */
export const DURABLE_SUBJECT = 'bench.durable.x'
/** Pattern captured by the benchmark stream. */
export const DURABLE_PATTERN = 'bench.durable.>'
/** Publishes kept outstanding in the pipelined phase. */
export const DURABLE_IN_FLIGHT = 256

/** What the durable part measures, for one system. */
export interface DurableFigures {
  /** One publish at a time: acked publishes per second and their latency. */
  sequentialRate: number
  sequential: LatencySummary
  /** `DURABLE_IN_FLIGHT` publishes outstanding: acked publishes per second and latency. */
  pipelinedRate: number
  pipelined: LatencySummary
  /** CPU µs per acked publish, summed over every process (publisher, servers/members). */
  sequentialCpuUs: number
  pipelinedCpuUs: number
  /**
   * CPU ms per second of the same processes with nothing published (last, after the
   * pipelined phase settled): heartbeats, ticks and timers of the stream's replicas.
   */
  idleCpuMsPerS: number
  /** Publishes that failed in the pipelined phase. */
  errors: number
  /** Publishes acked in all phases, and messages the stream holds at the end (should match). */
  acked: number
  stored: number
  /** The durability settings in force, in one sentence. */
  durability: string
  /** When each phase ran (`performance.now()` ms, warm-up included), to slice profiles. */
  phases: { sequential: [number, number]; pipelined: [number, number] }
}

/** Measurement sizes; `quick` shortens every phase. */
export function durablePhases(quick: boolean) {
  return quick
    ? {
        seq: { warmup: 100, count: 1_000_000, ms: 2000 },
        conc: { inFlight: DURABLE_IN_FLIGHT, warmupMs: 500, ms: 2000 },
        idleMs: 2000,
      }
    : {
        seq: { warmup: 300, count: 1_000_000, ms: 4000 },
        conc: { inFlight: DURABLE_IN_FLIGHT, warmupMs: 1000, ms: 4000 },
        idleMs: 3000,
      }
}

/** The 1 KB payload of both systems. */
export function durablePayload(): Uint8Array {
  const b = new Uint8Array(1024)
  for (let i = 0; i < b.length; i++) b[i] = (i * 131 + 17) & 0xff
  return b
}

/**
 * Runs both phases against `publish` (which must resolve once the message is acked):
 * one at a time, then `DURABLE_IN_FLIGHT` outstanding, then nothing (idle CPU). Shared by
 * both systems. `pids`: every process involved (this one included), for the CPU figures.
 */
export async function measureDurable(
  publish: () => Promise<unknown>,
  opts: { quick: boolean; log: (s: string) => void; label: string; pids: Array<number | undefined> },
): Promise<Omit<DurableFigures, 'stored' | 'durability'>> {
  const p = durablePhases(opts.quick)
  let acked = 0
  const call = async () => {
    await publish()
    acked++
  }
  opts.log(`${opts.label}: one publish at a time`)
  const t0 = performance.now()
  const seq = await sequential(call, { ...p.seq, pids: opts.pids })
  const t1 = performance.now()
  opts.log(`${opts.label}: ${DURABLE_IN_FLIGHT} publishes in flight`)
  const conc = await concurrent(call, { ...p.conc, pids: opts.pids })
  const t2 = performance.now()
  opts.log(`${opts.label}: idle CPU`)
  await new Promise((r) => setTimeout(r, 500)) // the last acks and commit notices settle
  const idleCpuMsPerS = await idleCpu(opts.pids, p.idleMs)
  return {
    idleCpuMsPerS,
    phases: { sequential: [t0, t1], pipelined: [t1, t2] },
    sequentialRate: seq.mean > 0 ? 1e6 / seq.mean : 0,
    sequential: seq,
    pipelinedRate: conc.rate,
    pipelined: conc.latency,
    sequentialCpuUs: seq.cpuUs,
    pipelinedCpuUs: conc.cpuUs,
    errors: conc.errors,
    acked,
  }
}

/** The durable table rows: Plexus beside JetStream (either may be absent). */
export function durableRows(plexus: DurableFigures | undefined, js: DurableFigures | undefined): Row[] {
  const v = (f: DurableFigures | undefined, pick: (f: DurableFigures) => number) =>
    f === undefined ? Number.NaN : pick(f)
  const row = (
    name: string,
    pick: (f: DurableFigures) => number,
    unit: string,
    better?: 'lower' | 'higher',
  ) => ({
    name,
    value: v(plexus, pick),
    nats: js === undefined ? undefined : pick(js),
    unit,
    better,
  })
  return [
    row('publish ack all, R3, 1 KB, one at a time', (f) => f.sequentialRate, 'msg/s', 'higher'),
    row('  latency p50, one at a time', (f) => f.sequential.p50, 'µs'),
    row(`  ${CPU_PER_MSG}, one at a time`, (f) => f.sequentialCpuUs, 'µs', 'lower'),
    row('  latency p99, one at a time', (f) => f.sequential.p99, 'µs'),
    row(
      `publish ack all, R3, 1 KB, ${DURABLE_IN_FLIGHT} in flight`,
      (f) => f.pipelinedRate,
      'msg/s',
      'higher',
    ),
    row(`  latency p50, ${DURABLE_IN_FLIGHT} in flight`, (f) => f.pipelined.p50, 'µs'),
    row(`  ${CPU_PER_MSG}, ${DURABLE_IN_FLIGHT} in flight`, (f) => f.pipelinedCpuUs, 'µs', 'lower'),
    row(`  latency p99, ${DURABLE_IN_FLIGHT} in flight`, (f) => f.pipelined.p99, 'µs'),
    row('idle CPU, all processes (nothing published)', (f) => f.idleCpuMsPerS, 'ms/s'),
    row('acked but not in the stream at the end', (f) => f.acked - f.stored, 'msgs'),
  ]
}

/**
 * Runs the JetStream durable benchmark; returns undefined (after printing why) without
 * nats-server. Every server is stopped and every store directory removed at the end.
 */
export async function runJetStreamDurableBench(opts: {
  quick?: boolean
  log?: (s: string) => void
}): Promise<DurableFigures | undefined> {
  const log = opts.log ?? (() => {})
  const cluster = await startJetStreamCluster({ subject: DURABLE_PATTERN, log })
  if (!cluster) return undefined
  let pc: NatsConnection | undefined
  try {
    // Publish through the stream leader's server: JetStream's best case (no extra hop).
    pc = await connect({ servers: cluster.url(), noEcho: true })
    log(`JetStream: publisher connected to ${cluster.leader.name}, the stream leader`)
    const js = pc.jetstream()
    const payload = durablePayload()
    const m = await measureDurable(() => js.publish(DURABLE_SUBJECT, payload), {
      quick: opts.quick === true,
      log,
      label: 'JetStream',
      pids: [process.pid, ...cluster.servers.map((s) => s.child?.pid)],
    })
    const stored = (await cluster.jsm.streams.info(BENCH_STREAM)).state.messages
    return {
      ...m,
      stored,
      durability:
        'JetStream (nats-server 2.9.10): file storage, 3 replicas; PubAck once a majority of the ' +
        "stream's Raft group stored the message (written, not fsynced); the file store fsyncs every " +
        '2 minutes (default; 2.9 cannot be set to fsync per message: no sync_interval before 2.10)',
    }
  } finally {
    await pc?.close().catch(() => {})
    await cluster.stop()
  }
}
