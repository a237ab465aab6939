/**
 * What plain and durable consumers share: the bounded buffer, the byte budget, the
 * iterator, start offsets.
 *
 * Memory: a consumer holds at most `CONSUMER.maxMessagesInFlight` messages in its buffer
 * and at most `maxBytesInFlight` bytes in flight: the messages of each fetch count from the
 * moment the fetch is sent (it reserves what it may return) until the last of them is
 * released — handed out by a plain consumer, acknowledged (or given up with its partition)
 * by a durable one — because they share the fetch reply's buffer. A fetch leaves only while
 * its reservation fits the budget (or nothing is in flight), and asks for at most
 * `min(CONSUMER.fetchBytes, maxBytesInFlight / (2 × partitions read))`, so every partition
 * can keep a long poll waiting; a replica returns one message even when it alone is larger,
 * which is the only way the budget is exceeded (by at most one message per partition).
 * Fetching also pauses while the buffer alone holds `readAhead` bytes (durable consumers:
 * two fetches).
 */

import type { Capability } from '../../cluster/capability.js'
import { CONSUMER } from '../../constants.js'
import { AbortedError, InvalidArgumentError, PlexusError } from '../../errors.js'
import { patternsOverlap } from '../../pubsub/subject.js'
import type { ConsumeFrom, Consumer, FetchOptions, StreamMessage } from '../../types.js'
import { type MessageSettler, ReceivedStreamMessage } from '../../util/received.js'
import type { DataAuth } from '../access/grants.js'
import type { StreamsClient } from '../client.js'
import type { StreamMeta } from '../meta/metadata.js'
import type { PartitionMessage } from '../partition/types.js'
import type { FetchResult, PartitionRef } from '../wire.js'
import { checkFetchOptions } from './consumer-options.js'

/** Messages buffered by one consumer before fetching pauses. */
export const MAX_BUFFERED = CONSUMER.maxMessagesInFlight
/** How long one fetch waits on the replica for new messages (ms). */
export const LONG_POLL_MS = 5000

/** The messages of one fetch: their bytes stay in flight until the last one is released. */
export interface Chunk {
  bytes: number
  /** Messages of the fetch not yet released. */
  left: number
}

/** Bytes a fetched message occupies (payload, key, headers, topic and a fixed overhead). */
export function messageBytes(m: PartitionMessage): number {
  let n = 32 + m.value.length + m.topic.length + (m.key?.length ?? 0)
  for (const [k, v] of Object.entries(m.headers ?? {})) n += 4 + k.length + v.length
  return n
}

/** Bytes a message in the buffer occupies (as `messageBytes`). */
function streamMessageBytes(m: StreamMessage): number {
  let n = 32 + m.data.length + m.topic.length + (m.key?.length ?? 0)
  for (const [k, v] of Object.entries(m.headers ?? {})) n += 4 + k.length + v.length
  return n
}

/** A message waiting in a consumer's buffer. */
export interface Buffered {
  msg: StreamMessage
  /** Released when handed out (plain consumers); durable ones release on ack. */
  chunk: Chunk | undefined
  bytes: number
}

/** The buffer and iterator shared by plain and durable consumers. */
export abstract class BufferedConsumer implements Consumer {
  private readonly buffer: Buffered[] = []
  /** Bytes of the messages in `buffer`. */
  private bufferedBytes = 0
  /**
   * Bytes the buffer may hold before fetching pauses (read ahead). Plain consumers: the
   * whole budget. Durable consumers, whose budget also counts what they handed out and is
   * not yet acknowledged, read ahead at most two fetches.
   */
  protected readAhead: number
  protected readonly ac = new AbortController()
  /** The capability reads carry (grants.ts), set once the stream is located. */
  protected auth: DataAuth | undefined
  /** Bytes of fetched messages not yet released plus the reservations of fetches under way. */
  private inFlight = 0
  /** Partitions read (each has at most one fetch under way). */
  private partitionsRead = 1
  private failure: Error | undefined
  protected ended = false
  private wakeReader: (() => void) | undefined
  private spaceWaiters: Array<() => void> = []
  /** How the consumer is read, fixed by the first use (`fetch` or the iterator). */
  private mode: 'iterate' | 'fetch' | undefined
  /** The last `fetch` call: calls run one after another. */
  private fetching: Promise<unknown> = Promise.resolve()
  /** `ConsumeOptions.filter`: topics not matching it are skipped. */
  protected filter: string | undefined

  constructor(
    protected readonly client: StreamsClient,
    readonly stream: string,
    signal: AbortSignal | undefined,
    /** Byte budget (`ConsumeOptions.maxBytesInFlight`). */
    readonly maxBytesInFlight: number = CONSUMER.maxBytesInFlight,
    /** `ConsumeOptions.capability`, parsed. */
    private readonly capability?: Capability,
  ) {
    this.readAhead = maxBytesInFlight
    signal?.addEventListener('abort', () => this.close(), { once: true })
    if (signal?.aborted) this.close()
  }

  /**
   * What one fetch asks for: `CONSUMER.fetchBytes`, at most half the budget shared by the
   * partitions, so every partition can have a long poll waiting while the other half holds
   * messages (a tailing partition is never held up by another's wait).
   */
  private get fetchBytes(): number {
    const share = Math.floor(this.maxBytesInFlight / (2 * this.partitionsRead))
    return Math.max(1, Math.min(CONSUMER.fetchBytes, share))
  }

  /** Bytes in flight now: fetched messages not yet released and fetches under way. */
  get bytesInFlight(): number {
    return this.inFlight
  }

  close(): void {
    if (this.ended) return
    this.ended = true
    this.ac.abort()
    this.wake()
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamMessage> {
    this.use('iterate')
    return {
      next: async () => {
        while (true) {
          const m = this.take()
          this.wakeSpace() // also after skipped stale messages: the buffer shrank
          if (m) return { value: m, done: false }
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

  /** Fixes how the consumer is read; the other way is refused. */
  private use(mode: 'iterate' | 'fetch'): void {
    if (this.mode === undefined) this.mode = mode
    else if (this.mode !== mode)
      throw new InvalidArgumentError(
        mode === 'fetch'
          ? `consumer of stream "${this.stream}" is being iterated: it cannot also be read with fetch()`
          : `consumer of stream "${this.stream}" is read with fetch(): it cannot also be iterated`,
      )
  }

  fetch(options?: FetchOptions): Promise<StreamMessage[]> {
    try {
      const { max, expires } = checkFetchOptions(options)
      this.use('fetch')
      const deadline = Date.now() + expires
      const run = this.fetching.then(() => this.pull(max, deadline))
      this.fetching = run.catch(() => {})
      return run
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** One fetch: takes messages until `max` or `deadline`. */
  private async pull(max: number, deadline: number): Promise<StreamMessage[]> {
    const batch: StreamMessage[] = []
    for (;;) {
      for (let m = this.take(); m; m = batch.length < max ? this.take() : undefined) batch.push(m)
      this.wakeSpace()
      if (batch.length >= max || this.ended) return batch
      if (this.failure) {
        if (batch.length > 0) return batch // the failure is reported by the next call
        const err = this.failure
        this.failure = undefined
        this.close()
        throw err
      }
      const left = deadline - Date.now()
      if (left <= 0) return batch
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          if (this.wakeReader === wake) this.wakeReader = undefined
          resolve()
        }, left)
        const wake = () => {
          clearTimeout(t)
          resolve()
        }
        this.wakeReader = wake
      })
    }
  }

  /** The next message to hand out (subclasses may skip stale ones). */
  protected take(): StreamMessage | undefined {
    const b = this.shift()
    if (b?.chunk) this.release(b.chunk)
    return b?.msg
  }

  /** Removes the oldest buffered message. */
  protected shift(): Buffered | undefined {
    const b = this.buffer.shift()
    if (b) this.bufferedBytes -= b.bytes
    return b
  }

  /**
   * Fetches from `offset` once the budget has room (false: the consumer or `signal` ended
   * meanwhile). The messages returned hold their bytes as one chunk until each of them was
   * released (`release`).
   */
  protected async fetchChunk(
    ref: PartitionRef,
    replicas: string[],
    offset: number,
    signal: AbortSignal,
  ): Promise<{ res: FetchResult; chunk: Chunk } | false> {
    const want = this.fetchBytes
    while (
      !signal.aborted &&
      ((this.inFlight > 0 && this.inFlight + want > this.maxBytesInFlight) ||
        (this.bufferedBytes > 0 && this.bufferedBytes + want > this.readAhead))
    )
      await this.waitSpace(signal)
    if (signal.aborted) return false
    this.inFlight += want
    let res: FetchResult
    try {
      res = await this.client.fetch(ref, replicas, offset, LONG_POLL_MS, signal, want, this.auth)
    } finally {
      this.inFlight -= want
    }
    let bytes = 0
    for (const m of res.messages) bytes += messageBytes(m)
    // The replica read at most `want` bytes of records unless it returned a single larger
    // one: count no more than that (per-message overheads differ slightly from ours).
    if (res.messages.length > 1) bytes = Math.min(bytes, want)
    this.inFlight += bytes
    this.wakeSpace()
    return { res, chunk: { bytes, left: res.messages.length } }
  }

  /** `n` messages of `chunk` were handed out, acknowledged or dropped. */
  protected release(chunk: Chunk, n = 1): void {
    if (n <= 0 || chunk.left <= 0) return
    chunk.left = Math.max(0, chunk.left - n)
    if (chunk.left > 0) return
    this.inFlight -= chunk.bytes
    this.wakeSpace()
  }

  /** Resolves when room may have been made, or `signal` aborts. */
  private waitSpace(signal: AbortSignal): Promise<void> {
    // close() wakes every waiter itself: the consumer's own signal needs no listener.
    if (signal === this.ac.signal) return new Promise<void>((resolve) => this.spaceWaiters.push(resolve))
    return new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done)
        resolve()
      }
      this.spaceWaiters.push(done)
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /** Wakes the producers waiting for room (they check again). */
  private wakeSpace(): void {
    if (this.spaceWaiters.length === 0) return
    for (const s of this.spaceWaiters.splice(0)) s()
  }

  /** Wakes the reader and every producer waiting for room. */
  protected wake(): void {
    const w = this.wakeReader
    this.wakeReader = undefined
    w?.()
    for (const s of this.spaceWaiters.splice(0)) s()
  }

  /**
   * Appends a message once the buffer has room for one more (false: the consumer ended
   * meanwhile). `chunk`: released when the message is handed out.
   */
  protected async push(m: StreamMessage, signal: AbortSignal, chunk?: Chunk): Promise<boolean> {
    while (this.buffer.length >= MAX_BUFFERED && !signal.aborted) await this.waitSpace(signal)
    if (signal.aborted) return false
    const bytes = streamMessageBytes(m)
    this.buffer.push({ msg: m, chunk, bytes })
    this.bufferedBytes += bytes
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
    if (this.filter !== undefined && !patternsOverlap(this.filter, meta.subject))
      throw new InvalidArgumentError(
        `options.filter "${this.filter}" matches nothing of stream ${this.stream}'s subject "${meta.subject}"`,
      )
    this.auth = this.client.data.pick(known.cluster, meta, 'consume', this.capability)
    this.partitionsRead = only === undefined ? Math.max(1, meta.placement.length) : 1
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
  settler?: MessageSettler,
): StreamMessage {
  let headers: Record<string, string> | undefined
  for (const [k, v] of Object.entries(m.headers ?? {})) (headers ??= {})[k] = decoder.decode(v)
  return new ReceivedStreamMessage(
    {
      stream,
      topic: m.topic,
      partition,
      offset: m.offset,
      timestamp: m.timestamp,
      key: m.key,
      data: m.value,
      headers,
      deliveryCount,
    },
    settler,
  )
}
