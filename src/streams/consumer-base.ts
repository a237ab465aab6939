/**
 * What plain and durable consumers share: the bounded buffer, the iterator, start offsets.
 */
import { AbortedError, InvalidArgumentError, PlexusError } from '../errors.js'
import type { ConsumeFrom, Consumer, StreamMessage } from '../types.js'
import type { StreamsClient } from './client.js'
import type { StreamMeta } from './metadata.js'
import type { PartitionMessage } from './types.js'
import type { PartitionRef } from './wire.js'

/** Messages buffered by one consumer before fetching pauses. */
export const MAX_BUFFERED = 4096
/** How long one fetch waits on the replica for new messages (ms). */
export const LONG_POLL_MS = 5000

/** The buffer and iterator shared by plain and durable consumers. */
export abstract class BufferedConsumer implements Consumer {
  protected readonly buffer: StreamMessage[] = []
  protected readonly ac = new AbortController()
  private failure: Error | undefined
  protected ended = false
  private wakeReader: (() => void) | undefined
  private spaceWaiters: Array<() => void> = []

  constructor(
    protected readonly client: StreamsClient,
    readonly stream: string,
    signal: AbortSignal | undefined,
  ) {
    signal?.addEventListener('abort', () => this.close(), { once: true })
    if (signal?.aborted) this.close()
  }

  close(): void {
    if (this.ended) return
    this.ended = true
    this.ac.abort()
    this.wake()
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamMessage> {
    return {
      next: async () => {
        while (true) {
          const m = this.take()
          if (m) {
            this.spaceWaiters.shift()?.()
            return { value: m, done: false }
          }
          if (this.failure) {
            const err = this.failure
            this.failure = undefined
            this.close()
            throw err
          }
          if (this.ended) return { value: undefined, done: true }
          await new Promise<void>((r) => {
            this.wakeReader = r
          })
        }
      },
      return: async () => {
        this.close()
        return { value: undefined, done: true }
      },
    }
  }

  /** The next message to hand out (subclasses may skip stale ones). */
  protected take(): StreamMessage | undefined {
    return this.buffer.shift()
  }

  /** Wakes the reader and every producer waiting for room. */
  protected wake(): void {
    const w = this.wakeReader
    this.wakeReader = undefined
    w?.()
    for (const s of this.spaceWaiters.splice(0)) s()
  }

  /** Appends a message once there is room (false: the consumer ended meanwhile). */
  protected async push(m: StreamMessage, signal: AbortSignal): Promise<boolean> {
    while (this.buffer.length >= MAX_BUFFERED && !signal.aborted)
      await new Promise<void>((r) => this.spaceWaiters.push(r))
    if (signal.aborted) return false
    this.buffer.push(m)
    const w = this.wakeReader
    this.wakeReader = undefined
    w?.()
    return true
  }

  /** Ends the iteration with `err` (after the buffered messages). */
  protected fail(err: unknown): void {
    if (this.ended) return
    if (err instanceof AbortedError && this.ac.signal.aborted) return
    this.failure = err instanceof Error ? err : new PlexusError(String(err))
    this.ac.abort()
    this.wake()
  }

  /** Locates the stream and checks the partition option; returns the partitions to read. */
  protected async partitions(
    only: number | undefined,
  ): Promise<{ cluster: string; meta: StreamMeta; parts: number[] }> {
    const known = await this.client.locate(this.stream, {
      deadline: Date.now() + 10_000,
      signal: this.ac.signal,
    })
    const { meta } = known
    if (only !== undefined && only >= meta.partitions)
      throw new InvalidArgumentError(
        `options.partition ${only} does not exist: stream ${this.stream} has ${meta.partitions} partition(s)`,
      )
    return {
      cluster: known.cluster,
      meta,
      parts: only === undefined ? meta.placement.map((_, p) => p) : [only],
    }
  }

  /**
   * The offset `from` designates in one partition. `'new'` and `'latest'` are resolved by the
   * partition leader at the time of the call (its committed end; `'latest'` is the message
   * before it), as is `{ time }`: a message acknowledged before the consumer opened is never
   * delivered to a `'new'` consumer, whichever replica it reads from.
   */
  protected async startOffset(
    meta: StreamMeta,
    ref: PartitionRef,
    from: ConsumeFrom,
    signal: AbortSignal,
  ): Promise<number> {
    if (from === 'earliest') return 0
    if (typeof from === 'object' && 'offset' in from) return from.offset
    const replicas = meta.placement[ref.partition]!
    if (typeof from === 'object' && 'time' in from)
      return this.client.seek(ref, replicas, { time: from.time.getTime() }, signal)
    const end = await this.client.seek(ref, replicas, 'end', signal)
    return from === 'new' ? end : Math.max(0, end - 1)
  }
}

const decoder = new TextDecoder()

/** A fetched message as a `StreamMessage`. */
export function toStreamMessage(
  stream: string,
  partition: number,
  m: PartitionMessage,
  deliveryCount: number,
  ack: () => Promise<void>,
): StreamMessage {
  let headers: Record<string, string> | undefined
  for (const [k, v] of Object.entries(m.headers ?? {})) (headers ??= {})[k] = decoder.decode(v)
  return {
    stream,
    topic: m.topic,
    partition,
    offset: m.offset,
    timestamp: m.timestamp,
    key: m.key,
    data: m.value,
    headers,
    deliveryCount,
    ack,
  }
}
