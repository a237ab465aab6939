/**
 * Child program of the flow benchmarks (pub/sub, broadcast, tunnel, raw libp2p stream,
 * NATS pub/sub): one sender or one receiver per process, driven by the bench over
 * stdin/stdout lines.
 *
 *   node dist/bench/flowpeer.js ROLE [options]
 *
 * Protocol (all roles): the child prints `READY [addr]` once set up. Senders then wait for
 * `warm` on stdin and send a slow trickle of warm-up messages (marker byte 0) until `go`;
 * on `go` they send marker-0 messages at full speed for `--warmup` ms, then measured
 * messages (marker 1) for `--ms` ms, then one end message (marker 2, carrying the count),
 * and print `RESULT {"sent":N,"ms":T}`; they print `MEASURE` as the measured messages start.
 * Receivers print `WARM` on their first message and `RESULT {"received":N,"expected":N,
 * "rate":R,...}` when the end message arrives or when `report` is written to their stdin; on
 * `mark` they note how many messages (any marker) they had, and their RESULT says how many
 * came since (`sinceMark`): the bench writes `mark` when it starts reading every process's
 * CPU time, so that the messages delivered in its CPU window are known. Every child stops on SIGTERM/SIGINT (stopping its
 * node first, so `--cpu-prof` profiles get written) and when stdin ends (the bench died).
 *
 * The first byte of every message is the marker; the rest is filler up to `--size` bytes.
 */
import { parseArgs } from 'node:util'
import type { Stream } from '@libp2p/interface'

const MARK_WARM = 0
const MARK_DATA = 1
const MARK_END = 2

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    network: { type: 'string' },
    key: { type: 'string' },
    topic: { type: 'string', default: 'bench.flow' },
    cluster: { type: 'string', default: 'flow' },
    size: { type: 'string', default: '1024' },
    ms: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '500' },
    port: { type: 'string' },
    addr: { type: 'string' },
    /** raw-send: messages per stream write. */
    batch: { type: 'string', default: '1' },
  },
})
const role = positionals[0] ?? ''
const size = Number(values.size)
const measureMs = Number(values.ms)
const warmupMs = Number(values.warmup)

function message(marker: number, n = 0): Uint8Array {
  const b = new Uint8Array(size)
  for (let i = 5; i < size; i++) b[i] = i & 0xff
  b[0] = marker
  new DataView(b.buffer).setUint32(1, n)
  return b
}

const out = (line: string) => process.stdout.write(`${line}\n`)
/** Extra figures a role adds to its sender RESULT line. */
const extra: Record<string, number> = {}
const immediate = () => new Promise<void>((r) => setImmediate(r))
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ---- lifecycle --------------------------------------------------------------------------

let cleanup: () => Promise<void> = async () => {}
let stopping = false
async function stop(code: number): Promise<void> {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(code), 4000).unref()
  await cleanup().catch(() => {})
  process.exit(code)
}
process.on('SIGTERM', () => void stop(0))
process.on('SIGINT', () => void stop(0))

/** Commands from the bench, one per stdin line. */
const commandWaiters = new Map<string, Array<() => void>>()
const commandsSeen = new Set<string>()
let commandHandler: (cmd: string) => void = () => {}
{
  let buf = ''
  process.stdin.on('data', (d: Buffer) => {
    buf += d.toString()
    const lines = buf.split('\n')
    buf = lines.pop() ?? ''
    for (const l of lines) {
      const cmd = l.trim()
      commandsSeen.add(cmd)
      commandHandler(cmd)
      for (const w of commandWaiters.get(cmd) ?? []) w()
      commandWaiters.delete(cmd)
    }
  })
  process.stdin.on('end', () => void stop(0))
  process.stdin.resume()
}
function command(cmd: string): Promise<void> {
  if (commandsSeen.has(cmd)) return Promise.resolve()
  return new Promise((r) => {
    const list = commandWaiters.get(cmd) ?? []
    list.push(r)
    commandWaiters.set(cmd, list)
  })
}

// ---- sender and receiver skeletons --------------------------------------------------------

/**
 * The sender's timeline. `send` sends one message (awaited: the API's own backpressure);
 * `pace` runs after every 64 messages (e.g. a yield).
 */
async function runSender(
  send: (m: Uint8Array) => unknown,
  pace?: () => Promise<void>,
  finish?: () => Promise<void>,
) {
  const warm = message(MARK_WARM)
  const data = message(MARK_DATA)
  out('READY')
  await command('warm')
  while (!commandsSeen.has('go')) {
    await send(warm)
    await sleep(20)
  }
  // Full-speed warm-up (JIT, windows), not counted.
  let end = performance.now() + warmupMs
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) await send(warm)
    if (pace) await pace()
  }
  let sent = 0
  out('MEASURE')
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  end = t0 + measureMs
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) await send(data)
    sent += 64
    if (pace) await pace()
  }
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  extra.cpuUsPerMsg = (cpu.user + cpu.system) / sent
  extra.cpuSysUsPerMsg = cpu.system / sent
  await send(message(MARK_END, sent))
  if (finish) await finish()
  out(
    `RESULT ${JSON.stringify({ sent, ms, rate: (sent / ms) * 1000, rssMB: process.memoryUsage().rss / 2 ** 20, ...extra })}`,
  )
}

/** Counts received messages by marker; reports on the end message or on `report`. */
class Receiver {
  received = 0
  first = 0
  last = 0
  warmed = false
  reported = false
  expected: number | undefined
  cpu0: NodeJS.CpuUsage | undefined
  /** Warm-up messages received (any time). */
  warmCount = 0
  /** Messages of any marker received when `mark` came. */
  atMark: number | undefined

  mark(): void {
    this.atMark ??= this.received + this.warmCount
  }

  onMessage(d: Uint8Array): void {
    const marker = d[0]
    if (marker === MARK_DATA) {
      // No clock read per message: the end message follows the last one in order, so its
      // arrival time stands for the last message's (without it, the last 1024th message's).
      if (this.received === 0) {
        this.first = performance.now()
        this.cpu0 = process.cpuUsage()
      } else if ((this.received & 1023) === 0) this.last = performance.now()
      this.received++
    } else if (marker === MARK_WARM) {
      this.warmCount++
      if (!this.warmed) {
        this.warmed = true
        out('WARM')
      }
    } else if (marker === MARK_END) {
      this.last = performance.now()
      this.expected = new DataView(d.buffer, d.byteOffset, d.byteLength).getUint32(1)
      this.report()
    }
  }

  report(): void {
    if (this.reported) return
    this.reported = true
    const span = this.last - this.first
    const rate = this.received > 1 && span > 0 ? ((this.received - 1) / span) * 1000 : 0
    const cpu = this.cpu0 ? process.cpuUsage(this.cpu0) : undefined
    const cpuUsPerMsg = cpu && this.received > 0 ? (cpu.user + cpu.system) / this.received : null
    const cpuSysUsPerMsg = cpu && this.received > 0 ? cpu.system / this.received : null
    const sinceMark =
      this.atMark === undefined ? null : Math.round(this.received + this.warmCount - this.atMark)
    out(
      `RESULT ${JSON.stringify({ received: this.received, expected: this.expected ?? null, rate, spanMs: span, cpuUsPerMsg, cpuSysUsPerMsg, sinceMark, rssMB: process.memoryUsage().rss / 2 ** 20 })}`,
    )
  }
}

function receiverCommands(r: Receiver): void {
  commandHandler = (cmd) => {
    if (cmd === 'report') r.report()
    else if (cmd === 'mark') r.mark()
  }
}

// ---- Plexus roles --------------------------------------------------------------------------

async function plexusNode() {
  const { createNode } = await import('../src/index.js')
  if (!values.network) throw new Error('--network is required')
  const node = await createNode({
    // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
    gcTuning: true,
    network: values.network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
  })
  cleanup = () => node.stop()
  return node
}

async function plexusPub(): Promise<void> {
  const node = await plexusNode()
  const topic = values.topic!
  await runSender((m) => node.publish(topic, m))
}

async function plexusSub(): Promise<void> {
  const node = await plexusNode()
  const r = new Receiver()
  receiverCommands(r)
  node.subscribe(values.topic!, (m) => r.onMessage(m.data))
  out('READY')
}

/**
 * `await node.broadcast()` in a loop, like the pub/sub publisher: `broadcast()` waits while a
 * link queue is full (its own backpressure). The sender also yields after every 256
 * broadcasts, as an application would now and then. (It used to poll
 * `process.memoryUsage()` there as well, from before broadcast had backpressure; that cost
 * the sender up to 6% of its time in profiles.)
 */
async function plexusBroadcastSender(): Promise<void> {
  const node = await plexusNode()
  const cluster = values.cluster!
  let calls = 0
  const pace = async () => {
    if (++calls % 4 === 0) await immediate()
  }
  await runSender((m) => node.broadcast(cluster, m), pace)
}

async function plexusBroadcastMember(): Promise<void> {
  const node = await plexusNode()
  const r = new Receiver()
  receiverCommands(r)
  await node.join(values.cluster!, { key: values.key!, onBroadcast: (d) => r.onMessage(d) })
  out('READY')
}

async function plexusTunnelOpener(): Promise<void> {
  const node = await plexusNode()
  const t = await node.tunnel(values.cluster!, { timeout: 20_000 })
  await runSender((m) => t.send(m))
}

async function plexusTunnelAcceptor(): Promise<void> {
  const node = await plexusNode()
  const r = new Receiver()
  receiverCommands(r)
  await node.join(values.cluster!, {
    key: values.key!,
    onTunnel: async (t) => {
      for await (const m of t) r.onMessage(m)
    },
  })
  out('READY')
}

// ---- NATS roles ---------------------------------------------------------------------------

async function natsConnect() {
  const { connect } = await import('nats')
  const nc = await connect({ servers: `127.0.0.1:${values.port}`, noEcho: true })
  cleanup = () => nc.close()
  return nc
}

/**
 * `publish()` of the nats client only buffers (no backpressure), as in its own bench
 * tool: the sender yields after every 64 messages and awaits a server round trip
 * (`flush()`) every 16,384 messages, which bounds what it buffers to ~16 MiB.
 */
async function natsPub(): Promise<void> {
  const nc = await natsConnect()
  const topic = values.topic!
  let n = 0
  await runSender(
    (m) => nc.publish(topic, m),
    async () => {
      n += 64
      if (n % 16_384 === 0) await nc.flush()
      else await immediate()
    },
    () => nc.flush(),
  )
}

async function natsSub(): Promise<void> {
  const nc = await natsConnect()
  const r = new Receiver()
  receiverCommands(r)
  nc.subscribe(values.topic!, { callback: (_err, msg) => r.onMessage(msg.data) })
  await nc.flush()
  out('READY')
}

// ---- raw libp2p stream roles ----------------------------------------------------------------

const RAW_PROTOCOL = '/plexus-bench/raw/1.0.0'

async function rawNode() {
  const { buildLibp2p } = await import('../src/transport/libp2p.js')
  const { loadIdentity } = await import('../src/transport/identity.js')
  const node = await buildLibp2p({
    network: values.network ?? 'bench-raw',
    privateKey: await loadIdentity(undefined),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    mdns: false,
    dht: false,
  })
  cleanup = async () => {
    await node.stop()
  }
  return node
}

/**
 * Raw receiver: the first inbound stream is the warm-up (ignored but for `WARM`), the
 * second is measured. Messages are fixed-size (`--size`), so it counts bytes; the stream's
 * end closes the measurement.
 */
async function rawRecv(): Promise<void> {
  const node = await rawNode()
  const r = new Receiver()
  receiverCommands(r)
  let streams = 0
  await node.handle(
    RAW_PROTOCOL,
    (stream) => {
      const measured = ++streams === 2
      let bytes = 0
      stream.addEventListener('message', (evt) => {
        if (!measured) {
          r.warmCount += evt.data.byteLength / size
          if (!r.warmed) {
            r.warmed = true
            out('WARM')
          }
          return
        }
        const now = performance.now()
        if (bytes === 0) {
          r.first = now
          r.cpu0 = process.cpuUsage()
        }
        bytes += evt.data.byteLength
        r.last = now
        r.received = Math.floor(bytes / size)
      })
      stream.addEventListener('remoteCloseWrite', () => {
        if (measured) r.report()
        void stream.close().catch(() => {})
      })
    },
    { maxInboundStreams: 4 },
  )
  out(`READY ${node.getMultiaddrs()[0]!.toString()}`)
}

async function rawSend(): Promise<void> {
  const node = await rawNode()
  const { multiaddr } = await import('@multiformats/multiaddr')
  const addr = multiaddr(values.addr!)
  const batch = Number(values.batch)
  // One write = `batch` messages, built (copied) into one buffer per write, as a batching
  // sender would; with 1 message per write the message itself is sent.
  const one = message(MARK_DATA)
  const build = () => {
    if (batch === 1) return one
    const b = new Uint8Array(size * batch)
    for (let i = 0; i < batch; i++) b.set(one, i * size)
    return b
  }
  const writer = (stream: Stream) => {
    const drained = () =>
      new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          stream.removeEventListener('close', onClose)
          resolve()
        }
        const onClose = () => {
          stream.removeEventListener('drain', onDrain)
          reject(new Error('stream closed'))
        }
        stream.addEventListener('drain', onDrain, { once: true })
        stream.addEventListener('close', onClose, { once: true })
      })
    return async (buf: Uint8Array) => {
      if (!stream.send(buf)) await drained()
    }
  }
  /** Writes for `ms`; returns messages sent and elapsed ms. */
  const blast = async (write: (b: Uint8Array) => Promise<void>, ms: number) => {
    let sent = 0
    const t0 = performance.now()
    const end = t0 + ms
    while (performance.now() < end) {
      for (let i = 0; i < 16; i++) {
        await write(build())
        sent += batch
      }
      await immediate()
    }
    return { sent, ms: performance.now() - t0 }
  }
  out('READY')
  await command('warm')
  // Warm-up stream: one message now, full speed after `go`, then closed.
  const warmStream = await node.dialProtocol(addr, RAW_PROTOCOL)
  const warmWrite = writer(warmStream)
  await warmWrite(message(MARK_WARM))
  await command('go')
  await blast(warmWrite, warmupMs)
  await warmStream.close()
  const stream = await node.dialProtocol(addr, RAW_PROTOCOL)
  out('MEASURE')
  const cpu0 = process.cpuUsage()
  const { sent, ms } = await blast(writer(stream), measureMs)
  const cpu = process.cpuUsage(cpu0)
  await stream.close()
  out(
    `RESULT ${JSON.stringify({ sent, ms, rate: (sent / ms) * 1000, rssMB: process.memoryUsage().rss / 2 ** 20, cpuUsPerMsg: (cpu.user + cpu.system) / sent })}`,
  )
}

// ---- main ------------------------------------------------------------------------------------

const roles: Record<string, () => Promise<void>> = {
  'plexus-pub': plexusPub,
  'plexus-sub': plexusSub,
  'plexus-bsend': plexusBroadcastSender,
  'plexus-bmember': plexusBroadcastMember,
  'plexus-topen': plexusTunnelOpener,
  'plexus-taccept': plexusTunnelAcceptor,
  'nats-pub': natsPub,
  'nats-sub': natsSub,
  'raw-recv': rawRecv,
  'raw-send': rawSend,
}

const main = roles[role]
if (!main) {
  console.error(`unknown role ${JSON.stringify(role)}; one of ${Object.keys(roles).join(', ')}`)
  process.exit(2)
}
main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
  void stop(1)
})
