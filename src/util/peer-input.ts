/**
 * Checks of what peers send, with the public API's own rules (`validate.ts`,
 * `pubsub/subject.ts`): a field a local caller could not pass is refused when a peer sends
 * it. Every check throws `PeerInputError`, a `DecodeError` naming the reason; the node
 * counts it as `frames.refused.<reason>` and drops the frame (link frames) or answers the
 * call with `InvalidArgumentError` (internal calls). docs/security.md, "Peer input".
 */
import { MAX_TIMEOUT } from '../constants.js'
import { InvalidArgumentError } from '../errors.js'
import { checkPattern, checkTopic } from '../pubsub/subject.js'
import { DecodeError } from './binary.js'
import { checkClusterName, checkHeaders, checkKey, checkMsgId, checkQueueName } from './validate.js'

/**
 * A well-formed frame or call body carries a value the public API would refuse. `reason`
 * names the rule (`topic`, `pattern`, `cluster`, `stream`, `key`, `headers`, `msgId`,
 * `size`, `timeout`, `subject`, …): the counter is `frames.refused.<reason>`.
 */
export class PeerInputError extends DecodeError {
  override name = 'PeerInputError'

  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message)
  }
}

/** The counter a refusal is counted under. */
export function refusedCounter(err: PeerInputError): string {
  return `frames.refused.${err.reason}`
}

/**
 * Runs a public check on a value from a peer: its `InvalidArgumentError` becomes a
 * `PeerInputError` with `reason` (other errors pass through). Returns the check's result.
 */
export function fromPeer<T>(reason: string, check: () => T): T {
  try {
    return check()
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new PeerInputError(reason, `from a peer: ${err.message}`)
    throw err
  }
}

/** A topic to deliver or store: `checkTopic` (no wildcards, no empty token, length). */
export function peerTopic(value: string, field = 'topic'): string {
  return fromPeer('topic', () => checkTopic(value, field))
}

/** A subscription pattern: `checkPattern`. */
export function peerPattern(value: string): string {
  return fromPeer('pattern', () => checkPattern(value, 'pattern'))
}

/** A queue group name: `checkQueueName`. */
export function peerQueue(value: string): string {
  return fromPeer('queue', () => checkQueueName(value, 'queue') as string)
}

/** A cluster name: `checkClusterName`. */
export function peerCluster(value: string, field = 'cluster'): string {
  return fromPeer('cluster', () => checkClusterName(value, field))
}

/** A message key: `checkKey` (at most `MAX_KEY_BYTES`). */
export function peerKey(value: Uint8Array | undefined): Uint8Array | undefined {
  return fromPeer('key', () => checkKey(value, 'key'))
}

/** Message headers: `checkHeaders` (count, name and total sizes). */
export function peerHeaders(value: Record<string, string> | undefined): Record<string, string> | undefined {
  return fromPeer('headers', () => checkHeaders(value, 'headers'))
}

/** A publish id: `checkMsgId`. */
export function peerMsgId(value: string | undefined): string | undefined {
  return fromPeer('msgId', () => checkMsgId(value, 'msgId'))
}

/** A payload of at most `max` bytes (the node's `maxMessageSize`). */
export function peerPayload(data: Uint8Array, max: number, field = 'data'): Uint8Array {
  if (data.length > max)
    throw new PeerInputError(
      'size',
      `from a peer: ${field} is ${data.length} bytes, over maxMessageSize (${max})`,
    )
  return data
}

/** A duration in ms a timer will be set to: at most `MAX_TIMEOUT` (Node fires longer ones at once). */
export function peerTimeout(ms: number, field = 'timeout'): number {
  if (ms > MAX_TIMEOUT)
    throw new PeerInputError('timeout', `from a peer: ${field} of ${ms} ms is over ${MAX_TIMEOUT} ms`)
  return ms
}
