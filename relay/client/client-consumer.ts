/**
 * The thin client's end of a stream consumer carried by the relay: the library's
 * `Consumer` semantics over CONSUME_MESSAGE / CONSUME_CREDIT / CONSUME_CLOSE frames.
 * Received messages wait in a queue bounded by the window this end granted the relay;
 * their credit (each message costs its frame's length) goes back as the application reads
 * them (`credit.ts`, the tunnels' mechanism), so a slow reader here slows the relay's
 * reading from the stream. `close()` (also breaking out of `for await`, or the `signal`)
 * ends the iteration at once and tells the relay; a failure on the node side ends it with
 * the error class the relay named (e.g. `StreamNotFoundError`).
 */
import { errorFromWire, InvalidArgumentError } from '../../src/errors.js'
import { BoundedQueue } from '../../src/pubsub/queue.js'
import type { StreamMessage } from '../../src/types.js'
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
  /** Ends the iteration (pending reads end, queued messages are discarded). Idempotent. */
  close(): void
}

/** How a client consumer writes frames, acknowledges messages and forgets itself. */
export interface ClientConsumerWire {
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): boolean
  /** CONSUME_ACK for a durable consumer's message. */
  ack(consumerId: number, partition: number, offset: number): Promise<void>
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
        ack: (m) => this.wire.ack(this.id, m.partition, m.offset),
        nak: () => Promise.reject(new InvalidArgumentError('nak() is not available through the relay yet')),
        term: () => Promise.reject(new InvalidArgumentError('term() is not available through the relay yet')),
        working: () =>
          Promise.reject(new InvalidArgumentError('working() is not available through the relay yet')),
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

  [Symbol.asyncIterator](): AsyncIterator<StreamMessage> {
    if (this.iterating) throw new InvalidArgumentError('this consumer is already being iterated')
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
