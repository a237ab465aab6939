/**
 * Stream metadata of one cluster: `StreamCatalog`, the deterministic state machine that
 * applies the commands its metadata Raft group (`meta/<cluster>`, a `ReplicaDriver`)
 * replicates. The commands, their validation and codec live in metadata-codec.ts (re-exported
 * here). No networking here. See docs/replication.md, "Stream metadata".
 */
import { randomBytes } from 'node:crypto'
import { SubjectIndex } from '../../pubsub/subject.js'
import type { Entry } from '../../raft/index.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import {
  type ConsumerCommit,
  decodeCommand,
  type MetaCommand,
  type MetaResult,
  readPlacement,
  readResult,
  readSpec,
  type StreamMeta,
  sameSpec,
  subjectsOverlap,
  writePlacement,
  writeResult,
  writeSpec,
} from './metadata-codec.js'

export {
  type ConsumerCommit,
  type ConsumerDelete,
  type CreateStream,
  type DeleteStream,
  decodeCommand,
  encodeCommand,
  MAX_PARTITIONS,
  MAX_REPLICAS,
  type MetaCommand,
  type MetaResult,
  metaResultError,
  type RetentionPolicy,
  type StreamConfig,
  type StreamMeta,
  type StreamSpec,
  type StreamUpdate,
  sameSpec,
  subjectsOverlap,
  type UpdatePlacement,
  type UpdateStream,
  validateStreamConfig,
  validateStreamUpdate,
} from './metadata-codec.js'

const SNAPSHOT_VERSION = 4
/** Most durable consumers per stream. */
export const MAX_DURABLES = 1024
/** Deleted streams remembered (tombstones): replicas delete data only for these. */
export const MAX_TOMBSTONES = 1024

/** A deleted stream incarnation: its data may be removed wherever it is found. */
export interface Tombstone {
  name: string
  createdIndex: number
}
/** Request ids remembered for deduplication of retried commands (oldest forgotten first). */
export const MAX_REMEMBERED_REQUESTS = 4096
/** Results kept in memory by raft index for proposers (`resultAt`). */
const MAX_RECENT_RESULTS = 1024

const cloneMeta = (m: StreamMeta): StreamMeta => ({
  ...m,
  retention: { ...m.retention },
  placement: m.placement.map((l) => [...l]),
  initialPlacement: m.initialPlacement.map((l) => [...l]),
})

/**
 * The stream catalog of one cluster, applied from its metadata group's committed entries.
 *
 * Ordering: commands take effect in raft index order; the same entries give the same state
 * and the same results on every replica (no clock, no randomness: `createdIndex` is the raft
 * index). Idempotence: an index at or below `lastApplied` is skipped (the driver re-delivers
 * entries after a restart), and a `requestId` seen among the last `MAX_REMEMBERED_REQUESTS`
 * commands returns its original outcome without changing anything (safe client retries).
 * Durability: in memory only; `snapshot()` captures everything (streams, `lastApplied`,
 * remembered requests) for `ReplicaDriver.compact`, `restore()` installs it.
 */
export class StreamCatalog {
  private streams = new Map<string, StreamMeta>()
  private subjects = new SubjectIndex<string>()
  private requests = new Map<string, MetaResult>()
  private readonly recent = new Map<number, MetaResult>()
  private applied = 0
  private tombs: Tombstone[] = []
  /** stream → durable name → partition → next offset. */
  private consumers = new Map<string, Map<string, Map<number, number>>>()
  /** Entries whose payload did not decode (skipped identically on every replica). */
  skipped = 0

  /** Raft index of the last applied entry. */
  get lastApplied(): number {
    return this.applied
  }

  /** The stream named `name`, or undefined. A copy. */
  get(name: string): StreamMeta | undefined {
    const m = this.streams.get(name)
    return m && cloneMeta(m)
  }

  /** Every stream, sorted by name. Copies. */
  list(): StreamMeta[] {
    return [...this.streams.keys()].sort().map((n) => cloneMeta(this.streams.get(n)!))
  }

  /** Recently deleted stream incarnations, oldest first (at most `MAX_TOMBSTONES`). */
  tombstones(): Tombstone[] {
    return this.tombs.map((t) => ({ ...t }))
  }

  /** The stream capturing a published topic (at most one: subjects never overlap). */
  streamForTopic(topic: string): StreamMeta | undefined {
    const [name] = this.subjects.match(topic)
    return name === undefined ? undefined : this.get(name)
  }

  /** The result of the command applied at `index` here, while it is recent (for proposers). */
  resultAt(index: number): MetaResult | undefined {
    return this.recent.get(index)
  }

  /**
   * Applies committed raft entries (the `ReplicaDriver` `apply` callback): entries at or
   * below `lastApplied`, leader no-ops and conf changes only advance `lastApplied`; a
   * payload that does not decode is skipped and counted.
   */
  applyEntries(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.index <= this.applied) continue
      if (e.type !== 'normal' || e.data.length === 0) {
        this.applied = e.index
        continue
      }
      let cmd: MetaCommand
      try {
        cmd = decodeCommand(e.data)
      } catch {
        this.skipped++
        this.applied = e.index
        continue
      }
      this.apply(e.index, cmd)
    }
  }

  /**
   * Applies one command at raft index `index`; returns its result, or undefined when the
   * index was already applied (nothing changes).
   */
  apply(index: number, cmd: MetaCommand): MetaResult | undefined {
    if (index <= this.applied) return undefined
    this.applied = index
    const seen = this.requests.get(cmd.requestId)
    let res: MetaResult
    if (cmd.type === 'consumerCommit') {
      res = this.commitPosition(cmd) // idempotent (positions only move forward): not remembered
    } else if (seen) {
      res = { ...seen, duplicate: true }
      if (res.ok) res.stream = this.get(res.name)
    } else {
      res = this.execute(index, cmd)
      const { stream: _, ...kept } = res as MetaResult & { stream?: StreamMeta }
      this.requests.set(cmd.requestId, kept as MetaResult)
      if (this.requests.size > MAX_REMEMBERED_REQUESTS)
        this.requests.delete(this.requests.keys().next().value!)
    }
    this.recent.set(index, res)
    if (this.recent.size > MAX_RECENT_RESULTS) this.recent.delete(this.recent.keys().next().value!)
    return res
  }

  /** True when a command with `requestId` is remembered (a retry gets its first outcome). */
  knowsRequest(requestId: string): boolean {
    return this.requests.has(requestId)
  }

  /** Positions of a durable consumer of a stream: partition → next offset. A copy. */
  positions(stream: string, durable: string): Map<number, number> {
    return new Map(this.consumers.get(stream)?.get(durable) ?? [])
  }

  /** Durable consumer names of a stream, sorted. */
  durables(stream: string): string[] {
    return [...(this.consumers.get(stream)?.keys() ?? [])].sort()
  }

  private commitPosition(cmd: ConsumerCommit): MetaResult {
    const name = cmd.name
    const s = this.streams.get(name)
    if (!s || s.createdIndex !== cmd.createdIndex)
      return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
    let byDurable = this.consumers.get(name)
    if (!byDurable) this.consumers.set(name, (byDurable = new Map()))
    let pos = byDurable.get(cmd.durable)
    if (!pos) {
      if (byDurable.size >= MAX_DURABLES)
        return {
          ok: false,
          code: 'invalid',
          name,
          message: `stream "${name}" has ${MAX_DURABLES} durable consumers`,
        }
      byDurable.set(cmd.durable, (pos = new Map()))
    }
    for (const [p, next] of cmd.offsets) {
      if (p < s.partitions && next > (pos.get(p) ?? -1)) pos.set(p, next)
    }
    return { ok: true, op: 'committed', name, stream: undefined }
  }

  private execute(index: number, cmd: Exclude<MetaCommand, ConsumerCommit>): MetaResult {
    const name = cmd.name
    const existing = this.streams.get(name)
    if (cmd.type === 'delete') {
      if (!existing) return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
      this.streams.delete(name)
      this.consumers.delete(name)
      this.subjects.delete(existing.subject, name)
      this.tombs.push({ name, createdIndex: existing.createdIndex })
      if (this.tombs.length > MAX_TOMBSTONES) this.tombs.shift()
      return { ok: true, op: 'deleted', name, stream: cloneMeta(existing) }
    }
    if (cmd.type === 'consumerDelete') {
      if (!existing || existing.createdIndex !== cmd.createdIndex)
        return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
      this.consumers.get(name)?.delete(cmd.durable)
      return { ok: true, op: 'deleted', name, stream: cloneMeta(existing) }
    }
    if (cmd.type === 'update') {
      if (!existing) return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
      existing.retention = { ...cmd.retention }
      return { ok: true, op: 'updated', name, stream: cloneMeta(existing) }
    }
    if (cmd.type === 'setReplicas') {
      if (!existing) return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
      existing.replicas = cmd.replicas
      return { ok: true, op: 'updated', name, stream: cloneMeta(existing) }
    }
    if (cmd.type === 'updatePlacement') {
      if (!existing) return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
      if (cmd.partition >= existing.partitions) {
        const message = `stream "${name}" has no partition ${cmd.partition} (it has ${existing.partitions})`
        return { ok: false, code: 'invalid', name, message }
      }
      existing.placement[cmd.partition] = [...cmd.replicas]
      return { ok: true, op: 'updated', name, stream: cloneMeta(existing) }
    }
    const { type: _t, requestId: _r, placement, ...spec } = cmd
    if (existing) {
      if (sameSpec(existing, spec)) return { ok: true, op: 'exists', name, stream: cloneMeta(existing) }
      const message = `stream "${name}" already exists with a different configuration (subject "${existing.subject}", ${existing.partitions} partitions, ${existing.replicas} replicas)`
      return { ok: false, code: 'exists', name, message }
    }
    for (const other of this.streams.values()) {
      if (subjectsOverlap(other.subject, spec.subject)) {
        const message = `subject "${spec.subject}" of stream "${name}" overlaps subject "${other.subject}" of stream "${other.name}"`
        return { ok: false, code: 'overlap', name, message }
      }
    }
    const meta: StreamMeta = {
      ...spec,
      retention: { ...spec.retention },
      placement: placement.map((l) => [...l]),
      initialPlacement: placement.map((l) => [...l]),
      createdIndex: index,
    }
    this.streams.set(name, meta)
    this.subjects.add(meta.subject, name)
    return { ok: true, op: 'created', name, stream: cloneMeta(meta) }
  }

  /**
   * The whole state as bytes, identical on replicas that applied the same entries:
   * `u8 version | u64 lastApplied | u32 n | n × (spec, u64 createdIndex, placement, initial
   * placement (from version 4)) |
   * u32 m | m × (str requestId, result) | u32 k | k × (str name, u64 createdIndex)` (tombstones,
   * from version 2) `| u32 s | s × (str stream | u32 d | d × (str durable | u16 p | p × (u16
   * partition | u64 next offset)))` (durable consumer positions, from version 3).
   */
  snapshot(): Uint8Array {
    const w = new BinaryWriter(256)
    w.u8(SNAPSHOT_VERSION).u64(this.applied).u32(this.streams.size)
    for (const m of this.list()) {
      writeSpec(w, m)
      w.u64(m.createdIndex)
      writePlacement(w, m.placement)
      writePlacement(w, m.initialPlacement)
    }
    w.u32(this.requests.size)
    for (const [id, res] of this.requests) {
      w.str(id)
      writeResult(w, res)
    }
    w.u32(this.tombs.length)
    for (const t of this.tombs) w.str(t.name).u64(t.createdIndex)
    const streams = [...this.consumers.keys()].sort()
    w.u32(streams.length)
    for (const name of streams) {
      const byDurable = this.consumers.get(name)!
      w.str(name).u32(byDurable.size)
      for (const d of [...byDurable.keys()].sort()) {
        const pos = byDurable.get(d)!
        w.str(d).u16(pos.size)
        for (const p of [...pos.keys()].sort((a, b) => a - b)) w.u16(p).u64(pos.get(p)!)
      }
    }
    return w.finish().slice()
  }

  /**
   * Replaces the whole state with a snapshot's. Throws `DecodeError` on malformed bytes,
   * leaving the current state untouched.
   */
  restore(bytes: Uint8Array): void {
    const r = new BinaryReader(bytes)
    const v = r.u8('snapshot version')
    if (v < 1 || v > SNAPSHOT_VERSION) throw new DecodeError(`unknown metadata snapshot version ${v}`)
    const applied = r.u64('lastApplied')
    const n = r.u32('stream count')
    if (n > r.remaining) throw new DecodeError(`implausible stream count ${n}`)
    const streams = new Map<string, StreamMeta>()
    const subjects = new SubjectIndex<string>()
    for (let i = 0; i < n; i++) {
      const spec = readSpec(r)
      const createdIndex = r.u64('createdIndex')
      const placement = readPlacement(r, spec)
      const initialPlacement = v >= 4 ? readPlacement(r, spec) : placement.map((l) => [...l])
      if (streams.has(spec.name)) throw new DecodeError(`stream "${spec.name}" twice in snapshot`)
      streams.set(spec.name, { ...spec, placement, initialPlacement, createdIndex })
      subjects.add(spec.subject, spec.name)
    }
    const m = r.u32('request count')
    if (m > r.remaining) throw new DecodeError(`implausible request count ${m}`)
    const requests = new Map<string, MetaResult>()
    for (let i = 0; i < m; i++) requests.set(r.str('requestId'), readResult(r))
    const tombs: Tombstone[] = []
    if (v >= 2) {
      const k = r.u32('tombstone count')
      if (k > r.remaining) throw new DecodeError(`implausible tombstone count ${k}`)
      for (let i = 0; i < k; i++)
        tombs.push({ name: r.str('tombstone name'), createdIndex: r.u64('createdIndex') })
    }
    const consumers = new Map<string, Map<string, Map<number, number>>>()
    if (v >= 3) {
      const ns = r.u32('consumer stream count')
      if (ns > r.remaining) throw new DecodeError(`implausible consumer stream count ${ns}`)
      for (let i = 0; i < ns; i++) {
        const name = r.str('stream')
        const nd = r.u32('durable count')
        if (nd > r.remaining) throw new DecodeError(`implausible durable count ${nd}`)
        const byDurable = new Map<string, Map<number, number>>()
        for (let j = 0; j < nd; j++) {
          const d = r.str('durable')
          const np = r.u16('position count')
          const pos = new Map<number, number>()
          for (let k = 0; k < np; k++) pos.set(r.u16('partition'), r.u64('offset'))
          byDurable.set(d, pos)
        }
        consumers.set(name, byDurable)
      }
    }
    r.end('metadata snapshot')
    this.tombs = tombs
    this.consumers = consumers
    this.streams = streams
    this.subjects = subjects
    this.requests = requests
    this.recent.clear()
    this.applied = applied
  }
}

/** A fresh request id for metadata commands (retries reuse it). */
export function newRequestId(): string {
  return randomBytes(12).toString('hex')
}
