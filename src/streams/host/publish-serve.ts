/**
 * The partition leader's side of `s.pub` (wire.ts): one call carries a batch of messages from
 * one publishing node (streams/publisher.ts), appended in the call's order with one
 * `PartitionReplica.publish` (so they share a raft entry and its fsync), each answered
 * separately.
 *
 * - A message that breaks a rule of the public API (a topic that is not a valid topic or is
 *   not captured by the stream's `subject`, data over this node's `maxMessageSize`, a key,
 *   msgId or headers over the limits of `constants.ts`, a header name in the reserved `px.`
 *   prefix) fails alone with an `InvalidArgumentError` naming the option, counted as
 *   `frames.refused.<reason>`; the others are appended.
 * - Messages with a `msgId` are handed to the replica one per `publish` (in the same turn, so
 *   still one raft entry): the replica reports one offset range per `publish`, and a duplicate
 *   among several messages would hide which one it was. So are conditional appends
 *   (`expectedRevision`, partition-cas.ts), which the replica takes only alone; a refused one
 *   fails alone with `WrongRevisionError`.
 * - Not the leader: the whole call is answered `notLeader` (nothing appended). Proposals the
 *   raft group dropped unappended (leadership transfer) or whose index another entry took
 *   (`EntryOverwrittenError`: never committed) are answered `retry` per message.
 * - Outcome unknown (appended, not known to be committed): `LeadershipLostError`, by that name
 *   on the wire (the publisher retries messages with a msgId, errors.ts). The replica stopping
 *   under a pending publish (`AbortedError`: it stopped leading) is reported the same way.
 * - Any other failure is that message's error.
 * - Published with a capability limited to a subject (`grant`, grants.ts): a message whose
 *   topic it does not match fails alone with `UnauthorizedError` (counted
 *   `streams.refused.publish`), nothing of it stored.
 */
import {
  AbortedError,
  errorMessage,
  errorName,
  InvalidArgumentError,
  UnauthorizedError,
} from '../../errors.js'
import { checkTopic, matches } from '../../pubsub/subject.js'
import { ProposalDroppedError } from '../../raft/index.js'
import { EntryOverwrittenError, LeadershipLostError, NotLeaderError } from '../../replication/index.js'
import { checkHeaders, checkKey, checkMsgId } from '../../util/validate.js'
import { type DataGrant, topicAllowed } from '../access/grants.js'
import { RESERVED_HEADER_PREFIX } from '../partition/batch.js'
import type { PartitionReplica } from '../partition/partition.js'
import type { PublishMessage } from '../partition/types.js'
import type { PubCall, PubMessage, PubResult, Routed } from '../wire.js'

const enc = new TextEncoder()

/**
 * Why `m` cannot be appended here (an `InvalidArgumentError` and the reason it is counted
 * under, `frames.refused.<reason>`), or undefined. The publishing node checked all of this
 * already with the same rules; an older or hostile one may not have.
 */
function refusal(
  m: PubMessage,
  maxMessageSize: number,
  subject: string | undefined,
): [Error, string] | undefined {
  if (m.data.length > maxMessageSize)
    return [
      new InvalidArgumentError(
        `data of ${m.data.length} bytes exceeds the partition leader's maxMessageSize (${maxMessageSize})`,
      ),
      'size',
    ]
  let reason = 'topic'
  try {
    checkTopic(m.topic)
    reason = 'key'
    checkKey(m.key)
    reason = 'msgId'
    checkMsgId(m.msgId)
    reason = 'headers'
    checkHeaders(m.headers)
  } catch (err) {
    return [err as Error, reason]
  }
  if (subject !== undefined && !matches(subject, m.topic))
    return [
      new InvalidArgumentError(`topic ${m.topic} is not captured by the stream's subject ${subject}`),
      'subject',
    ]
  if (m.headers)
    for (const k in m.headers)
      if (k.startsWith(RESERVED_HEADER_PREFIX))
        return [
          new InvalidArgumentError(`options.headers: names starting with "px." are reserved (${k})`),
          'headers',
        ]
  return undefined
}

function toReplicaMessage(m: PubMessage): PublishMessage {
  let headers: Record<string, Uint8Array> | undefined
  if (m.headers) for (const k in m.headers) (headers ??= {})[k] = enc.encode(m.headers[k]!)
  const out: PublishMessage = { key: m.key, value: m.data, headers, topic: m.topic, msgId: m.msgId }
  if (m.expectedRevision !== undefined) out.expectedRevision = m.expectedRevision
  return out
}

const failed = (err: unknown): PubResult => ({ error: { name: errorName(err), message: errorMessage(err) } })

/**
 * Appends the messages of `call` on `replica` and returns one result per message, in order
 * (see the module doc). Never throws; `count` receives counter names.
 */
export async function servePublish(
  replica: PartitionReplica,
  call: PubCall,
  maxMessageSize: number,
  count: (name: string) => void,
  subject?: string,
  grant?: DataGrant,
): Promise<Routed<PubResult[]>> {
  if (replica.role !== 'leader') return { status: 'notLeader', hint: replica.leader }
  const ack = call.ack === 'all' ? 'all' : 'leader'
  const n = call.messages.length
  const results: PubResult[] = new Array(n)
  let hint: string | null = null
  let notLeader = 0
  const append = async (idx: number[], msgs: PublishMessage[]): Promise<void> => {
    try {
      const res = await replica.publish(msgs, { ack })
      if (idx.length === 1) results[idx[0]!] = { offset: res.firstOffset, duplicate: res.duplicate === true }
      // without msgIds the messages of one publish get consecutive offsets
      else
        for (let k = 0; k < idx.length; k++)
          results[idx[k]!] = { offset: res.firstOffset + k, duplicate: false }
    } catch (err) {
      if (
        err instanceof NotLeaderError ||
        err instanceof ProposalDroppedError ||
        err instanceof EntryOverwrittenError
      ) {
        if (err instanceof NotLeaderError) {
          notLeader += idx.length
          hint ??= err.leader
        }
        for (const i of idx) results[i] = 'retry'
        return
      }
      let out = err
      if (err instanceof AbortedError) {
        const why = `the partition leader stopped leading (${err.message}); the outcome is unknown`
        out = new LeadershipLostError(why, { cause: err })
      }
      if (out instanceof LeadershipLostError) count('streams.leadershipLost')
      const r = failed(out)
      for (const i of idx) results[i] = r
    }
  }
  const runs: Array<Promise<void>> = []
  let idx: number[] = []
  let msgs: PublishMessage[] = []
  for (let i = 0; i < n; i++) {
    const m = call.messages[i]!
    const bad = refusal(m, maxMessageSize, subject)
    if (bad !== undefined) {
      count(`frames.refused.${bad[1]}`)
      results[i] = failed(bad[0])
      continue
    }
    if (grant !== undefined && !topicAllowed(grant, m.topic)) {
      count('streams.refused.publish')
      const why = `topic ${m.topic} is outside the capability's subject ${grant.subject}`
      results[i] = failed(new UnauthorizedError(`publish to stream ${call.stream}: ${why}`))
      continue
    }
    if (m.msgId === undefined && m.expectedRevision === undefined) {
      idx.push(i)
      msgs.push(toReplicaMessage(m))
      continue
    }
    if (idx.length > 0) runs.push(append(idx, msgs))
    idx = []
    msgs = []
    runs.push(append([i], [toReplicaMessage(m)]))
  }
  if (idx.length > 0) runs.push(append(idx, msgs))
  await Promise.all(runs)
  // Refused as not the leader throughout: nothing appended, follow the hint.
  if (notLeader === n) return { status: 'notLeader', hint }
  return { status: 'ok', value: results }
}
