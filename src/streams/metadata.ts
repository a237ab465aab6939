/**
 * Stream metadata of one cluster: the commands its metadata Raft group (`meta/<cluster>`, a
 * `ReplicaDriver`) replicates, and `StreamCatalog`, the deterministic state machine that
 * applies them. No networking here. See docs/replication.md, "Stream metadata".
 *
 * Command layout (big-endian, util/binary): `u8 version (1) | u8 kind | str requestId | body`
 * - create (1): `str name | str subject | u16 partitions | u8 replicas | u8 retention flags
 *   (bit 0 maxAge, 1 maxBytes, 2 maxMessages) | u64 each present | u8 compact (0/1) |
 *   u16 partitions × (u8 n | n × str member)`
 * - delete (2): `str name`
 * - updatePlacement (3): `str name | u16 partition | u8 n | n × str member`
 */
import { InvalidArgumentError, type PlexusError, StreamNotFoundError } from '../errors.js'
import { checkPattern, SubjectIndex } from '../pubsub/subject.js'
import type { Entry } from '../raft/index.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import { checkClusterName, describe } from '../util/validate.js'

/** Limits of a stream's shape. */
export const MAX_PARTITIONS = 1024
export const MAX_REPLICAS = 7
const STREAM_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/
const COMMAND_VERSION = 1
const SNAPSHOT_VERSION = 1
const KINDS = ['create', 'delete', 'updatePlacement'] as const
const OK_OPS = ['created', 'exists', 'deleted', 'updated'] as const
const ERR_CODES = ['exists', 'overlap', 'not_found', 'invalid'] as const
/** Request ids remembered for deduplication of retried commands (oldest forgotten first). */
export const MAX_REMEMBERED_REQUESTS = 4096
/** Results kept in memory by raft index for proposers (`resultAt`). */
const MAX_RECENT_RESULTS = 1024

/** Retention of a stream; absent fields mean "no limit". Positive integers. */
export interface RetentionPolicy {
  /** Milliseconds. */
  maxAge?: number
  maxBytes?: number
  maxMessages?: number
}

/** What the user asked for (validated by `validateStreamConfig`). */
export interface StreamSpec {
  name: string
  subject: string
  partitions: number
  replicas: number
  retention: RetentionPolicy
  compact: boolean
}

/** A stream as the catalog holds it. */
export interface StreamMeta extends StreamSpec {
  /** Replicas per partition, preferred leader first. */
  placement: string[][]
  /** Raft index of the create that made it (identical on every replica). */
  createdIndex: number
}

/** Create a stream; `placement` is computed by the proposer (`placeStream`). */
export interface CreateStream extends StreamSpec {
  type: 'create'
  placement: string[][]
  /** Unique per client request (retries reuse it: deduplicated). */
  requestId: string
}

/** Delete a stream. */
export interface DeleteStream {
  type: 'delete'
  name: string
  requestId: string
}

/** Replace one partition's replica list (self-healing after a member is lost). */
export interface UpdatePlacement {
  type: 'updatePlacement'
  name: string
  partition: number
  replicas: string[]
  requestId: string
}

export type MetaCommand = CreateStream | DeleteStream | UpdatePlacement

/**
 * The outcome of one applied command. `duplicate` marks a command whose `requestId` was
 * already applied: the original outcome is returned and the state is unchanged.
 */
export type MetaResult =
  | { ok: true; op: (typeof OK_OPS)[number]; name: string; stream: StreamMeta | undefined; duplicate?: true }
  | { ok: false; code: (typeof ERR_CODES)[number]; name: string; message: string; duplicate?: true }

/** The error class of a failed result: `StreamNotFoundError` or `InvalidArgumentError`. */
export function metaResultError(r: MetaResult & { ok: false }): PlexusError {
  return r.code === 'not_found' ? new StreamNotFoundError(r.message) : new InvalidArgumentError(r.message)
}

/**
 * True when some topic is matched by both patterns (both assumed valid, see
 * `checkPattern`). Token by token: a `>` on either side matches whatever remains of the
 * other (which has at least one token there); two literals must be equal; `*` matches any
 * literal. Without a `>` the two must have the same number of tokens.
 */
export function subjectsOverlap(a: string, b: string): boolean {
  const x = a.split('.')
  const y = b.split('.')
  const n = Math.min(x.length, y.length)
  for (let i = 0; i < n; i++) {
    const s = x[i]!
    const t = y[i]!
    if (s === '>' || t === '>') return true
    if (s !== '*' && t !== '*' && s !== t) return false
  }
  return x.length === y.length
}

function positiveInt(v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer in 1..${max}`
    throw new InvalidArgumentError(`${field} must be ${range}, got ${describe(v)}`)
  }
  return v
}

function checkStreamName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string' || !STREAM_NAME_RE.test(v))
    throw new InvalidArgumentError(`${field} must be 1-64 characters of [A-Za-z0-9_-], got ${describe(v)}`)
  return v
}

function refuseUnknown(obj: object, known: readonly string[], field: string): void {
  for (const k of Object.keys(obj))
    if (!known.includes(k)) throw new InvalidArgumentError(`${field} has an unknown option "${k}"`)
}

/** The options of `node.streams.create`, as validated and defaulted. */
export interface StreamConfig extends StreamSpec {
  cluster: string
}

/**
 * Validates `node.streams.create(name, opts)` and fills defaults (`partitions` 1,
 * `replicas` 3, no retention, `compact` false). Throws `InvalidArgumentError` naming the
 * offending field: `name` (1–64 of [A-Za-z0-9_-]), `cluster`, `subject` (a valid pattern),
 * `partitions` (1..1024), `replicas` (1..7), `retention.maxAge|maxBytes|maxMessages`
 * (positive integers), `compact` (boolean), or an unknown option.
 */
export function validateStreamConfig(name: unknown, opts: unknown): StreamConfig {
  checkStreamName(name)
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts))
    throw new InvalidArgumentError(`options must be an object, got ${describe(opts)}`)
  const o = opts as Record<string, unknown>
  refuseUnknown(o, ['cluster', 'subject', 'partitions', 'replicas', 'retention', 'compact'], 'options')
  const cluster = checkClusterName(o.cluster, 'cluster')
  const subject = checkPattern(o.subject, 'subject')
  const partitions = o.partitions === undefined ? 1 : positiveInt(o.partitions, 'partitions', MAX_PARTITIONS)
  const replicas = o.replicas === undefined ? 3 : positiveInt(o.replicas, 'replicas', MAX_REPLICAS)
  const retention: RetentionPolicy = {}
  if (o.retention !== undefined) {
    const r = o.retention
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw new InvalidArgumentError(`retention must be an object, got ${describe(r)}`)
    refuseUnknown(r, ['maxAge', 'maxBytes', 'maxMessages'], 'retention')
    for (const k of ['maxAge', 'maxBytes', 'maxMessages'] as const) {
      const v = (r as Record<string, unknown>)[k]
      if (v !== undefined) retention[k] = positiveInt(v, `retention.${k}`)
    }
  }
  if (o.compact !== undefined && typeof o.compact !== 'boolean')
    throw new InvalidArgumentError(`compact must be a boolean, got ${describe(o.compact)}`)
  return {
    cluster,
    name: name as string,
    subject,
    partitions,
    replicas,
    retention,
    compact: o.compact === true,
  }
}

/** True when two specs describe the same stream (placement is not compared). */
export function sameSpec(a: StreamSpec, b: StreamSpec): boolean {
  return (
    a.name === b.name &&
    a.subject === b.subject &&
    a.partitions === b.partitions &&
    a.replicas === b.replicas &&
    a.compact === b.compact &&
    a.retention.maxAge === b.retention.maxAge &&
    a.retention.maxBytes === b.retention.maxBytes &&
    a.retention.maxMessages === b.retention.maxMessages
  )
}

const RETENTION_KEYS = ['maxAge', 'maxBytes', 'maxMessages'] as const

function writeSpec(w: BinaryWriter, s: StreamSpec): void {
  w.str(s.name).str(s.subject).u16(s.partitions).u8(s.replicas)
  let flags = 0
  RETENTION_KEYS.forEach((k, i) => {
    if (s.retention[k] !== undefined) flags |= 1 << i
  })
  w.u8(flags)
  for (const k of RETENTION_KEYS) if (s.retention[k] !== undefined) w.u64(s.retention[k]!)
  w.u8(s.compact ? 1 : 0)
}

function readSpec(r: BinaryReader): StreamSpec {
  const name = r.str('name')
  const subject = r.str('subject')
  const partitions = r.u16('partitions')
  const replicas = r.u8('replicas')
  const flags = r.u8('retention flags')
  if (flags > 7) throw new DecodeError(`unknown retention flags ${flags}`)
  const retention: RetentionPolicy = {}
  RETENTION_KEYS.forEach((k, i) => {
    if (flags & (1 << i)) retention[k] = r.u64(`retention.${k}`)
  })
  const c = r.u8('compact')
  if (c > 1) throw new DecodeError(`compact flag ${c}`)
  const spec = { name, subject, partitions, replicas, retention, compact: c === 1 }
  try {
    const { name: _, ...opts } = spec
    validateStreamConfig(name, { ...opts, cluster: 'x' })
  } catch (err) {
    throw new DecodeError(`invalid stream spec: ${(err as Error).message}`)
  }
  return spec
}

function writeMembers(w: BinaryWriter, list: readonly string[]): void {
  w.u8(list.length)
  for (const m of list) w.str(m)
}

function readMembers(r: BinaryReader, what: string): string[] {
  const n = r.u8(`${what} count`)
  if (n < 1 || n > MAX_REPLICAS) throw new DecodeError(`${what}: ${n} replicas`)
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const m = r.str(what)
    if (m === '' || out.includes(m)) throw new DecodeError(`${what}: empty or repeated member`)
    out.push(m)
  }
  return out
}

function writePlacement(w: BinaryWriter, placement: readonly string[][]): void {
  w.u16(placement.length)
  for (const list of placement) writeMembers(w, list)
}

function readPlacement(r: BinaryReader, spec: StreamSpec): string[][] {
  const n = r.u16('placement count')
  if (n !== spec.partitions)
    throw new DecodeError(`placement for ${n} partitions, stream has ${spec.partitions}`)
  const out: string[][] = []
  for (let p = 0; p < n; p++) out.push(readMembers(r, `placement[${p}]`))
  return out
}

/**
 * Encodes a command as one raft entry payload. Throws `InvalidArgumentError` for a command
 * that could not be decoded back (bad spec, placement shape, empty request id).
 */
export function encodeCommand(c: MetaCommand): Uint8Array {
  const bytes = encodeUnchecked(c)
  try {
    decodeCommand(bytes)
  } catch (err) {
    throw new InvalidArgumentError(`malformed ${c.type} command: ${(err as Error).message}`)
  }
  return bytes
}

function encodeUnchecked(c: MetaCommand): Uint8Array {
  const w = new BinaryWriter(128)
  w.u8(COMMAND_VERSION)
    .u8(KINDS.indexOf(c.type) + 1)
    .str(c.requestId)
  if (c.type === 'create') {
    writeSpec(w, c)
    writePlacement(w, c.placement)
  } else if (c.type === 'delete') w.str(c.name)
  else {
    w.str(c.name).u16(c.partition)
    writeMembers(w, c.replicas)
  }
  return w.finish().slice()
}

/** Decodes a raft entry payload; throws `DecodeError` on anything malformed. */
export function decodeCommand(bytes: Uint8Array): MetaCommand {
  const r = new BinaryReader(bytes)
  const v = r.u8('command version')
  if (v !== COMMAND_VERSION) throw new DecodeError(`unknown metadata command version ${v}`)
  const kind = KINDS[r.u8('command kind') - 1]
  if (kind === undefined) throw new DecodeError('unknown metadata command kind')
  const requestId = r.str('requestId')
  if (requestId === '') throw new DecodeError('empty requestId')
  let out: MetaCommand
  if (kind === 'create') {
    const spec = readSpec(r)
    const placement = readPlacement(r, spec)
    if (placement.some((l) => l.length !== spec.replicas))
      throw new DecodeError(`placement lists must hold ${spec.replicas} replicas`)
    out = { type: 'create', ...spec, placement, requestId }
  } else if (kind === 'delete') {
    out = { type: 'delete', name: r.str('name'), requestId }
  } else {
    const name = r.str('name')
    const partition = r.u16('partition')
    out = { type: 'updatePlacement', name, partition, replicas: readMembers(r, 'replicas'), requestId }
  }
  if (!STREAM_NAME_RE.test(out.name)) throw new DecodeError(`invalid stream name ${describe(out.name)}`)
  r.end('metadata command')
  return out
}

function writeResult(w: BinaryWriter, res: MetaResult): void {
  if (res.ok) w.u8(0).u8(OK_OPS.indexOf(res.op)).str(res.name)
  else w.u8(1).u8(ERR_CODES.indexOf(res.code)).str(res.name).str(res.message)
}

function readResult(r: BinaryReader): MetaResult {
  const failed = r.u8('result kind')
  const i = r.u8('result code')
  const name = r.str('result name')
  if (failed === 0 && i < OK_OPS.length) return { ok: true, op: OK_OPS[i]!, name, stream: undefined }
  if (failed === 1 && i < ERR_CODES.length) return { ok: false, code: ERR_CODES[i]!, name, message: r.str() }
  throw new DecodeError('malformed result')
}

const cloneMeta = (m: StreamMeta): StreamMeta => ({
  ...m,
  retention: { ...m.retention },
  placement: m.placement.map((l) => [...l]),
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
    if (seen) {
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

  private execute(index: number, cmd: MetaCommand): MetaResult {
    const name = cmd.name
    const existing = this.streams.get(name)
    if (cmd.type === 'delete') {
      if (!existing) return { ok: false, code: 'not_found', name, message: `stream "${name}" does not exist` }
      this.streams.delete(name)
      this.subjects.delete(existing.subject, name)
      return { ok: true, op: 'deleted', name, stream: cloneMeta(existing) }
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
      createdIndex: index,
    }
    this.streams.set(name, meta)
    this.subjects.add(meta.subject, name)
    return { ok: true, op: 'created', name, stream: cloneMeta(meta) }
  }

  /**
   * The whole state as bytes, identical on replicas that applied the same entries:
   * `u8 version | u64 lastApplied | u32 n | n × (spec, u64 createdIndex, placement) |
   * u32 m | m × (str requestId, result)`.
   */
  snapshot(): Uint8Array {
    const w = new BinaryWriter(256)
    w.u8(SNAPSHOT_VERSION).u64(this.applied).u32(this.streams.size)
    for (const m of this.list()) {
      writeSpec(w, m)
      w.u64(m.createdIndex)
      writePlacement(w, m.placement)
    }
    w.u32(this.requests.size)
    for (const [id, res] of this.requests) {
      w.str(id)
      writeResult(w, res)
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
    if (v !== SNAPSHOT_VERSION) throw new DecodeError(`unknown metadata snapshot version ${v}`)
    const applied = r.u64('lastApplied')
    const n = r.u32('stream count')
    if (n > r.remaining) throw new DecodeError(`implausible stream count ${n}`)
    const streams = new Map<string, StreamMeta>()
    const subjects = new SubjectIndex<string>()
    for (let i = 0; i < n; i++) {
      const spec = readSpec(r)
      const createdIndex = r.u64('createdIndex')
      const placement = readPlacement(r, spec)
      if (streams.has(spec.name)) throw new DecodeError(`stream "${spec.name}" twice in snapshot`)
      streams.set(spec.name, { ...spec, placement, createdIndex })
      subjects.add(spec.subject, spec.name)
    }
    const m = r.u32('request count')
    if (m > r.remaining) throw new DecodeError(`implausible request count ${m}`)
    const requests = new Map<string, MetaResult>()
    for (let i = 0; i < m; i++) requests.set(r.str('requestId'), readResult(r))
    r.end('metadata snapshot')
    this.streams = streams
    this.subjects = subjects
    this.requests = requests
    this.recent.clear()
    this.applied = applied
  }
}
