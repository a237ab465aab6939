/**
 * What a durable consumer keeps per message and per partition session, and the pieces of
 * settling its messages (consumer-durable.ts): redelivered copies and `maxDeliver` advisories.
 */
import type { Capability } from '../../cluster/capability.js'
import { CONSUMER } from '../../constants.js'
import { AbortedError } from '../../errors.js'
import type { StreamMessage } from '../../types.js'
import { type MessageSettler, ReceivedStreamMessage } from '../../util/received.js'
import type { Chunk } from './consumer-base.js'
import type { ConsumerRef } from './consumer-wire.js'

/** Durable options, validated. */
export interface DurableOptions {
  durable: string
  ackWait: number
  maxAckPending: number
  maxBytesInFlight: number
  /** `ConsumeOptions.capability`, parsed. */
  capability?: Capability
  /** `ConsumeOptions.filter` (validated). */
  filter?: string
  maxDeliver?: number
  backoff?: number[]
  /** `ackPolicy: 'none'`. */
  ackNone: boolean
}

/** One message handed out (or buffered) and not yet settled, or settled and not yet pruned. */
export interface Pending {
  /** Its latest delivery. */
  msg: StreamMessage
  /** When it is delivered again unless settled (ms); infinite while it waits in the buffer. */
  due: number
  acked: boolean
  /** The fetch it came from: its bytes stay in flight until acked or given up. */
  chunk: Chunk
}

/** One partition read under its lease (see consumer-durable.ts). */
export interface Session {
  partition: number
  /** Aborted when the lease is lost or the consumer closes. */
  ac: AbortController
  pending: Map<number, Pending>
  /** Offsets below are acked (and pruned from `pending`). */
  ackedUpTo: number
  /** The next offset to fetch. */
  readPos: number
  committed: number
  unacked: number
  /** The partition's end (next offset) as the last fetch reply said (metrics). */
  end: number
  /** Resolved on an ack (delivery may resume below `maxAckPending`). */
  ackWaiters: Array<() => void>
  /** Ended to leave the partition to another consumer of the name (fair share). */
  yielded?: boolean
  /** Being handed over: nothing new is delivered while what was handed out is acknowledged. */
  draining?: boolean
  /** Settles this session's messages (ack kinds). */
  settler: MessageSettler
  /** Aborted with the session or the consumer. */
  signal: AbortSignal
}

/** The next delivery of `m` (delivery count + 1), settled by `settler`. */
export function redelivery(m: StreamMessage, settler: MessageSettler): StreamMessage {
  return new ReceivedStreamMessage(
    {
      stream: m.stream,
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
      timestamp: m.timestamp,
      key: m.key,
      data: m.data,
      headers: m.headers,
      deliveryCount: m.deliveryCount + 1,
    },
    settler,
  )
}

/**
 * The advisory published when `m` is dropped after `maxDeliver` deliveries: topic
 * `$plexus.advisory.max_deliveries.<stream>.<durable>`, JSON `{ stream, durable, partition,
 * offset, deliveries }`.
 */
export function maxDeliveriesAdvisory(
  ref: ConsumerRef,
  m: StreamMessage,
): { topic: string; data: Uint8Array } {
  const body = {
    stream: ref.stream,
    durable: ref.durable,
    partition: m.partition,
    offset: m.offset,
    deliveries: m.deliveryCount,
  }
  return {
    topic: `${CONSUMER.advisoryPrefix}.max_deliveries.${ref.stream}.${ref.durable}`,
    data: new TextEncoder().encode(JSON.stringify(body)),
  }
}

/** Resolves after `ms`; rejects with `AbortedError` when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new AbortedError('aborted'))
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(new AbortedError('aborted'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
