/**
 * Client process of the end-to-end and catch-up stream benchmarks (bench/e2e.ts,
 * bench/catchup.ts), for either system, so that the publisher and each consumer run in a
 * process of their own, the same way for Plexus and JetStream.
 *
 *   node dist/bench/stream-client.js --system plexus --network N --role publish|consume [...]
 *   node dist/bench/stream-client.js --system jetstream --server HOST:PORT --role publish|consume [...]
 *
 * Plexus clients are non-member nodes (same-host discovery on loopback); JetStream clients
 * are `nats` npm connections to the given server.
 *
 * Roles:
 * - `publish`: 1 KB messages to `--subject` with `--in-flight` publishes outstanding (Plexus:
 *   `publish(..., { ack: 'all' })`; JetStream: `js.publish`, resolving on the PubAck). Every
 *   payload carries the time it was handed to publish (float64 ms since the epoch, from
 *   `performance.timeOrigin + performance.now()`) and its sequence number.
 * - `consume`: reads the stream and acks every message. `--durable NAME`: Plexus
 *   `consume(stream, { durable: NAME, from: { offset } })`; JetStream: the existing durable
 *   pull consumer NAME (`consumers.get` + `consume()` in batches of `--batch`). Without it,
 *   a plain reader: Plexus `consume(stream, { from: { offset } })`; JetStream an ordered
 *   consumer from `--from` (a stream sequence). `--ack await|nowait` (Plexus: `await m.ack()`
 *   or `void m.ack()`; JetStream's `m.ack()` returns nothing). `--count N`: catch-up mode
 *   (open the consumer on GO, stop after N messages).
 *
 * Protocol, one line each: the child prints `READY` once connected; the parent sends
 * `GO <t1> <t2> [inFlight]` (ms since the epoch, same clock: the measured window). The
 * publisher publishes until t2 (`inFlight` outstanding, default `--in-flight`), then prints
 * `RESULT <json>` and waits for the next GO. An end-to-end consumer consumes from the start; on `END <n>` (n publishes were acknowledged) it waits
 * until it has seen n distinct sequence numbers (or `--drain-ms` without progress), then
 * prints `RESULT <json>`. A catch-up consumer starts on GO, prints `PROGRESS <n>` every 2 s
 * and `RESULT <json>` after N messages. Exits when stdin closes.
 */
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { type ConsumerMessages, connect, type JsMsg, type NatsConnection } from 'nats'
import { createNode, type PlexusNode } from '../src/index.js'
import { connectedMembers, retry } from './stream-clusters.js'
import { summarize } from './util.js'

/** Milliseconds since the epoch with sub-millisecond resolution, comparable across processes. */
export const nowMs = (): number => performance.timeOrigin + performance.now()

/** A 1 KB payload stamped with the publish time and the sequence number. */
export function stampedPayload(template: Uint8Array, seq: number): Uint8Array {
  const b = template.slice()
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  v.setFloat64(0, nowMs(), true)
  v.setFloat64(8, seq, true)
  return b
}

function readStamp(data: Uint8Array): { ts: number; seq: number } {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength)
  return { ts: v.getFloat64(0, true), seq: v.getFloat64(8, true) }
}

/** Result of one publish phase. */
export interface PublishResult {
  sent: number
  acked: number
  errors: number
  firstError?: string
  /** Publishes acknowledged inside the window, and the window's length. */
  windowAcked: number
  windowMs: number
  /** Publish-to-ack latency (µs) of the publishes acknowledged inside the window. */
  ack: { p50: number; p99: number }
}

/** Result of an end-to-end consumer. */
export interface ConsumeResult {
  /** Messages consumed and acked (all, duplicates included), and distinct sequence numbers. */
  consumed: number
  distinct: number
  duplicates: number
  /** Messages consumed and acked inside the window, and the window's length. */
  windowConsumed: number
  windowMs: number
  /** Publish-to-consume latency (µs) of the messages consumed inside the window. */
  latency: { count: number; p50: number; p99: number; mean: number }
  /** Acknowledged publishes not seen when the consumer gave up waiting (0 normally). */
  missing: number
  /** From END to the last expected message (ms): the backlog left when publishing stopped. */
  drainMs: number
}

/** Result of a catch-up reader. */
export interface CatchupResult {
  count: number
  /** From GO to the first message and to the N-th (ms). */
  firstMs: number
  totalMs: number
  /** Bytes of payload read. */
  bytes: number
}

interface Args {
  system: 'plexus' | 'jetstream'
  network?: string
  server?: string
  role: 'publish' | 'consume'
  stream: string
  subject: string
  inFlight: number
  durable?: string
  from: number
  ack: 'await' | 'nowait'
  batch: number
  count?: number
  drainMs: number
}

function parse(): Args {
  const { values } = parseArgs({
    options: {
      system: { type: 'string' },
      network: { type: 'string' },
      server: { type: 'string' },
      role: { type: 'string' },
      stream: { type: 'string', default: 'bench' },
      subject: { type: 'string', default: 'bench.durable.x' },
      'in-flight': { type: 'string', default: '256' },
      durable: { type: 'string' },
      from: { type: 'string', default: '0' },
      ack: { type: 'string', default: 'await' },
      batch: { type: 'string', default: '1024' },
      count: { type: 'string' },
      'drain-ms': { type: 'string', default: '30000' },
    },
  })
  const system = values.system
  if (system !== 'plexus' && system !== 'jetstream') throw new Error('--system must be plexus or jetstream')
  if (system === 'plexus' && !values.network) throw new Error('--network is required with --system plexus')
  if (system === 'jetstream' && !values.server)
    throw new Error('--server is required with --system jetstream')
  if (values.role !== 'publish' && values.role !== 'consume')
    throw new Error('--role must be publish or consume')
  if (values.ack !== 'await' && values.ack !== 'nowait') throw new Error('--ack must be await or nowait')
  const int = (name: string, v: string | undefined, min: number) => {
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`)
    return n
  }
  return {
    system,
    network: values.network,
    server: values.server,
    role: values.role,
    stream: values.stream!,
    subject: values.subject!,
    inFlight: int('in-flight', values['in-flight'], 1),
    durable: values.durable,
    from: int('from', values.from, 0),
    ack: values.ack,
    batch: int('batch', values.batch, 1),
    count: values.count === undefined ? undefined : int('count', values.count, 1),
    drainMs: int('drain-ms', values['drain-ms'], 1),
  }
}

/** Lines from the parent, one at a time. */
class Commands {
  private readonly queue: string[] = []
  private waiter: ((line: string | undefined) => void) | undefined
  closed = false

  constructor(onClose: () => void) {
    const rl = createInterface({ input: process.stdin })
    rl.on('line', (line) => {
      const w = this.waiter
      this.waiter = undefined
      if (w) w(line.trim())
      else this.queue.push(line.trim())
    })
    rl.on('close', () => {
      this.closed = true
      this.waiter?.(undefined)
      onClose()
    })
  }

  next(): Promise<string | undefined> {
    const l = this.queue.shift()
    if (l !== undefined) return Promise.resolve(l)
    if (this.closed) return Promise.resolve(undefined)
    return new Promise((r) => {
      this.waiter = r
    })
  }
}

/** `GO <t1> <t2> [inFlight]`: the window, and (publisher) how many publishes to keep outstanding. */
function parseGo(line: string | undefined): [number, number, number | undefined] | undefined {
  const m = line?.match(/^GO (\S+) (\S+)(?: (\d+))?$/)
  return m ? [Number(m[1]), Number(m[2]), m[3] === undefined ? undefined : Number(m[3])] : undefined
}

/** The connection to one system. */
interface Client {
  publish(data: Uint8Array): Promise<unknown>
  /** Iterates the stream's messages as { data, ack }. */
  consume(): AsyncIterable<{ data: Uint8Array; ack(): Promise<void> | void }> & { close(): void }
  close(): Promise<void>
}

async function plexusClient(a: Args): Promise<Client> {
  const node: PlexusNode = await createNode({
    // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
    gcTuning: true,
    network: a.network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
  })
  await retry('3 members of bench', 20_000, async () => (connectedMembers(node) >= 3 ? true : undefined))
  await retry('the stream to be known', 20_000, () => node.streams.info(a.stream))
  if (a.role === 'publish') {
    // The first publishes may race learning where the leader is: retry one before READY.
    await retry('a first acknowledged publish', 30_000, () =>
      node.publish(a.subject, stampedPayload(new Uint8Array(1024), -1), { ack: 'all', timeout: 30_000 }),
    )
  }
  return {
    publish: (data) => node.publish(a.subject, data, { ack: 'all', timeout: 30_000 }),
    consume: () =>
      a.durable === undefined
        ? node.consume(a.stream, { from: { offset: a.from } })
        : node.consume(a.stream, { durable: a.durable, from: { offset: a.from } }),
    close: () => node.stop(),
  }
}

async function jetstreamClient(a: Args): Promise<Client> {
  const nc: NatsConnection = await connect({ servers: a.server, noEcho: true })
  const js = nc.jetstream()
  if (a.role === 'publish') await js.publish(a.subject, stampedPayload(new Uint8Array(1024), -1))
  return {
    publish: (data) => js.publish(a.subject, data),
    consume: () => {
      let messages: ConsumerMessages | undefined
      let stopped = false
      const open = async () => {
        const c =
          a.durable === undefined
            ? await js.consumers.get(a.stream, { opt_start_seq: Math.max(1, a.from) })
            : await js.consumers.get(a.stream, a.durable)
        messages = await c.consume({ max_messages: a.batch })
        if (stopped) messages.stop()
        return messages
      }
      return {
        [Symbol.asyncIterator]: () => {
          let it: AsyncIterator<JsMsg> | undefined
          return {
            next: async () => {
              it ??= (await open())[Symbol.asyncIterator]()
              const r = await it.next()
              if (r.done) return { done: true, value: undefined }
              const m = r.value
              return { done: false, value: { data: m.data, ack: () => m.ack() } }
            },
          }
        },
        close: () => {
          stopped = true
          messages?.stop()
        },
      }
    },
    close: async () => {
      await nc.drain().catch(() => nc.close())
    },
  }
}

async function runPublisher(a: Args, client: Client, cmds: Commands): Promise<void> {
  const template = new Uint8Array(1024)
  for (let i = 16; i < template.length; i++) template[i] = (i * 131 + 17) & 0xff
  let seq = 0
  for (;;) {
    const go = parseGo(await cmds.next())
    if (!go) return
    const [t1, t2, inFlight = a.inFlight] = go
    let sent = 0
    let acked = 0
    let errors = 0
    let windowAcked = 0
    let firstError: unknown
    const samples: number[] = []
    const worker = async () => {
      while (nowMs() < t2) {
        const data = stampedPayload(template, seq++)
        const t0 = nowMs()
        sent++
        try {
          await client.publish(data)
          acked++
          const t = nowMs()
          if (t0 >= t1 && t <= t2) {
            windowAcked++
            if (samples.length < 500_000) samples.push((t - t0) * 1e6)
          }
        } catch (err) {
          errors++
          firstError ??= err
          if (errors > 1000) return
        }
      }
    }
    await Promise.all(Array.from({ length: inFlight }, worker))
    const s = summarize(samples)
    const r: PublishResult = {
      sent,
      acked,
      errors,
      firstError: firstError === undefined ? undefined : String(firstError),
      windowAcked,
      windowMs: t2 - t1,
      ack: { p50: s.p50, p99: s.p99 },
    }
    console.log(`RESULT ${JSON.stringify(r)}`)
  }
}

/** A growable bitmap of sequence numbers seen. */
class Seen {
  private bits = new Uint8Array(1 << 17)
  add(n: number): boolean {
    const byte = n >>> 3
    if (byte >= this.bits.length) {
      const b = new Uint8Array(Math.max(this.bits.length * 2, byte + 1))
      b.set(this.bits)
      this.bits = b
    }
    const mask = 1 << (n & 7)
    if (this.bits[byte] & mask) return false
    this.bits[byte] |= mask
    return true
  }
}

async function runConsumer(a: Args, client: Client, cmds: Commands): Promise<void> {
  const consumer = client.consume()
  const seen = new Seen()
  let consumed = 0
  let distinct = 0
  let duplicates = 0
  let windowConsumed = 0
  let window: [number, number] = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY]
  let expected = Number.POSITIVE_INFINITY
  let endAt = 0
  let lastAt = 0
  let lastProgress = nowMs()
  const samples: number[] = []
  let done: (() => void) | undefined
  const finished = new Promise<void>((r) => {
    done = r
  })
  const reading = (async () => {
    for await (const m of consumer) {
      if (a.ack === 'await') await m.ack()
      else void m.ack()
      const t = nowMs()
      consumed++
      const { ts, seq } = readStamp(m.data)
      if (seq < 0) continue // the publisher's probe
      if (seen.add(seq)) {
        distinct++
        lastProgress = t
      } else duplicates++
      if (t >= window[0] && t <= window[1]) {
        windowConsumed++
        if (samples.length < 500_000) samples.push((t - ts) * 1e6)
      }
      if (distinct >= expected) {
        lastAt = t
        done?.()
        break
      }
    }
  })()
  reading.catch((err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  })
  console.log('READY')
  for (;;) {
    const line = await cmds.next()
    if (line === undefined) return
    const go = parseGo(line)
    if (go) window = [go[0], go[1]]
    const end = line.match(/^END (\d+)$/)
    if (end) {
      expected = Number(end[1])
      endAt = nowMs()
      if (distinct >= expected) {
        lastAt = endAt
        done?.()
      }
      // Give up after drainMs without progress.
      for (;;) {
        const settled = await Promise.race([
          finished.then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 500)),
        ])
        if (settled || nowMs() - Math.max(lastProgress, endAt) > a.drainMs) break
      }
      consumer.close()
      const s = summarize(samples)
      const r: ConsumeResult = {
        consumed,
        distinct,
        duplicates,
        windowConsumed,
        windowMs: window[1] - window[0],
        latency: { count: s.count, p50: s.p50, p99: s.p99, mean: s.mean },
        missing: Math.max(0, expected - distinct),
        drainMs: lastAt > 0 ? lastAt - endAt : Number.NaN,
      }
      console.log(`RESULT ${JSON.stringify(r)}`)
      return
    }
  }
}

async function runCatchup(a: Args, client: Client, cmds: Commands, count: number): Promise<void> {
  console.log('READY')
  const go = parseGo(await cmds.next())
  if (!go) return
  const t0 = nowMs()
  const consumer = client.consume()
  let n = 0
  let bytes = 0
  let first = 0
  const progress = setInterval(() => console.log(`PROGRESS ${n}`), 2000)
  try {
    for await (const m of consumer) {
      if (a.ack === 'await') await m.ack()
      else void m.ack()
      if (n === 0) first = nowMs()
      n++
      bytes += m.data.byteLength
      if (n >= count) break
    }
  } finally {
    clearInterval(progress)
  }
  const t1 = nowMs()
  consumer.close()
  const r: CatchupResult = { count: n, firstMs: first - t0, totalMs: t1 - t0, bytes }
  console.log(`RESULT ${JSON.stringify(r)}`)
  await cmds.next()
}

async function main(): Promise<void> {
  const a = parse()
  let client: Client | undefined
  let stopping = false
  const stop = async (code: number) => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(code), 5000).unref()
    await client?.close().catch(() => {})
    process.exit(code)
  }
  process.on('SIGTERM', () => void stop(0))
  process.on('SIGINT', () => void stop(0))
  const cmds = new Commands(() => void stop(0))
  client = a.system === 'plexus' ? await plexusClient(a) : await jetstreamClient(a)
  if (a.role === 'publish') {
    console.log('READY')
    await runPublisher(a, client, cmds)
  } else if (a.count !== undefined) await runCatchup(a, client, cmds, a.count)
  else await runConsumer(a, client, cmds)
  await stop(0)
}

// Run only as a program (bench/e2e.ts and bench/catchup.ts import the helpers above).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  })
}
