/**
 * Durable streams on one relay connection: STREAM_CREATE / STREAM_INFO / STREAM_DELETE /
 * STREAM_LIST / STREAM_ADMIN call the node's `streams` API, CONSUME opens a library consumer bridged by
 * `ConsumerBridge` (credit flow control, at most one held message per consumer). Calls
 * that wait on the network count against the connection's in-flight bounds and can be
 * cancelled with CANCEL, like REQUEST. Errors travel as ERROR (or CONSUME_CLOSE kind 1)
 * carrying the class name, e.g. `StreamNotFoundError`, `NotEnoughReplicasError`.
 */
import { InvalidArgumentError, OverloadedError } from '../../src/errors.js'
import type { ConsumeOptions, PlexusNode, StreamConfig } from '../../src/types.js'
import { BinaryWriter, DecodeError } from '../../src/util/binary.js'
import type { FramedConnection } from '../wire/connection.js'
import { FRAME_OVERHEAD, type Frame, Op } from '../wire/protocol.js'
import { AdminKind, decodeStreamAdmin, parseAdminArgs } from '../wire/protocol-admin.js'
import { decodeConsumeFetch, decodeConsumeSettle } from '../wire/protocol-consume.js'
import {
  type ConsumeBody,
  decodeConsume,
  decodeConsumeAck,
  decodeConsumeClose,
  decodeStreamCreate,
  decodeStreamName,
  encodeStreamInfo,
  encodeStreamList,
  LIST_DETAILS,
} from '../wire/protocol-streams.js'
import { CONSUMER_LIMITS, ConsumerBridge, type ConsumerBridgeStats } from './server-consumer.js'
import { RelayKv } from './server-kv.js'

/** What `RelayStreams` needs from the connection that owns it. */
export interface RelayStreamsHost {
  readonly node: PlexusNode
  readonly conn: FramedConnection
  readonly maxMessageSize: number
  /**
   * Runs one asynchronous call under the connection's in-flight bounds and answers it
   * exactly once: the frame `answer(result)` describes, or ERROR.
   */
  track<T>(
    id: number,
    bytes: number,
    run: (signal: AbortSignal) => Promise<T>,
    answer: (v: T) => [opcode: number, body?: (w: BinaryWriter) => void],
  ): void
  /** Answers call `id` with an ERROR frame naming `err`'s class. */
  sendError(id: number, err: unknown): void
}

const timeoutOf = (ms: number) => (ms === 0 ? undefined : ms)

/** The stream calls and consumers of one relay connection. */
export class RelayStreams {
  private readonly consumers = new Map<number, ConsumerBridge>()
  private closed = false
  /** KV_* and STREAM_READ frames (server-kv.ts). */
  private readonly kv: RelayKv

  constructor(private readonly host: RelayStreamsHost) {
    this.kv = new RelayKv(host, () => this.maxFrame)
  }

  /** Largest frame the client accepts. */
  private get maxFrame(): number {
    return this.host.maxMessageSize + FRAME_OVERHEAD
  }

  /** Consumers and watches open. */
  get size(): number {
    return this.consumers.size + this.kv.size
  }

  /** Handles a stream frame; false when `f` is not one. */
  onFrame(f: Frame): boolean {
    switch (f.opcode) {
      case Op.StreamCreate:
        this.onCreate(f)
        return true
      case Op.StreamInfo: {
        const m = decodeStreamName(f.body, 'STREAM_INFO')
        this.host.track(
          f.id,
          0,
          async (signal) => {
            const info = await this.host.node.streams.info(m.name, {
              timeout: timeoutOf(m.timeoutMs),
              signal,
            })
            return this.reply(Op.StreamInfoReply, (w) => encodeStreamInfo(w, info))
          },
          (r) => r,
        )
        return true
      }
      case Op.StreamDelete: {
        const m = decodeStreamName(f.body, 'STREAM_DELETE')
        this.host.track(
          f.id,
          0,
          (signal) =>
            this.host.node.streams.delete(m.name, { timeout: timeoutOf(m.timeoutMs), signal, ...m.auth }),
          () => [Op.Ok],
        )
        return true
      }
      case Op.StreamList: {
        // Empty (older clients): the five base fields; `u8 flags` LIST_DETAILS: everything.
        const flags = f.body.remaining > 0 ? f.body.u8('STREAM_LIST flags') : 0
        f.body.end('STREAM_LIST')
        if (flags > LIST_DETAILS) throw new DecodeError(`unknown STREAM_LIST flags ${flags}`)
        try {
          const list = this.host.node.streams.list()
          const details = flags === LIST_DETAILS
          const [opcode, body] = this.reply(Op.StreamListReply, (w) => encodeStreamList(w, list, details))
          this.host.conn.send(opcode, f.id, body)
        } catch (err) {
          this.host.sendError(f.id, err)
        }
        return true
      }
      case Op.StreamAdmin:
        this.onAdmin(f)
        return true
      case Op.Consume:
        this.onConsume(f.id, decodeConsume(f.body))
        return true
      case Op.ConsumeCredit: {
        const n = f.body.u32('credit')
        f.body.end('CONSUME_CREDIT')
        this.consumers.get(f.id)?.onCredit(n)
        return true
      }
      case Op.ConsumeClose:
        decodeConsumeClose(f.body)
        this.consumers.get(f.id)?.close()
        return true
      case Op.ConsumeAck: {
        const a = decodeConsumeAck(f.body)
        const c = this.consumer(f.id, a.consumerId)
        if (c)
          this.host.track(
            f.id,
            0,
            () => c.ack(a.partition, a.offset),
            () => [Op.Ok],
          )
        return true
      }
      case Op.ConsumeNak:
      case Op.ConsumeTerm:
      case Op.ConsumeWorking: {
        const nak = f.opcode === Op.ConsumeNak
        const kind = nak ? 'nak' : f.opcode === Op.ConsumeTerm ? 'term' : 'working'
        const a = decodeConsumeSettle(f.body, nak, `CONSUME_${kind.toUpperCase()}`)
        const c = this.consumer(f.id, a.consumerId)
        if (c)
          this.host.track(
            f.id,
            0,
            () => c.settle(kind, a.partition, a.offset, a.delayMs),
            () => [Op.Ok],
          )
        return true
      }
      case Op.ConsumeStart:
        f.body.end('CONSUME_START')
        this.consumers.get(f.id)?.push()
        return true
      case Op.ConsumeFetch: {
        const a = decodeConsumeFetch(f.body)
        const c = this.consumer(f.id, a.consumerId)
        if (c)
          this.host.track(
            f.id,
            0,
            () => c.fetch(a.max, a.expires),
            (n) => [Op.Ok, (w) => w.u32(n)],
          )
        return true
      }
      default:
        return this.kv.onFrame(f)
    }
  }

  /**
   * Encodes a reply body up front so that one too large for the client's frame limit
   * becomes an ERROR instead of a frame the client would have to refuse.
   */
  private reply(opcode: number, encode: (w: BinaryWriter) => void): [number, (w: BinaryWriter) => void] {
    const w = new BinaryWriter(1024)
    encode(w)
    const bytes = w.finish()
    if (bytes.length + 5 > this.maxFrame) {
      throw new OverloadedError(`the answer is ${bytes.length} bytes, over the relay's frame limit`)
    }
    return [opcode, (out) => void out.raw(bytes)]
  }

  private onCreate(f: Frame): void {
    const m = decodeStreamCreate(f.body)
    const config: StreamConfig = { cluster: m.cluster, subject: m.subject }
    if (m.replicas !== 0) config.replicas = m.replicas
    if (m.partitions !== 0) config.partitions = m.partitions
    if (Object.keys(m.retention).length > 0) config.retention = m.retention
    if (m.compact) config.compact = true
    if (m.duplicateWindow > 0) config.duplicateWindow = m.duplicateWindow
    if (m.access !== undefined && (m.access.publish !== 'open' || m.access.consume !== 'open'))
      config.access = m.access
    this.host.track(
      f.id,
      0,
      async (signal) => {
        const s = await this.host.node.streams.create(m.name, config, {
          timeout: timeoutOf(m.timeoutMs),
          signal,
          ...m.auth,
        })
        return this.reply(Op.StreamInfoReply, (w) => encodeStreamInfo(w, s))
      },
      (r) => r,
    )
  }

  /** STREAM_ADMIN (protocol-admin.ts): the node's admin call, with the frame's credential. */
  private onAdmin(f: Frame): void {
    const m = decodeStreamAdmin(f.body)
    const args = parseAdminArgs(m.args)
    const streams = this.host.node.streams
    const json = (v: unknown) => this.reply(Op.StreamAdminReply, (w) => void w.str(JSON.stringify(v)))
    this.host.track(
      f.id,
      0,
      async (signal): Promise<[number, ((w: BinaryWriter) => void)?]> => {
        const o = { timeout: timeoutOf(m.timeoutMs), signal, ...m.auth }
        switch (m.kind) {
          case AdminKind.Consumers:
            return json(await streams.consumers(m.stream, o))
          case AdminKind.ConsumerInfo:
            return json(await streams.consumerInfo(m.stream, m.name, o))
          case AdminKind.ConsumerDelete:
            await streams.deleteConsumer(m.stream, m.name, o)
            return [Op.Ok]
          case AdminKind.Purge:
            return json(await streams.purge(m.stream, purgeTarget(args), o))
          case AdminKind.Update: {
            const info = await streams.update(m.stream, args as never, o)
            return this.reply(Op.StreamInfoReply, (w) => encodeStreamInfo(w, info))
          }
        }
      },
      (r) => r,
    )
  }

  /** The open consumer `id`; undefined after answering call `callId` with an ERROR. */
  private consumer(callId: number, id: number): ConsumerBridge | undefined {
    const c = this.consumers.get(id)
    if (!c)
      this.host.sendError(
        callId,
        new InvalidArgumentError(`consumer id ${id} is not open on this connection`),
      )
    return c
  }

  private onConsume(callId: number, m: ConsumeBody): void {
    try {
      if (this.closed) throw new InvalidArgumentError('the connection is closing')
      if (m.consumerId === 0) throw new InvalidArgumentError('consumer id must not be 0')
      if (this.consumers.has(m.consumerId)) {
        throw new InvalidArgumentError(`consumer id ${m.consumerId} is already in use`)
      }
      if (this.consumers.size >= CONSUMER_LIMITS.maxConsumers) {
        throw new OverloadedError(`${CONSUMER_LIMITS.maxConsumers} consumers open on this relay connection`)
      }
      if (m.window < this.maxFrame) {
        throw new InvalidArgumentError(
          `CONSUME window must be at least the relay's frame limit (${this.maxFrame} bytes), got ${m.window}`,
        )
      }
      const opts: ConsumeOptions = {
        from: m.from,
        maxBytesInFlight:
          m.durable === undefined ? CONSUMER_LIMITS.prefetchBytes : CONSUMER_LIMITS.durablePrefetchBytes,
      }
      if (m.partition !== undefined) opts.partition = m.partition
      if (m.durable !== undefined) opts.durable = m.durable
      if (m.ackWait !== undefined) opts.ackWait = m.ackWait
      if (m.capability !== undefined) opts.capability = m.capability // this client's own
      const x = m.options
      if (x?.ackNone) opts.ackPolicy = 'none'
      if (x?.maxAckPending !== undefined) opts.maxAckPending = x.maxAckPending
      if (x?.maxDeliver !== undefined) opts.maxDeliver = x.maxDeliver
      if (x?.backoff !== undefined) opts.backoff = x.backoff
      if (x?.filter !== undefined) opts.filter = x.filter
      const consumer = this.host.node.consume(m.stream, opts)
      const b = new ConsumerBridge(
        m.consumerId,
        m.stream,
        consumer,
        m.window,
        m.durable !== undefined && !x?.ackNone,
        this.host.conn,
        this.maxFrame,
        (id) => {
          if (this.consumers.get(id) === b) this.consumers.delete(id)
        },
        x?.deferred === true,
      )
      this.consumers.set(m.consumerId, b)
      this.host.conn.send(Op.Ok, callId)
      b.start()
    } catch (err) {
      if (err instanceof DecodeError) throw err
      this.host.sendError(callId, err)
    }
  }

  /** The connection's outbound buffer has room: consumers waiting for it may send. */
  pump(): void {
    for (const c of this.consumers.values()) c.pump()
    this.kv.pump()
  }

  /** Counters of every open consumer. */
  stats(): ConsumerBridgeStats[] {
    return [...this.consumers.values()].map((c) => c.stats())
  }

  /** Closes every consumer without telling the client (it is gone). */
  closeAll(): void {
    this.closed = true
    for (const c of [...this.consumers.values()]) c.close()
    this.consumers.clear()
    this.kv.closeAll()
  }
}

/**
 * A STREAM_ADMIN purge's JSON args as the library's target: `keyBase64` (a key that is not
 * UTF-8 text) becomes `key` bytes; anything else is checked by `streams.purge`.
 */
function purgeTarget(args: Record<string, unknown>): Record<string, unknown> {
  const { keyBase64, ...rest } = args
  if (keyBase64 === undefined) return rest
  if (typeof keyBase64 !== 'string' || rest.key !== undefined)
    throw new InvalidArgumentError('keyBase64 must be a base64 string, without key')
  return { ...rest, key: new Uint8Array(Buffer.from(keyBase64, 'base64')) }
}
