/**
 * Interest records: each node's subscription patterns, spread over the neighbour graph so a
 * publisher learns the interest of subscribers it has no link to (bounded links).
 *
 * A record is `u8 version (1) | str peer | u64 counter | u8 kind (0 alive, 1 leave) |
 * u16 n × str address | u16 n × str pattern | bytes signature`; version 2 adds the node's
 * queue-group entries after the patterns, `u16 n × (str pattern | str queue)` (made only by a
 * node with queue-group members, so nodes without them stay readable by older nodes), so a
 * publisher picks far group members too (`pubsub/groups.ts`). The signature is made with the
 * node's own libp2p key over `plexus-interest/<network>/` followed by every byte before it,
 * so nobody announces interest for another node. The counter is the signing time in ms
 * (strictly increasing per node); a record is accepted when it is newer than the one held
 * for that node, within `maxAge` of our clock, well-formed and its signature verifies. An
 * accepted record is passed on once to every neighbour but the sender (a flood over the
 * neighbour graph, as announcements), and a new neighbour gets every fresh record held.
 * Nodes re-sign every `refreshInterval` (and soon after their patterns change); a record not
 * refreshed within `maxAge` is dropped, and a node that stops sends a leave.
 *
 * Bounds: at most `MAX_RECORD_PATTERNS` patterns and `MAX_RECORD_BYTES` per record (a node
 * with more announces only the first ones and counts `pubsub.interestTruncated`; its direct
 * links still get them all), at most `OVERLAY.maxKnown` nodes held.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { MEMBERSHIP, OVERLAY } from '../constants.js'
import type { QueueEntry } from '../pubsub/frames.js'
import type { FarGroups, MemberState } from '../pubsub/groups.js'
import { checkPattern, SubjectIndex } from '../pubsub/subject.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import { checkQueueName } from '../util/validate.js'

/** Internal call (no reply) carrying one record to a neighbour. */
export const OVERLAY_INTEREST = 'overlay.interest'
/** Most patterns one record carries. */
export const MAX_RECORD_PATTERNS = 1024
/** Largest record (bytes). */
export const MAX_RECORD_BYTES = 64 * 1024
/** Most addresses one record carries. */
const MAX_ADDRS = 16
/** Delay between a pattern change and the re-signed record (several changes make one record). */
const CHANGE_DELAY = 50
const VERSION = 1
const NO_ANSWER = new Uint8Array(0)
/** A record with queue-group entries (see the module doc). */
const VERSION_QUEUES = 2
const ALIVE = 0
const LEAVE = 1

/** What the records need from the node. */
export interface InterestHost {
  self: string
  network: string
  now(): number
  /** Signs with the node's libp2p key. */
  sign(data: Uint8Array): Promise<Uint8Array>
  /** This node's addresses (put into its record). */
  addresses(): string[]
  /** This node's plain subscription patterns now. */
  patterns(): string[]
  /** This node's queue-group entries now (one per pattern and queue with a local member). */
  queues?(): QueueEntry[]
  /** True while a dial of `peer` failed recently (a far group member is not picked then). */
  unreachable?(peer: string): boolean
  /** Sends a record to every neighbour but `except`. */
  flood(bytes: Uint8Array, except?: string): void
  /** A node's record told its addresses (a neighbour candidate). */
  learned(peer: string, addrs: string[]): void
  /** A node's record (alive or leave) at `counter` was accepted (it refutes a suspicion). */
  accepted?(peer: string, counter: number): void
  count(counter: string): void
}

interface Held {
  counter: number
  patterns: string[]
  queues: QueueEntry[]
  bytes: Uint8Array
  /** A leave, or a node declared dead: it has no interest until a newer record. */
  gone?: boolean
  /** Declared dead: `bytes` is its last alive record, not passed on. */
  dead?: boolean
}

/** Decoded record. */
interface Decoded {
  peer: string
  counter: number
  kind: number
  addrs: string[]
  patterns: string[]
  queues: QueueEntry[]
  signed: Uint8Array
  signature: Uint8Array
}

/** Every node's interest as far as records tell (see the module doc). */
export class InterestRecords implements FarGroups {
  private readonly held = new Map<string, Held>()
  /** Patterns of every record: pattern → peers. */
  private readonly index = new SubjectIndex<string>()
  /** Queue-group entries of every record: pattern → `${queue} ${peer}` (neither has a space). */
  private readonly queueIndex = new SubjectIndex<string>()
  private cache = new Map<string, string[]>()
  /** Bumped whenever a record's queue entries change (group routes are recomputed). */
  private queueVersion = 0
  private counter = 0
  private own: Uint8Array | undefined
  private ownCounter = 0
  private timer: NodeJS.Timeout | undefined
  private pending: NodeJS.Timeout | undefined
  private stopped = false
  private readonly prefix: Uint8Array
  /** Records refused by reason (status counters). */
  readonly refused = { malformed: 0, signature: 0, stale: 0, full: 0 }

  constructor(
    private readonly host: InterestHost,
    private readonly opts: { refreshInterval?: number; maxAge?: number } = {},
  ) {
    this.prefix = new TextEncoder().encode(`plexus-interest/${host.network}/`)
  }

  private get maxAge(): number {
    return this.opts.maxAge ?? MEMBERSHIP.maxAge
  }

  /** Signs and floods our first record; refreshes it and expires others periodically. */
  start(): void {
    this.timer = setInterval(() => this.refresh(), this.opts.refreshInterval ?? MEMBERSHIP.refreshInterval)
    this.timer.unref()
    this.changed()
  }

  /** Floods a leave (peers forget our interest at once) and stops the timers. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    if (this.pending) clearTimeout(this.pending)
    const bytes = await this.make(LEAVE).catch(() => undefined)
    if (bytes) this.host.flood(bytes)
  }

  /** Our patterns changed: a new record goes out shortly. */
  changed(): void {
    if (this.stopped || this.pending) return
    this.pending = setTimeout(() => {
      this.pending = undefined
      void this.announce()
    }, CHANGE_DELAY)
    this.pending.unref()
  }

  /** Peers whose record has a pattern matching `topic` (cached until a record changes). */
  route(topic: string): string[] {
    let peers = this.cache.get(topic)
    if (peers) return peers
    peers = this.held.size === 0 ? [] : [...this.index.match(topic)]
    if (this.cache.size >= 4096) this.cache = new Map()
    this.cache.set(topic, peers)
    return peers
  }

  /** Changes whenever a record's queue-group entries change (`FarGroups`, pubsub/groups.ts). */
  groupVersion(): number {
    return this.queueVersion
  }

  /** A far group member can be picked unless a dial to it failed recently (`FarGroups`). */
  readonly state = (peer: string): MemberState => (this.host.unreachable?.(peer) ? 0 : 2)

  /** Queue-group members a record tells of for `topic`: [peer, queue] pairs (not cached). */
  groupRoute(topic: string): Array<[string, string]> {
    if (this.queueIndex.size === 0) return []
    const out: Array<[string, string]> = []
    for (const k of this.queueIndex.match(topic)) {
      const sp = k.indexOf(' ')
      out.push([k.slice(sp + 1), k.slice(0, sp)])
    }
    return out
  }

  /** Nodes whose record we hold. */
  get size(): number {
    return this.held.size
  }

  /** Every fresh record held, ours included (for a new neighbour). */
  snapshot(): Uint8Array[] {
    const now = this.host.now()
    const out: Uint8Array[] = []
    if (this.own) out.push(this.own)
    for (const h of this.held.values()) if (now - h.counter <= this.maxAge) out.push(h.bytes)
    return out
  }

  /** The `OVERLAY_INTEREST` call handler: a record from the caller (no answer). */
  readonly onCall = (bytes: Uint8Array, ctx: { from: string }): Uint8Array => {
    void this.receive(bytes, ctx.from)
    return NO_ANSWER
  }

  /**
   * The counter of the newest record held from `peer` (ours for this node; 0 when none): the
   * incarnation a suspicion of it names (swim.ts).
   */
  version(peer: string): number {
    if (peer === this.host.self) return this.ownCounter
    return this.held.get(peer)?.counter ?? 0
  }

  /** True when `peer`'s newest record is a leave or it was declared dead. */
  gone(peer: string): boolean {
    return this.held.get(peer)?.gone === true
  }

  /** `peer` was declared dead: its interest is dropped, its version kept (older records stay out). */
  markDead(peer: string): void {
    const h = this.held.get(peer)
    if (!h || h.gone) return
    for (const p of h.patterns) this.index.delete(p, peer)
    for (const e of h.queues) this.queueIndex.delete(e.pattern, `${e.queue} ${peer}`)
    if (h.queues.length > 0) this.queueVersion++
    this.held.set(peer, { ...h, patterns: [], queues: [], gone: true, dead: true })
    this.cache.clear()
  }

  /** Every fresh record held, ours included, with its key (the peer) and counter (digests). */
  versioned(): { key: string; version: number; bytes: Uint8Array }[] {
    const now = this.host.now()
    const out: { key: string; version: number; bytes: Uint8Array }[] = []
    if (this.own) out.push({ key: this.host.self, version: this.ownCounter, bytes: this.own })
    for (const [peer, h] of this.held)
      if (now - h.counter <= this.maxAge && !h.dead)
        out.push({ key: peer, version: h.counter, bytes: h.bytes })
    return out
  }

  /** A record from `from`: applied and passed on when new (see the module doc). */
  async receive(bytes: Uint8Array, from: string): Promise<void> {
    let d: Decoded
    try {
      d = decode(bytes)
    } catch {
      this.refused.malformed++
      return
    }
    if (d.peer === this.host.self) return
    const old = this.held.get(d.peer)
    if (old !== undefined && d.counter <= old.counter) return // replay or echo of the flood
    if (Math.abs(this.host.now() - d.counter) > this.maxAge) {
      this.refused.stale++
      return
    }
    if (!this.held.has(d.peer) && this.held.size >= OVERLAY.maxKnown && d.kind === ALIVE) {
      this.refused.full++
      return
    }
    let ok = false
    try {
      const signed = new Uint8Array(this.prefix.length + d.signed.length)
      signed.set(this.prefix)
      signed.set(d.signed, this.prefix.length)
      const key = peerIdFromString(d.peer).publicKey
      ok = key !== undefined && (await key.verify(signed, d.signature))
    } catch {
      ok = false
    }
    if (!ok) {
      this.refused.signature++
      return
    }
    const now = this.held.get(d.peer)
    if (now !== undefined && d.counter <= now.counter) return // a newer one arrived meanwhile
    if (this.stopped) return
    this.forget(d.peer)
    if (d.kind === ALIVE) {
      this.held.set(d.peer, { counter: d.counter, patterns: d.patterns, queues: d.queues, bytes })
      for (const p of d.patterns) this.index.add(p, d.peer)
      for (const e of d.queues) this.queueIndex.add(e.pattern, `${e.queue} ${d.peer}`)
      if (d.queues.length > 0) this.queueVersion++
      if (d.addrs.length > 0) this.host.learned(d.peer, d.addrs)
    } else {
      // A leave is remembered (no patterns) so an older alive record cannot come back.
      this.held.set(d.peer, { counter: d.counter, patterns: [], queues: [], bytes, gone: true })
    }
    this.host.accepted?.(d.peer, d.counter)
    this.host.flood(bytes, from)
  }

  private forget(peer: string): void {
    const h = this.held.get(peer)
    if (!h) return
    for (const p of h.patterns) this.index.delete(p, peer)
    for (const e of h.queues) this.queueIndex.delete(e.pattern, `${e.queue} ${peer}`)
    if (h.queues.length > 0) this.queueVersion++
    this.held.delete(peer)
    this.cache.clear()
  }

  /** Re-signs ours and drops records nobody refreshed. */
  refresh(): void {
    const now = this.host.now()
    for (const [peer, h] of this.held) if (now - h.counter > this.maxAge) this.forget(peer)
    void this.announce()
  }

  private async announce(): Promise<void> {
    if (this.stopped) return
    const bytes = await this.make(ALIVE).catch(() => undefined)
    if (!bytes || this.stopped) return
    this.own = bytes
    this.ownCounter = decode(bytes).counter
    this.host.flood(bytes)
  }

  private async make(kind: number): Promise<Uint8Array> {
    this.counter = Math.max(this.counter + 1, this.host.now())
    const queued = kind === ALIVE ? (this.host.queues?.() ?? []) : []
    const w = new BinaryWriter(1024)
    w.u8(queued.length > 0 ? VERSION_QUEUES : VERSION)
      .str(this.host.self)
      .u64(this.counter)
      .u8(kind)
    const addrs = kind === ALIVE ? this.host.addresses().slice(0, MAX_ADDRS) : []
    w.u16(addrs.length)
    for (const a of addrs) w.str(a)
    const all = kind === ALIVE ? this.host.patterns() : []
    const patterns: string[] = []
    let size = w.length
    for (const p of all) {
      size += 2 + Buffer.byteLength(p)
      if (patterns.length >= MAX_RECORD_PATTERNS || size > MAX_RECORD_BYTES - 256) break
      patterns.push(p)
    }
    const queues: QueueEntry[] = []
    for (const e of queued) {
      size += 4 + Buffer.byteLength(e.pattern) + Buffer.byteLength(e.queue)
      if (patterns.length + queues.length >= MAX_RECORD_PATTERNS || size > MAX_RECORD_BYTES - 256) break
      queues.push(e)
    }
    if (patterns.length < all.length || queues.length < queued.length)
      this.host.count('pubsub.interestTruncated')
    w.u16(patterns.length)
    for (const p of patterns) w.str(p)
    if (queued.length > 0) {
      w.u16(queues.length)
      for (const e of queues) w.str(e.pattern).str(e.queue)
    }
    const body = w.finish()
    const signed = new Uint8Array(this.prefix.length + body.length)
    signed.set(this.prefix)
    signed.set(body, this.prefix.length)
    const sig = await this.host.sign(signed)
    const out = new BinaryWriter(body.length + sig.length + 8)
    out.raw(body).bytes(sig)
    return out.finish()
  }
}

/** Decodes a record (throws `DecodeError` when malformed or out of bounds). */
function decode(bytes: Uint8Array): Decoded {
  if (bytes.length > MAX_RECORD_BYTES) throw new DecodeError('interest record too large')
  const r = new BinaryReader(bytes)
  const version = r.u8('version')
  if (version !== VERSION && version !== VERSION_QUEUES)
    throw new DecodeError('unknown interest record version')
  const peer = r.str('peer')
  const counter = r.u64('counter')
  const kind = r.u8('kind')
  if (kind !== ALIVE && kind !== LEAVE) throw new DecodeError('unknown interest record kind')
  const na = r.u16('addresses')
  if (na > MAX_ADDRS) throw new DecodeError('too many addresses')
  const addrs: string[] = []
  for (let i = 0; i < na; i++) addrs.push(r.str('address'))
  const np = r.u16('patterns')
  if (np > MAX_RECORD_PATTERNS) throw new DecodeError('too many patterns')
  const patterns: string[] = []
  for (let i = 0; i < np; i++) {
    const p = r.str('pattern')
    try {
      checkPattern(p)
    } catch {
      throw new DecodeError('bad pattern')
    }
    patterns.push(p)
  }
  const queues: QueueEntry[] = []
  const nq = version === VERSION_QUEUES ? r.u16('queue entries') : 0
  if (np + nq > MAX_RECORD_PATTERNS) throw new DecodeError('too many patterns')
  for (let i = 0; i < nq; i++) {
    const e = { pattern: r.str('pattern'), queue: r.str('queue') }
    try {
      checkPattern(e.pattern)
      checkQueueName(e.queue, 'queue')
    } catch {
      throw new DecodeError('bad queue entry')
    }
    queues.push(e)
  }
  const signedEnd = r.pos
  const signature = r.bytes('signature', 256)
  r.end('interest record')
  return { peer, counter, kind, addrs, patterns, queues, signed: bytes.subarray(0, signedEnd), signature }
}
