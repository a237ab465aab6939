/**
 * Durable streams in the thin client: `client.streams.create / info / delete / list` and
 * `client.consume`, with the library's names and argument checks, over the STREAM_* and
 * CONSUME* frames (docs/relay-protocol.md, "Durable streams"). Errors the node raises
 * (`StreamNotFoundError`, `NotEnoughReplicasError`, …) are rebuilt as the same classes.
 */

import { parseCapability } from '../../src/cluster/capability.js'
import { splitCapability } from '../../src/cluster/capability-text.js'
import { AbortedError, InvalidArgumentError } from '../../src/errors.js'
import { checkPattern } from '../../src/pubsub/subject.js'
import { checkAckOptions } from '../../src/streams/consumer/consumer-options.js'
import type {
  ConsumeFrom,
  ConsumeOptions,
  StreamAccess,
  StreamCallOptions,
  StreamConfig,
  StreamInfo,
  StreamRetention,
  StreamSummary,
} from '../../src/types.js'
import type { BinaryWriter } from '../../src/util/binary.js'
import { parseKey } from '../../src/util/keys.js'
import {
  checkClusterName,
  checkOptions,
  checkPositiveInt,
  checkSignal,
  checkTimeout,
} from '../../src/util/validate.js'
import { FRAME_OVERHEAD, type Frame, Op } from '../wire/protocol.js'
import { encodeConsumeFetch, encodeConsumeSettle } from '../wire/protocol-consume.js'
import type { ReadMessage } from '../wire/protocol-kv.js'
import {
  decodeConsumeClose,
  decodeConsumeMessage,
  decodeStreamInfo,
  decodeStreamList,
  encodeConsume,
  encodeConsumeAck,
  encodeStreamCreate,
  encodeStreamName,
  LIST_DETAILS,
  type RelayAuth,
} from '../wire/protocol-streams.js'
import { type RelayStreamsAdmin, relayStreamsAdmin } from './client-admin.js'
import { invalid } from './client-api.js'
import { ClientConsumer, clientConsumerWindow, type RelayConsumer } from './client-consumer.js'
import { ClientWatches, relayRead } from './client-kv.js'

/** The frame of each settling kind other than ack. */
const SETTLE_OPS = { nak: Op.ConsumeNak, term: Op.ConsumeTerm, working: Op.ConsumeWorking } as const

/** `client.streams`: durable streams of the network, created and inspected through the relay. */
export interface RelayStreams extends RelayStreamsAdmin {
  /** Creates a stream (or resolves to the same one when it exists with this configuration). */
  create(name: string, config: StreamConfig, options?: StreamCallOptions): Promise<StreamInfo>
  /** The stream's configuration and partitions; `StreamNotFoundError` when absent. */
  info(name: string, options?: StreamCallOptions): Promise<StreamInfo>
  /** Deletes the stream and its data on every replica; `StreamNotFoundError` when absent. */
  delete(name: string, options?: StreamCallOptions): Promise<void>
  /** See the library's `Streams.list`: the streams the node knows, with details, sorted by name. */
  list(): Promise<StreamSummary[]>
  /** See the library's `Streams.get`: the message at an offset; `MessageNotFoundError` when none. */
  get(
    name: string,
    at: { partition?: number; offset: number },
    options?: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>,
  ): Promise<RelayStoredMessage>
  /** See the library's `Streams.last`: the latest message of a key; `MessageNotFoundError` when none. */
  last(
    name: string,
    by: { key: string | Uint8Array },
    options?: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>,
  ): Promise<RelayStoredMessage>
}

/** A stored message read with `client.streams.get` / `last`. */
export interface RelayStoredMessage extends ReadMessage {
  stream: string
  /** The data as UTF-8 text. */
  string(): string
  /** The data parsed as JSON. */
  json<T = unknown>(): T
}

/** What `ClientStreams` needs from the relay client that owns it. */
export interface ClientStreamsHost {
  /** The relay's current maximum message size. */
  maxMessageSize(): number
  /** The error the client closed with, if it did. */
  closedError(): Error | undefined
  /** Sends one frame that expects no answer. */
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): boolean
  /** Sends one call frame and resolves with the answering frame. */
  call(opcode: number, body?: (w: BinaryWriter) => void, signal?: AbortSignal): Promise<Frame>
  /** Throws the error carried by an ERROR frame; otherwise checks the opcode. */
  expect(f: Frame, opcode: number): void
}

const STREAM_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/
const CONFIG_KEYS = [
  'cluster',
  'subject',
  'replicas',
  'partitions',
  'retention',
  'compact',
  'duplicateWindow',
  'access',
]
const RETENTION_KEYS = ['maxAge', 'maxBytes', 'maxMessages'] as const

/** Checks a stream name (1–64 characters of [A-Za-z0-9_-]) given as `field`. */
export function checkStreamName(value: unknown, field = 'name'): string {
  if (typeof value !== 'string' || !STREAM_NAME_RE.test(value)) {
    throw invalid(field, value, '1-64 characters of [A-Za-z0-9_-]')
  }
  return value
}

function checkMax(v: number | undefined, field: string, max: number): number {
  if (v !== undefined && v > max) throw invalid(field, v, `at most ${max}`)
  return v ?? 0
}

/** Checks `streams.create`'s config as the library does (ranges are left to the node). */
export function checkStreamConfig(config: unknown): {
  cluster: string
  subject: string
  replicas: number
  partitions: number
  retention: StreamRetention
  compact: boolean
  duplicateWindow: number
  access: StreamAccess
} {
  if (config === undefined || config === null) throw invalid('config', config, 'an object')
  const c = checkOptions<Record<string, unknown>>(config, 'config')
  for (const k of Object.keys(c)) {
    if (!CONFIG_KEYS.includes(k))
      throw invalid(`config.${k}`, c[k], `absent (known: ${CONFIG_KEYS.join(', ')})`)
  }
  const cluster = checkClusterName(c.cluster, 'config.cluster')
  const subject = checkPattern(c.subject, 'config.subject')
  const replicas = checkMax(checkPositiveInt(c.replicas, 'config.replicas'), 'config.replicas', 0xffff)
  const partitions = checkMax(
    checkPositiveInt(c.partitions, 'config.partitions'),
    'config.partitions',
    0xffffffff,
  )
  const r = checkOptions<Record<string, unknown>>(c.retention, 'config.retention')
  const retention: StreamRetention = {}
  for (const k of Object.keys(r)) {
    if (!(RETENTION_KEYS as readonly string[]).includes(k)) {
      throw invalid(`config.retention.${k}`, r[k], `absent (known: ${RETENTION_KEYS.join(', ')})`)
    }
    const v = checkPositiveInt(r[k], `config.retention.${k}`)
    if (v !== undefined) {
      if (!Number.isSafeInteger(v)) throw invalid(`config.retention.${k}`, v, 'a safe integer')
      retention[k as (typeof RETENTION_KEYS)[number]] = v
    }
  }
  if (c.compact !== undefined && typeof c.compact !== 'boolean')
    throw invalid('config.compact', c.compact, 'a boolean')
  const duplicateWindow = checkPositiveInt(c.duplicateWindow, 'config.duplicateWindow') ?? 0
  const a = checkOptions<Record<string, unknown>>(c.access, 'config.access')
  const access: StreamAccess = { publish: 'open', consume: 'open' }
  for (const k of Object.keys(a)) {
    if (k !== 'publish' && k !== 'consume')
      throw invalid(`config.access.${k}`, a[k], 'absent (known: publish, consume)')
    const v = a[k] ?? 'open'
    if (v !== 'open' && v !== 'capability') throw invalid(`config.access.${k}`, v, "'open' or 'capability'")
    access[k] = v
  }
  return {
    cluster,
    subject,
    replicas,
    partitions,
    retention,
    compact: c.compact === true,
    duplicateWindow,
    access,
  }
}

/** Checks `StreamCallOptions`; returns the wire timeout (0 = node default) and the signal. */
export function checkCallOptions(options: unknown): { timeoutMs: number; signal: AbortSignal | undefined } {
  const o = checkOptions<StreamCallOptions>(options, 'options')
  const timeout = checkTimeout(o.timeout, 'options.timeout')
  checkSignal(o.signal)
  if (o.signal?.aborted) throw new AbortedError('aborted before it was sent')
  const timeoutMs = timeout === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(timeout)))
  return { timeoutMs, signal: o.signal }
}

/**
 * The credentials of a create or delete (`clusterKey`, `capability`), checked as the library
 * checks them and sent to the node in the frame (relay-protocol.md, "Stream administration").
 */
export function checkAuthOptions(options: unknown): RelayAuth | undefined {
  const o = checkOptions<StreamCallOptions>(options, 'options')
  if (o.capability !== undefined) {
    parseCapability(o.capability, 'options.capability')
    return { capability: o.capability.trim() }
  }
  if (o.clusterKey !== undefined) return { clusterKey: parseKey(o.clusterKey, 'options.clusterKey') }
  return undefined
}

/** Checks `consume`'s `from` option. */
function checkFrom(v: unknown): ConsumeFrom {
  if (v === undefined) return 'earliest'
  if (v === 'earliest' || v === 'latest' || v === 'new') return v
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>
    if ('offset' in o) {
      const n = o.offset
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
        throw invalid('options.from.offset', n, 'a non-negative integer')
      }
      return { offset: n }
    }
    if ('time' in o) {
      const t = o.time
      if (!(t instanceof Date) || Number.isNaN(t.getTime()) || t.getTime() < 0) {
        throw invalid('options.from.time', t, 'a valid Date after 1970')
      }
      return { time: t }
    }
  }
  throw invalid('options.from', v, "'earliest', 'latest', 'new', { offset } or { time }")
}

/** The stream calls and consumers of one relay client (internal). */
export class ClientStreams implements RelayStreams {
  private readonly open = new Map<number, ClientConsumer>()
  private nextConsumerId = 1

  readonly update: RelayStreamsAdmin['update']
  readonly purge: RelayStreamsAdmin['purge']
  readonly consumers: RelayStreamsAdmin['consumers']
  readonly consumerInfo: RelayStreamsAdmin['consumerInfo']
  readonly deleteConsumer: RelayStreamsAdmin['deleteConsumer']
  /** Key-value watches (client-kv.ts). */
  readonly watches: ClientWatches

  constructor(private readonly host: ClientStreamsHost) {
    this.watches = new ClientWatches(host)
    const admin = relayStreamsAdmin(host)
    this.update = admin.update
    this.purge = admin.purge
    this.consumers = admin.consumers
    this.consumerInfo = admin.consumerInfo
    this.deleteConsumer = admin.deleteConsumer
  }

  async get(
    name: string,
    at: { partition?: number; offset: number },
    options?: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>,
  ): Promise<RelayStoredMessage> {
    return stored(name, await relayRead(this.host, name, at, options))
  }

  async last(
    name: string,
    by: { key: string | Uint8Array },
    options?: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>,
  ): Promise<RelayStoredMessage> {
    const b = checkOptions<{ key?: unknown }>(by, 'options')
    if (b.key === undefined) throw new InvalidArgumentError('options.key is required')
    return stored(name, await relayRead(this.host, name, { key: b.key as string }, options))
  }

  async create(name: string, config: StreamConfig, options?: StreamCallOptions): Promise<StreamInfo> {
    checkStreamName(name, 'name')
    const c = checkStreamConfig(config)
    const { timeoutMs, signal } = checkCallOptions(options)
    const auth = checkAuthOptions(options)
    const f = await this.host.call(
      Op.StreamCreate,
      (w) => encodeStreamCreate(w, { name, ...c, timeoutMs, auth }),
      signal,
    )
    this.host.expect(f, Op.StreamInfoReply)
    return decodeStreamInfo(f.body)
  }

  async info(name: string, options?: StreamCallOptions): Promise<StreamInfo> {
    checkStreamName(name, 'name')
    const { timeoutMs, signal } = checkCallOptions(options)
    const f = await this.host.call(Op.StreamInfo, (w) => encodeStreamName(w, { name, timeoutMs }), signal)
    this.host.expect(f, Op.StreamInfoReply)
    return decodeStreamInfo(f.body)
  }

  async delete(name: string, options?: StreamCallOptions): Promise<void> {
    checkStreamName(name, 'name')
    const { timeoutMs, signal } = checkCallOptions(options)
    const auth = checkAuthOptions(options)
    const f = await this.host.call(
      Op.StreamDelete,
      (w) => encodeStreamName(w, { name, timeoutMs, auth }),
      signal,
    )
    this.host.expect(f, Op.Ok)
    f.body.end('OK')
  }

  async list(): Promise<StreamSummary[]> {
    const f = await this.host.call(Op.StreamList, (w) => void w.u8(LIST_DETAILS))
    this.host.expect(f, Op.StreamListReply)
    return decodeStreamList(f.body)
  }

  /** Opens a consumer of `stream` (see `RelayConsumer`); errors surface through `ready` and iteration. */
  consume(stream: string, options?: ConsumeOptions): RelayConsumer {
    checkStreamName(stream, 'stream')
    const o = checkOptions<ConsumeOptions>(options, 'options')
    const from = checkFrom(o.from)
    if (
      o.partition !== undefined &&
      (!Number.isInteger(o.partition) || o.partition < 0 || o.partition > 0xffffffff)
    ) {
      throw invalid('options.partition', o.partition, 'a non-negative integer')
    }
    if (
      o.durable !== undefined &&
      (typeof o.durable !== 'string' || o.durable === '' || o.durable.length > 1024)
    ) {
      throw invalid('options.durable', o.durable, 'a non-empty name of at most 1024 characters')
    }
    const ackWait = checkTimeout(o.ackWait, 'options.ackWait')
    checkSignal(o.signal)
    const closed = this.host.closedError()
    if (closed) throw closed
    let id = this.nextConsumerId
    while (id === 0 || this.open.has(id)) id = (id + 1) >>> 0
    this.nextConsumerId = (id + 1) >>> 0
    const maxBytes = checkPositiveInt(o.maxBytesInFlight, 'options.maxBytesInFlight')
    // The window is this end's byte budget: what the relay may send before credit returns.
    const maxFrame = this.host.maxMessageSize() + FRAME_OVERHEAD
    const window =
      maxBytes === undefined
        ? clientConsumerWindow(maxFrame)
        : Math.min(0xffffffff, Math.max(maxFrame, maxBytes))
    const acks = checkAckOptions(o)
    const c = new ClientConsumer(id, stream, window, o.durable !== undefined && !acks.ackNone, o.signal, {
      send: (opcode, cid, body) => this.host.send(opcode, cid, body),
      settle: (kind, cid, m, delayMs) => this.settle(kind, cid, m.partition, m.offset, delayMs),
      fetch: async (cid, max, expires) => {
        const f = await this.host.call(Op.ConsumeFetch, (w) =>
          encodeConsumeFetch(w, { consumerId: cid, max, expires }),
        )
        this.host.expect(f, Op.Ok)
        const n = f.body.u32('count')
        f.body.end('OK')
        return n
      },
      finished: (cid) => {
        if (this.open.get(cid) === c) this.open.delete(cid)
      },
    })
    this.open.set(id, c)
    const body = {
      consumerId: id,
      stream,
      from,
      partition: o.partition,
      durable: o.durable,
      ackWait: ackWait === undefined ? undefined : Math.min(0xffffffff, Math.max(1, Math.round(ackWait))),
      capability:
        o.capability === undefined ? undefined : splitCapability(o.capability, 'options.capability').text,
      options: {
        ackNone: acks.ackNone,
        deferred: true,
        maxAckPending: o.maxAckPending,
        maxDeliver: acks.maxDeliver,
        backoff: acks.backoff?.map((d) => Math.round(d)),
        filter: acks.filter,
      },
      window,
    }
    this.host
      .call(Op.Consume, (w) => encodeConsume(w, body))
      .then(
        (f) => {
          try {
            this.host.expect(f, Op.Ok)
            c.confirmed()
          } catch (err) {
            c.confirmed(err as Error)
          }
        },
        (err) => c.confirmed(err),
      )
    if (o.signal?.aborted) c.close()
    return c
  }

  private async settle(
    kind: 'ack' | 'nak' | 'term' | 'working',
    consumerId: number,
    partition: number,
    offset: number,
    delayMs = 0,
  ): Promise<void> {
    const body = { consumerId, partition, offset, delayMs: Math.min(0xffffffff, Math.round(delayMs)) }
    const f =
      kind === 'ack'
        ? await this.host.call(Op.ConsumeAck, (w) => encodeConsumeAck(w, body))
        : await this.host.call(SETTLE_OPS[kind], (w) => encodeConsumeSettle(w, body, kind === 'nak'))
    this.host.expect(f, Op.Ok)
  }

  /** Handles a consumer frame from the relay; false when `f` is not one. */
  onFrame(f: Frame): boolean {
    if (f.opcode === Op.ConsumeMessage) {
      const cost = 5 + f.body.remaining
      const m = decodeConsumeMessage(f.body, this.host.maxMessageSize())
      this.open.get(f.id)?.deliver(m, cost)
      return true
    }
    if (f.opcode === Op.ConsumeClose) {
      const c = decodeConsumeClose(f.body)
      this.open.get(f.id)?.onClose(c.kind, c.name, c.message)
      return true
    }
    return this.watches.onFrame(f)
  }

  /** Ends every consumer with `err` (the connection is gone). */
  failAll(err: Error): void {
    for (const c of [...this.open.values()]) c.fail(err)
    this.open.clear()
    this.watches.failAll(err)
  }
}

const storedText = new TextDecoder()

function stored(stream: string, m: ReadMessage): RelayStoredMessage {
  return {
    ...m,
    stream,
    string: () => storedText.decode(m.data),
    json: <T>() => JSON.parse(storedText.decode(m.data)) as T,
  }
}
