/**
 * Stream metadata commands: the shapes the metadata Raft group replicates, their validation,
 * and their binary codec (also used by `StreamCatalog` snapshots). No state here; the state
 * machine is `StreamCatalog` in metadata.ts. See docs/replication.md, "Stream metadata".
 *
 * Command layout (big-endian, util/binary): `u8 version (1) | u8 kind | str requestId | body`
 * - create (1): `str name | str subject | u16 partitions | u8 replicas | u8 flags (bit 0
 *   retention.maxAge, 1 retention.maxBytes, 2 retention.maxMessages, 3 duplicateWindow, 4 publish
 *   needs a capability, 5 consume needs a capability: nodes without them refuse the spec) |
 *   u64 each present | u8 compact (0/1) |
 *   u16 partitions × (u8 n | n × str member)`
 * - delete (2): `str name`
 * - updatePlacement (3): `str name | u16 partition | u8 n | n × str member`
 * - consumerCommit (4): `str name | u64 createdIndex | str durable | u16 n | n × (u16 partition |
 *   u64 next offset)`
 * - consumerDelete (5): `str name | u64 createdIndex | str durable`
 * - update (6): `str name | u8 flags | u64 each present retention limit` (the new policy)
 * - setReplicas (7): `str name | u8 replicas` (the new replication factor; the placement
 *   follows through updatePlacement commands of the metadata leader's healer)
 */
import { InvalidArgumentError, type PlexusError, StreamNotFoundError } from '../../errors.js'
import { checkPattern } from '../../pubsub/subject.js'
import type { StreamAccess } from '../../types.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import { checkClusterName, describe } from '../../util/validate.js'

/** Limits of a stream's shape. */
export const MAX_PARTITIONS = 1024
export const MAX_REPLICAS = 7
const STREAM_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/
const COMMAND_VERSION = 1
const KINDS = [
  'create',
  'delete',
  'updatePlacement',
  'consumerCommit',
  'consumerDelete',
  'update',
  'setReplicas',
] as const
const OK_OPS = ['created', 'exists', 'deleted', 'updated', 'committed'] as const
const ERR_CODES = ['exists', 'overlap', 'not_found', 'invalid'] as const

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
  /** How long a `msgId` is remembered for de-duplication (ms). */
  duplicateWindow: number
  /** Who may publish / consume (absent: open, both; see `StreamAccess`). */
  access?: StreamAccess
}

/** The access of a spec, defaults filled in. */
export function accessOf(s: StreamSpec): StreamAccess {
  return s.access ?? OPEN_ACCESS
}

/** The default access: anyone may publish and consume. */
export const OPEN_ACCESS: StreamAccess = Object.freeze({ publish: 'open', consume: 'open' })

/** Default `duplicateWindow`: two minutes. */
export const DEFAULT_DUPLICATE_WINDOW = 120_000

/** A stream as the catalog holds it. */
export interface StreamMeta extends StreamSpec {
  /** Replicas per partition, preferred leader first. */
  placement: string[][]
  /**
   * The placement at creation: each partition's raft group was bootstrapped with it, so a
   * replica added later starts from it and replays the membership changes from the log.
   */
  initialPlacement: string[][]
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

/**
 * Record a durable consumer's position: per partition, the offset it reads next (every
 * offset below was acknowledged). Positions only move forward.
 */
export interface ConsumerCommit {
  type: 'consumerCommit'
  name: string
  /** The stream incarnation (a recreated stream starts with no positions). */
  createdIndex: number
  durable: string
  offsets: Array<[partition: number, next: number]>
  requestId: string
}

/** Forget a durable consumer: its positions (the metadata leader also drops its leases). */
export interface ConsumerDelete {
  type: 'consumerDelete'
  name: string
  createdIndex: number
  durable: string
  requestId: string
}

/** Replace a stream's retention policy (limits absent there are removed). */
export interface UpdateStream {
  type: 'update'
  name: string
  retention: RetentionPolicy
  requestId: string
}

/**
 * Set a stream's replication factor. Applying it changes only `replicas`; the metadata
 * leader's healer then moves each partition's placement toward it (host/healer.ts).
 */
export interface SetReplicas {
  type: 'setReplicas'
  name: string
  replicas: number
  requestId: string
}

export type MetaCommand =
  | SetReplicas
  | CreateStream
  | DeleteStream
  | UpdatePlacement
  | ConsumerCommit
  | ConsumerDelete
  | UpdateStream

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

/** Validates a durable consumer name (1–64 of [A-Za-z0-9_-]); throws `DecodeError`. */
export function checkDurableName(v: string): string {
  if (!STREAM_NAME_RE.test(v)) throw new DecodeError(`invalid durable name ${describe(v)}`)
  return v
}

function positiveInt(v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer in 1..${max}`
    throw new InvalidArgumentError(`${field} must be ${range}, got ${describe(v)}`)
  }
  return v
}

/** Stream names (and durable names): 1–64 characters of [A-Za-z0-9_-]; `InvalidArgumentError`. */
export function checkStreamName(v: unknown, field = 'name'): string {
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
  refuseUnknown(
    o,
    ['cluster', 'subject', 'partitions', 'replicas', 'retention', 'compact', 'duplicateWindow', 'access'],
    'options',
  )
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
  const duplicateWindow =
    o.duplicateWindow === undefined
      ? DEFAULT_DUPLICATE_WINDOW
      : positiveInt(o.duplicateWindow, 'duplicateWindow')
  const out: StreamConfig = {
    cluster,
    name: name as string,
    subject,
    partitions,
    replicas,
    retention,
    compact: o.compact === true,
    duplicateWindow,
  }
  const access = checkAccess(o.access)
  if (access.publish !== 'open' || access.consume !== 'open') out.access = access
  return out
}

/** Checks `options.access` (absent fields: `open`); `InvalidArgumentError` naming the field. */
function checkAccess(v: unknown): StreamAccess {
  if (v === undefined) return OPEN_ACCESS
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new InvalidArgumentError(`access must be an object, got ${describe(v)}`)
  refuseUnknown(v, ['publish', 'consume'], 'access')
  const a = v as Record<string, unknown>
  const one = (k: 'publish' | 'consume') => {
    const x = a[k] ?? 'open'
    if (x !== 'open' && x !== 'capability')
      throw new InvalidArgumentError(`access.${k} must be 'open' or 'capability', got ${describe(x)}`)
    return x
  }
  return { publish: one('publish'), consume: one('consume') }
}

/** What `node.streams.update` may change, validated (at least one of them). */
export interface StreamUpdate {
  retention?: RetentionPolicy
  replicas?: number
}

/**
 * Validates `node.streams.update(name, changes)`: `retention` (replaces the whole policy, `{}`
 * removes every limit) and/or `replicas` (1 to `MAX_REPLICAS`). Changing `partitions`,
 * `subject`, `compact`, `duplicateWindow` or `cluster` is refused naming the field (the
 * duplicate window decides offsets, so it would have to change at one raft index on every
 * replica). Throws `InvalidArgumentError`.
 */
export function validateStreamUpdate(name: unknown, changes: unknown): StreamUpdate {
  checkStreamName(name)
  if (typeof changes !== 'object' || changes === null || Array.isArray(changes))
    throw new InvalidArgumentError(`changes must be an object, got ${describe(changes)}`)
  const o = changes as Record<string, unknown>
  for (const k of ['partitions', 'subject', 'compact', 'duplicateWindow', 'cluster'])
    if (o[k] !== undefined)
      throw new InvalidArgumentError(`${k} cannot be changed by update: create a new stream instead`)
  refuseUnknown(o, ['retention', 'replicas'], 'changes')
  if (o.retention === undefined && o.replicas === undefined)
    throw new InvalidArgumentError('changes must set retention or replicas')
  const out: StreamUpdate = {}
  if (o.replicas !== undefined) out.replicas = positiveInt(o.replicas, 'replicas', MAX_REPLICAS)
  if (o.retention !== undefined) {
    const r = o.retention
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw new InvalidArgumentError(`retention must be an object, got ${describe(r)}`)
    refuseUnknown(r, ['maxAge', 'maxBytes', 'maxMessages'], 'retention')
    const retention: RetentionPolicy = {}
    for (const k of RETENTION_KEYS) {
      const v = (r as Record<string, unknown>)[k]
      if (v !== undefined) retention[k] = positiveInt(v, `retention.${k}`)
    }
    out.retention = retention
  }
  return out
}

/** True when two specs describe the same stream (placement is not compared). */
export function sameSpec(a: StreamSpec, b: StreamSpec): boolean {
  return (
    a.name === b.name &&
    a.subject === b.subject &&
    a.partitions === b.partitions &&
    a.replicas === b.replicas &&
    a.compact === b.compact &&
    a.duplicateWindow === b.duplicateWindow &&
    accessOf(a).publish === accessOf(b).publish &&
    accessOf(a).consume === accessOf(b).consume &&
    a.retention.maxAge === b.retention.maxAge &&
    a.retention.maxBytes === b.retention.maxBytes &&
    a.retention.maxMessages === b.retention.maxMessages
  )
}

const RETENTION_KEYS = ['maxAge', 'maxBytes', 'maxMessages'] as const
/** Spec flag bits: publishing / consuming needs a capability (older nodes refuse such a spec). */
const ACCESS_PUBLISH = 16
const ACCESS_CONSUME = 32

/** Writes a stream spec (name, subject, shape, retention, compact) in command layout. */
export function writeSpec(w: BinaryWriter, s: StreamSpec): void {
  w.str(s.name).str(s.subject).u16(s.partitions).u8(s.replicas)
  let flags = 0
  RETENTION_KEYS.forEach((k, i) => {
    if (s.retention[k] !== undefined) flags |= 1 << i
  })
  if (s.duplicateWindow !== DEFAULT_DUPLICATE_WINDOW) flags |= 8
  // Access bits only when not open: an open stream's spec is what older nodes read.
  if (s.access?.publish === 'capability') flags |= ACCESS_PUBLISH
  if (s.access?.consume === 'capability') flags |= ACCESS_CONSUME
  w.u8(flags)
  for (const k of RETENTION_KEYS) if (s.retention[k] !== undefined) w.u64(s.retention[k]!)
  if (flags & 8) w.u64(s.duplicateWindow)
  w.u8(s.compact ? 1 : 0)
}

/** Reads a spec written by `writeSpec`; throws `DecodeError` when malformed or invalid. */
export function readSpec(r: BinaryReader): StreamSpec {
  const name = r.str('name')
  const subject = r.str('subject')
  const partitions = r.u16('partitions')
  const replicas = r.u8('replicas')
  const flags = r.u8('retention flags')
  if (flags > 63) throw new DecodeError(`unknown spec flags ${flags}`)
  const retention: RetentionPolicy = {}
  RETENTION_KEYS.forEach((k, i) => {
    if (flags & (1 << i)) retention[k] = r.u64(`retention.${k}`)
  })
  const duplicateWindow = flags & 8 ? r.u64('duplicateWindow') : DEFAULT_DUPLICATE_WINDOW
  const c = r.u8('compact')
  if (c > 1) throw new DecodeError(`compact flag ${c}`)
  const spec: StreamSpec = {
    name,
    subject,
    partitions,
    replicas,
    retention,
    compact: c === 1,
    duplicateWindow,
  }
  if (flags & (ACCESS_PUBLISH | ACCESS_CONSUME))
    spec.access = {
      publish: flags & ACCESS_PUBLISH ? 'capability' : 'open',
      consume: flags & ACCESS_CONSUME ? 'capability' : 'open',
    }
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

/** Writes a placement: `u16 n | n × (u8 k | k × str member)`. */
export function writePlacement(w: BinaryWriter, placement: readonly string[][]): void {
  w.u16(placement.length)
  for (const list of placement) writeMembers(w, list)
}

/** Reads a placement written by `writePlacement` for a stream of `spec.partitions`. */
export function readPlacement(r: BinaryReader, spec: StreamSpec): string[][] {
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
  else if (c.type === 'consumerCommit') {
    w.str(c.name).u64(c.createdIndex).str(c.durable).u16(c.offsets.length)
    for (const [p, o] of c.offsets) w.u16(p).u64(o)
  } else if (c.type === 'consumerDelete') w.str(c.name).u64(c.createdIndex).str(c.durable)
  else if (c.type === 'update') writeRetentionPolicy(w.str(c.name), c.retention)
  else if (c.type === 'setReplicas') w.str(c.name).u8(c.replicas)
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
  } else if (kind === 'consumerCommit') {
    const name = r.str('name')
    const createdIndex = r.u64('createdIndex')
    const durable = checkDurableName(r.str('durable'))
    const n = r.u16('offset count')
    const offsets: Array<[number, number]> = []
    for (let i = 0; i < n; i++) offsets.push([r.u16('partition'), r.u64('offset')])
    out = { type: 'consumerCommit', name, createdIndex, durable, offsets, requestId }
  } else if (kind === 'consumerDelete') {
    const name = r.str('name')
    const createdIndex = r.u64('createdIndex')
    out = {
      type: 'consumerDelete',
      name,
      createdIndex,
      durable: checkDurableName(r.str('durable')),
      requestId,
    }
  } else if (kind === 'update') {
    out = { type: 'update', name: r.str('name'), retention: readRetentionPolicy(r), requestId }
  } else if (kind === 'setReplicas') {
    const name = r.str('name')
    const replicas = r.u8('replicas')
    if (replicas < 1 || replicas > MAX_REPLICAS) throw new DecodeError(`replicas out of range: ${replicas}`)
    out = { type: 'setReplicas', name, replicas, requestId }
  } else {
    const name = r.str('name')
    const partition = r.u16('partition')
    out = { type: 'updatePlacement', name, partition, replicas: readMembers(r, 'replicas'), requestId }
  }
  if (!STREAM_NAME_RE.test(out.name)) throw new DecodeError(`invalid stream name ${describe(out.name)}`)
  r.end('metadata command')
  return out
}

/** Writes a retention policy: `u8 flags (bit i: RETENTION_KEYS[i]) | u64 each present limit`. */
export function writeRetentionPolicy(w: BinaryWriter, r: RetentionPolicy): void {
  let flags = 0
  RETENTION_KEYS.forEach((k, i) => {
    if (r[k] !== undefined) flags |= 1 << i
  })
  w.u8(flags)
  for (const k of RETENTION_KEYS) if (r[k] !== undefined) w.u64(r[k]!)
}

/** Reads a policy written by `writeRetentionPolicy` (limits positive); `DecodeError`. */
export function readRetentionPolicy(r: BinaryReader): RetentionPolicy {
  const flags = r.u8('retention flags')
  if (flags > 7) throw new DecodeError(`unknown retention flags ${flags}`)
  const out: RetentionPolicy = {}
  RETENTION_KEYS.forEach((k, i) => {
    if (flags & (1 << i)) out[k] = r.u64(`retention.${k}`)
    if (out[k] === 0) throw new DecodeError(`retention.${k} 0`)
  })
  return out
}

/** Writes a command result (without its `stream`) for the catalog snapshot. */
export function writeResult(w: BinaryWriter, res: MetaResult): void {
  if (res.ok) w.u8(0).u8(OK_OPS.indexOf(res.op)).str(res.name)
  else w.u8(1).u8(ERR_CODES.indexOf(res.code)).str(res.name).str(res.message)
}

/** Reads a result written by `writeResult` (`stream` undefined). */
export function readResult(r: BinaryReader): MetaResult {
  const failed = r.u8('result kind')
  const i = r.u8('result code')
  const name = r.str('result name')
  if (failed === 0 && i < OK_OPS.length) return { ok: true, op: OK_OPS[i]!, name, stream: undefined }
  if (failed === 1 && i < ERR_CODES.length) return { ok: false, code: ERR_CODES[i]!, name, message: r.str() }
  throw new DecodeError('malformed result')
}
