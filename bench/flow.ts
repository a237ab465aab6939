/**
 * Flow benchmarks: pub/sub (1→1, 1→5), broadcast to a 5-member cluster and tunnel
 * throughput, each beside NATS pub/sub or a raw libp2p stream measured in the same run.
 * Every sender and receiver is a separate process (bench/flowpeer.ts); this process only
 * orchestrates, so it never competes with them for the event loop.
 *
 * One measurement ("flow"): start receivers, then the sender; the sender trickles warm-up
 * messages until every receiver has seen one (interest and links are up), then sends at
 * full speed (warm-up, then `ms` measured, then an end message carrying its count). The
 * sender reports its send rate; each receiver its receive rate from its first to its last
 * measured message, and how many it got (loss = sent − received). The bench reads every
 * process's CPU time (/proc) when the sender starts its measured messages and once every
 * receiver has reported, and divides by the messages the receivers got in between.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKey } from '../src/index.js'
import { CPU_PER_MSG, CpuWindow } from './cpu.js'
import { findNatsServer, NATS_INSTALL_HINT } from './nats.js'
import { freePort, type Row, spawnTracked, stderrTail, stopChild, waitForLine } from './util.js'

type Child = ReturnType<typeof spawnTracked>

export interface FlowOptions {
  quick: boolean
  nats: boolean
  /** Directory for --cpu-prof output of Plexus children (senders and receivers). */
  profileDir?: string
  /** Rounds of each comparison (default 1); the best round of each measurement is kept. */
  rounds?: number
  /** Extra Node flags for every sender and receiver process, Plexus and NATS alike. */
  nodeFlags?: string[]
  /** pubsub: only the 1->5 comparison (1->1 is skipped). */
  fanoutOnly?: boolean
  log: (s: string) => void
}

/** Receive rate that decides which round was best (the slowest receiver's). */
const score = (r: FlowResult) => Math.min(...r.rates)

/**
 * Runs the measurements of one comparison side by side (so that machine load drifting
 * between them biases them less), `rounds` times; keeps each one's best round.
 */
async function rounds<K extends string>(
  opts: FlowOptions,
  order: Array<[K, () => Promise<FlowResult>]>,
): Promise<Record<K, FlowResult>> {
  const best = {} as Record<K, FlowResult>
  const n = Math.max(1, opts.rounds ?? 1)
  for (let i = 0; i < n; i++) {
    if (n > 1) opts.log(`round ${i + 1} of ${n}`)
    for (const [k, run] of order) {
      const r = await run()
      if (!best[k] || score(r) > score(best[k])) best[k] = r
    }
  }
  return best
}

/** What one flow measured. */
export interface FlowResult {
  sent: number
  sendRate: number
  /** Per receiver. */
  received: number[]
  rates: number[]
  /** Sum over receivers of received messages, over the longest receive span. */
  aggregate: number
  loss: number
  senderRssMB: number
  receiverRssMB: number[]
  /** CPU time (user + system) per message: sender per sent, receivers per received. */
  senderCpuUs?: number
  receiverCpuUs: number[]
  /** The system (kernel) part of the CPU time above. */
  senderSysUs?: number
  receiverSysUs?: number[]
  /**
   * CPU µs per delivered message (each receiver's copy counts), summed over every process
   * of the flow (sender, receivers, nats-server) from /proc, over the measured window.
   */
  cpuUs: number
}

const durations = (quick: boolean) => (quick ? { ms: 1500, warmup: 300 } : { ms: 3000, warmup: 600 })

const script = () => new URL('./flowpeer.js', import.meta.url).pathname

function send(child: Child, line: string): void {
  if (child.stdin?.writable) child.stdin.write(`${line}\n`)
}

async function result(child: Child, ms: number): Promise<Record<string, number>> {
  const m = await waitForLine(child, /^RESULT (.*)$/, ms)
  return JSON.parse(m[1]!) as Record<string, number>
}

let profileSeq = 0
function nodeArgs(opts: FlowOptions, plexus: boolean, name: string): string[] {
  const flags = opts.nodeFlags ?? []
  if (!opts.profileDir || !plexus) return flags
  const dir = resolve(opts.profileDir)
  mkdirSync(dir, { recursive: true })
  return [
    ...flags,
    '--cpu-prof',
    '--cpu-prof-dir',
    dir,
    '--cpu-prof-name',
    `${++profileSeq}-${name}.cpuprofile`,
  ]
}

/**
 * Runs one flow: `receivers` role/args, then the sender. `senderArgs` may use the first
 * receiver's READY address (`{addr}`).
 */
async function flow(
  opts: FlowOptions,
  label: string,
  spec: {
    plexus: boolean
    sender: string
    receiver: string
    receivers: number
    args: string[]
    senderArgs?: string[]
    /** Another process whose CPU counts (the nats-server). */
    serverPid?: number
  },
): Promise<FlowResult> {
  const d = durations(opts.quick)
  const common = ['--ms', String(d.ms), '--warmup', String(d.warmup), ...spec.args]
  const kids: Child[] = []
  try {
    const receivers: Child[] = []
    for (let i = 0; i < spec.receivers; i++) {
      const c = spawnTracked(process.execPath, [
        ...nodeArgs(opts, spec.plexus, `${label}-recv${i}`),
        script(),
        spec.receiver,
        ...common,
      ])
      kids.push(c)
      receivers.push(c)
    }
    const ready = await Promise.all(receivers.map((r) => waitForLine(r, /^READY ?(.*)$/, 30_000)))
    const addr = ready[0]?.[1] ?? ''
    const senderArgs = (spec.senderArgs ?? []).map((a) => a.replace('{addr}', addr))
    const sender = spawnTracked(process.execPath, [
      ...nodeArgs(opts, spec.plexus, `${label}-send`),
      script(),
      spec.sender,
      ...common,
      ...senderArgs,
    ])
    kids.push(sender)
    await waitForLine(sender, /^READY/, 30_000)
    // The CPU window opens when the sender starts its measured messages; each receiver is
    // told (`mark`) so that it counts what it gets from then on.
    const cpuWindow = new CpuWindow([...kids.map((k) => k.pid), spec.serverPid])
    const measuring = waitForLine(sender, /^MEASURE/, 30_000 + d.warmup * 4).then(() => {
      cpuWindow.start()
      for (const r of receivers) send(r, 'mark')
    })
    measuring.catch(() => {})
    // Results may be printed before we ask for them: listen from now on.
    const warmed = Promise.all(receivers.map((r) => waitForLine(r, /^WARM/, 30_000)))
    const recvResults = receivers.map((r) => result(r, 60_000 + d.ms * 4).catch((e: Error) => e))
    const sendResult = result(sender, 30_000 + d.ms * 4)
    send(sender, 'warm')
    await warmed
    send(sender, 'go')
    const s = await sendResult
    // Receivers report on the end message; give stragglers a bounded time, then ask.
    const grace = setTimeout(() => {
      for (const r of receivers) send(r, 'report')
    }, 5000 + d.ms)
    const rs = await Promise.all(recvResults)
    clearTimeout(grace)
    await measuring
    const cpuUsed = cpuWindow.stop()
    let delivered = 0
    const received: number[] = []
    const rates: number[] = []
    const rss: number[] = []
    const cpu: number[] = []
    const sys: number[] = []
    let maxSpan = 0
    for (const [i, r] of rs.entries()) {
      if (r instanceof Error)
        throw new Error(`${label} receiver ${i}: ${r.message}; stderr: ${stderrTail(receivers[i]!)}`)
      received.push(r.received!)
      rates.push(r.rate!)
      rss.push(r.rssMB!)
      cpu.push(r.cpuUsPerMsg ?? Number.NaN)
      sys.push(r.cpuSysUsPerMsg ?? Number.NaN)
      delivered += r.sinceMark ?? Number.NaN
      maxSpan = Math.max(maxSpan, r.spanMs!)
    }
    const total = received.reduce((a, b) => a + b, 0)
    return {
      sent: s.sent!,
      sendRate: s.rate!,
      received,
      rates,
      aggregate: maxSpan > 0 ? (total / maxSpan) * 1000 : 0,
      loss: s.sent! * spec.receivers - total,
      senderRssMB: s.rssMB!,
      receiverRssMB: rss,
      senderCpuUs: s.cpuUsPerMsg,
      receiverCpuUs: cpu,
      senderSysUs: s.cpuSysUsPerMsg,
      receiverSysUs: sys,
      cpuUs: delivered > 0 ? cpuUsed / delivered : Number.NaN,
    }
  } finally {
    // SIGTERM first so nodes stop and --cpu-prof output gets written; then SIGKILL.
    await Promise.all(kids.map((k) => stopChild(k, 5000)))
  }
}

function describe(label: string, r: FlowResult): string {
  const rates = r.rates.map((x) => Math.round(x).toLocaleString('en-US')).join(', ')
  return (
    `${label}: sent ${r.sent.toLocaleString('en-US')} at ${Math.round(r.sendRate).toLocaleString('en-US')}/s; ` +
    `received ${r.received.map((x) => x.toLocaleString('en-US')).join(', ')} at ${rates} /s; ` +
    `loss ${r.loss}; rss sender ${Math.round(r.senderRssMB)} MB, receivers ${r.receiverRssMB.map(Math.round).join(', ')} MB` +
    `; ${CPU_PER_MSG} ${r.cpuUs.toFixed(1)} µs per delivered message` +
    `; CPU µs/msg sender ${r.senderCpuUs?.toFixed(1) ?? '-'}, receivers ${r.receiverCpuUs.map((x) => x.toFixed(1)).join(', ')}` +
    (r.receiverSysUs
      ? ` (of which system: sender ${r.senderSysUs?.toFixed(1) ?? '-'}, receivers ${r.receiverSysUs.map((x) => x.toFixed(1)).join(', ')})`
      : '')
  )
}

/** A nats-server child on a free loopback port, or undefined (printed why) without it. */
async function natsServer(opts: FlowOptions): Promise<{ port: number; child: Child } | undefined> {
  if (!opts.nats) return undefined
  const bin = findNatsServer()
  if (!bin) {
    console.log(NATS_INSTALL_HINT)
    return undefined
  }
  const port = await freePort()
  const child = spawnTracked(bin, ['-a', '127.0.0.1', '-p', String(port)])
  await waitForLine(child, /Server is ready/, 10_000, 'stderr')
  return { port, child }
}

const uniqueNetwork = (what: string) => `bench-${what}-${randomBytes(5).toString('hex')}`

async function removeLocalDir(network: string): Promise<void> {
  await rm(join(tmpdir(), 'plexus-local', `${network}-open`), { recursive: true, force: true }).catch(
    () => {},
  )
}

/** Worst receiver, for "per subscriber" figures. */
const minRate = (r: FlowResult) => Math.min(...r.rates)

// ---- pub/sub -------------------------------------------------------------------------------

export async function runPubsubPart(opts: FlowOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const notes: string[] = []
  const size = ['--size', '1024']
  const nats = await natsServer(opts)
  const natsFlow = (k: number) => async () => {
    opts.log(`NATS pub/sub 1 -> ${k} (separate processes, one nats-server)`)
    const r = await flow(opts, `nats-ps${k}`, {
      plexus: false,
      sender: 'nats-pub',
      receiver: 'nats-sub',
      receivers: k,
      args: [...size, '--port', String(nats!.port), '--topic', 'bench.ps'],
      serverPid: nats!.child.pid,
    })
    notes.push(describe(`NATS 1->${k}`, r))
    return r
  }
  const plexusFlow = (k: number) => async () => {
    const network = uniqueNetwork('ps')
    opts.log(`Plexus pub/sub 1 -> ${k} (network ${network})`)
    try {
      const r = await flow(opts, `plexus-ps${k}`, {
        plexus: true,
        sender: 'plexus-pub',
        receiver: 'plexus-sub',
        receivers: k,
        args: [...size, '--network', network, '--topic', 'bench.ps'],
      })
      notes.push(describe(`Plexus 1->${k}`, r))
      return r
    } finally {
      await removeLocalDir(network)
    }
  }
  let res: Partial<Record<'n1' | 'n5' | 'p1' | 'p5', FlowResult>>
  try {
    res = await rounds(opts, [
      ...(nats && !opts.fanoutOnly ? ([['n1', natsFlow(1)]] as const) : []),
      ...(opts.fanoutOnly ? [] : ([['p1', plexusFlow(1)]] as const)),
      ...(nats ? ([['n5', natsFlow(5)]] as const) : []),
      ['p5', plexusFlow(5)],
    ] as Array<['n1' | 'n5' | 'p1' | 'p5', () => Promise<FlowResult>]>)
  } finally {
    if (nats) await stopChild(nats.child, 3000)
  }
  const { n1, n5, p1 } = res
  const p5 = res.p5!
  const rows: Row[] = []
  if (p1)
    rows.push(
      {
        name: 'pub/sub 1->1, receive rate',
        value: p1.rates[0]!,
        nats: n1?.rates[0],
        unit: 'msg/s',
        better: 'higher',
      },
      { name: 'pub/sub 1->1, send rate', value: p1.sendRate, nats: n1?.sendRate, unit: 'msg/s' },
      { name: 'pub/sub 1->1, lost', value: p1.loss, nats: n1?.loss, unit: 'msgs' },
      { name: `pub/sub 1->1, ${CPU_PER_MSG}`, value: p1.cpuUs, nats: n1?.cpuUs, unit: 'µs', better: 'lower' },
    )
  rows.push(
    {
      name: 'pub/sub 1->5, receive rate per subscriber (slowest)',
      value: minRate(p5),
      nats: n5 ? minRate(n5) : undefined,
      unit: 'msg/s',
      better: 'higher',
    },
    {
      name: 'pub/sub 1->5, aggregate deliveries',
      value: p5.aggregate,
      nats: n5?.aggregate,
      unit: 'msg/s',
      better: 'higher',
    },
    { name: 'pub/sub 1->5, send rate', value: p5.sendRate, nats: n5?.sendRate, unit: 'msg/s' },
    { name: 'pub/sub 1->5, lost (all subscribers)', value: p5.loss, nats: n5?.loss, unit: 'msgs' },
    {
      name: `pub/sub 1->5, ${CPU_PER_MSG} (per delivery)`,
      value: p5.cpuUs,
      nats: n5?.cpuUs,
      unit: 'µs',
      better: 'lower',
    },
  )
  return { rows, notes }
}

// ---- broadcast --------------------------------------------------------------------------------

export async function runBroadcastPart(opts: FlowOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const notes: string[] = []
  const nats = await natsServer(opts)
  const natsFlow = async () => {
    opts.log('NATS: publish to 5 plain subscribers (nearest equivalent of a broadcast)')
    const r = await flow(opts, 'nats-bc5', {
      plexus: false,
      sender: 'nats-pub',
      receiver: 'nats-sub',
      receivers: 5,
      args: ['--size', '1024', '--port', String(nats!.port), '--topic', 'bench.bc'],
      serverPid: nats!.child.pid,
    })
    notes.push(describe('NATS publish, 5 subscribers', r))
    return r
  }
  const plexusFlow = async () => {
    const network = uniqueNetwork('bc')
    opts.log(`Plexus broadcast to a 5-member cluster (network ${network}), sender not a member`)
    try {
      const r = await flow(opts, 'plexus-bc5', {
        plexus: true,
        sender: 'plexus-bsend',
        receiver: 'plexus-bmember',
        receivers: 5,
        args: ['--size', '1024', '--network', network, '--key', generateKey(), '--cluster', 'bc'],
      })
      notes.push(describe('Plexus broadcast, 5 members', r))
      return r
    } finally {
      await removeLocalDir(network)
    }
  }
  let res: Partial<Record<'n5' | 'p', FlowResult>>
  try {
    res = await rounds(opts, [...(nats ? ([['n5', natsFlow]] as const) : []), ['p', plexusFlow]] as Array<
      ['n5' | 'p', () => Promise<FlowResult>]
    >)
  } finally {
    if (nats) await stopChild(nats.child, 3000)
  }
  const n5 = res.n5
  const p = res.p!
  const rows: Row[] = [
    {
      name: 'broadcast to 5 members, completed at sender',
      value: p.sendRate,
      nats: n5?.sendRate,
      unit: 'bcast/s',
      note: 'NATS: publishes/s',
    },
    {
      name: 'broadcast to 5 members, deliveries per member (slowest)',
      value: minRate(p),
      nats: n5 ? minRate(n5) : undefined,
      unit: 'msg/s',
      better: 'higher',
    },
    {
      name: 'broadcast to 5 members, aggregate deliveries',
      value: p.aggregate,
      nats: n5?.aggregate,
      unit: 'msg/s',
      better: 'higher',
    },
    { name: 'broadcast to 5 members, lost (all members)', value: p.loss, nats: n5?.loss, unit: 'msgs' },
    {
      name: `broadcast to 5 members, ${CPU_PER_MSG} (per delivery)`,
      value: p.cpuUs,
      nats: n5?.cpuUs,
      unit: 'µs',
      better: 'lower',
    },
  ]
  return { rows, notes }
}

// ---- tunnel -----------------------------------------------------------------------------------

/** Tunnel rows compare against the raw stream, not NATS: `nats` holds the raw figure. */
export interface TunnelRow {
  name: string
  value: number
  raw: number
  rawName: string
  unit: string
  target?: number
}

export async function runTunnelPart(opts: FlowOptions): Promise<{ rows: TunnelRow[]; notes: string[] }> {
  const notes: string[] = []
  const raw = async (size: number, batch: number) => {
    opts.log(`raw libp2p stream, ${size / 1024} KB messages, ${batch} per write`)
    const r = await flow(opts, `raw-${size / 1024}k-x${batch}`, {
      plexus: false,
      sender: 'raw-send',
      receiver: 'raw-recv',
      receivers: 1,
      args: ['--size', String(size), '--network', uniqueNetwork('raw')],
      senderArgs: ['--addr', '{addr}', '--batch', String(batch)],
    })
    notes.push(describe(`raw stream ${size / 1024} KB x${batch}/write`, r))
    return r
  }
  const tunnel = async (size: number) => {
    const network = uniqueNetwork('tun')
    opts.log(`Plexus tunnel, ${size / 1024} KB messages (network ${network})`)
    try {
      const r = await flow(opts, `plexus-tun-${size / 1024}k`, {
        plexus: true,
        sender: 'plexus-topen',
        receiver: 'plexus-taccept',
        receivers: 1,
        args: ['--size', String(size), '--network', network, '--key', generateKey(), '--cluster', 'tun'],
      })
      notes.push(describe(`Plexus tunnel ${size / 1024} KB`, r))
      return r
    } finally {
      await removeLocalDir(network)
    }
  }
  const res = await rounds(opts, [
    ['raw1x64', () => raw(1024, 64)],
    ['t1', () => tunnel(1024)],
    ['raw1x1', () => raw(1024, 1)],
    ['raw64', () => raw(64 * 1024, 1)],
    ['t64', () => tunnel(64 * 1024)],
  ])
  const { raw1x64, raw1x1, raw64, t1, t64 } = res
  const mb = (r: FlowResult, size: number) => (r.rates[0]! * size) / 2 ** 20
  const rows: TunnelRow[] = [
    {
      name: 'tunnel 1 KB messages, receive rate',
      value: t1.rates[0]!,
      raw: raw1x64.rates[0]!,
      rawName: 'raw, 64 x 1 KB per write',
      unit: 'msg/s',
      target: 0.8,
    },
    {
      name: 'tunnel 1 KB messages, receive rate',
      value: t1.rates[0]!,
      raw: raw1x1.rates[0]!,
      rawName: 'raw, 1 KB per write',
      unit: 'msg/s',
      target: 0.8,
    },
    {
      name: 'tunnel 1 KB messages, send rate',
      value: t1.sendRate,
      raw: raw1x64.sendRate,
      rawName: 'raw, 64 x 1 KB per write',
      unit: 'msg/s',
    },
    {
      name: 'tunnel 64 KB messages, receive rate',
      value: mb(t64, 64 * 1024),
      raw: mb(raw64, 64 * 1024),
      rawName: 'raw, 64 KB per write',
      unit: 'MiB/s',
      target: 0.8,
    },
    {
      name: `tunnel 1 KB messages, ${CPU_PER_MSG}`,
      value: t1.cpuUs,
      raw: raw1x64.cpuUs,
      rawName: 'raw, 64 x 1 KB per write',
      unit: 'µs',
    },
    {
      name: `tunnel 64 KB messages, ${CPU_PER_MSG}`,
      value: t64.cpuUs,
      raw: raw64.cpuUs,
      rawName: 'raw, 64 KB per write',
      unit: 'µs',
    },
    {
      name: 'tunnel lost messages (1 KB + 64 KB)',
      value: t1.loss + t64.loss,
      raw: raw1x64.loss + raw1x1.loss + raw64.loss,
      rawName: 'raw (all three)',
      unit: 'msgs',
    },
  ]
  return { rows, notes }
}

/** The tunnel table: metric | Plexus | raw libp2p | ratio | target. */
export function formatTunnelTable(rows: TunnelRow[]): string {
  const fmt = (v: number, unit: string) =>
    Number.isInteger(v) && v < 100
      ? `${v} ${unit}`
      : `${v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(v >= 10 ? 1 : 2)} ${unit}`
  const header = ['metric', 'Plexus', 'raw libp2p stream', 'ratio', 'target']
  const body = rows.map((r) => {
    const ratio = r.raw > 0 ? r.value / r.raw : Number.NaN
    const target =
      r.target === undefined ? '-' : `>= ${r.target}x raw ${ratio >= r.target ? 'met' : 'MISSED'}`
    return [
      r.name,
      fmt(r.value, r.unit),
      `${fmt(r.raw, r.unit)} (${r.rawName})`,
      Number.isNaN(ratio) ? '-' : `${ratio.toFixed(2)}x`,
      target,
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`
  const sep = `|${widths.map((w, i) => (i === 0 ? `-${'-'.repeat(w)}-` : `-${'-'.repeat(w)}:`)).join('|')}|`
  return [line(header), sep, ...body.map(line)].join('\n')
}
