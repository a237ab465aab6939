/**
 * `node dist/fuzz/cpu-share.js [--window MS] [--attacks a,b]`: how much of the victim's event
 * loop one hostile peer can take from a good one (issue 18), with each party in its own
 * process so the attacker's CPU is not counted against the victim. The victim (a member of
 * `db` with an echo handler, a data directory and a `t.>` subscription), a good peer (a
 * member making sequential 64-byte requests) and a keyless attacker (a plain libp2p node
 * writing link frames by hand as fast as its CPU allows) each run this script in a role.
 * For every attack the good peer's rate is measured with the attacker idle (the baseline),
 * then flooding; the rate under attack is printed as a fraction of that baseline, with p99.
 *
 * Roles (also used by test/hostile/cpu-share.test.ts): `--role victim --network N --key K`
 * prints `READY <address>`; `--role attacker --network N --addr A` prints `READY`, then reads
 * `start <attack>` / `stop` lines on stdin and answers `STARTED` / `STOPPED <frames sent>`;
 * `--role good --network N --key K` prints `READY`, then answers `measure <ms>` with
 * `RATE <requests/s> <p99 ms>`. Every role exits when its stdin ends. After each attack the
 * good peer waits (up to 15 s) until it is served at half its baseline again: the time is
 * printed as "recovery". `ATTACKER_NICE=19` lowers the attacker's CPU priority (on a shared
 * machine it then stands for a remote host better); `VICTIM_CPUS=0 ATTACKER_CPUS=1` pins the
 * victim and good peer to one set of CPUs and the attacker to another (`taskset`), so the
 * attacker's own CPU is never taken from the victim; `VICTIM_NODE_ARGS` go to the victim's
 * node (e.g. `--cpu-prof`).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { setPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createNode, generateKey, type PlexusNode } from '../src/index.js'
import { FrameType, writeFrame } from '../src/link/frames.js'
import { readFrames } from '../src/link/link.js'
import { writePublish } from '../src/pubsub/frames.js'
import { buildLibp2p, protocols } from '../src/transport/libp2p.js'
import { BinaryWriter } from '../src/util/binary.js'

const PAYLOAD = new Uint8Array(64)

/** Frames per attack batch (each batch is built once and sent again and again). */
const BATCH = 64

/** The attacks: a frame body per index, all well formed (the link stays up). */
export const ATTACKS: Record<string, (w: BinaryWriter, i: number) => void> = {
  // Requests for the served cluster: echoed, within the attacker's share of the handlers.
  request: (w, i) => w.u32(i).str('db').u32(30_000).u8(0).bytes(PAYLOAD),
  // Publishes on subjects the victim subscribes to.
  publish: (w, i) => writePublish(w, `t.${i % 16}`, PAYLOAD, undefined, undefined),
  // Pings: each is answered with a pong.
  ping: (w, i) => w.u64(i),
  // Internal calls with junk bodies: each is answered with an error.
  rpc: (w, i) => w.u32(i).str('s.meta').u32(30_000).u8(0).bytes(PAYLOAD),
  // Broadcasts under forged origins: refused (counted) without an answer.
  junk: (w, i) => w.str(`forged-${i}`).u32(i).str('db').u16(0).bytes(PAYLOAD),
}

const TYPES: Record<string, number> = {
  request: FrameType.Request,
  publish: FrameType.Publish,
  ping: FrameType.Ping,
  rpc: FrameType.RpcCall,
  junk: FrameType.Broadcast,
}

/** One batch of `attack` frames. */
function batchOf(attack: string): Uint8Array {
  const body = ATTACKS[attack]
  if (!body) throw new Error(`unknown attack ${attack}`)
  const w = new BinaryWriter(8192)
  for (let i = 0; i < BATCH; i++) writeFrame(w, TYPES[attack]!, (b) => body(b, i))
  return w.finish().slice()
}

/** Lines of stdin, one callback each; exits the process when stdin ends. */
function onLines(fn: (line: string) => void | Promise<void>, onEnd: () => Promise<void>): void {
  const rl = createInterface({ input: process.stdin })
  rl.on('line', (line) => void Promise.resolve(fn(line.trim())).catch((err) => console.error(err)))
  rl.on('close', () => void onEnd().finally(() => process.exit(0)))
}

async function victim(network: string, key: string): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'plexus-cpu-share-'))
  const node = await createNode({
    network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
    dataDir,
  })
  await node.join('db', { key, onRequest: (data) => data })
  node.subscribe('t.>', () => {})
  const addr = node.addresses.find((a) => a.includes('127.0.0.1')) ?? node.addresses[0]!
  console.log(`READY ${addr}`)
  onLines(
    () => {
      console.log(`STATUS ${JSON.stringify(node.status().counters)}`)
    },
    async () => {
      await node.stop().catch(() => {})
      await rm(dataDir, { recursive: true, force: true })
    },
  )
}

async function good(network: string, key: string): Promise<void> {
  const node: PlexusNode = await createNode({
    network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
  })
  await node.join('db', { key })
  const end = Date.now() + 30_000
  while (node.status().clusters.find((c) => c.name === 'db')?.members.filter((m) => m.connected).length !== 2) {
    if (Date.now() > end) throw new Error('the victim was never seen')
    await new Promise((r) => setTimeout(r, 20))
  }
  console.log('READY')
  const data = new Uint8Array(64)
  onLines(
    async (line) => {
      const [cmd, arg] = line.split(' ')
      if (cmd !== 'measure') return
      const stopAt = Date.now() + Number(arg)
      const lat: number[] = []
      const start = performance.now()
      while (Date.now() < stopAt) {
        const t = performance.now()
        await node.request('db', data, { timeout: 10_000 })
        lat.push(performance.now() - t)
      }
      const rate = (lat.length * 1000) / (performance.now() - start)
      lat.sort((a, b) => a - b)
      const p99 = lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] ?? 0
      console.log(`RATE ${rate.toFixed(1)} ${p99.toFixed(2)}`)
    },
    () => node.stop().catch(() => {}),
  )
}

async function attacker(network: string, addr: string): Promise<void> {
  // The attacker stands for another machine: on a shared host it must not take the CPU the
  // victim and the good peer need (its sending rate is not what is measured).
  if (process.env.ATTACKER_NICE) setPriority(0, Number(process.env.ATTACKER_NICE))
  const libp2p = await buildLibp2p({
    network,
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    mdns: false,
    dht: false,
  })
  const protocol = protocols(network).link
  let stream: Stream | undefined
  const pong = (token: bigint | number) => {
    const w = new BinaryWriter(32)
    writeFrame(w, FrameType.Pong, (b) => b.u64(Number(token)))
    stream?.send(w.finish().slice())
  }
  // The victim links back to us: answer its pings (or it hangs up), drop everything else.
  await libp2p.handle(protocol, (s) => {
    readFrames(s, 'victim', 128 * 1024 * 1024, (_from, type, body) => {
      if (type === FrameType.Ping) pong(body.u64('ping'))
    })
  })
  stream = await libp2p.dialProtocol(multiaddr(addr), protocol)
  console.log('READY')
  let flooding: Promise<void> | undefined
  let stop = false
  let sent = 0
  let wake: (() => void) | undefined
  /** Resolves on the stream's next `drain` (or close, or `stop`). Not `onDrain()`: it caches
   * a resolved promise after its first use, and the attacker's own buffer then grew without
   * bound, so "frames sent" counted frames the victim never got, which then kept reaching
   * the victim long after `stop`. */
  const drained = (s: Stream) =>
    new Promise<void>((resolve) => {
      wake = resolve
      s.addEventListener('drain', () => resolve(), { once: true })
      s.addEventListener('close', () => resolve(), { once: true })
    })
  const flood = async (batch: Uint8Array) => {
    const s = stream!
    while (!stop && s.status === 'open') {
      // Keep the stream's buffer full; yield now and then so pings and acks get through.
      for (let k = 0; k < 16 && !stop; k++) {
        sent += BATCH
        let more: boolean
        try {
          more = s.send(batch)
        } catch {
          return // the victim closed the stream
        }
        if (!more) {
          await drained(s)
          break
        }
      }
      await new Promise((r) => setImmediate(r))
    }
  }
  onLines(
    async (line) => {
      const [cmd, arg] = line.split(' ')
      if (cmd === 'start') {
        stop = false
        sent = 0
        flooding = flood(batchOf(arg!))
        console.log('STARTED')
      } else if (cmd === 'stop') {
        stop = true
        wake?.()
        await flooding
        console.log(`STOPPED ${sent}`)
      }
    },
    async () => {
      await Promise.resolve(libp2p.stop()).catch(() => {})
    },
  )
}

/** A child running this script in `role`, with its stdout lines queued for `next`. */
class Child {
  readonly proc: ChildProcess
  private lines: string[] = []
  private waiting: ((line: string) => void) | undefined

  constructor(args: string[], nodeArgs: string[] = [], cpus?: string) {
    const command = [process.execPath, ...nodeArgs, new URL(import.meta.url).pathname, ...args]
    if (cpus) command.unshift('taskset', '-c', cpus)
    this.proc = spawn(command[0]!, command.slice(1), {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      if (this.waiting) {
        const w = this.waiting
        this.waiting = undefined
        w(line)
      } else this.lines.push(line)
    })
  }

  /** The next stdout line (after `send`ing `cmd` when given). */
  next(cmd?: string, ms = 60_000): Promise<string> {
    if (cmd !== undefined) this.proc.stdin!.write(`${cmd}\n`)
    const line = this.lines.shift()
    if (line !== undefined) return Promise.resolve(line)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to ${cmd}`)), ms)
      this.waiting = (l) => {
        clearTimeout(t)
        resolve(l)
      }
    })
  }

  end(): void {
    this.proc.stdin!.end()
  }
}

async function parent(windowMs: number, attacks: string[]): Promise<void> {
  const network = `cpu-${randomBytes(6).toString('hex')}`
  const key = generateKey()
  const v = new Child(
    ['--role', 'victim', '--network', network, '--key', key],
    process.env.VICTIM_NODE_ARGS?.split(' ').filter(Boolean),
    process.env.VICTIM_CPUS,
  )
  const children = [v]
  try {
    const addr = (await v.next()).split(' ')[1]!
    const g = new Child(['--role', 'good', '--network', network, '--key', key], [], process.env.VICTIM_CPUS)
    children.push(g)
    await g.next()
    const measure = async (ms = windowMs) => (await g.next(`measure ${ms}`)).split(' ').slice(1).map(Number)
    await measure() // warm-up
    const [first] = await measure()
    console.log(`good peer alone: ${first!.toFixed(0)} requests/s (sequential, 64 bytes)`)
    console.log('attack     baseline/s  p99 ms   under attack/s  p99 ms   fraction  attacker frames/s  recovery ms')
    for (const attack of attacks) {
      // A fresh attacker per attack: the last one's yamux window may still be full of its
      // flood (read at its share), so it would send next to nothing.
      const a = new Child(
        ['--role', 'attacker', '--network', network, '--addr', addr],
        [],
        process.env.ATTACKER_CPUS,
      )
      children.push(a)
      await a.next()
      const [base, baseP99] = await measure()
      await a.next(`start ${attack}`)
      await new Promise((r) => setTimeout(r, 200))
      const [rate, p99] = await measure()
      const sent = Number((await a.next('stop')).split(' ')[1])
      // The victim may still hold work the flood left (queued frames, replies): wait until
      // the good peer is served at half its baseline again before the next attack.
      const stopped = Date.now()
      while (Date.now() - stopped < 15_000 && (await measure(300))[0]! < base! / 2) {}
      const cells = [
        attack.padEnd(10),
        base!.toFixed(0).padStart(10),
        baseP99!.toFixed(2).padStart(6),
        rate!.toFixed(0).padStart(14),
        p99!.toFixed(2).padStart(6),
        (rate! / base!).toFixed(2).padStart(8),
        ((sent * 1000) / (windowMs + 200)).toFixed(0).padStart(17),
        String(Date.now() - stopped).padStart(11),
      ]
      console.log(cells.join('  '))
      a.end()
    }
  } finally {
    for (const c of children.reverse()) c.end()
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      role: { type: 'string' },
      network: { type: 'string' },
      key: { type: 'string' },
      addr: { type: 'string' },
      window: { type: 'string', default: '2000' },
      attacks: { type: 'string', default: Object.keys(ATTACKS).join(',') },
    },
  })
  switch (values.role) {
    case 'victim':
      return victim(values.network!, values.key!)
    case 'good':
      return good(values.network!, values.key!)
    case 'attacker':
      return attacker(values.network!, values.addr!)
    default:
      return parent(Number(values.window), values.attacks!.split(','))
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
  process.exit(1)
})
