/**
 * `npm run bench`: runs each benchmark part and prints Plexus figures beside NATS figures
 * measured in the same run.
 *
 *   npm run bench                      # every part
 *   npm run bench -- --only request    # request-reply only (Plexus and NATS)
 *   npm run bench -- --only log        # the log part (bench/log.ts), if present
 *   npm run bench -- --only pubsub     # pub/sub 1->1 and 1->5, Plexus and NATS (separate processes)
 *   npm run bench -- --only pubsub --fanout-only   # pub/sub 1->5 only
 *   npm run bench -- --only broadcast  # broadcast to 5 members, beside NATS publish to 5 subscribers
 *   npm run bench -- --only tunnel     # tunnel 1 KB / 64 KB, beside a raw libp2p stream
 *   npm run bench -- --only durable    # publish with ack 'all', 3 replicas, beside JetStream R3
 *   npm run bench -- --only e2e        # publish ack 'all' -> durable consume + ack, R3, beside JetStream
 *   npm run bench -- --only catchup    # read 1M x 1 KB from earliest (--quick: 100k), beside JetStream
 *   npm run bench -- --only catchup --messages 300000   # catch-up with another message count
 *   npm run bench -- --quick           # shorter phases
 *   npm run bench -- --only overlay    # 100 nodes (5 per process; --nodes N): links, idle CPU, RSS, new member, 10% killed
 *   npm run bench -- --no-nats         # Plexus only (e.g. while profiling)
 *   npm run bench -- --profile-member DIR   # member 0 runs with --cpu-prof into DIR
 *                                           # (durable: all 3 members; the notes name the leader)
 *   npm run bench -- --rounds 3        # pubsub/broadcast/tunnel/durable: 3 rounds side by side, best kept
 *   npm run bench -- --node-flags="--max-semi-space-size=4"   # pubsub/broadcast: extra Node
 *                                      # flags for every sender and receiver, Plexus and NATS alike
 *   npm run bench -- --cpus 1          # every process of both systems pinned to the same 1 core
 *                                      # (taskset; refused without it). Default: not pinned.
 *   npm run bench -- --profile DIR     # pubsub/broadcast/tunnel: Plexus senders and receivers
 *                                      # run with --cpu-prof into DIR (e2e/catchup: the Plexus
 *                                      # publisher and consumer processes; members: --profile-member)
 */
import { existsSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { createProgress } from '../src/cli/progress.js'
import {
  type CatchupFigures,
  catchupRows,
  catchupSizes,
  runJetStreamCatchup,
  runPlexusCatchup,
} from './catchup.js'
import { allowedCores, CPU_PER_MSG, chooseCores, pinSelf } from './cpu.js'
import { runPlexusDurableBench } from './durable.js'
import { type E2EFigures, e2eRows, runJetStreamE2E, runPlexusE2E } from './e2e.js'
import { formatTunnelTable, runBroadcastPart, runPubsubPart, runTunnelPart } from './flow.js'
import { type DurableFigures, durableRows, runJetStreamDurableBench } from './jetstream.js'
import { NATS_INSTALL_HINT, type RequestFigures, runNatsRequestBench } from './nats.js'
import { runOverlayPart } from './overlay.js'
import { runPlexusRequestBench } from './request.js'
import { formatTable, type Row, stopAllChildren } from './util.js'

type LogRow = { name: string; value: number; unit: string; note?: string }
type LogBench = (opts?: { quick?: boolean }) => Promise<LogRow[]>

const PARTS = [
  'request',
  'pubsub',
  'broadcast',
  'tunnel',
  'log',
  'durable',
  'e2e',
  'catchup',
  'overlay',
] as const
type Part = (typeof PARTS)[number]

/** 1-minute load average: other work on the machine skews every figure. */
const loadAvg = () => loadavg()[0].toFixed(2)

/** The part and round running, on stderr when it is a terminal (nothing otherwise). */
const bar = createProgress({ label: 'bench', unit: 'parts' })
let partRunning = ''
const progress = (s: string) => bar.detail(`${partRunning} · ${s}`)
/** A line of results on stdout, with the progress line out of its way. */
const out = (s: string) => bar.around(() => console.log(s))

function requestRows(plexus: RequestFigures, nats: RequestFigures | undefined): Row[] {
  const n = nats
  return [
    {
      name: 'request p50, sequential, 1 member',
      value: plexus.latency1.p50,
      nats: n?.latency1.p50,
      unit: 'µs',
      better: 'lower',
    },
    {
      name: 'request p99, sequential, 1 member',
      value: plexus.latency1.p99,
      nats: n?.latency1.p99,
      unit: 'µs',
      better: 'lower',
    },
    {
      name: 'request p50, sequential, 3 members',
      value: plexus.latency3.p50,
      nats: n?.latency3.p50,
      unit: 'µs',
      better: 'lower',
    },
    {
      name: 'request p99, sequential, 3 members',
      value: plexus.latency3.p99,
      nats: n?.latency3.p99,
      unit: 'µs',
      better: 'lower',
    },
    {
      name: 'throughput, 100 in flight, 3 members',
      value: plexus.throughput3,
      nats: n?.throughput3,
      unit: 'req/s',
      better: 'higher',
    },
    {
      name: 'throughput, 100 in flight, 1 member',
      value: plexus.throughput1,
      nats: n?.throughput1,
      unit: 'req/s',
      better: 'higher',
    },
    {
      name: `  ${CPU_PER_MSG}, 100 in flight, 3 members`,
      value: plexus.cpu.conc3,
      nats: n?.cpu.conc3,
      unit: 'µs',
      better: 'lower',
    },
    {
      name: `  ${CPU_PER_MSG}, 100 in flight, 1 member`,
      value: plexus.cpu.conc1,
      nats: n?.cpu.conc1,
      unit: 'µs',
      better: 'lower',
    },
    {
      name: `  ${CPU_PER_MSG}, sequential, 1 member`,
      value: plexus.cpu.seq1,
      nats: n?.cpu.seq1,
      unit: 'µs',
    },
    {
      name: `  ${CPU_PER_MSG}, sequential, 3 members`,
      value: plexus.cpu.seq3,
      nats: n?.cpu.seq3,
      unit: 'µs',
    },
    {
      name: '  idle CPU, all processes (no request in flight)',
      value: plexus.idleCpuMsPerS,
      nats: n?.idleCpuMsPerS,
      unit: 'ms/s',
    },
    {
      name: 'p50 under load (100 in flight, 3 members)',
      value: plexus.loaded3.p50,
      nats: n?.loaded3.p50,
      unit: 'µs',
    },
    {
      name: 'p99 under load (100 in flight, 3 members)',
      value: plexus.loaded3.p99,
      nats: n?.loaded3.p99,
      unit: 'µs',
    },
  ]
}

async function runRequestPart(opts: {
  quick: boolean
  nats: boolean
  profileMember?: string
}): Promise<Row[]> {
  const payload = new Uint8Array(1024)
  for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff
  let nats: RequestFigures | undefined
  if (opts.nats) {
    progress('NATS: starting nats-server and 3 responder processes (queue group), requester in this process')
    nats = await runNatsRequestBench({ payload, quick: opts.quick, log: progress })
  }
  progress('Plexus: starting 3 member processes, requester node in this process')
  const memberNodeArgs = opts.profileMember
    ? ['--cpu-prof', '--cpu-prof-dir', resolve(opts.profileMember)]
    : undefined
  const plexus = await runPlexusRequestBench({ payload, quick: opts.quick, log: progress, memberNodeArgs })
  return requestRows(plexus, nats)
}

/**
 * Durable publish: JetStream R3, then Plexus R3, `rounds` times side by side; each system's
 * round with the best pipelined rate is kept (all rounds are listed in the notes).
 */
async function runDurablePart(opts: {
  quick: boolean
  nats: boolean
  profileMember?: string
  rounds: number
}): Promise<{ rows: Row[]; notes: string[] }> {
  let js: DurableFigures | undefined
  let plexus: DurableFigures | undefined
  const notes: string[] = []
  const seen: string[] = []
  const fig = (f: DurableFigures) => `${Math.round(f.sequentialRate)} / ${Math.round(f.pipelinedRate)} msg/s`
  for (let i = 0; i < opts.rounds; i++) {
    if (opts.rounds > 1) progress(`round ${i + 1} of ${opts.rounds}`)
    let round = ''
    if (opts.nats) {
      progress('JetStream: starting 3 clustered nats-server processes, publisher in this process')
      const j = await runJetStreamDurableBench({ quick: opts.quick, log: progress })
      if (j && (!js || j.pipelinedRate > js.pipelinedRate)) js = j
      if (j) round += `JetStream ${fig(j)}`
    }
    progress('Plexus: starting 3 member processes, publisher node in this process')
    try {
      const r = await runPlexusDurableBench({
        quick: opts.quick,
        log: progress,
        profileDir: opts.profileMember,
      })
      if (!plexus || r.figures.pipelinedRate > plexus.pipelinedRate) plexus = r.figures
      notes.push(...r.notes)
      round += `${round ? ', ' : ''}Plexus ${fig(r.figures)}`
    } catch (err) {
      // Keep JetStream's figures on the table when the Plexus side fails.
      if (!js) throw err
      notes.push(`Plexus FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    }
    seen.push(round)
  }
  if (opts.rounds > 1)
    notes.push(`rounds (one at a time / 256 in flight), best of each kept: ${seen.join('; ')}`)
  for (const f of [plexus, js])
    if (f && f.errors > 0) notes.push(`${f.durability.split(':')[0]}: ${f.errors} failed publishes`)
  for (const f of [plexus, js]) if (f) notes.push(f.durability)
  return { rows: durableRows(plexus, js), notes }
}

/**
 * End-to-end: JetStream, then Plexus (await m.ack(), then m.ack() not awaited), `rounds`
 * times; each row's best round (by consumed rate) is kept, every round is in the notes.
 */
async function runE2EPart(opts: {
  quick: boolean
  nats: boolean
  rounds: number
  profileDir?: string
  profileMember?: string
}): Promise<{ rows: Row[]; notes: string[] }> {
  const best = new Map<string, E2EFigures>()
  const keep = (key: string, f: E2EFigures) => {
    const b = best.get(key)
    if (!b || f.rate > b.rate) best.set(key, f)
  }
  const notes: string[] = []
  const durability = new Set<string>()
  const seen: string[] = []
  const fig = (f: E2EFigures) => `${f.inFlight} in flight ${Math.round(f.rate)} msg/s`
  for (let i = 0; i < opts.rounds; i++) {
    if (opts.rounds > 1) progress(`round ${i + 1} of ${opts.rounds}`)
    const round: string[] = []
    if (opts.nats) {
      progress('JetStream: 3 clustered nats-servers; publisher and durable pull consumer in 2 processes')
      const j = await runJetStreamE2E({ quick: opts.quick, log: progress })
      if (j) {
        for (const f of j.figures) {
          keep(`js ${f.inFlight}`, f)
          round.push(`JetStream ${fig(f)}`)
        }
        durability.add(j.durability)
      }
    }
    progress('Plexus: 3 member processes; publisher and durable consumer in 2 processes (non-member nodes)')
    try {
      const r = await runPlexusE2E({
        quick: opts.quick,
        log: progress,
        profileDir: opts.profileDir,
        profileMember: opts.profileMember,
      })
      for (const f of r.figures) {
        keep(`plexus ${f.ack} ${f.inFlight}`, f)
        round.push(`Plexus ${f.ack} ${fig(f)}`)
      }
      notes.push(...r.notes)
      durability.add(r.durability)
    } catch (err) {
      if (![...best.keys()].some((k) => k.startsWith('js'))) throw err
      notes.push(`Plexus FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    }
    seen.push(round.join(', '))
  }
  if (opts.rounds > 1)
    notes.push(`rounds (consumed and acked per second), best of each kept: ${seen.join('; ')}`)
  const all = [...best.entries()]
  for (const [k, f] of all)
    if (f.publish.errors > 0)
      notes.push(`${k}: ${f.publish.errors} failed publishes (${f.publish.firstError})`)
  notes.push(...durability)
  const pick = (prefix: string) => all.filter(([k]) => k.startsWith(prefix)).map(([, f]) => f)
  return { rows: e2eRows(pick('plexus'), pick('js')), notes }
}

/** Catch-up read: Plexus first (its fill may be bounded by time), then JetStream with the same count. */
async function runCatchupPart(opts: {
  quick: boolean
  nats: boolean
  messages?: number
  profileDir?: string
  profileMember?: string
}): Promise<{ rows: Row[]; notes: string[] }> {
  const sizes = catchupSizes(opts.quick)
  const count = opts.messages ?? sizes.count
  const notes: string[] = []
  let plexus: CatchupFigures | undefined
  let js: CatchupFigures | undefined
  progress(
    `Plexus: 3 member processes; filling ${count.toLocaleString('en-US')} x 1 KB, then reader processes`,
  )
  try {
    const r = await runPlexusCatchup({
      count,
      maxFillMs: sizes.maxFillMs,
      log: progress,
      profileDir: opts.profileDir,
      profileMember: opts.profileMember,
    })
    plexus = r.figures
    notes.push(...r.notes)
    if (plexus.count < count)
      notes.push(
        `Plexus filled ${plexus.count} of ${count} within ${sizes.maxFillMs / 1000} s: both read that many`,
      )
  } catch (err) {
    if (!opts.nats) throw err
    notes.push(`Plexus FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  }
  if (opts.nats) {
    const n = plexus?.count ?? count
    progress(
      `JetStream: 3 clustered nats-servers; filling ${n.toLocaleString('en-US')} x 1 KB, then reader processes`,
    )
    const r = await runJetStreamCatchup({ count: n, maxFillMs: sizes.maxFillMs, log: progress })
    if (r) {
      js = r.figures
      notes.push(...r.notes)
    }
  }
  for (const [name, f] of [
    ['Plexus', plexus],
    ['JetStream', js],
  ] as const)
    if (f && f.fillFailures > 0)
      notes.push(`${name}: ${f.fillFailures} publishes failed during the fill (retried)`)
  return { rows: catchupRows(plexus, js), notes }
}

async function runLogPart(quick: boolean): Promise<Row[] | string> {
  const url = new URL('./log.js', import.meta.url)
  if (!existsSync(url)) return 'skipped: bench/log.ts is not there yet'
  const mod = (await import(url.href)) as { runLogBench?: LogBench }
  if (typeof mod.runLogBench !== 'function') return 'skipped: bench/log.ts does not export runLogBench'
  const rows = await mod.runLogBench({ quick })
  return rows.map((r) => ({ name: r.name, value: r.value, unit: r.unit, note: r.note }))
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'no-nats': { type: 'boolean', default: false },
      'profile-member': { type: 'string' },
      profile: { type: 'string' },
      rounds: { type: 'string' },
      messages: { type: 'string' },
      'node-flags': { type: 'string' },
      'fanout-only': { type: 'boolean', default: false },
      cpus: { type: 'string' },
      nodes: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    out(
      `usage: npm run bench -- [--only ${PARTS.join('|')}] [--quick] [--no-nats] [--profile-member DIR] [--profile DIR] [--rounds N] [--messages N] [--node-flags FLAGS] [--fanout-only] [--cpus N]`,
    )
    return 0
  }
  if (values.only !== undefined && !PARTS.includes(values.only as Part)) {
    console.error(`--only must be one of ${PARTS.join(', ')}, got ${JSON.stringify(values.only)}`)
    return 2
  }
  const parts: Part[] = values.only ? [values.only as Part] : [...PARTS]
  const quick = values.quick === true
  const rounds = values.rounds === undefined ? 1 : Number(values.rounds)
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) {
    console.error(`--rounds must be an integer 1..10, got ${JSON.stringify(values.rounds)}`)
    return 2
  }
  const messages = values.messages === undefined ? undefined : Number(values.messages)
  if (messages !== undefined && (!Number.isSafeInteger(messages) || messages < 1 || messages > 10_000_000)) {
    console.error(`--messages must be an integer 1..10000000, got ${JSON.stringify(values.messages)}`)
    return 2
  }
  // --cpus N: pin this process now, before any child exists; every child inherits the cores.
  let pinned = ''
  if (values.cpus !== undefined) {
    try {
      const cores = chooseCores(values.cpus, allowedCores())
      pinSelf(cores)
      pinned = `  pinned to core${cores.length > 1 ? 's' : ''} ${cores.join(',')} (--cpus ${cores.length}, taskset; every process inherits)`
    } catch (err) {
      console.error(`bench: ${err instanceof Error ? err.message : String(err)}`)
      return 2
    }
  }
  out(
    `Plexus benchmark  ${new Date().toISOString()}  node ${process.version}  ${cpus().length} cores  ` +
      `${(totalmem() / 2 ** 30).toFixed(1)} GiB  load ${loadAvg()}${quick ? '  (quick)' : ''}${pinned}`,
  )
  let failed = false
  bar.start(parts.length)
  for (const [i, part] of parts.entries()) {
    partRunning = `${part} (${i + 1}/${parts.length})`
    bar.detail(partRunning)
    out(`\n== ${part} ==`)
    const t0 = Date.now()
    try {
      if (part === 'request') {
        const rows = await runRequestPart({
          quick,
          nats: values['no-nats'] !== true,
          profileMember: values['profile-member'],
        })
        out(formatTable(rows))
        if (rows.every((r) => r.nats === undefined) && values['no-nats'] !== true) out(NATS_INSTALL_HINT)
        out(
          '1 KB payload echo; requester in the bench process, 3 responders/members in 3 separate processes; ' +
            'NATS: one nats-server, queue group; Plexus: TCP loopback, noise, yamux.',
        )
      } else if (part === 'pubsub' || part === 'broadcast') {
        const flowOpts = {
          quick,
          nats: values['no-nats'] !== true,
          profileDir: values.profile,
          rounds,
          nodeFlags: (values['node-flags'] ?? '').split(/\s+/).filter(Boolean),
          fanoutOnly: values['fanout-only'] === true,
          log: progress,
        }
        const { rows, notes } =
          part === 'pubsub' ? await runPubsubPart(flowOpts) : await runBroadcastPart(flowOpts)
        out(formatTable(rows))
        for (const n of notes) out(`  ${n}`)
        out(
          part === 'pubsub'
            ? '1 KB messages; publisher and each subscriber in its own process; the publisher sends as fast as ' +
                'it can (Plexus: await publish(); NATS: publish() with a flush every 16,384), receive rate from ' +
                "each subscriber's first to last message. NATS: one nats-server; Plexus: TCP loopback, noise, yamux."
            : '1 KB messages; sender (not a member) and 5 members each in its own process. Plexus: await broadcast(), ' +
                'which waits while a link queue is full. NATS figures: publish ' +
                'to 5 plain subscribers, the nearest NATS equivalent (NATS has no cluster broadcast).',
        )
      } else if (part === 'durable') {
        const { rows, notes } = await runDurablePart({
          quick,
          nats: values['no-nats'] !== true,
          profileMember: values['profile-member'],
          rounds,
        })
        out(formatTable(rows, 'JetStream'))
        for (const n of notes) out(`  ${n}`)
        out(
          "1 KB messages to a stream with 3 replicas (1 partition) on 3 server/member processes, ack 'all' " +
            '(JetStream: PubAck); publisher in the bench process (JetStream: connected to the ' +
            "stream leader's server; Plexus: a non-member node). One at a time, then 256 in flight.",
        )
      } else if (part === 'e2e') {
        const { rows, notes } = await runE2EPart({
          quick,
          nats: values['no-nats'] !== true,
          rounds,
          profileDir: values.profile,
          profileMember: values['profile-member'],
        })
        out(formatTable(rows, 'JetStream'))
        for (const n of notes) out(`  ${n}`)
        out(
          "End to end: 1 KB messages published with ack 'all' (JetStream: PubAck), 256 in flight (then one at a " +
            'time, each phase with a new durable consumer), to a stream with ' +
            '3 replicas (1 partition) on 3 member/server processes, while a durable consumer acks every message; ' +
            'publisher and consumer each in its own process (Plexus: non-member nodes; JetStream: the publisher on ' +
            "the stream leader's server, the consumer on its consumer leader's). Rate: messages consumed and acked " +
            'per second over the window; latency: from the publish call to the consumer (timestamp in the payload).',
        )
      } else if (part === 'catchup') {
        const { rows, notes } = await runCatchupPart({
          quick,
          nats: values['no-nats'] !== true,
          messages,
          profileDir: values.profile,
          profileMember: values['profile-member'],
        })
        out(formatTable(rows, 'JetStream'))
        for (const n of notes) out(`  ${n}`)
        out(
          'Catch-up: the stream (3 replicas, 1 partition) is filled first, then a reader process reads from the ' +
            'earliest message to the last; time from opening the consumer to the last message. Plain: Plexus ' +
            'consume() without durable, JetStream an ordered consumer (no acks). Durable: Plexus durable + await ' +
            'm.ack(), JetStream a durable pull consumer (explicit ack, batches of 1,024). MB = 10^6 bytes of payload. ' +
            'Reads come from the page cache (the data was just written).',
        )
      } else if (part === 'overlay') {
        const nodes = values.nodes === undefined ? undefined : Number(values.nodes)
        const { rows, notes } = await runOverlayPart({ quick, nodes, log: progress })
        out(formatTable(rows, '-'))
        for (const n of notes) out(`  ${n}`)
      } else if (part === 'tunnel') {
        const { rows, notes } = await runTunnelPart({
          quick,
          nats: false,
          profileDir: values.profile,
          rounds,
          nodeFlags: (values['node-flags'] ?? '').split(/\s+/).filter(Boolean),
          log: progress,
        })
        out(formatTunnelTable(rows))
        for (const n of notes) out(`  ${n}`)
        out(
          'Opener (sender) and acceptor (receiver) in two processes; await tunnel.send() per message, receiver ' +
            'iterates the tunnel. Raw: one libp2p stream between two processes, same libp2p config as ' +
            'src/transport/libp2p.ts (buildLibp2p), send() + drain, receiver counts bytes.',
        )
      } else {
        const logRows = await runLogPart(quick)
        if (typeof logRows === 'string') out(logRows)
        else out(formatTable(logRows))
      }
    } catch (err) {
      failed = true
      out(`${part}: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    } finally {
      await stopAllChildren()
    }
    out(`(${part}: ${((Date.now() - t0) / 1000).toFixed(1)} s; load average now ${loadAvg()})`)
    bar.increment()
  }
  bar.stop()
  return failed ? 1 : 0
}

main().then(
  (code) => {
    process.exitCode = code
    // Leftover handles (e.g. a node that did not stop) must not keep the bench alive.
    setTimeout(() => process.exit(code), 2000).unref()
  },
  async (err) => {
    bar.stop()
    // Bad options: one clear line and exit 2; anything else with its stack.
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`bench: ${(err as Error).message}`)
      process.exit(2)
    }
    console.error(err)
    await stopAllChildren()
    process.exit(1)
  },
)
