/**
 * The objects subscribers and consumers receive: plain fields plus `string()` and `json()` on
 * a shared prototype (no per-message closures). Built once per received message and shared
 * by every local subscription it matches.
 */
import type { ManyReply, Message, MessageData, StreamMessage } from '../types.js'
import { checkDelay } from './validate.js'

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

const NO_DATA = new Uint8Array(0)

/** One item of `requestMany` (library or relay client): a member's reply, or its `error` with no data. */
export class ReceivedReply extends Received implements ManyReply {
  data: Uint8Array
  headers?: Record<string, string>
  error?: Error
  constructor(
    public from: string,
    data: Uint8Array | undefined,
    headers?: Record<string, string>,
    error?: Error,
  ) {
    super()
    this.data = data ?? NO_DATA
    if (headers !== undefined) this.headers = headers
    if (error !== undefined) this.error = error
  }
}

/** The fields of a stream message, as a consumer builds it (the settling methods aside). */
export type StreamMessageFields = Omit<StreamMessage, keyof MessageData | Settle> & { data: Uint8Array }

type Settle = 'ack' | 'nak' | 'term' | 'working'

/**
 * How a consumer settles the messages it handed out (`ack`, `nak`, `term`, `working`), one
 * object per consumer or partition session rather than closures per message. `delayMs` is
 * validated before it is called.
 */
export interface MessageSettler {
  ack(m: StreamMessage): Promise<void>
  nak(m: StreamMessage, delayMs: number): Promise<void>
  term(m: StreamMessage): Promise<void>
  working(m: StreamMessage): Promise<void>
}

const settled = Promise.resolve()

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
  readonly #settler: MessageSettler | undefined
  /** Without `settler` the settling methods are no-ops (consumers without acknowledgements). */
  constructor(f: StreamMessageFields, settler?: MessageSettler) {
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
    this.#settler = settler
  }
  ack(): Promise<void> {
    return this.#settler?.ack(this) ?? settled
  }
  nak(delayMs?: number): Promise<void> {
    try {
      const delay = checkDelay(delayMs, 'delayMs') ?? 0
      return this.#settler?.nak(this, delay) ?? settled
    } catch (err) {
      return Promise.reject(err)
    }
  }
  term(): Promise<void> {
    return this.#settler?.term(this) ?? settled
  }
  working(): Promise<void> {
    return this.#settler?.working(this) ?? settled
  }
}
