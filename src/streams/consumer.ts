/**
 * `openConsumer`: reads a stream's committed messages, every partition (or one), each in
 * offset order, tailing live with long-poll fetches (no polling delay: a fetch waits on the
 * replica until a message commits). Reads go to the partition leader when known, else to
 * any replica (only committed messages are ever served), and move to another replica when
 * one becomes unreachable.
 *
 * Memory: at most `MAX_BUFFERED` messages wait in the consumer; fetching pauses while it is
 * full. A position below the earliest retained offset continues from the earliest.
 */
import { AbortedError, InvalidArgumentError, PlexusError } from '../errors.js'
import type { ConsumeFrom, ConsumeOptions, Consumer, StreamMessage } from '../types.js'
import { checkOptions, checkSignal, describe } from '../util/validate.js'
import type { StreamsClient } from './client.js'
import type { StreamMeta } from './metadata.js'

/** Messages buffered by one consumer before fetching pauses. */
export const MAX_BUFFERED = 4096
/** How long one fetch waits on the replica for new messages (ms). */
const LONG_POLL_MS = 5000

function checkFrom(from: unknown): ConsumeFrom {
  if (from === undefined) return 'earliest'
  if (from === 'earliest' || from === 'latest' || from === 'new') return from
  if (typeof from === 'object' && from !== null) {
    const o = from as Record<string, unknown>
    if ('offset' in o) {
      if (!Number.isSafeInteger(o.offset) || (o.offset as number) < 0)
        throw new InvalidArgumentError(
          `options.from.offset must be a non-negative integer, got ${describe(o.offset)}`,
        )
      return { offset: o.offset as number }
    }
    if ('time' in o) {
      if (!(o.time instanceof Date) || Number.isNaN(o.time.getTime()))
        throw new InvalidArgumentError(`options.from.time must be a valid Date, got ${describe(o.time)}`)
      throw new InvalidArgumentError('options.from.time: starting by time is not available in this version')
    }
  }
  throw new InvalidArgumentError(
    `options.from must be 'earliest', 'latest', 'new', { offset } or { time }, got ${describe(from)}`,
  )
}

/** Opens a consumer of `stream`; validates the options at once (`InvalidArgumentError`). */
export function openConsumer(
  client: StreamsClient,
  stream: string,
  options: ConsumeOptions | undefined,
): Consumer {
  if (typeof stream !== 'string' || stream === '')
    throw new InvalidArgumentError(`stream must be a stream name, got ${describe(stream)}`)
  const o = checkOptions<ConsumeOptions>(options ?? {}, 'options')
  const from = checkFrom(o.from)
  if (o.partition !== undefined && (!Number.isSafeInteger(o.partition) || o.partition < 0))
    throw new InvalidArgumentError(
      `options.partition must be a non-negative integer, got ${describe(o.partition)}`,
    )
  if (o.durable !== undefined)
    throw new InvalidArgumentError('options.durable: durable consumers are not available in this version')
  if (o.ackWait !== undefined)
    throw new InvalidArgumentError(
      'options.ackWait applies to durable consumers, not available in this version',
    )
  checkSignal(o.signal)
  return new StreamConsumer(client, stream, from, o.partition, o.signal)
}

class StreamConsumer implements Consumer {
  private readonly buffer: StreamMessage[] = []
  private readonly ac = new AbortController()
  private failure: Error | undefined
  private ended = false
  private wakeReader: (() => void) | undefined
  private spaceWaiters: Array<() => void> = []

  constructor(
    private readonly client: StreamsClient,
    readonly stream: string,
    from: ConsumeFrom,
    partition: number | undefined,
    signal: AbortSignal | undefined,
  ) {
    signal?.addEventListener('abort', () => this.close(), { once: true })
    if (signal?.aborted) this.close()
    else this.run(from, partition).catch((err) => this.fail(err))
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
          const m = this.buffer.shift()
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

  private wake(): void {
    const w = this.wakeReader
    this.wakeReader = undefined
    w?.()
    for (const s of this.spaceWaiters.splice(0)) s()
  }

  private fail(err: unknown): void {
    if (this.ended) return
    if (err instanceof AbortedError && this.ac.signal.aborted) return
    this.failure = err instanceof Error ? err : new PlexusError(String(err))
    this.ac.abort()
    this.wake()
  }

  private async run(from: ConsumeFrom, only: number | undefined): Promise<void> {
    const known = await this.client.locate(this.stream, {
      deadline: Date.now() + 10_000,
      signal: this.ac.signal,
    })
    const { meta } = known
    if (only !== undefined && only >= meta.partitions)
      throw new InvalidArgumentError(
        `options.partition ${only} does not exist: stream ${this.stream} has ${meta.partitions} partition(s)`,
      )
    const parts = only === undefined ? meta.placement.map((_, p) => p) : [only]
    await Promise.all(parts.map((p) => this.tail(meta, p, from)))
  }

  private async tail(meta: StreamMeta, partition: number, from: ConsumeFrom): Promise<void> {
    const ref = { stream: meta.name, createdIndex: meta.createdIndex, partition }
    const replicas = meta.placement[partition]!
    const signal = this.ac.signal
    let offset: number
    if (from === 'earliest') offset = 0
    else if (typeof from === 'object' && 'offset' in from) offset = from.offset
    else {
      const b = await this.client.fetch(ref, replicas, Number.MAX_SAFE_INTEGER, 0, signal)
      offset = from === 'new' ? b.nextOffset : Math.max(0, b.nextOffset - 1)
    }
    const decoder = new TextDecoder()
    while (!signal.aborted) {
      const res = await this.client.fetch(ref, replicas, offset, LONG_POLL_MS, signal)
      if (res.messages.length === 0 && res.firstOffset > offset) offset = res.firstOffset
      for (const m of res.messages) {
        while (this.buffer.length >= MAX_BUFFERED && !signal.aborted)
          await new Promise<void>((r) => this.spaceWaiters.push(r))
        if (signal.aborted) return
        let headers: Record<string, string> | undefined
        for (const [k, v] of Object.entries(m.headers ?? {})) (headers ??= {})[k] = decoder.decode(v)
        this.buffer.push({
          stream: meta.name,
          topic: m.topic,
          partition,
          offset: m.offset,
          timestamp: m.timestamp,
          key: m.key,
          data: m.value,
          headers,
          ack: () => Promise.resolve(),
        })
        offset = m.offset + 1
        const w = this.wakeReader
        this.wakeReader = undefined
        w?.()
      }
    }
  }
}
