/** Subscriptions of one node (`PubSub.subscribe`): delivery to a handler or a bounded queue. */
import type { PubMessage } from './frames.js'
import { BoundedQueue, subscriptionIterator } from './queue.js'
import type { SyncWaiter } from './ready.js'

/** Default bound of one subscription's queue. */
export const SUB_MAX_PENDING = 65_536
export const SUB_MAX_PENDING_BYTES = 64 * 1024 * 1024

/** A subscription: an `AsyncIterable` of messages unless a handler was given. */
export interface Subscription extends AsyncIterable<PubMessage> {
  readonly pattern: string
  /** The queue group it belongs to (one member of a group gets each message), if any. */
  readonly queue: string | undefined
  /** Messages dropped because the queue was full. */
  readonly dropped: number
  /** Messages delivered to this subscription so far. */
  readonly received: number
  /**
   * Resolves once every peer linked to this node acknowledged the subscription's interest
   * (or is no longer linked): a publish made after that by any of those peers reaches this
   * subscription. Never rejects; resolves at once when the subscription has ended.
   */
  readonly ready: Promise<void>
  unsubscribe(): void
}

/** What a subscription needs from the pub/sub engine. */
export interface SubOwner {
  readonly host: { count(counter: string, n?: number): void }
  whenReady(sub: Sub): Promise<void>
  remove(sub: Sub): void
}

/** A local subscription (plain, or a member of a queue group when `queue` is set). */
export class Sub implements Subscription {
  dropped = 0
  received = 0
  closed = false
  readonly buffer: BoundedQueue<PubMessage> | undefined
  /** Set once an iterator was handed out (one reader at a time). */
  iterating = false
  /** Interest change that made this pattern known (see `InterestSync.epoch`). */
  epoch = 0
  /** `ready`, made on first use; its waiter while peers still have to acknowledge. */
  private readyPromise: Promise<void> | undefined
  waiter: SyncWaiter | undefined
  resolveReady: (() => void) | undefined

  constructor(
    readonly pattern: string,
    private readonly handler: ((m: PubMessage) => void | Promise<void>) | undefined,
    private readonly owner: SubOwner,
    readonly queue: string | undefined,
  ) {
    if (!handler)
      this.buffer = new BoundedQueue(SUB_MAX_PENDING, SUB_MAX_PENDING_BYTES, (m) => m.data.length + 64)
  }

  deliver(m: PubMessage): void {
    if (this.closed) return
    if (this.handler) {
      this.received++
      try {
        const r = this.handler(m)
        if (r instanceof Promise) r.catch(() => this.owner.host.count('pubsub.handlerErrors'))
      } catch {
        this.owner.host.count('pubsub.handlerErrors')
      }
      return
    }
    if (this.buffer!.push(m)) this.received++
    else {
      this.dropped++
      this.owner.host.count('pubsub.dropped')
    }
  }

  get ready(): Promise<void> {
    this.readyPromise ??= this.owner.whenReady(this)
    return this.readyPromise
  }

  unsubscribe(): void {
    if (this.closed) return
    this.closed = true
    this.buffer?.end()
    this.owner.remove(this)
  }

  [Symbol.asyncIterator](): AsyncIterator<PubMessage> {
    return subscriptionIterator(this.buffer, this, () => this.unsubscribe())
  }
}
