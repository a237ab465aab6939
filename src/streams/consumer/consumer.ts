/**
 * `openConsumer`: reads a stream's committed messages, every partition (or one), each in
 * offset order, tailing live with long-poll fetches (no polling delay: a fetch waits on the
 * replica until a message commits). Reads go to the partition leader when known, else to
 * any replica (only committed messages are ever served), and move to another replica when
 * one becomes unreachable. Durable consumers (`options.durable`) are in consumer-durable.ts.
 *
 * Memory: at most `CONSUMER.maxMessagesInFlight` messages and `maxBytesInFlight` bytes
 * (default `CONSUMER.maxBytesInFlight`) are in flight in the consumer; fetching pauses while
 * either is reached (consumer-base.ts). A position below the earliest retained offset
 * continues from the earliest.
 */
import type { Capability } from '../../cluster/capability.js'
import { CONSUMER } from '../../constants.js'
import { InvalidArgumentError } from '../../errors.js'
import { matches } from '../../pubsub/subject.js'
import type { ConsumeFrom, ConsumeOptions, Consumer } from '../../types.js'
import { checkOptions, checkSignal, checkTimeout, describe } from '../../util/validate.js'
import type { StreamsClient } from '../client.js'
import type { StreamMeta } from '../meta/metadata.js'
import { BufferedConsumer, toStreamMessage } from './consumer-base.js'
import { DurableConsumer } from './consumer-durable.js'
import { checkAckOptions } from './consumer-options.js'

const DURABLE_RE = /^[A-Za-z0-9_-]{1,64}$/

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
      if (!(o.time instanceof Date) || Number.isNaN(o.time.getTime()) || o.time.getTime() < 0)
        throw new InvalidArgumentError(`options.from.time must be a valid Date, got ${describe(o.time)}`)
      return { time: o.time }
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
  checkSignal(o.signal)
  const ackWait = checkTimeout(o.ackWait, 'options.ackWait')
  const maxAckPending = o.maxAckPending
  const maxBytes = o.maxBytesInFlight ?? CONSUMER.maxBytesInFlight
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new InvalidArgumentError(
      `options.maxBytesInFlight must be a positive integer (bytes), got ${describe(o.maxBytesInFlight)}`,
    )
  const capability = client.data.option(o.capability, 'options.capability')
  const { filter, ...acks } = checkAckOptions(o)
  if (o.durable === undefined)
    return new StreamConsumer(client, stream, from, o.partition, o.signal, maxBytes, capability, filter)
  if (typeof o.durable !== 'string' || !DURABLE_RE.test(o.durable))
    throw new InvalidArgumentError(
      `options.durable must be 1-64 characters of [A-Za-z0-9_-], got ${describe(o.durable)}`,
    )
  return new DurableConsumer(client, stream, from, o.partition, o.signal, {
    durable: o.durable,
    ackWait: ackWait ?? CONSUMER.ackWait,
    maxAckPending: maxAckPending ?? CONSUMER.maxAckPending,
    maxBytesInFlight: maxBytes,
    capability,
    filter,
    ...acks,
  })
}

class StreamConsumer extends BufferedConsumer {
  constructor(
    client: StreamsClient,
    stream: string,
    from: ConsumeFrom,
    partition: number | undefined,
    signal: AbortSignal | undefined,
    maxBytesInFlight: number,
    capability: Capability | undefined,
    filter: string | undefined,
  ) {
    super(client, stream, signal, maxBytesInFlight, capability)
    this.filter = filter
    if (!this.ended) this.run(from, partition).catch((err) => this.fail(err))
  }

  private async run(from: ConsumeFrom, only: number | undefined): Promise<void> {
    const { meta, parts } = await this.partitions(only)
    await Promise.all(parts.map((p) => this.tail(meta, p, from)))
  }

  private async tail(meta: StreamMeta, partition: number, from: ConsumeFrom): Promise<void> {
    const ref = { stream: meta.name, createdIndex: meta.createdIndex, partition }
    const replicas = meta.placement[partition]!
    const signal = this.ac.signal
    let offset = await this.startOffset(meta, ref, from, signal)
    while (!signal.aborted) {
      const got = await this.fetchChunk(ref, replicas, offset, signal)
      if (!got) return
      const { res, chunk } = got
      if (res.messages.length === 0 && res.firstOffset > offset) offset = res.firstOffset
      const filter = this.filter
      for (const [i, m] of res.messages.entries()) {
        if (filter !== undefined && !matches(filter, m.topic)) {
          this.release(chunk)
          offset = m.offset + 1
          continue
        }
        if (!(await this.push(toStreamMessage(meta.name, partition, m, 1), signal, chunk))) {
          this.release(chunk, res.messages.length - i)
          return
        }
        offset = m.offset + 1
      }
    }
  }
}
