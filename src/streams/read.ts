/**
 * `streams.get` and `streams.last` on the calling side: one message of a stream, read by the
 * partition leader (`s.get`, read-wire.ts, host/read-serve.ts). Read consistency: the leader
 * answers only with a current view (it committed an entry of its own term and applied every
 * committed entry), so every message acknowledged with `ack: 'all'` before the call is seen.
 * `last` reads the leader's key index (partition/key-index.ts), not the log: its cost does
 * not grow with the log.
 */
import { InvalidArgumentError, MessageNotFoundError } from '../errors.js'
import type { StreamCallOptions, StreamMessage } from '../types.js'
import { checkKey, checkOptions, describe } from '../util/validate.js'
import type { StreamsClient } from './client.js'
import { toStreamMessage } from './consumer/consumer-base.js'
import { checkStreamName } from './meta/metadata-codec.js'
import { decodeGetReply, encodeGetCall, type GetCall, type GetResult } from './read-wire.js'

/** Options of `streams.get` and `streams.last` (a `capability` reads with `consume` access). */
export type ReadCallOptions = Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>

/** `streams.get`: the message at `offset` of `partition`; `MessageNotFoundError` when none. */
export async function getMessage(
  c: StreamsClient,
  name: string,
  at: { partition?: number; offset: number },
  options?: ReadCallOptions,
): Promise<StreamMessage> {
  checkStreamName(name, 'name')
  const t = checkOptions<{ partition?: unknown; offset?: unknown }>(at, 'options')
  const partition = t.partition ?? 0
  for (const [k, v] of [
    ['partition', partition],
    ['offset', t.offset],
  ] as const)
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw new InvalidArgumentError(`options.${k} must be an integer >= 0, got ${describe(v)}`)
  const offset = t.offset as number
  const r = await read(c, name, options, () => partition as number, {
    op: 'offset',
    offset,
  })
  if (r.result.message === undefined)
    throw new MessageNotFoundError(
      `stream ${name} partition ${r.partition} has no message at offset ${offset} ` +
        '(not written yet, or removed by retention, a purge or compaction)',
    )
  return toStreamMessage(name, r.partition, r.result.message, 1)
}

/**
 * `streams.last`: the latest message with `key` (in the key's partition); a keyed message
 * with an empty value is a tombstone (as compaction treats it): the key then has none.
 * `MessageNotFoundError` when it has none.
 */
export async function lastMessage(
  c: StreamsClient,
  name: string,
  by: { key: string | Uint8Array },
  options?: ReadCallOptions,
): Promise<StreamMessage> {
  const m = await lastOrUndefined(c, name, by, options)
  if (m === undefined) throw new MessageNotFoundError(`stream ${name} has no message with that key`)
  return m
}

/** `streams.last` without the error: undefined when the key has no live message. */
export async function lastOrUndefined(
  c: StreamsClient,
  name: string,
  by: { key: string | Uint8Array },
  options?: ReadCallOptions,
): Promise<StreamMessage | undefined> {
  checkStreamName(name, 'name')
  const key = checkKey(checkOptions<{ key?: unknown }>(by, 'options').key, 'options.key')
  if (key === undefined) throw new InvalidArgumentError('options.key is required')
  const r = await read(c, name, options, (n) => c.keyPartition(key, n), { op: 'key', key })
  const m = r.result.message
  if (m === undefined) {
    if (r.result.dropped)
      throw new MessageNotFoundError(
        `stream ${name}: no message with that key among the keys written most recently ` +
          '(the partition key index reached its bound and dropped older keys)',
      )
    return undefined
  }
  return toStreamMessage(name, r.partition, m, 1)
}

async function read(
  c: StreamsClient,
  name: string,
  options: ReadCallOptions | undefined,
  pick: (partitions: number) => number,
  what: { op: 'offset'; offset: number } | { op: 'key'; key: Uint8Array },
): Promise<{ partition: number; result: GetResult }> {
  const o = options === undefined ? {} : checkOptions<ReadCallOptions>(options, 'options')
  const opts = c.callOptions({ timeout: o.timeout, signal: o.signal })
  const { cluster, meta } = await c.locate(name, opts)
  const partition = pick(meta.partitions)
  if (partition >= meta.partitions)
    throw new InvalidArgumentError(
      `options.partition must be below the stream's ${meta.partitions} partitions, got ${partition}`,
    )
  const ref = { stream: meta.name, createdIndex: meta.createdIndex, partition }
  const auth = c.data.pick(cluster, meta, 'consume', c.data.option(o.capability, 'options.capability'))
  const call = { ...ref, ...what, auth: auth?.hash } as GetCall
  const result = await c.route(
    ref,
    meta.placement[partition]!,
    's.get',
    encodeGetCall(call),
    decodeGetReply,
    opts,
    auth,
  )
  return { partition, result }
}
