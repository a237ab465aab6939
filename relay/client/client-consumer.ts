/**
 * The thin client's end of a stream consumer carried by the relay: the library's
 * `Consumer` semantics over CONSUME_MESSAGE / CONSUME_CREDIT / CONSUME_CLOSE frames.
 * Received messages wait in a queue bounded by the window this end granted the relay;
 * their credit (each message costs its frame's length) goes back as the application reads
 * them (`credit.ts`, the tunnels' mechanism), so a slow reader here slows the relay's
 * reading from the stream. `close()` (also breaking out of `for await`, or the `signal`)
 * ends the iteration at once and tells the relay; a failure on the node side ends it with
 * the error class the relay named (e.g. `StreamNotFoundError`).
 *
 * The consumer is opened deferred: the first use picks how it is read, as in the library.
 * Iterating sends CONSUME_START (the relay pushes); `fetch` sends CONSUME_FETCH and collects
 * the CONSUME_MESSAGE frames that come before the OK counting them, returning their credit
 * as they arrive (a batch is at most `max` messages, bounded by `CONSUMER.fetchMaxMessages`).
 * A durable consumer with explicit acks settles its messages with CONSUME_ACK, CONSUME_NAK,
 * CONSUME_TERM and CONSUME_WORKING.
 */
import { errorFromWire, InvalidArgumentError } from '../../src/errors.js'
import { BoundedQueue } from '../../src/pubsub/queue.js'
import { checkFetchOptions } from '../../src/streams/consumer/consumer-options.js'
import type { FetchOptions, StreamMessage } from '../../src/types.js'
import type { BinaryWriter } from '../../src/util/binary.js'
import { type MessageSettler, ReceivedStreamMessage } from '../../src/util/received.js'
import { CreditReturn } from '../wire/credit.js'
import { Op } from '../wire/protocol.js'
import { CloseKind } from '../wire/protocol-ext.js'
import { type ConsumeMessageBody, encodeConsumeClose } from '../wire/protocol-streams.js'

/** A consumer through the relay: same names and semantics as the library's `Consumer`. */
export interface RelayConsumer extends AsyncIterable<StreamMessage> {
  /** The stream read. */
  readonly stream: string
  /** Resolves once the relay opened the consumer; rejects with the relay's error. */
  readonly ready: Promise<void>
  /** Messages delivered to the application so far. */
  readonly received: number
  /** Pull: as `Consumer.fetch` of the library (one mode per consumer, fetches in turn). */
  fetch(options?: FetchOptions): Promise<StreamMessage[]>
  /** Ends the iteration (pending reads end, queued messages are discarded). Idempotent. */
  close(): void
}

/** How a client consumer writes frames, acknowledges messages and forgets itself. */
export interface ClientConsumerWire {
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): boolean
  /** CONSUME_ACK / NAK / TERM / WORKING for a durable consumer's message. */
  settle(
    kind: 'ack' | 'nak' | 'term' | 'working',
    consumerId: number,
    m: StreamMessage,
    delayMs?: number,
  ): Promise<void>
  /** CONSUME_FETCH; resolves with the count of the OK (the messages came before it). */
  fetch(consumerId: number, max: number, expires: number): Promise<number>
  finished(id: number): void
}

interface Entry {
  message: StreamMessage
  cost: number
}

/** Credit (bytes) a thin client grants the relay per consumer: at least one largest frame. */
export function clientConsumerWindow(maxFrame: number): number {
  return Math.max(2 * 1024 * 1024, maxFrame)
}

/** One consumer in the thin client (internal). */
export class ClientConsumer implements RelayConsumer {
  received = 0
  readonly ready: Promise<void>
  private readonly queue: BoundedQueue<Entry>
  private readonly returns: CreditReturn
  private settle!: { resolve(): void; reject(e: Error): void }
  private closed = false
  private userClosed = false
  private iterating = false
  /** How the consumer is read, fixed by the first use. */
  private mode: 'iterate' | 'fetch' | undefined
  /** Pull: messages of the fetch under way (their credit already returned). */
  private pulled: StreamMessage[] = []
  private fetching: Promise<unknown> = Promise.resolve()
  private failure: Error | undefined
  private readonly onAbort = () => this.close()
  /** Settles messages of a durable consumer through the relay (none: no acknowledgements). */
  private readonly settler: MessageSettler | undefined

  constructor(
    readonly id: number,
    readonly stream: string,
    /** Credit granted to the relay (bound on the queue). */
    readonly window: number,
    readonly durable: boolean,
    private readonly signal: AbortSignal | undefined,
    private readonly wire: ClientConsumerWire,
  ) {
    this.returns = new CreditReturn(window, (n) => this.wire.send(Op.ConsumeCredit, this.id, (w) => w.u32(n)))
    this.queue = new BoundedQueue<Entry>(
      Number.MAX_SAFE_INTEGER,
      window,
      (e) => e.cost,
      (e) => this.taken(e),
    )
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject }
    })
    this.ready.catch(() => {}) // observed through `ready` or iteration, never unhandled
    if (durable)
      this.settler = {
        ack: (m) => this.wire.settle('ack', this.id, m),
        nak: (m, delayMs) => this.wire.settle('nak', this.id, m, delayMs),
        term: (m) => this.wire.settle('term', this.id, m),
        working: (m) => this.wire.settle('working', this.id, m),
      }
    signal?.addEventListener('abort', this.onAbort, { once: true })
  }

  /** The relay answered CONSUME. */
  confirmed(err?: Error): void {
    if (!err) {
      this.settle.resolve()
      return
    }
    this.settle.reject(err)
    this.fail(err)
  }

  /** A CONSUME_MESSAGE; `cost` is its frame's length field. */
  deliver(m: ConsumeMessageBody, cost: number): void {
    if (this.closed) return
    const message: StreamMessage = new ReceivedStreamMessage(
      {
        stream: this.stream,
        topic: m.topic,
        partition: m.partition,
        offset: m.offset,
        timestamp: m.timestamp,
        deliveryCount: m.deliveryCount,
        data: m.data,
        key: m.key,
        headers: m.headers,
      },
      this.settler,
    )
    if (this.mode === 'fetch') {
      // Bounded by the fetch's `max`: the credit goes back at once, so a batch larger than
      // the window still arrives.
      this.pulled.push(message)
      this.received++
      this.returns.consumed(cost, true)
      return
    }
    if (!this.queue.push({ message, cost })) {
      this.wire.send(Op.ConsumeClose, this.id, (w) =>
        encodeConsumeClose(w, {
          kind: CloseKind.Failed,
          name: 'InvalidArgumentError',
          message: 'flow control violated',
        }),
      )
      this.fail(
        new InvalidArgumentError('flow control violated by the relay: more data than the window granted'),
      )
    }
  }

  /** CONSUME_CLOSE from the relay: the consumer ended (kind 0) or failed (kind 1). */
  onClose(kind: number, name: string, message: string): void {
    if (this.closed) return
    if (kind === CloseKind.Failed) {
      this.fail(errorFromWire(name, message))
      return
    }
    this.closed = true
    this.queue.end()
    this.detach()
  }

  /** Ends iteration with `err` (connection lost, refused, failed on the node). */
  fail(err: Error): void {
    if (this.closed) return
    this.closed = true
    this.failure = err
    this.queue.fail(err)
    this.detach()
  }

  close(): void {
    this.userClosed = true
    if (this.closed) return
    this.closed = true
    this.wire.send(Op.ConsumeClose, this.id, (w) =>
      encodeConsumeClose(w, { kind: CloseKind.Half, name: '', message: '' }),
    )
    this.queue.end()
    this.detach()
  }

  private detach(): void {
    this.signal?.removeEventListener('abort', this.onAbort)
    this.wire.finished(this.id)
  }

  private taken(e: Entry): void {
    this.received++
    if (!this.closed) this.returns.consumed(e.cost, this.queue.length === 0)
  }

  fetch(options?: FetchOptions): Promise<StreamMessage[]> {
    let max: number
    let expires: number
    try {
      ;({ max, expires } = checkFetchOptions(options))
      this.use('fetch')
    } catch (err) {
      return Promise.reject(err)
    }
    const run = this.fetching.then(async () => {
      if (this.closed) {
        const err = this.failure
        this.failure = undefined
        if (err && !this.userClosed) throw err
        return []
      }
      try {
        const n = await this.wire.fetch(this.id, max, Math.round(expires))
        return this.pulled.splice(0, n)
      } catch (err) {
        this.pulled = [] // a failed fetch's messages are not handed out (they come back after ackWait)
        throw err
      }
    })
    this.fetching = run.catch(() => {})
    return run
  }

  /** Fixes how the consumer is read (the first use); the other way is refused. */
  private use(mode: 'iterate' | 'fetch'): void {
    if (this.mode === undefined) {
      this.mode = mode
      if (mode === 'iterate') this.wire.send(Op.ConsumeStart, this.id)
    } else if (this.mode !== mode)
      throw new InvalidArgumentError(
        mode === 'fetch'
          ? `consumer of stream "${this.stream}" is being iterated: it cannot also be read with fetch()`
          : `consumer of stream "${this.stream}" is read with fetch(): it cannot also be iterated`,
      )
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamMessage> {
    if (this.iterating) throw new InvalidArgumentError('this consumer is already being iterated')
    this.use('iterate')
    this.iterating = true
    return {
      next: async () => {
        // After close() queued messages are discarded: the iteration ends at once. After
        // the relay ended the consumer, what it sent before is still read.
        if (this.userClosed) return { value: undefined, done: true }
        const r = await this.queue.next()
        if (r.done || this.userClosed) return { value: undefined, done: true }
        return { value: r.value.message, done: false }
      },
      return: async () => {
        this.close()
        return { value: undefined, done: true }
      },
    }
  }
}
