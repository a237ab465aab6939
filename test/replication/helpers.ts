/**
 * Test harness for the replication layer: an in-memory transport with injectable drop and
 * partitions, and replicas (driver + in-memory state machine) over real temp directories.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Entry } from '../../src/raft/index.js'
import { ReplicaDriver, type ReplicaDriverOptions } from '../../src/replication/index.js'
import { mulberry32 } from '../helpers/rng.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
export const b = (s: string): Uint8Array => enc.encode(s)
export const s = (u: Uint8Array): string => dec.decode(u)

/** A fresh temp directory and its remover. */
export async function tempDir(
  prefix = 'plexus-repl-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** In-memory network: asynchronous delivery, optional random drop, directed link cuts. */
export class MemNet {
  readonly nodes = new Map<string, { receive(from: string, bytes: Uint8Array): void }>()
  dropRate = 0
  private readonly cut = new Set<string>()
  private readonly rand: () => number
  delivered = 0

  constructor(seed = 1) {
    this.rand = mulberry32(seed)
  }

  send(from: string, to: string, bytes: Uint8Array): void {
    if (this.cut.has(`${from}>${to}`)) return
    if (this.dropRate > 0 && this.rand() < this.dropRate) return
    setImmediate(() => {
      if (this.cut.has(`${from}>${to}`)) return
      const n = this.nodes.get(to)
      if (n === undefined) return
      this.delivered++
      n.receive(from, bytes)
    })
  }

  /** Cuts every link between `id` and everyone else, both ways. */
  isolate(id: string, all: string[]): void {
    for (const o of all) {
      if (o === id) continue
      this.cut.add(`${id}>${o}`)
      this.cut.add(`${o}>${id}`)
    }
  }

  heal(): void {
    this.cut.clear()
  }
}

/** One member: a driver and an in-memory state machine (the applied normal entries). */
export class Replica {
  driver!: ReplicaDriver
  /** Applied non-empty normal entries, in order (reset on restart: replayed from disk). */
  applied: Entry[] = []
  private lastApplied = 0
  leaderChanges = 0
  /** Indexes of snapshots installed through `restore`. */
  restored: number[] = []

  constructor(
    readonly id: string,
    readonly dir: string,
    private readonly net: MemNet,
    private readonly voters: string[],
    private readonly extra: Partial<ReplicaDriverOptions> = {},
    /**
     * The state machine survives restarts (as a partition log does): what it applied stays,
     * and the driver is started with `applied` = its last applied index, so only later
     * entries are replayed.
     */
    private readonly durableState = false,
  ) {}

  async start(): Promise<void> {
    if (!this.durableState) {
      this.applied = []
      this.lastApplied = 0
    }
    this.driver = new ReplicaDriver({
      applied: this.lastApplied,
      id: this.id,
      dir: this.dir,
      voters: this.voters,
      tickMs: 20,
      electionTick: 10,
      rand: mulberry32(this.id.charCodeAt(this.id.length - 1) * 7919 + Date.now()),
      send: (to, bytes) => this.net.send(this.id, to, bytes),
      apply: (entries) => {
        for (const e of entries) {
          if (e.index <= this.lastApplied) continue
          if (e.index !== this.lastApplied + 1) throw new Error(`gap: ${e.index} after ${this.lastApplied}`)
          this.lastApplied = e.index
          if (e.type === 'normal' && e.data.length > 0) this.applied.push(e)
        }
      },
      restore: (snap) => {
        // Streams keep no state in snapshots: skip to its index (data would come out of band).
        this.restored.push(snap.index)
        this.lastApplied = Math.max(this.lastApplied, snap.index)
      },
      onLeaderChange: () => this.leaderChanges++,
      ...this.extra,
    })
    this.net.nodes.set(this.id, this.driver)
    await this.driver.start()
  }

  /** A crash: nothing more is sent or applied, in-memory state dropped. */
  async kill(): Promise<void> {
    this.net.nodes.delete(this.id)
    await this.driver.stop({ flush: false })
  }

  payloads(): string[] {
    return this.applied.map((e) => s(e.data))
  }
}

/** Three (or n) replicas on one MemNet in fresh temp dirs. */
export async function makeCluster(
  n = 3,
  extra: Partial<ReplicaDriverOptions> = {},
  durableState = false,
): Promise<{ net: MemNet; reps: Replica[]; ids: string[]; root: string; cleanup: () => Promise<void> }> {
  const { dir: root, cleanup } = await tempDir()
  const net = new MemNet()
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`)
  const reps = ids.map((id) => new Replica(id, join(root, id), net, ids, extra, durableState))
  for (const r of reps) await r.start()
  return {
    net,
    reps,
    ids,
    root,
    cleanup: async () => {
      for (const r of reps) await r.driver.stop().catch(() => {})
      await cleanup()
    },
  }
}

/** Polls `cond` until true or throws after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Waits until exactly one running replica is leader and every other one agrees; returns it. */
export async function leaderOf(reps: Replica[], ms = 5000): Promise<Replica> {
  let found: Replica | undefined
  await until(
    () => {
      const leaders = reps.filter((r) => r.driver.role === 'leader')
      if (leaders.length !== 1) return false
      found = leaders[0]!
      return reps.every((r) => r.driver.leader === found!.id)
    },
    ms,
    'a leader',
  )
  return found!
}

/** Proposes `payloads` on the leader, `concurrency` at a time; returns what resolved. */
export async function proposeAll(
  leader: Replica,
  payloads: string[],
  concurrency = 64,
): Promise<{ index: number; term: number }[]> {
  const out: { index: number; term: number }[] = []
  for (let i = 0; i < payloads.length; i += concurrency) {
    const chunk = payloads.slice(i, i + concurrency)
    out.push(...(await Promise.all(chunk.map((p) => leader.driver.propose(b(p))))))
  }
  return out
}
