/**
 * One stream consumer carried over the relay hop: a library `Consumer` on the node side,
 * CONSUME_MESSAGE frames with byte credit (`credit.ts`, the same mechanism as tunnels) on
 * the client side.
 *
 * The relay reads the next message from the library consumer only while the client has
 * granted credit and the connection's outbound buffer is under
 * `CONSUMER_LIMITS.socketHighWater`, and sends it once the credit covers its cost (the
 * frame's length field) and the buffer is still under that mark; it holds at most one
 * message per consumer. The library consumer is opened with a byte budget
 * (`prefetchBytes`, `durablePrefetchBytes`) and pauses reading while it is spent, so a slow
 * or stuck client slows reading from the stream and memory stays bounded on every hop: per
 * consumer its budget plus one held message, per connection the consumers' share of the
 * outbound buffer is at most the high-water mark plus one frame.
 *
 * For a durable consumer with explicit acks the relay remembers which messages it sent and
 * not yet saw settled (CONSUME_ACK, CONSUME_TERM, CONSUME_NAK; CONSUME_WORKING keeps it),
 * bounded by `CONSUMER_LIMITS`: beyond it the oldest are forgotten, their settling frames
 * become no-ops and the library redelivers them after `ackWait` (at-least-once is kept).
 *
 * A deferred consumer (CONSUME options block) sends nothing until the client picks how it
 * is read: CONSUME_START pushes as above; CONSUME_FETCH runs the library consumer's `fetch`
 * and sends its messages (under the same credit) before the OK that counts them. Fetches
 * are answered in the order they came.
 */
import { errorMessage, errorName, InvalidArgumentError, PlexusError } from '../../src/errors.js'
import type { Consumer, StreamMessage } from '../../src/types.js'
import type { FramedConnection } from '../wire/connection.js'
import { SendCredit } from '../wire/credit.js'
import { Op } from '../wire/protocol.js'
import { CloseKind } from '../wire/protocol-ext.js'
import {
  type ConsumeMessageBody,
  consumeMessageCost,
  encodeConsumeClose,
  encodeConsumeMessage,
} from '../wire/protocol-streams.js'

/** Bounds of relay consumers. */
export const CONSUMER_LIMITS = {
  /** Consumers one connection may have open. */
  maxConsumers: 256,
  /** Sent-but-unacknowledged messages remembered per durable consumer. */
  maxUnacked: 4096,
  /** Bytes (message costs) of those remembered messages per durable consumer. */
  maxUnackedBytes: 16 * 1024 * 1024,
  /**
   * `maxBytesInFlight` of the node's consumer behind a plain relay consumer: what it reads
   * ahead of the client's credit (two fetches of 1 MiB).
   */
  prefetchBytes: 2 * 1024 * 1024,
  /**
   * The same for a durable relay consumer, whose budget also covers the messages sent and
   * not yet acknowledged (as many as the relay remembers); it reads ahead at most 2 MiB of it.
   */
  durablePrefetchBytes: 16 * 1024 * 1024,
  /**
   * Consumers send (and read the next message) only while less than this many bytes wait in
   * the connection's outbound buffer (the same mark as subscriptions' direct sends).
   */
  socketHighWater: 1024 * 1024,
} as const

/** Counters of one relay consumer for `RelayServer.stats()`. */
export interface ConsumerBridgeStats {
  id: number
  stream: string
  /** Credit the client granted when it opened the consumer. */
  window: number
  /** Credit the client granted that the relay has not used. */
  clientCredit: number
  /** Bytes of a message read from the library consumer and not yet sent (≤ one message). */
  held: number
  /**
   * Bytes in flight in the node's consumer behind it (fetched and not yet read by the relay;
   * durable: not yet acknowledged), at most its budget plus one message.
   */
  inFlight: number
  /** CONSUME_MESSAGE frames sent. */
  sent: number
  /** Durable consumers: sent messages remembered until acknowledged. */
  unacked: number
}

interface Unacked {
  message: StreamMessage
  cost: number
}

/** A library consumer bridged to CONSUME_* frames of one relay connection. */
export class ConsumerBridge {
  private done = false
  private held = 0
  private sent = 0
  private readonly credit: SendCredit
  private readonly unacked = new Map<string, Unacked>()
  private unackedBytes = 0
  private drained: (() => void) | undefined
  /** How the client reads it: picked at once (not deferred) or by CONSUME_START / CONSUME_FETCH. */
  private mode: 'push' | 'fetch' | undefined
  /** The fetch whose messages are being sent: fetches are answered in order. */
  private fetching: Promise<unknown> = Promise.resolve()

  constructor(
    readonly id: number,
    readonly stream: string,
    private readonly consumer: Consumer,
    /** Credit the client granted in CONSUME. */
    readonly window: number,
    /** Durable with explicit acks: sent messages are remembered until settled. */
    private readonly durable: boolean,
    private readonly conn: FramedConnection,
    /** Largest frame the client accepts (a costlier message fails the consumer). */
    private readonly maxFrame: number,
    private readonly onFinished: (id: number) => void,
    /** Wait for CONSUME_START or CONSUME_FETCH before sending anything. */
    private readonly deferred = false,
  ) {
    this.credit = new SendCredit(window)
  }

  /** Starts pushing messages unless deferred (call after the CONSUME was answered OK). */
  start(): void {
    if (!this.deferred) this.push()
  }

  /** CONSUME_START (or a consumer that is not deferred): push messages as credit allows. */
  push(): void {
    if (this.mode === 'push' || this.done) return
    if (this.mode === 'fetch') {
      this.fail(new InvalidArgumentError('CONSUME_START on a consumer read with CONSUME_FETCH'))
      return
    }
    this.mode = 'push'
    void this.readLoop()
  }

  /**
   * CONSUME_FETCH: the library consumer's `fetch({ max, expires })`, its messages sent as
   * CONSUME_MESSAGE; resolves with how many were sent (after the previous fetches').
   */
  fetch(max: number, expires: number): Promise<number> {
    if (this.mode === 'push')
      return Promise.reject(
        new InvalidArgumentError('CONSUME_FETCH on a consumer that pushes (CONSUME_START)'),
      )
    this.mode = 'fetch'
    const got = this.consumer.fetch({ max, expires })
    const run = this.fetching.then(async () => {
      let sent = 0
      for (const m of await got) {
        if (!(await this.sendMessage(m))) break
        sent++
      }
      return sent
    })
    this.fetching = run.catch(() => {})
    return run
  }

  /** CONSUME_CREDIT from the client. */
  onCredit(bytes: number): void {
    this.credit.grant(bytes)
  }

  /** The connection's outbound buffer has room again. */
  pump(): void {
    const d = this.drained
    this.drained = undefined
    d?.()
  }

  /** Resolves true once the outbound buffer is under the high-water mark (false: closed). */
  private async socketRoom(): Promise<boolean> {
    while (!this.done && !this.conn.isClosed && this.conn.outbound >= CONSUMER_LIMITS.socketHighWater) {
      await new Promise<void>((resolve) => {
        this.drained = resolve
      })
    }
    return !this.done && !this.conn.isClosed
  }

  /** The client closed the consumer, or went away: stop without telling it. Idempotent. */
  close(): void {
    if (this.done) return
    this.finish()
    this.consumer.close()
  }

  /**
   * CONSUME_ACK for the message at (`partition`, `offset`): acknowledges it to the library
   * when it is remembered; a no-op otherwise (not durable, already acked or forgotten).
   */
  async ack(partition: number, offset: number): Promise<void> {
    await this.settle('ack', partition, offset)
  }

  /**
   * CONSUME_ACK / CONSUME_NAK / CONSUME_TERM / CONSUME_WORKING for the message at
   * (`partition`, `offset`): passed to the library when it is remembered, a no-op otherwise.
   */
  async settle(
    kind: 'ack' | 'nak' | 'term' | 'working',
    partition: number,
    offset: number,
    delayMs = 0,
  ): Promise<void> {
    const k = `${partition}:${offset}`
    const u = this.unacked.get(k)
    if (!u) return
    if (kind === 'working') return u.message.working()
    this.unacked.delete(k)
    this.unackedBytes -= u.cost
    if (kind === 'nak') return u.message.nak(delayMs)
    if (kind === 'term') return u.message.term()
    await u.message.ack()
  }

  /** Counters for stats. */
  stats(): ConsumerBridgeStats {
    return {
      id: this.id,
      stream: this.stream,
      window: this.window,
      clientCredit: this.credit.available,
      held: this.held,
      inFlight: (this.consumer as { bytesInFlight?: number }).bytesInFlight ?? 0,
      sent: this.sent,
      unacked: this.unacked.size,
    }
  }

  private finish(): void {
    if (this.done) return
    this.done = true
    this.held = 0
    this.unacked.clear()
    this.unackedBytes = 0
    this.credit.kick()
    this.pump()
    this.onFinished(this.id)
  }

  /** The library consumer failed: tell the client with the error's class name. */
  private fail(err: unknown): void {
    if (this.done) return
    this.conn.send(Op.ConsumeClose, this.id, (w) =>
      encodeConsumeClose(w, { kind: CloseKind.Failed, name: errorName(err), message: errorMessage(err) }),
    )
    this.finish()
    this.consumer.close()
  }

  private remember(m: StreamMessage, cost: number): void {
    const k = `${m.partition}:${m.offset}`
    const old = this.unacked.get(k) // a redelivery replaces the earlier one
    if (old) {
      this.unacked.delete(k)
      this.unackedBytes -= old.cost
    }
    this.unacked.set(k, { message: m, cost })
    this.unackedBytes += cost
    while (
      this.unacked.size > CONSUMER_LIMITS.maxUnacked ||
      this.unackedBytes > CONSUMER_LIMITS.maxUnackedBytes
    ) {
      const [first, oldest] = this.unacked.entries().next().value as [string, Unacked]
      this.unacked.delete(first)
      this.unackedBytes -= oldest.cost
    }
  }

  /** Library consumer → client: read only with credit, send when the credit covers the message. */
  private async readLoop(): Promise<void> {
    const stopped = () => this.done
    try {
      const it = this.consumer[Symbol.asyncIterator]()
      for (;;) {
        if (!(await this.credit.acquire(0, stopped, true))) return
        if (!(await this.socketRoom())) return
        const r = await it.next()
        if (this.done) return
        if (r.done) {
          this.conn.send(Op.ConsumeClose, this.id, (w) =>
            encodeConsumeClose(w, { kind: CloseKind.Half, name: '', message: '' }),
          )
          this.finish()
          return
        }
        if (!(await this.sendMessage(r.value))) return
      }
    } catch (err) {
      this.fail(err)
    }
  }

  /** Sends one message once the credit covers it (false: the consumer ended meanwhile). */
  private async sendMessage(m: StreamMessage): Promise<boolean> {
    const body: ConsumeMessageBody = {
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
      timestamp: m.timestamp,
      deliveryCount: m.deliveryCount,
      data: m.data,
    }
    if (m.key) body.key = m.key
    if (m.headers) body.headers = m.headers
    const cost = consumeMessageCost(body)
    if (cost > this.maxFrame) {
      const err = new PlexusError(
        `message at partition ${m.partition} offset ${m.offset} of stream "${this.stream}" needs a ${cost}-byte frame, over the relay's limit of ${this.maxFrame}`,
      )
      this.fail(err)
      throw err
    }
    const stopped = () => this.done
    this.held = cost
    if (!(await this.credit.acquire(cost, stopped))) return false
    if (!(await this.socketRoom())) return false
    this.credit.take(cost)
    this.held = 0
    this.sent++
    if (this.durable) this.remember(m, cost)
    this.conn.send(Op.ConsumeMessage, this.id, (w) => encodeConsumeMessage(w, body))
    return true
  }
}
