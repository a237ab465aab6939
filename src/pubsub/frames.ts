/**
 * Pub/sub frames on links (type codes in `link/frames.ts`):
 *
 *   Interest: u8 mode (0 replace all, 1 add, 2 remove) | u16 n | n × str pattern |
 *             [u16 m | m × (str pattern, str queue)]
 *   Publish:  str topic | u8 flags (1 key, 2 headers, 4 queues, 8 queues only) | [bytes key] |
 *             [u16 n | n × (str name, str value)] | [u16 q | q × str queue] | bytes data
 *
 * Queue groups: the optional tail of an Interest frame lists (pattern, queue) entries under
 * the same mode; it is written only when non-empty, so a node without queue subscriptions
 * sends the frames nodes from before queue groups read (they reset a link whose Interest
 * frame carries the tail: upgrade every node before subscribing with a queue). Flag 4 of a
 * Publish names the receiver's groups picked for this message (it is sent only to peers
 * that announced queue interest); flag 8 says it was sent only for them, so the receiver's
 * plain subscriptions skip it.
 */
import { MAX_HEADERS } from '../constants.js'
import type { Message } from '../types.js'
import type { BinaryReader, BinaryWriter } from '../util/binary.js'
import { DecodeError } from '../util/binary.js'
import {
  PeerInputError,
  peerHeaders,
  peerKey,
  peerPattern,
  peerPayload,
  peerQueue,
} from '../util/peer-input.js'
import { ReceivedMessage } from '../util/received.js'

export const InterestMode = { Replace: 0, Add: 1, Remove: 2 } as const
const FLAG_KEY = 1
const FLAG_HEADERS = 2
const FLAG_QUEUES = 4
const FLAG_QUEUES_ONLY = 8

/** One queue-group interest entry: a subscription of `queue` on `pattern`. */
export interface QueueEntry {
  pattern: string
  queue: string
}

/** Queue groups a Publish frame names for its receiver (`writePublish`, `readPublishRest`). */
export interface PublishQueues {
  /** Groups of the receiver picked for this message. */
  queues: string[]
  /** True when the receiver's plain subscriptions do not get the message. */
  only: boolean
}

/** Most headers one message may carry (checked at publish: `util/validate.ts` checkHeaders). */
export { MAX_HEADERS }

/** A message as delivered to subscribers (built as a `ReceivedMessage`). */
export type PubMessage = Message

/** Writes an Interest body; the queue tail only when `queued` is non-empty (see above). */
export function writeInterest(
  w: BinaryWriter,
  mode: number,
  patterns: string[],
  queued: QueueEntry[] = [],
): void {
  w.u8(mode).u16(patterns.length)
  for (const p of patterns) w.str(p)
  if (queued.length === 0) return
  w.u16(queued.length)
  for (const e of queued) w.str(e.pattern).str(e.queue)
}

/** Reads an Interest body, with or without the queue tail; patterns and queues are checked. */
export function readInterest(r: BinaryReader): { mode: number; patterns: string[]; queued: QueueEntry[] } {
  const mode = r.u8('interest mode')
  if (mode > InterestMode.Remove) throw new DecodeError(`unknown interest mode ${mode}`)
  const n = r.u16('pattern count')
  const patterns: string[] = []
  for (let i = 0; i < n; i++) patterns.push(r.str('pattern'))
  const queued: QueueEntry[] = []
  if (r.remaining > 0) {
    const m = r.u16('queue entry count')
    for (let i = 0; i < m; i++) queued.push({ pattern: r.str('pattern'), queue: r.str('queue') })
  }
  r.end('interest')
  for (const p of patterns) peerPattern(p) // as `subscribe` checks them
  for (const e of queued) {
    peerPattern(e.pattern)
    peerQueue(e.queue)
  }
  return { mode, patterns, queued }
}

export function writePublish(
  w: BinaryWriter,
  topic: string,
  data: Uint8Array,
  key: Uint8Array | undefined,
  headers: Record<string, string> | undefined,
  queues?: PublishQueues,
): void {
  let flags = (key ? FLAG_KEY : 0) | (headers ? FLAG_HEADERS : 0)
  if (queues) flags |= FLAG_QUEUES | (queues.only ? FLAG_QUEUES_ONLY : 0)
  w.str(topic).u8(flags)
  if (key) w.bytes(key)
  if (headers) {
    const entries = Object.entries(headers)
    w.u16(entries.length)
    for (const [k, v] of entries) w.str(k).str(v)
  }
  if (queues) {
    w.u16(queues.queues.length) // at most a peer's queue entries (10,000)
    for (const q of queues.queues) w.str(q)
  }
  w.bytes(data)
}

/**
 * Reads the rest of a publish frame after its topic (read by the caller, see
 * `RepeatedString`). When the frame names queue groups, they are stored in `queues` (whose
 * `queues` is left empty otherwise).
 */
export function readPublishRest(
  r: BinaryReader,
  topic: string,
  from: string,
  maxData: number,
  queues?: PublishQueues,
): PubMessage {
  const flags = r.u8('publish flags')
  if (flags > (FLAG_KEY | FLAG_HEADERS | FLAG_QUEUES | FLAG_QUEUES_ONLY) || flags === FLAG_QUEUES_ONLY)
    throw new DecodeError(`unknown publish flags ${flags}`)
  if (flags === 0) {
    // The common case: no key, no headers; the message is built with its final shape.
    const data = peerPayload(r.bytes('data'), maxData)
    r.end('publish')
    return new ReceivedMessage(topic, data, from)
  }
  // Checked like `node.publish` checks them (util/peer-input.ts): refused, never delivered.
  const key = flags & FLAG_KEY ? peerKey(r.bytes('key')) : undefined
  let headers: Record<string, string> | undefined
  if (flags & FLAG_HEADERS) {
    const n = r.u16('header count')
    if (n > MAX_HEADERS) throw new PeerInputError('headers', `too many headers (${n})`)
    headers = {}
    for (let i = 0; i < n; i++) {
      const name = r.str('header name')
      if (Object.hasOwn(headers, name)) throw new PeerInputError('headers', `header ${name} repeated`)
      headers[name] = r.str('header value')
    }
    peerHeaders(headers)
  }
  if (flags & FLAG_QUEUES) {
    const q = r.u16('queue count')
    const names: string[] = []
    for (let i = 0; i < q; i++) names.push(peerQueue(r.str('queue')))
    if (queues) {
      queues.queues = names
      queues.only = (flags & FLAG_QUEUES_ONLY) !== 0
    }
  }
  const msg: PubMessage = new ReceivedMessage(topic, peerPayload(r.bytes('data'), maxData), from)
  if (key) msg.key = key
  if (headers) msg.headers = headers
  r.end('publish')
  return msg
}
