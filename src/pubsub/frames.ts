/**
 * Pub/sub frames on links (type codes in `link/frames.ts`):
 *
 *   Interest: u8 mode (0 replace all, 1 add, 2 remove) | u16 n | n × str pattern
 *   Publish:  str topic | u8 flags (1 key, 2 headers) | [bytes key] |
 *             [u16 n | n × (str name, str value)] | bytes data
 */
import { MAX_HEADERS } from '../constants.js'
import type { Message } from '../types.js'
import type { BinaryReader, BinaryWriter } from '../util/binary.js'
import { DecodeError } from '../util/binary.js'
import { PeerInputError, peerHeaders, peerKey, peerPattern, peerPayload } from '../util/peer-input.js'
import { ReceivedMessage } from '../util/received.js'

export const InterestMode = { Replace: 0, Add: 1, Remove: 2 } as const
const FLAG_KEY = 1
const FLAG_HEADERS = 2

/** Most headers one message may carry (checked at publish: `util/validate.ts` checkHeaders). */
export { MAX_HEADERS }

/** A message as delivered to subscribers (built as a `ReceivedMessage`). */
export type PubMessage = Message

export function writeInterest(w: BinaryWriter, mode: number, patterns: string[]): void {
  w.u8(mode).u16(patterns.length)
  for (const p of patterns) w.str(p)
}

export function readInterest(r: BinaryReader): { mode: number; patterns: string[] } {
  const mode = r.u8('interest mode')
  if (mode > InterestMode.Remove) throw new DecodeError(`unknown interest mode ${mode}`)
  const n = r.u16('pattern count')
  const patterns: string[] = []
  for (let i = 0; i < n; i++) patterns.push(r.str('pattern'))
  r.end('interest')
  for (const p of patterns) peerPattern(p) // as `subscribe` checks them
  return { mode, patterns }
}

export function writePublish(
  w: BinaryWriter,
  topic: string,
  data: Uint8Array,
  key: Uint8Array | undefined,
  headers: Record<string, string> | undefined,
): void {
  w.str(topic).u8((key ? FLAG_KEY : 0) | (headers ? FLAG_HEADERS : 0))
  if (key) w.bytes(key)
  if (headers) {
    const entries = Object.entries(headers)
    w.u16(entries.length)
    for (const [k, v] of entries) w.str(k).str(v)
  }
  w.bytes(data)
}

/** Reads the rest of a publish frame after its topic (read by the caller, see `RepeatedString`). */
export function readPublishRest(r: BinaryReader, topic: string, from: string, maxData: number): PubMessage {
  const flags = r.u8('publish flags')
  if (flags > (FLAG_KEY | FLAG_HEADERS)) throw new DecodeError(`unknown publish flags ${flags}`)
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
  const msg: PubMessage = new ReceivedMessage(topic, peerPayload(r.bytes('data'), maxData), from)
  if (key) msg.key = key
  if (headers) msg.headers = headers
  r.end('publish')
  return msg
}
