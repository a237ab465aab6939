/**
 * The metadata leader's side of `s.cons`, the durable-consumer calls (consumer-wire.ts):
 * commit positions (replicated through the metadata group, so a commit answered `ok` is
 * durable on a quorum), read positions, take/renew a partition lease, list and describe
 * durable consumers, add up their counts (`tally`). Leases, activity and counts live in the leader's memory (consumer-leases.ts).
 * A consumer that ran under a name when it was deleted gets `ConsumerNotFoundError` for its
 * commits and leases. Any other member answers `notLeader` with the leader it knows.
 */
import {
  type ConsumerCall,
  type DurableState,
  encodeLeaderReply,
  writeDurable,
  writeDurables,
  writeLease,
  writePositions,
  writeTally,
} from '../consumer/consumer-wire.js'
import { type ConsumerLeases, durableKey } from '../meta/consumer-leases.js'
import type { MetaGroup } from '../meta/meta-group.js'
import {
  encodeCommand,
  type MetaCommand,
  metaResultError,
  newRequestId,
  type StreamCatalog,
  type StreamMeta,
} from '../meta/metadata.js'

/** What serving a consumer call needs of the cluster host. */
export interface ConsumerCallHost {
  meta: Pick<MetaGroup, 'role' | 'leader' | 'propose'>
  catalog: StreamCatalog
  consumers: ConsumerLeases
  /** The time of the call (ms since the epoch). */
  now: number
}

/** Serves one durable-consumer call; the encoded leader reply. */
export async function serveConsumerCall(call: ConsumerCall, h: ConsumerCallHost): Promise<Uint8Array> {
  const notLeader = () => encodeLeaderReply({ status: 'notLeader', hint: h.meta.leader }, () => {})
  const error = (name: string, message: string) =>
    encodeLeaderReply({ status: 'error', name, message }, () => {})
  if (h.meta.role !== 'leader') return notLeader()
  const s = h.catalog.get(call.stream)
  if (!s || s.createdIndex !== call.createdIndex)
    return error('StreamNotFoundError', `stream "${call.stream}" does not exist`)
  const key = durableKey(call.stream, call.createdIndex, call.durable)
  const now = h.now
  if (call.op === 'list') {
    const names = new Set(h.catalog.durables(call.stream))
    const list = [...names].map((durable) => durableState(h, s, durable, now, false))
    return encodeLeaderReply({ status: 'ok', value: list }, writeDurables)
  }
  if (call.op === 'describe') {
    if (h.catalog.positions(call.stream, call.durable).size === 0 && !h.consumers.known(key))
      return error(
        'ConsumerNotFoundError',
        `stream "${call.stream}" has no durable consumer "${call.durable}"`,
      )
    return encodeLeaderReply(
      { status: 'ok', value: durableState(h, s, call.durable, now, true) },
      writeDurable,
    )
  }
  if (call.op === 'tally')
    return encodeLeaderReply({ status: 'ok', value: h.consumers.tally(key, call.tally) }, writeTally)
  if (call.op === 'positions')
    return encodeLeaderReply(
      { status: 'ok', value: h.catalog.positions(call.stream, call.durable) },
      writePositions,
    )
  const holder = call.op === 'lease' || call.op === 'commit' ? call.holder : undefined
  if (h.consumers.isEnded(key, holder))
    return error(
      'ConsumerNotFoundError',
      `durable consumer "${call.durable}" of stream "${call.stream}" was deleted; this consumer ended`,
    )
  if (call.op === 'lease')
    return encodeLeaderReply(
      { status: 'ok', value: h.consumers.lease(key, call.partition, call.holder, call.ttlMs, now) },
      writeLease,
    )
  const cmd: MetaCommand = {
    type: 'consumerCommit',
    name: call.stream,
    createdIndex: call.createdIndex,
    durable: call.durable,
    offsets: call.offsets,
    requestId: newRequestId(),
  }
  const { index } = await h.meta.propose(encodeCommand(cmd))
  const res = h.catalog.resultAt(index)
  if (res !== undefined && !res.ok) {
    const err = metaResultError(res)
    return error(err.name, err.message)
  }
  return encodeLeaderReply({ status: 'ok', value: undefined }, () => {})
}

function durableState(
  h: ConsumerCallHost,
  s: StreamMeta,
  durable: string,
  now: number,
  holders: boolean,
): DurableState {
  const key = durableKey(s.name, s.createdIndex, durable)
  return {
    durable,
    lastActive: h.consumers.lastActive(key),
    positions: h.catalog.positions(s.name, durable),
    holders: holders ? h.consumers.holders(key, s.partitions, now) : new Map(),
  }
}
