/**
 * `npm run fuzz -- [--frames N] [--seed S] [--batch B]`: the long hostile-peer fuzz run
 * (issue 18; docs/security.md, "Hostile peers"). A real node (the victim: member of `db`
 * with a data directory, a durable stream, request/broadcast/tunnel handlers and a `>`
 * subscription) is fed N fuzzed link frames (default 1,000,000) by a keyless libp2p node
 * speaking the link protocol by hand: every frame type, mostly structured bodies with hostile
 * values (fuzz/frames.ts), each batch of B ending with one byte-mutated frame (which usually
 * makes the victim reset that stream; the attacker opens a new one). Replies are read and
 * dropped. Everything is seeded: the seed is printed, `--seed` replays a run.
 *
 * Checks: no exception escapes (uncaught exception or unhandled rejection in this process,
 * or a link aborted on anything but a decode error, `links.aborted.error`); every value the
 * victim's handlers receive passes the public API's checks; the victim still answers a
 * good peer at the end. Prints frames sent per type, the victim's refusal counters, the
 * duration and the victim's heap before and after (after a full collection when run with
 * --expose-gc, as `npm run fuzz` does). Exits 1 on a crash or an invalid value.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { mulberry32 } from '../faults/prng.js'
import { decodeAnnouncement } from '../src/cluster/proof.js'
import { createNode, generateKey, type PlexusNode } from '../src/index.js'
import { DEFAULT_MAX_MESSAGE_SIZE, MAX_KEY_BYTES } from '../src/constants.js'
import { encodeMessage } from '../src/raft/codec.js'
import { checkTopic } from '../src/pubsub/subject.js'
import { encodeSeek } from '../src/streams/consumer/consumer-wire.js'
import { encodeFetchCall, encodeRef } from '../src/streams/wire.js'
import { buildLibp2p, protocols } from '../src/transport/libp2p.js'
import { BinaryWriter } from '../src/util/binary.js'
import { checkHeaders } from '../src/util/validate.js'
import { FRAME_TYPES, Gen, mutatedFrame, type Seeds, structured, wrongKeyAnnouncements } from './frames.js'

interface Args {
  frames: number
  seed: number
  batch: number
  /** End each batch with a byte-mutated frame (off: `--structured-only`). */
  mutate: boolean
}

/** True when `bytes` decode as an announcement (chunks are cut anywhere: a guess may not). */
function wellFormed(bytes: Uint8Array): boolean {
  try {
    decodeAnnouncement(bytes)
    return true
  } catch {
    return false
  }
}

/** A ping frame with `token` (the victim answers with a pong on its link to us). */
function pingFrame(token: number): Uint8Array {
  const w = new BinaryWriter(16)
  w.u32(9).u8(FRAME_TYPES.Ping!).u64(token)
  return w.finish().slice()
}

function parseArgs(argv: string[]): Args {
  const args: Args = { frames: 1_000_000, seed: Date.now() % 2 ** 31, batch: 128, mutate: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--structured-only') {
      args.mutate = false
      continue
    }
    const v = Number(argv[i + 1])
    if (a === '--frames' || a === '--seed' || a === '--batch') {
      if (!Number.isInteger(v) || v < (a === '--seed' ? 0 : 1)) throw new Error(`${a} needs a positive integer`)
      args[a.slice(2) as 'frames' | 'seed' | 'batch'] = v
      i++
    } else throw new Error(`unknown option ${a} (--frames N, --seed S, --batch B, --structured-only)`)
  }
  return args
}

const enc = new TextEncoder()
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`

function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc) {
    gc()
    gc()
  }
  return process.memoryUsage().heapUsed
}

/** Invalid values the victim's handlers received (the first ones kept as samples). */
const invalid: string[] = []
let invalidCount = 0
function check(what: string, fn: () => void): void {
  try {
    fn()
  } catch (err) {
    invalidCount++
    if (invalid.length < 10) invalid.push(`${what}: ${(err as Error).message}`)
  }
}
function assert(cond: boolean, message: string): void {
  if (!cond) throw new Error(message)
}

let crashes = 0
const crashSamples: string[] = []
function crash(err: unknown): void {
  crashes++
  if (crashSamples.length < 10) crashSamples.push(String((err as Error)?.stack ?? err))
}

/** The victim: a member of `db` with a stream, handlers that check what they are given. */
async function startVictim(dataDir: string, network: string, key: string): Promise<PlexusNode> {
  const victim = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'], dataDir, discovery: { local: false, mdns: false } })
  const max = DEFAULT_MAX_MESSAGE_SIZE
  await victim.join('db', {
    key,
    onRequest: (data, ctx) => {
      check('request', () => {
        assert(data.length <= max, `data of ${data.length} bytes`)
        assert(ctx.cluster === 'db', `cluster ${ctx.cluster}`)
        assert(ctx.deadline >= Date.now() - 60_000, 'deadline in the past')
      })
      return data.subarray(0, 16)
    },
    onBroadcast: (data, ctx) =>
      check('broadcast', () => {
        assert(data.length <= max, `data of ${data.length} bytes`)
        assert(ctx.cluster === 'db', `cluster ${ctx.cluster}`)
      }),
    onTunnel: (t, ctx) => {
      check('tunnel', () => assert(ctx.cluster === 'db', `cluster ${ctx.cluster}`))
      t.close()
    },
  })
  victim.subscribe('>', (m) =>
    check('message', () => {
      checkTopic(m.topic)
      assert(m.data.length <= max, `data of ${m.data.length} bytes`)
      assert((m.key?.length ?? 0) <= MAX_KEY_BYTES, 'key too long')
      checkHeaders(m.headers, 'headers')
    }),
  )
  return victim
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  console.log(`fuzz: ${args.frames} frames, seed ${args.seed} (replay: npm run fuzz -- --seed ${args.seed} --frames ${args.frames})`)
  process.on('uncaughtException', crash)
  process.on('unhandledRejection', crash)
  const root = await mkdtemp(join(tmpdir(), 'plexus-fuzz-'))
  const network = `fuzz-${args.seed}`
  const key = generateKey()
  const victim = await startVictim(join(root, 'victim'), network, key)
  const good = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: victim.addresses, discovery: { local: false, mdns: false } })
  await good.join('db', { key })
  const waitUntil = async (cond: () => boolean, ms: number, what: string) => {
    const end = Date.now() + ms
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const members = (n: PlexusNode) =>
    n.status().clusters.find((c) => c.name === 'db')?.members.filter((m) => m.connected).length ?? 0
  await waitUntil(() => members(victim) >= 2 && members(good) >= 2, 10_000, 'members')
  await good.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
  await good.publish('orders.eu', 'first', { ack: 'all', timeout: 10_000 })

  // Seeds: what the victim serves, valid call bodies, a raft message, its records.
  const rpc = (victim as unknown as { rpc: { handlers: Map<string, unknown> } }).rpc
  const hosted = (
    victim as unknown as {
      streamService: { hosted: Map<string, { meta: { name: string; createdIndex: number }; partition: number }> }
    }
  ).streamService.hosted
  const h = [...hosted.values()][0]!
  const ref = { stream: h.meta.name, createdIndex: h.meta.createdIndex, partition: h.partition }
  const valid: Record<string, Uint8Array[]> = {
    's.fetch': [encodeFetchCall({ ...ref, offset: 0, maxBytes: 1 << 16, waitMs: 50 })],
    's.pstat': [encodeRef(ref)],
    's.seek': [encodeSeek(ref, 'end')],
    's.load': [enc.encode('db')],
  }
  const attacker = await buildLibp2p({
    network,
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    mdns: false,
    dht: false,
  })
  const g = new Gen(mulberry32(args.seed))
  const peers = [victim.id, good.id, attacker.peerId.toString()]
  const seeds: Seeds = {
    announcements: wrongKeyAnnouncements(g, network, peers).filter(wellFormed),
    tables: [],
    raft: encodeMessage({
      type: 'MsgApp',
      from: good.id,
      to: victim.id,
      term: 2,
      logTerm: 1,
      index: 5,
      entries: [{ index: 6, term: 2, type: 'normal', data: enc.encode('e') }],
      commit: 4,
      reject: false,
      rejectHint: 0,
      transfer: false,
      recovering: false,
    }),
    methods: [...rpc.handlers.keys()].map((method) => ({ method, bodies: valid[method] ?? [] })),
    peers,
  }
  const protocol = protocols(network).link
  /** Our pings waiting for their pong, by token. */
  const pongWaiters = new Map<number, () => void>()
  // The victim's link to us: read and drop (keeping the victim's writes flowing), but keep
  // the signed records it sends, to replay them mutated.
  await attacker.handle(
    protocol,
    (stream) => {
      stream.addEventListener('message', (evt) => {
        const d = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
        // Frames: u32 length, u8 type, body; an announcement / table body is u32 length + bytes.
        let p = 0
        while (p + 9 <= d.length) {
          const len = ((d[p]! << 24) | (d[p + 1]! << 16) | (d[p + 2]! << 8) | d[p + 3]!) >>> 0
          const type = d[p + 4]
          if (p + 4 + len > d.length) break
          if (type === FRAME_TYPES.Pong && len === 9) {
            const t = Number(new DataView(d.buffer, d.byteOffset + p + 5, 8).getBigUint64(0))
            pongWaiters.get(t)?.()
          } else if (type === FRAME_TYPES.Announce && seeds.announcements.length < 128) {
            const a = d.slice(p + 9, p + 4 + len)
            if (wellFormed(a)) seeds.announcements.push(a)
          }
          else if (type === FRAME_TYPES.StreamTable && seeds.tables.length < 32)
            seeds.tables.push(d.slice(p + 9, p + 4 + len))
          p += 4 + len
        }
      })
    },
    { maxInboundStreams: 8 },
  )
  const addr = multiaddr(victim.addresses.find((a) => a.includes('127.0.0.1'))!)
  await attacker.dial(addr)
  await waitUntil(() => seeds.tables.length > 0 && seeds.announcements.length > 32, 10_000, 'the victim’s records')

  const heapBefore = heapUsed()
  const countersBefore = { ...victim.status().counters }
  const names = Object.keys(FRAME_TYPES)
  const sentByType: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]))
  const mutatedByType: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]))
  const started = Date.now()
  let sent = 0
  let streams = 0
  let lastReport = started
  let stream: Stream | undefined
  let resets = 0
  let token = 0
  while (sent < args.frames) {
    if (stream === undefined || stream.status !== 'open') {
      if (stream !== undefined) resets++
      stream = await attacker.dialProtocol(addr, protocol)
      streams++
    }
    const n = Math.min(args.batch, args.frames - sent)
    const parts: Uint8Array[] = []
    for (let i = 0; i < n; i++) {
      const name = names[g.int(names.length)]!
      if (i === n - 1 && args.mutate) {
        parts.push(mutatedFrame(g, FRAME_TYPES[name]!, seeds))
        mutatedByType[name]!++
      } else parts.push(structured(g, FRAME_TYPES[name]!, seeds))
      sentByType[name]!++
    }
    sent += n
    // A ping after the batch: its pong says the victim read the batch and kept the stream;
    // a reset says the last (mutated) frame was refused.
    const t = ++token
    parts.push(pingFrame(t))
    let total = 0
    for (const p of parts) total += p.length
    const buf = new Uint8Array(total)
    let off = 0
    for (const p of parts) {
      buf.set(p, off)
      off += p.length
    }
    const s = stream
    const answered = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 10_000)
      const done = () => {
        clearTimeout(timer)
        s.removeEventListener('close', done)
        pongWaiters.delete(t)
        resolve()
      }
      pongWaiters.set(t, done)
      s.addEventListener('close', done)
    })
    try {
      if (!s.send(buf)) await s.onDrain({ signal: AbortSignal.timeout(10_000) })
    } catch {
      // Reset meanwhile: the next batch opens a new stream.
    }
    await answered
    if (Date.now() - lastReport > 10_000) {
      lastReport = Date.now()
      console.log(`  ${sent} frames, ${streams} streams, ${((sent * 1000) / (lastReport - started)).toFixed(0)} frames/s`)
    }
  }
  if (stream && stream.status !== 'open') resets++
  await stream?.close({ signal: AbortSignal.timeout(5000) }).catch(() => stream?.abort(new Error('done')))
  const duration = (Date.now() - started) / 1000
  // Let the victim drain what it still holds, then check it serves a good peer.
  await new Promise((r) => setTimeout(r, 1000))
  let served = false
  try {
    const reply = await good.request('db', 'still there?', { timeout: 10_000 })
    served = new TextDecoder().decode(reply).startsWith('still there?')
    const ack = await good.publish('orders.eu', 'after', { ack: 'all', timeout: 10_000 })
    served &&= ack !== undefined
  } catch (err) {
    console.log(`good peer not served: ${(err as Error).message}`)
  }
  await attacker.stop()
  await new Promise((r) => setTimeout(r, 500))
  const heapAfter = heapUsed()
  const counters = victim.status().counters
  const aborted = (counters['links.aborted.error'] ?? 0) - (countersBefore['links.aborted.error'] ?? 0)
  crashes += aborted
  const delta = Object.entries(counters)
    .filter(([k, v]) => (k.includes('refused') || k.includes('unknown') || k.includes('dropped')) && v !== (countersBefore[k] ?? 0))
    .map(([k, v]) => `${k} ${v - (countersBefore[k] ?? 0)}`)
  console.log(`frames sent per type (of which byte-mutated): ${names.map((n) => `${n} ${sentByType[n]} (${mutatedByType[n]})`).join(', ')}`)
  console.log(`victim counters: ${delta.join(', ')}`)
  console.log(
    `result: ${sent} frames in ${duration.toFixed(1)} s (${((sent / duration) | 0)} frames/s) on ${streams} streams (${resets} reset by the victim); ` +
      `crashes ${crashes}; invalid values delivered ${invalidCount}; good peer served after: ${served}; ` +
      `victim heap ${mib(heapBefore)} before, ${mib(heapAfter)} after${(globalThis as { gc?: unknown }).gc ? ' (after gc)' : ''}`,
  )
  for (const s of crashSamples) console.log(`crash: ${s}`)
  for (const s of invalid) console.log(`invalid: ${s}`)
  await good.stop()
  await victim.stop()
  await rm(root, { recursive: true, force: true })
  process.exit(crashes > 0 || invalidCount > 0 || !served ? 1 : 0)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
