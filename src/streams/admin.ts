/**
 * Stream administration on the client side: `streams.update`, `purge`, `consumers`,
 * `consumerInfo` and `deleteConsumer` (the SPEC's additions). Every change is an admin call
 * proven as create and delete are (authz.ts `AdminCredentials`): update and consumer delete
 * go to the metadata leader (`s.meta`), a purge to each partition leader (`s.purge`,
 * purge.ts), where `authorizeMeta` checks the proof before anything is proposed. Reads
 * (`consumers`, `consumerInfo`) ask the metadata leader (`s.cons` list/describe) and are open
 * like `streams.info`.
 */
import { MAX_PURGE_KEY_BYTES } from '../constants.js'
import { InvalidArgumentError } from '../errors.js'
import type {
  ConsumerInfo,
  ConsumerSummary,
  StreamCallOptions,
  StreamInfo,
  StreamSummary,
  StreamUpdate,
} from '../types.js'
import { checkOptions, describe } from '../util/validate.js'
import type { StreamsClient } from './client.js'
import {
  decodeLeaderReply,
  encodeConsumerCall,
  readDurable,
  readDurables,
  readTally,
} from './consumer/consumer-wire.js'
import { encodePurgeCall } from './host/purge.js'
import type { StreamDirectory } from './meta/directory.js'
import { newRequestId } from './meta/metadata.js'
import { accessOf, checkStreamName, validateStreamUpdate } from './meta/metadata-codec.js'
import { decodeOffsetReply, encodeMetaCall, type MetaCall, type PartitionRef } from './wire.js'

const utf8 = new TextEncoder()
const nameOf = (v: unknown, field: string) => checkStreamName(v, field)

/** `streams.list`: see `Streams.list` (`leaderOf`: the leader of a partition as known here). */
export function listStreams(
  directory: StreamDirectory,
  leaderOf: (ref: PartitionRef) => string | null,
): StreamSummary[] {
  return directory.list().map(({ cluster, meta }) => ({
    name: meta.name,
    cluster,
    subject: meta.subject,
    partitions: meta.partitions,
    replicas: meta.replicas,
    retention: { ...meta.retention },
    compact: meta.compact,
    duplicateWindow: meta.duplicateWindow,
    access: { ...accessOf(meta) },
    metadataLeader: directory.tableInfo(cluster)?.leader ?? null,
    placement: meta.placement.map((replicas, partition) => ({
      partition,
      replicas: [...replicas],
      leader: leaderOf({ stream: meta.name, createdIndex: meta.createdIndex, partition }),
    })),
  }))
}

/** `streams.update`: see `Streams.update`. */
export async function updateStream(
  c: StreamsClient,
  name: string,
  changes: StreamUpdate,
  options?: StreamCallOptions,
): Promise<StreamInfo> {
  const u = validateStreamUpdate(name, changes)
  const opts = c.callOptions(options)
  const known = await c.locate(name, opts)
  const auth = c.admin.resolve(known.cluster, 'update', name, options)
  const call: MetaCall = { op: 'update', cluster: known.cluster, requestId: newRequestId(), name, ...u }
  c.receiveTable(await c.meta(call, opts, auth))
  return c.api.info(name, { timeout: Math.max(1, opts.deadline - Date.now()), signal: opts.signal })
}

/** `streams.purge`: see `Streams.purge`. */
export async function purgeStream(
  c: StreamsClient,
  name: string,
  target: { before?: number; partition?: number; key?: string | Uint8Array } | undefined,
  options?: StreamCallOptions,
): Promise<Array<{ partition: number; firstOffset: number }>> {
  nameOf(name, 'name')
  const t = checkOptions<{ before?: number; partition?: number; key?: unknown }>(target ?? {}, 'target')
  for (const k of Object.keys(t))
    if (!['before', 'partition', 'key'].includes(k))
      throw new InvalidArgumentError(`target has an unknown option "${k}"`)
  let key: Uint8Array | undefined
  if (t.key !== undefined) {
    if (typeof t.key === 'string') key = utf8.encode(t.key)
    else if (t.key instanceof Uint8Array) key = t.key
    else throw new InvalidArgumentError(`key must be a string or a Uint8Array, got ${describe(t.key)}`)
    if (key.length === 0 || key.length > MAX_PURGE_KEY_BYTES)
      throw new InvalidArgumentError(`key must be 1-${MAX_PURGE_KEY_BYTES} bytes, got ${key.length}`)
  }
  for (const k of ['before', 'partition'] as const) {
    const v = t[k]
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0))
      throw new InvalidArgumentError(`${k} must be an integer >= 0, got ${describe(v)}`)
  }
  const opts = c.callOptions(options)
  const { cluster, meta } = await c.locate(name, opts)
  if (t.partition !== undefined && t.partition >= meta.partitions)
    throw new InvalidArgumentError(
      `partition must be below ${meta.partitions} (stream "${name}" has ${meta.partitions}), got ${t.partition}`,
    )
  const auth = c.admin.resolve(cluster, 'purge', name, options)
  const call: MetaCall = { op: 'purge', cluster, requestId: newRequestId(), name }
  if (t.partition !== undefined) call.partition = t.partition
  if (t.before !== undefined) call.before = t.before
  if (key !== undefined) call.key = key
  const proven = c.admin.prove(call, auth, encodeMetaCall)
  // A keyed message is stored in its key's partition: a purge by key goes there only.
  const parts =
    t.partition !== undefined
      ? [t.partition]
      : key !== undefined
        ? [c.keyPartition(key, meta.partitions)]
        : meta.placement.map((_, p) => p)
  return Promise.all(
    parts.map(async (partition) => {
      const ref = { stream: name, createdIndex: meta.createdIndex, partition }
      const body = encodePurgeCall({ ...ref, call: proven })
      const replicas = meta.placement[partition]!
      const firstOffset = await c.route(ref, replicas, 's.purge', body, decodeOffsetReply, opts)
      return { partition, firstOffset }
    }),
  )
}

/** `streams.consumers`: see `Streams.consumers`. */
export async function listConsumers(
  c: StreamsClient,
  stream: string,
  options?: StreamCallOptions,
): Promise<ConsumerSummary[]> {
  nameOf(stream, 'stream')
  const opts = c.callOptions(options)
  const { cluster, meta } = await c.locate(stream, opts)
  const ref = { cluster, stream, createdIndex: meta.createdIndex, durable: '' }
  const list = await c.leaderCall(
    cluster,
    's.cons',
    encodeConsumerCall({ ...ref, op: 'list' }),
    (b) => decodeLeaderReply(b, readDurables),
    opts,
  )
  return list
    .map((d) => ({
      name: d.durable,
      positions: [...d.positions]
        .sort((a, b) => a[0] - b[0])
        .map(([partition, position]) => ({ partition, position })),
      lastActive: d.lastActive === 0 ? null : d.lastActive,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** `streams.consumerInfo`: see `Streams.consumerInfo`. */
export async function consumerInfo(
  c: StreamsClient,
  stream: string,
  name: string,
  options?: StreamCallOptions,
): Promise<ConsumerInfo> {
  nameOf(stream, 'stream')
  nameOf(name, 'name')
  const opts = c.callOptions(options)
  const { cluster, meta } = await c.locate(stream, opts)
  const ref = { cluster, stream, createdIndex: meta.createdIndex, durable: name }
  const d = await c.leaderCall(
    cluster,
    's.cons',
    encodeConsumerCall({ ...ref, op: 'describe' }),
    (b) => decodeLeaderReply(b, (r) => readDurable(r, name)),
    opts,
  )
  const none = { redelivered: 0, terminated: 0, dropped: 0 }
  const tally = await c.leaderCall(
    cluster,
    's.cons',
    encodeConsumerCall({ ...ref, op: 'tally', tally: none }),
    (b) => decodeLeaderReply(b, readTally),
    opts,
  )
  const info = await c.api.info(stream, {
    timeout: Math.max(1, opts.deadline - Date.now()),
    signal: opts.signal,
  })
  return {
    stream,
    name,
    lastActive: d.lastActive === 0 ? null : d.lastActive,
    redelivered: tally.redelivered,
    terminated: tally.terminated,
    maxDeliverDropped: tally.dropped,
    partitions: info.partitions.map((p) => {
      const position = d.positions.get(p.partition) ?? null
      return {
        partition: p.partition,
        position,
        end: p.nextOffset,
        pending: Math.max(0, p.nextOffset - Math.max(position ?? 0, p.firstOffset)),
        holder: d.holders.get(p.partition) ?? null,
      }
    }),
  }
}

/** `streams.deleteConsumer`: see `Streams.deleteConsumer`. */
export async function deleteConsumer(
  c: StreamsClient,
  stream: string,
  name: string,
  options?: StreamCallOptions,
): Promise<void> {
  nameOf(stream, 'stream')
  nameOf(name, 'name')
  const opts = c.callOptions(options)
  const { cluster } = await c.locate(stream, opts)
  const auth = c.admin.resolve(cluster, 'consumer-delete', stream, options)
  const call: MetaCall = {
    op: 'consumer-delete',
    cluster,
    requestId: newRequestId(),
    name: stream,
    durable: name,
  }
  c.receiveTable(await c.meta(call, opts, auth))
}
