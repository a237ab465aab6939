/**
 * Subscriptions of one relay connection. Each SUBSCRIBE becomes a library subscription
 * with a handler that queues matching messages per subscription; queued messages go out
 * as MESSAGE frames while the connection's outbound buffer is below `flushBelow`, round-
 * robin across subscriptions, and again whenever the socket drains. A client that cannot
 * keep up therefore fills its subscriptions' queues, bounded by `maxPending` messages per
 * subscription and `maxQueuedBytes` per connection; beyond that new messages are dropped
 * (the newest, as in the library), counted per subscription and reported to the client in
 * the `dropped` field of the next MESSAGE of that subscription.
 */
import { InvalidArgumentError, OverloadedError } from '../../src/errors.js'
import type { Message, PlexusNode, Subscription } from '../../src/types.js'
import type { FramedConnection } from '../wire/connection.js'
import { Op } from '../wire/protocol.js'
import { encodeMessage } from '../wire/protocol-ext.js'

/** Bounds of relay subscriptions (per connection unless said otherwise). */
export const SUB_LIMITS = {
  /** Subscriptions one connection may hold. */
  maxSubscriptions: 4096,
  /** Queued messages per subscription when SUBSCRIBE asks for 0 (the default). */
  defaultPending: 8192,
  /** Largest `max pending` a SUBSCRIBE may ask for (larger values are clamped). */
  maxPending: 65_536,
  /** Bytes queued over all subscriptions of a connection. */
  maxQueuedBytes: 32 * 1024 * 1024,
  /** MESSAGE frames are written only while the outbound buffer is below this. */
  flushBelow: 1024 * 1024,
} as const

interface RelaySub {
  id: number
  sub: Subscription
  queue: Message[]
  head: number
  maxPending: number
  /** Dropped since the last MESSAGE sent (reported in it). */
  unreported: number
  dropped: number
  sent: number
}

const sizeOf = (m: Message) => m.data.length + (m.key?.length ?? 0) + m.topic.length + 64

/** The subscriptions of one connection and their bounded queues. */
export class RelaySubscriptions {
  private readonly subs = new Map<number, RelaySub>()
  private readonly ready = new Set<RelaySub>()
  private queuedBytes = 0
  private closed = false
  /** Messages dropped on this connection so far. */
  dropped = 0

  constructor(
    private readonly node: PlexusNode,
    private readonly conn: FramedConnection,
  ) {}

  /** Subscriptions held. */
  get size(): number {
    return this.subs.size
  }

  /** Bytes waiting in subscription queues. */
  get queued(): number {
    return this.queuedBytes
  }

  /**
   * Starts subscription `id` (in queue group `queue` when given, see `SubscribeOptions`);
   * a message the group hands this connection and that its bounded queue must drop is
   * lost, not passed to another member. Throws InvalidArgumentError / OverloadedError naming the
   * problem. Returns the library subscription's `ready`: it resolves once every peer linked
   * to the node acknowledged the interest (or went away), when SUBSCRIBE is answered.
   */
  subscribe(id: number, pattern: string, maxPending: number, queue?: string): Promise<void> {
    if (this.closed) throw new InvalidArgumentError('the connection is closing')
    if (id === 0) throw new InvalidArgumentError('subscription id must not be 0')
    if (this.subs.has(id)) throw new InvalidArgumentError(`subscription id ${id} is already in use`)
    if (this.subs.size >= SUB_LIMITS.maxSubscriptions) {
      throw new OverloadedError(`${SUB_LIMITS.maxSubscriptions} subscriptions on this relay connection`)
    }
    const s: RelaySub = {
      id,
      sub: undefined as unknown as Subscription,
      queue: [],
      head: 0,
      maxPending: Math.min(SUB_LIMITS.maxPending, maxPending || SUB_LIMITS.defaultPending),
      unreported: 0,
      dropped: 0,
      sent: 0,
    }
    s.sub = this.node.subscribe(pattern, (m) => this.enqueue(s, m), { queue })
    this.subs.set(id, s)
    return s.sub.ready
  }

  /** Ends subscription `id` and discards what it queued; throws when unknown. */
  unsubscribe(id: number): void {
    const s = this.subs.get(id)
    if (!s) throw new InvalidArgumentError(`subscription id ${id} is not active on this connection`)
    this.drop(s)
  }

  private drop(s: RelaySub): void {
    this.subs.delete(s.id)
    this.ready.delete(s)
    s.sub.unsubscribe()
    for (let i = s.head; i < s.queue.length; i++) this.queuedBytes -= sizeOf(s.queue[i]!)
    s.queue = []
    s.head = 0
  }

  private enqueue(s: RelaySub, m: Message): void {
    if (this.closed || this.subs.get(s.id) !== s) return
    const pending = s.queue.length - s.head
    if (pending === 0 && this.conn.outbound < SUB_LIMITS.flushBelow) {
      this.send(s, m)
      return
    }
    const size = sizeOf(m)
    if (pending >= s.maxPending || this.queuedBytes + size > SUB_LIMITS.maxQueuedBytes) {
      s.unreported++
      s.dropped++
      this.dropped++
      return
    }
    s.queue.push(m)
    this.queuedBytes += size
    this.ready.add(s)
  }

  private send(s: RelaySub, m: Message): void {
    const dropped = s.unreported
    s.unreported = 0
    s.sent++
    this.conn.send(Op.Message, s.id, (w) =>
      encodeMessage(w, {
        topic: m.topic,
        from: m.from,
        key: m.key,
        headers: m.headers,
        dropped,
        data: m.data,
      }),
    )
  }

  /** Moves queued messages to the connection while its outbound buffer has room. */
  pump(): void {
    while (this.ready.size > 0 && !this.conn.isClosed && this.conn.outbound < SUB_LIMITS.flushBelow) {
      for (const s of this.ready) {
        const m = s.queue[s.head]!
        s.queue[s.head++] = undefined as unknown as Message
        this.queuedBytes -= sizeOf(m)
        if (s.head === s.queue.length) {
          s.queue = []
          s.head = 0
          this.ready.delete(s)
        } else if (s.head > 1024 && s.head * 2 > s.queue.length) {
          s.queue = s.queue.slice(s.head)
          s.head = 0
        }
        this.send(s, m)
        if (this.conn.outbound >= SUB_LIMITS.flushBelow) return
      }
    }
  }

  /** Per-subscription counters for `stats()`. */
  stats(): Array<{ id: number; pattern: string; queued: number; sent: number; dropped: number }> {
    return [...this.subs.values()].map((s) => ({
      id: s.id,
      pattern: s.sub.pattern,
      queued: s.queue.length - s.head,
      sent: s.sent,
      dropped: s.dropped,
    }))
  }

  /** Drops every subscription (the client went away). */
  closeAll(): void {
    this.closed = true
    for (const s of [...this.subs.values()]) this.drop(s)
  }
}
