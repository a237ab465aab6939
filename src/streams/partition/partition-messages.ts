/**
 * The messages of a partition publish: validation of the caller's input into batch messages
 * (batch.ts) and the view of a stored record consumers get (the `px.` headers removed).
 */
import { InvalidArgumentError } from '../../errors.js'
import type { LogRecord, RecordHeaders } from '../../log/index.js'
import {
  type BatchMessage,
  MSG_ID_HEADER,
  POSITION_HEADER,
  RESERVED_HEADER_PREFIX,
  TOPIC_HEADER,
} from './batch.js'
import type { PartitionMessage, PublishMessage } from './types.js'

/**
 * Validates a publish call's messages and turns them into batch messages: default timestamp
 * `now`, the message id and topic as `px.` headers. Throws `InvalidArgumentError` naming the
 * field (`messages[i].…`).
 */
export function toBatchMessages(
  messages: readonly PublishMessage[],
  now: number,
  topics: TopicCache,
): BatchMessage[] {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new InvalidArgumentError('messages must be a non-empty array')
  return messages.map((m, i) => {
    if (m === null || typeof m !== 'object')
      throw new InvalidArgumentError(`messages[${i}] must be an object`)
    const value = bytesOf(m.value, i, 'value')
    const out: BatchMessage = { value, timestamp: now }
    if (m.key !== undefined) out.key = bytesOf(m.key, i, 'key')
    if (m.timestamp !== undefined) {
      if (!Number.isSafeInteger(m.timestamp) || m.timestamp < 0)
        throw new InvalidArgumentError(`messages[${i}].timestamp must be a non-negative integer (ms)`)
      out.timestamp = m.timestamp
    }
    let headers: RecordHeaders | undefined
    if (m.headers !== undefined) {
      if (m.headers === null || typeof m.headers !== 'object')
        throw new InvalidArgumentError(`messages[${i}].headers must be an object`)
      for (const k in m.headers) {
        if (!Object.hasOwn(m.headers, k)) continue
        if (k.startsWith(RESERVED_HEADER_PREFIX))
          throw new InvalidArgumentError(
            `messages[${i}].headers: names starting with "px." are reserved (${k})`,
          )
        if (!(m.headers[k] instanceof Uint8Array))
          throw new InvalidArgumentError(`messages[${i}].headers.${k} must be a Uint8Array`)
        headers ??= { ...m.headers }
      }
    }
    if (m.msgId !== undefined) {
      if (typeof m.msgId !== 'string' || m.msgId === '' || m.msgId.length > 256)
        throw new InvalidArgumentError(`messages[${i}].msgId must be a string of 1-256 characters`)
      ;(headers ??= {})[MSG_ID_HEADER] = enc.encode(m.msgId)
    }
    if (m.topic !== undefined) {
      if (typeof m.topic !== 'string') throw new InvalidArgumentError(`messages[${i}].topic must be a string`)
      ;(headers ??= {})[TOPIC_HEADER] = topics.bytes(m.topic)
    }
    if (headers !== undefined) out.headers = headers
    return out
  })
}

/** UTF-8 of topics, cached: one stream's publishes mostly repeat a few topics (bounded). */
export class TopicCache {
  private readonly map = new Map<string, Uint8Array>()

  /** The UTF-8 bytes of `topic`. */
  bytes(topic: string): Uint8Array {
    let b = this.map.get(topic)
    if (b === undefined) {
      if (this.map.size >= 1024) this.map.clear()
      b = enc.encode(topic)
      this.map.set(topic, b)
    }
    return b
  }
}

const dec = new TextDecoder()

/** A stored record as consumers see it: topic from `px.topic`, other `px.` headers removed. */
export function toMessage(r: LogRecord): PartitionMessage {
  let headers = r.headers
  let topic = ''
  if (
    headers !== undefined &&
    (POSITION_HEADER in headers || TOPIC_HEADER in headers || MSG_ID_HEADER in headers)
  ) {
    const { [POSITION_HEADER]: _, [TOPIC_HEADER]: t, [MSG_ID_HEADER]: _id, ...rest } = headers
    if (t !== undefined) topic = dec.decode(t)
    headers = Object.keys(rest).length > 0 ? rest : undefined
  }
  return { offset: r.offset, timestamp: r.timestamp, topic, key: r.key, value: r.value, headers }
}

const enc = new TextEncoder()

function bytesOf(v: unknown, i: number, field: string): Uint8Array {
  if (v instanceof Uint8Array) return v
  if (typeof v === 'string') return enc.encode(v)
  throw new InvalidArgumentError(`messages[${i}].${field} must be a Uint8Array or a string`)
}
