/**
 * A subscription made through the relay: the library's `Subscription` semantics. With a
 * handler, the handler is called for each MESSAGE in order; without one it is an
 * `AsyncIterable<Message>` over a bounded queue (65,536 messages or 64 MiB, like the
 * library): when full, new messages are dropped and counted. `dropped` also includes the
 * messages the relay dropped because this client could not keep up (reported in MESSAGE).
 */
import { BoundedQueue, subscriptionIterator } from '../../src/pubsub/queue.js'
import type { Message } from '../../src/types.js'

/** A subscription through the relay; `unsubscribe()` ends it (also on breaking out of `for await`). */
export interface RelaySubscription extends AsyncIterable<Message> {
  readonly pattern: string
  /** Its queue group (`subscribe(p, { queue })`), or undefined for a plain subscription. */
  readonly queue: string | undefined
  /** Messages dropped (by the relay or by this client's queue) because the reader was slow. */
  readonly dropped: number
  /** Messages delivered to this subscription so far. */
  readonly received: number
  /**
   * Resolves once the relay confirmed the subscription, which it does once every peer linked
   * to its node acknowledged the interest (or went away): a publish made after this point by
   * any of those peers reaches the subscription (as the library's `sub.ready`). Rejects with
   * the relay's error.
   */
  readonly ready: Promise<void>
  unsubscribe(): void
}

/** Client-side queue bounds (as the library's iterators). */
export const CLIENT_SUB_PENDING = 65_536
export const CLIENT_SUB_PENDING_BYTES = 64 * 1024 * 1024

/** One subscription in the thin client (internal). */
export class ClientSubscription implements RelaySubscription {
  dropped = 0
  received = 0
  ready: Promise<void>
  private readonly buffer: BoundedQueue<Message> | undefined
  private closed = false
  /** Set once an iterator was handed out (one reader at a time). */
  iterating = false
  private settle!: { resolve(): void; reject(e: Error): void }

  constructor(
    readonly id: number,
    readonly pattern: string,
    private readonly handler: ((m: Message) => void | Promise<void>) | undefined,
    private readonly onUnsubscribe: (s: ClientSubscription, tellRelay: boolean) => void,
    readonly queue: string | undefined = undefined,
  ) {
    if (!handler) {
      this.buffer = new BoundedQueue(CLIENT_SUB_PENDING, CLIENT_SUB_PENDING_BYTES, (m) => m.data.length + 64)
    }
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject }
    })
    this.ready.catch(() => {}) // observed through `ready` or iteration, never unhandled
  }

  /** The relay answered SUBSCRIBE. */
  confirmed(err?: Error): void {
    if (!err) {
      this.settle.resolve()
      return
    }
    this.settle.reject(err)
    this.fail(err)
  }

  /** A MESSAGE for this subscription; `relayDropped` as reported by the relay. */
  deliver(m: Message, relayDropped: number): void {
    if (this.closed) return
    this.dropped += relayDropped
    if (this.handler) {
      this.received++
      try {
        const r = this.handler(m)
        if (r instanceof Promise) r.catch(() => {})
      } catch {
        // a throwing handler never breaks the connection
      }
      return
    }
    if (this.buffer!.push(m)) this.received++
    else this.dropped++
  }

  /** Ends iteration with `err` (connection lost, refused). */
  fail(err: Error): void {
    if (this.closed) return
    this.closed = true
    this.buffer?.fail(err)
    this.onUnsubscribe(this, false)
  }

  unsubscribe(): void {
    if (this.closed) return
    this.closed = true
    this.buffer?.end()
    this.onUnsubscribe(this, true)
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return subscriptionIterator(this.buffer, this, () => this.unsubscribe())
  }
}
