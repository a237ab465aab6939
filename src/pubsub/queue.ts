import { InvalidArgumentError } from '../errors.js'

/**
 * A bounded async queue: the one buffer behind every `AsyncIterable` Plexus hands out
 * (subscriptions, tunnels, consumers). `push` never blocks: when the queue is full it
 * refuses the item (the caller counts the drop, or uses credit so it never happens).
 * Items come out in push order. `end()` finishes iteration after the queued items;
 * `fail(err)` makes the next read throw.
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  private items: T[] = []
  private head = 0
  private bytes = 0
  private waiter: ((r: IteratorResult<T>) => void) | undefined
  private failWaiter: ((e: Error) => void) | undefined
  private ended = false
  private error: Error | undefined

  constructor(
    private readonly maxItems: number,
    private readonly maxBytes: number,
    private readonly sizeOf: (item: T) => number,
    /** Called after an item is taken out (for credit). */
    private readonly onTake?: (item: T) => void,
  ) {}

  /** Items waiting. */
  get length(): number {
    return this.items.length - this.head
  }

  /** Bytes waiting. */
  get pendingBytes(): number {
    return this.bytes
  }

  get done(): boolean {
    return this.ended || this.error !== undefined
  }

  /** Adds an item; false (and nothing added) when full or ended. */
  push(item: T): boolean {
    if (this.ended || this.error) return false
    if (this.waiter) {
      const w = this.waiter
      this.waiter = this.failWaiter = undefined
      w({ value: item, done: false })
      this.onTake?.(item)
      return true
    }
    const size = this.sizeOf(item)
    if (this.length >= this.maxItems || this.bytes + size > this.maxBytes) return false
    this.items.push(item)
    this.bytes += size
    return true
  }

  /** No more items: iteration ends once the queue is empty. */
  end(): void {
    this.ended = true
    if (this.waiter && this.length === 0) {
      const w = this.waiter
      this.waiter = this.failWaiter = undefined
      w({ value: undefined, done: true })
    }
  }

  /** Iteration throws `err` (after nothing else: queued items are discarded). */
  fail(err: Error): void {
    if (this.error || this.ended) return
    this.error = err
    this.items = []
    this.head = 0
    this.bytes = 0
    if (this.failWaiter) {
      const f = this.failWaiter
      this.waiter = this.failWaiter = undefined
      f(err)
    }
  }

  /** Next item, or done. */
  next(): Promise<IteratorResult<T>> {
    if (this.error) return Promise.reject(this.error)
    if (this.length > 0) {
      const item = this.items[this.head]!
      this.items[this.head++] = undefined as T
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head)
        this.head = 0
      }
      this.bytes -= this.sizeOf(item)
      this.onTake?.(item)
      return Promise.resolve({ value: item, done: false })
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true })
    if (this.waiter) return Promise.reject(new Error('only one reader at a time'))
    return new Promise((resolve, reject) => {
      this.waiter = resolve
      this.failWaiter = reject
    })
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return { next: () => this.next(), return: async () => ({ value: undefined, done: true }) }
  }
}

/**
 * The iterator of a subscription: refuses a handler subscription (no queue) and a second
 * reader; breaking out of `for await` (`return`) calls `onReturn` (unsubscribe).
 */
export function subscriptionIterator<T>(
  queue: BoundedQueue<T> | undefined,
  state: { iterating: boolean },
  onReturn: () => void,
): AsyncIterator<T> {
  if (!queue) {
    throw new InvalidArgumentError('this subscription has a handler; iterate a subscription made without one')
  }
  if (state.iterating) throw new InvalidArgumentError('this subscription is already being iterated')
  state.iterating = true
  return {
    next: () => queue.next(),
    return: async () => {
      onReturn()
      return { value: undefined, done: true }
    },
  }
}
