/**
 * The objects subscribers and consumers receive: plain fields plus `string()` and `json()` on
 * a shared prototype (no per-message closures). Built once per received message and shared
 * by every local subscription it matches.
 */
import type { Message, MessageData, StreamMessage } from '../types.js'

const utf8 = new TextDecoder()

/** `string()` and `json()` over `data`. */
abstract class Received implements MessageData {
  abstract data: Uint8Array
  string(): string {
    return utf8.decode(this.data)
  }
  json<T = unknown>(): T {
    return JSON.parse(this.string()) as T
  }
}

/** A pub/sub message as delivered; `key` and `headers` are set by the caller when present. */
export class ReceivedMessage extends Received implements Message {
  key?: Uint8Array
  headers?: Record<string, string>
  constructor(
    public topic: string,
    public data: Uint8Array,
    public from: string,
  ) {
    super()
  }
}

/** The fields of a stream message, as a consumer builds it. */
export type StreamMessageFields = Omit<StreamMessage, keyof MessageData> & { data: Uint8Array }

/** A stream message as delivered by a consumer (library or relay client). */
export class ReceivedStreamMessage extends Received implements StreamMessage {
  stream: string
  topic: string
  partition: number
  offset: number
  timestamp: number
  key?: Uint8Array
  data: Uint8Array
  headers?: Record<string, string>
  deliveryCount: number
  ack: () => Promise<void>
  constructor(f: StreamMessageFields) {
    super()
    this.stream = f.stream
    this.topic = f.topic
    this.partition = f.partition
    this.offset = f.offset
    this.timestamp = f.timestamp
    if (f.key !== undefined) this.key = f.key
    this.data = f.data
    if (f.headers !== undefined) this.headers = f.headers
    this.deliveryCount = f.deliveryCount
    this.ack = f.ack
  }
}
