/**
 * Seeded simulation of membership by gossip (no sockets): the failure detector of
 * src/overlay/swim.ts and the digest comparison of src/overlay/digest.ts, run by N nodes on a
 * bounded-degree neighbour graph (ring neighbours plus random ones, like overlay/select.ts),
 * with message loss.
 *
 * Every node starts knowing every other's record. Then one node joins (its record floods
 * over the neighbours, anti-entropy repairs what loss dropped) and one node crashes (its
 * neighbours' link heartbeats stop: after `silentAfter` ms they probe it indirectly, suspect
 * it, and every node declares it dead when the suspicion times out). Heartbeats between live
 * nodes are lost too, so links of live nodes fail now and then; the invariant is that no live
 * node is declared dead (they refute). Time moves in steps of `STEP` ms; a message takes one
 * step.
 *
 * `npm run sim` prints the table for N = 100, 1,000, 10,000 (`node dist/bench/gossip-sim.js
 * [N…] [--loss 0.05] [--seed S]`); test/unit/gossip-sim.test.ts runs a small N.
 */
import { pathToFileURL } from 'node:url'
import { mulberry32 } from '../faults/prng.js'
import { ID_SPACE, missing, recordId, type Versioned } from '../src/overlay/digest.js'
import { type Suspicion, Swim } from '../src/overlay/swim.js'

/** Simulated milliseconds per step (one message hop). */
const STEP = 50
/** Link heartbeats every this many ms; a link with none answered for `silentAfter` ms fails. */
const HEARTBEAT = 1000
const SILENT_AFTER = 3500
/** Stalls of the slow node (`slowNode`): how long, how often (ms). */
const STALL = 4000
const STALL_EVERY = 10_000
/** Anti-entropy period (ms) and the record refresh interval of the real node. */
const ANTI_ENTROPY = 3000
const REFRESH = 20_000

/** Options of one run. */
export interface SimOptions {
  n: number
  /** Neighbour links per node (the overlay's maxLinks). */
  degree: number
  /** Probability that any one message is lost. */
  loss: number
  seed: number
  /** Simulated duration (ms). */
  duration?: number
  /**
   * Node 0 is slow: it stalls (no message handled, no timer, no heartbeat) for `STALL` ms
   * every `STALL_EVERY` ms, like a process starved of CPU. It must not declare live peers
   * dead, nor be declared dead.
   */
  slowNode?: boolean
}

/** What one run measured. */
export interface SimResult {
  n: number
  linksPerNode: number
  /** Hops until every live node held the joiner's record, and when (ms after the join). */
  joinHops: number
  joinMs: number
  /** Live nodes that never learned the join. */
  joinMissing: number
  /** When (ms after the crash) the first and the last live node declared the crashed node dead. */
  deadFirstMs: number
  deadAllMs: number
  /** Live nodes that never declared it dead. */
  deadMissing: number
  /** Live nodes declared dead by some live node (must be 0). */
  falseDeaths: number
  /** Distinct suspicions (target, incarnation) of live nodes: all refuted unless `falseDeaths`. */
  falseSuspicions: number
  /** Gossip messages (records, digests, probes, suspicions) per node per second. */
  msgsPerNodePerSec: number
  /** Heartbeats per node per second (one per link per second each way). */
  heartbeatsPerNodePerSec: number
  /** Record refreshes every node receives per second in steady state (N / refresh interval). */
  refreshRecordsPerNodePerSec: number
}

type Msg =
  | { kind: 'record'; from: number; to: number; key: number; version: number; hops: number }
  | { kind: 'digest'; from: number; to: number; entries: Versioned[]; reply: boolean }
  | { kind: 'probe'; from: number; to: number; target: number }
  | { kind: 'probeAnswer'; from: number; to: number; target: number; alive: boolean }
  | { kind: 'suspect'; from: number; to: number; s: Suspicion }

interface SimNode {
  i: number
  id: string
  alive: boolean
  links: number[]
  /** Versions of the records that changed during the run (others are the shared base, 1). */
  known: Map<number, number>
  swim: Swim
  /** Per link: when a heartbeat last got through. */
  lastHeard: Map<number, number>
  nextAntiEntropy: number
}

/** Runs one simulation. */
export function simulate(opts: SimOptions): SimResult {
  const random = mulberry32(opts.seed)
  const duration = opts.duration ?? 40_000
  const n = opts.n
  let now = 0
  const ids = Array.from({ length: n + 1 }, (_, i) => `n${i}`)
  const index = new Map(ids.map((id, i) => [id, i]))
  const nodes: SimNode[] = []
  let queue: Msg[] = []
  /** Messages to the slow node while it stalls. */
  const held: Msg[] = []
  let sent = 0
  const lost = () => random() < opts.loss
  const send = (m: Msg) => {
    sent++
    if (!lost()) queue.push(m)
  }
  const version = (node: SimNode, key: number) => node.known.get(key) ?? 1
  const deadAt = new Map<number, number[]>() // target → times declared, by live nodes
  const falselyDead = new Set<string>()
  const falseSuspicions = new Set<string>()
  const crashed = n - 1
  const joiner = n // joins at the start
  const record = (node: SimNode, key: number, v: number, from: number, hops: number) => {
    if (version(node, key) >= v) return
    node.known.set(key, v)
    if (key === joiner && node.i !== joiner) joinSeen.set(node.i, { hops, at: now })
    node.swim.onRecord(ids[key]!, v)
    for (const l of node.links)
      if (l !== from) send({ kind: 'record', from: node.i, to: l, key, version: v, hops: hops + 1 })
  }
  const joinSeen = new Map<number, { hops: number; at: number }>()

  for (let i = 0; i <= n; i++) {
    const node: SimNode = {
      i,
      id: ids[i]!,
      alive: i !== joiner,
      links: [],
      known: new Map(),
      lastHeard: new Map(),
      nextAntiEntropy: random() * ANTI_ENTROPY,
      swim: undefined as unknown as Swim,
    }
    node.swim = new Swim({
      self: node.id,
      now: () => now,
      random,
      neighbours: () => node.links.map((l) => ids[l]!),
      size: () => n,
      incarnation: (p) => version(node, index.get(p)!),
      askProbe: (via, target) =>
        send({ kind: 'probe', from: i, to: index.get(via)!, target: index.get(target)! }),
      spread: (s, except) => {
        for (const l of node.links) if (ids[l] !== except) send({ kind: 'suspect', from: i, to: l, s })
      },
      refute: () => record(node, i, now + 2, -1, 0),
      dead: (p) => {
        const t = index.get(p)!
        if (!node.alive) return
        if (nodes[t]!.alive) falselyDead.add(`${node.id} declared ${p}`)
        const list = deadAt.get(t) ?? []
        list.push(now)
        deadAt.set(t, list)
      },
    })
    nodes.push(node)
  }
  // The neighbour graph: two ring neighbours each side, then random peers up to `degree`.
  const link = (a: number, b: number) => {
    if (a === b || nodes[a]!.links.includes(b)) return
    nodes[a]!.links.push(b)
    nodes[b]!.links.push(a)
  }
  for (let i = 0; i < n; i++) {
    link(i, (i + 1) % n)
    if (opts.degree >= 4) link(i, (i + 2) % n)
  }
  for (let i = 0; i < n; i++) {
    for (let tries = 0; nodes[i]!.links.length < opts.degree && tries < opts.degree * 4; tries++) {
      const j = Math.floor(random() * n)
      if (nodes[j]!.links.length < opts.degree) link(i, j)
    }
  }
  for (const node of nodes) for (const l of node.links) node.lastHeard.set(l, 0)
  let linkCount = 0
  for (let i = 0; i < n; i++) linkCount += nodes[i]!.links.length

  const JOIN_AT = 1000
  const CRASH_AT = 1000
  let heartbeats = 0
  while (now < duration) {
    now += STEP
    if (now === JOIN_AT) {
      const j = nodes[joiner]!
      j.alive = true
      for (let k = 0; k < Math.min(opts.degree, 4); k++) {
        const p = Math.floor(random() * n)
        link(joiner, p)
        j.lastHeard.set(p, now)
        nodes[p]!.lastHeard.set(joiner, now)
      }
      record(j, joiner, 2, -1, 0)
    }
    if (now === CRASH_AT) nodes[crashed]!.alive = false
    // Deliver last step's messages.
    const batch = queue
    queue = []
    const stalled = (i: number) =>
      opts.slowNode === true && i === 0 && now % STALL_EVERY >= STALL_EVERY - STALL
    if (opts.slowNode && now % STALL_EVERY === 0) {
      // The slow node wakes up: its timers fire STALL ms late and, as in Node's event loop,
      // before the messages that waited meanwhile are read.
      nodes[0]!.swim.late(STALL)
      nodes[0]!.swim.tick()
      batch.push(...held)
      held.length = 0
    }
    for (const m of batch) {
      const to = nodes[m.to]!
      if (!to.alive) continue
      if (stalled(m.to)) {
        held.push(m)
        continue
      }
      switch (m.kind) {
        case 'record':
          record(to, m.key, m.version, m.from, m.hops)
          break
        case 'digest': {
          const mine = [...to.known].map(([k, v]) => ({
            key: String(k),
            version: v,
            bytes: new Uint8Array(),
          }))
          const theirs = new Map(m.entries.map((e) => [recordId(e.key), e.version]))
          for (const r of missing(mine, theirs, 0, ID_SPACE))
            send({ kind: 'record', from: to.i, to: m.from, key: Number(r.key), version: r.version, hops: 0 })
          if (m.reply) send({ kind: 'digest', from: to.i, to: m.from, entries: mine, reply: false })
          break
        }
        case 'probe': {
          const t = nodes[m.target]!
          // Linked and heard lately, or a short dial: both work exactly when the target is up
          // and not stalled (a stalled process accepts the connection but never answers).
          const alive = t.alive && !stalled(m.target) && !lost()
          send({ kind: 'probeAnswer', from: to.i, to: m.from, target: m.target, alive })
          break
        }
        case 'probeAnswer':
          to.swim.probeAnswer(ids[m.target]!, ids[m.from]!, m.alive)
          break
        case 'suspect':
          if (nodes[index.get(m.s.target)!]!.alive) falseSuspicions.add(`${m.s.target}/${m.s.incarnation}`)
          to.swim.onSuspect(m.s, ids[m.from]!)
          break
      }
    }
    // Heartbeats, once a second per link and direction; a silent link fails.
    if (now % HEARTBEAT === 0) {
      for (const node of nodes) {
        if (!node.alive || stalled(node.i)) continue
        for (const l of node.links) {
          heartbeats++
          const peer = nodes[l]!
          if (peer.alive && !stalled(l) && !lost() && !lost()) node.lastHeard.set(l, now)
          if (now - (node.lastHeard.get(l) ?? now) >= SILENT_AFTER) {
            node.lastHeard.set(l, now) // the link is redialled (it comes back when the peer is up)
            node.swim.linkFailed(peer.id)
          }
        }
      }
    }
    for (const node of nodes) {
      if (!node.alive || stalled(node.i)) continue
      node.swim.tick()
      if (now >= node.nextAntiEntropy) {
        node.nextAntiEntropy = now + ANTI_ENTROPY * (0.75 + 0.5 * random())
        const to = node.links[Math.floor(random() * node.links.length)]
        if (to !== undefined) {
          const entries = [...node.known].map(([k, v]) => ({
            key: String(k),
            version: v,
            bytes: new Uint8Array(),
          }))
          send({ kind: 'digest', from: node.i, to, entries, reply: true })
        }
      }
    }
  }
  const live = nodes.filter((x) => x.alive)
  const liveOthers = live.filter((x) => x.i !== joiner)
  let joinHops = 0
  let joinMs = 0
  for (const [, s] of joinSeen) {
    joinHops = Math.max(joinHops, s.hops)
    joinMs = Math.max(joinMs, s.at - JOIN_AT)
  }
  const deaths = (deadAt.get(crashed) ?? []).sort((a, b) => a - b)
  const seconds = duration / 1000
  return {
    n,
    linksPerNode: linkCount / n,
    joinHops,
    joinMs,
    joinMissing: liveOthers.filter((x) => !joinSeen.has(x.i)).length,
    deadFirstMs: deaths.length > 0 ? deaths[0]! - CRASH_AT : Number.NaN,
    deadAllMs: deaths.length > 0 ? deaths[deaths.length - 1]! - CRASH_AT : Number.NaN,
    deadMissing: live.length - deaths.length,
    falseDeaths: falselyDead.size,
    falseSuspicions: falseSuspicions.size,
    msgsPerNodePerSec: sent / (n + 1) / seconds,
    heartbeatsPerNodePerSec: heartbeats / (n + 1) / seconds,
    refreshRecordsPerNodePerSec: n / (REFRESH / 1000),
  }
}

/** The table for several N, as markdown lines. */
export function table(results: SimResult[], loss: number): string[] {
  const lines = [
    `| N | links/node | join: hops, s to all | crash: s to first / all dead | gossip msgs/node/s | heartbeats/node/s | refreshes/node/s | false deaths (loss ${Math.round(loss * 100)}%) |`,
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const r of results) {
    lines.push(
      `| ${r.n.toLocaleString('en')} | ${r.linksPerNode.toFixed(1)} | ${r.joinHops}, ${(r.joinMs / 1000).toFixed(2)}${r.joinMissing ? ` (${r.joinMissing} missed)` : ''} | ${(r.deadFirstMs / 1000).toFixed(1)} / ${(r.deadAllMs / 1000).toFixed(1)}${r.deadMissing ? ` (${r.deadMissing} missed)` : ''} | ${r.msgsPerNodePerSec.toFixed(1)} | ${r.heartbeatsPerNodePerSec.toFixed(1)} | ${r.refreshRecordsPerNodePerSec.toFixed(0)} | ${r.falseDeaths} (${r.falseSuspicions} suspicions refuted) |`,
    )
  }
  return lines
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const flag = (name: string, dflt: number) => {
    const i = args.indexOf(name)
    if (i < 0) return dflt
    const v = Number(args[i + 1])
    args.splice(i, 2)
    return v
  }
  const loss = flag('--loss', 0.05)
  const degree = flag('--degree', 24)
  const seed = flag('--seed', Date.now() % 2 ** 31)
  const sizes = args.length > 0 ? args.map(Number) : [100, 1000, 10_000]
  console.log(`gossip sim seed ${seed}, degree ${degree}, loss ${loss}`)
  const results: SimResult[] = []
  for (const n of sizes) {
    const t0 = performance.now()
    results.push(simulate({ n, degree, loss, seed }))
    console.error(`N=${n} simulated in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  }
  for (const line of table(results, loss)) console.log(line)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
