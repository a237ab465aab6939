/**
 * Key-value buckets and single-message reads in the thin client (protocol-kv.ts):
 * `client.kv(bucket, options)` gives a `KvBucket` with the library's names, its calls run by
 * the node (`node.kv`), errors rebuilt as the same classes (`KeyExistsError`,
 * `WrongRevisionError`); `client.streams.get/last` read one message. A watch holds at most
 * `WATCH_QUEUE` changes the application has not taken; beyond that it ends with
 * `OverloadedError` (the relay itself sends one change at a time, pausing while the
 * connection is backed up).
 */
import { errorFromWire, InvalidArgumentError, OverloadedError } from '../../src/errors.js'
import { checkBucket, checkKvKey, checkKvPattern } from '../../src/kv/keys.js'
import { BoundedQueue } from '../../src/pubsub/queue.js'
import type { KvBucket, KvEntry, KvWatch, StreamCallOptions } from '../../src/types.js'
import type { BinaryReader } from '../../src/util/binary.js'
import { checkClusterName, checkOptions, checkPositiveInt, checkTimeout } from '../../src/util/validate.js'
import { type Frame, Op } from '../wire/protocol.js'
import {
  decodeReadReply,
  encodeKvCall,
  encodeKvWatch,
  encodeStreamRead,
  type KvCallBody,
  KvOp,
  type KvOpCode,
  type ReadMessage,
  readKvEntry,
  type WireKvEntry,
} from '../wire/protocol-kv.js'
import type { RelayAuth } from '../wire/protocol-streams.js'
import {
  type ClientStreamsHost,
  checkAuthOptions,
  checkCallOptions,
  checkStreamName,
} from './client-streams.js'

/** Changes a watch holds that the application has not taken yet. */
export const WATCH_QUEUE = 4096

/** Options of `client.kv`: as the library's `KvOptions`, `cluster` optional for an existing bucket. */
export interface RelayKvOptions {
  cluster?: string
  replicas?: number
  timeout?: number
  clusterKey?: string | Uint8Array
  capability?: string
}

const utf8 = new TextEncoder()
const text = new TextDecoder()

function entry(e: WireKvEntry): KvEntry {
  return {
    ...e,
    string: () => text.decode(e.value),
    json: <T>() => JSON.parse(text.decode(e.value)) as T,
  }
}

/** The watches of one client, fed by KV_CHANGE / KV_WATCH_CLOSE frames. */
export class ClientWatches {
  private readonly open = new Map<number, BoundedQueue<KvEntry>>()
  private next = 1

  constructor(private readonly host: ClientStreamsHost) {}

  /** Opens a watch (answered OK first, then changes). */
  watch(bucket: string, cluster: string, pattern: string, auth: RelayAuth | undefined): KvWatch {
    const id = this.next++
    const q = new BoundedQueue<KvEntry>(WATCH_QUEUE, Number.MAX_SAFE_INTEGER, () => 0)
    this.open.set(id, q)
    const stop = () => {
      if (this.open.get(id) !== q) return
      this.open.delete(id)
      this.host.send(Op.KvWatchClose, id, (w) => void w.u8(0))
      q.end()
    }
    this.host
      .call(Op.KvWatch, (w) => encodeKvWatch(w, { watchId: id, bucket, cluster, pattern, auth }))
      .then((f) => this.host.expect(f, Op.Ok))
      .catch((err) => {
        this.open.delete(id)
        q.fail(err as Error)
      })
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => q.next(),
        return: () => {
          stop()
          return Promise.resolve({ value: undefined, done: true })
        },
      }),
      stop,
    }
  }

  /** Handles a watch frame; false when `f` is not one. */
  onFrame(f: Frame): boolean {
    if (f.opcode === Op.KvChange) {
      const q = this.open.get(f.id)
      const e = readKvEntry(f.body)
      f.body.end('KV_CHANGE')
      if (q !== undefined && !q.push(entry(e))) {
        this.open.delete(f.id)
        this.host.send(Op.KvWatchClose, f.id, (w) => void w.u8(0))
        q.fail(new OverloadedError(`the watch holds ${WATCH_QUEUE} changes not taken; it ended`))
      }
      return true
    }
    if (f.opcode === Op.KvWatchClose) {
      const q = this.open.get(f.id)
      this.open.delete(f.id)
      const kind = f.body.u8('kind')
      if (kind === 1) q?.fail(errorFromWire(f.body.str('error name'), f.body.str('message')))
      else q?.end()
      return true
    }
    return false
  }

  /** Ends every watch with `err` (the connection is gone). */
  failAll(err: Error): void {
    for (const q of this.open.values()) q.fail(err)
    this.open.clear()
  }
}

/** Opens bucket `bucket` through the relay (created when absent and `cluster` is given). */
export async function relayKv(
  host: ClientStreamsHost,
  watches: ClientWatches,
  bucket: string,
  options: RelayKvOptions = {},
): Promise<KvBucket> {
  checkBucket(bucket)
  const o = checkOptions<RelayKvOptions>(options, 'options')
  const cluster = o.cluster === undefined ? '' : checkClusterName(o.cluster, 'options.cluster')
  const replicas = checkPositiveInt(o.replicas, 'options.replicas') ?? 0
  const timeoutMs = checkTimeout(o.timeout, 'options.timeout') ?? 0
  const auth = checkAuthOptions(o)
  const call = async (
    op: KvOpCode,
    key: string,
    value: Uint8Array,
    revision: number,
  ): Promise<BinaryReader> => {
    const body: KvCallBody = { op, bucket, cluster, replicas, timeoutMs, key, revision, value, auth }
    const f = await host.call(Op.KvCall, (w) => encodeKvCall(w, body))
    host.expect(f, Op.KvReply)
    return f.body
  }
  const none = new Uint8Array(0)
  const bytes = (v: unknown): Uint8Array => {
    if (v instanceof Uint8Array) return v
    if (typeof v === 'string') return utf8.encode(v)
    throw new InvalidArgumentError('value must be a Uint8Array or a string')
  }
  const revision = async (p: Promise<BinaryReader>) => {
    const r = await p
    const n = r.u64('revision')
    r.end('KV_REPLY')
    return n
  }
  await call(KvOp.Open, '', none, 0)
  return {
    bucket,
    stream: `KV_${bucket}`,
    async get(key) {
      const r = await call(KvOp.Get, checkKvKey(key), none, 0)
      const e = r.u8('found') === 1 ? entry(readKvEntry(r)) : null
      r.end('KV_REPLY')
      return e
    },
    put: async (key, value) => revision(call(KvOp.Put, checkKvKey(key), bytes(value), 0)),
    create: async (key, value) => revision(call(KvOp.Create, checkKvKey(key), bytes(value), 0)),
    async update(key, value, rev) {
      if (typeof rev !== 'number' || !Number.isSafeInteger(rev) || rev < 0)
        throw new InvalidArgumentError(`revision must be an integer >= 0, got ${rev}`)
      return revision(call(KvOp.Update, checkKvKey(key), bytes(value), rev))
    },
    delete: async (key) => revision(call(KvOp.Delete, checkKvKey(key), none, 0)),
    async keys() {
      const r = await call(KvOp.Keys, '', none, 0)
      const n = r.u32('count')
      const out: string[] = []
      for (let i = 0; i < n; i++) out.push(r.str('key'))
      r.end('KV_REPLY')
      return out
    },
    async history(key) {
      const r = await call(KvOp.History, checkKvKey(key), none, 0)
      const n = r.u32('count')
      const out: KvEntry[] = []
      for (let i = 0; i < n; i++) out.push(entry(readKvEntry(r)))
      r.end('KV_REPLY')
      return out
    },
    watch: (pattern = '>') => watches.watch(bucket, cluster, checkKvPattern(pattern), auth),
  }
}

/** `client.streams.get` / `last`: one stored message, as `ReadMessage`. */
export async function relayRead(
  host: ClientStreamsHost,
  stream: string,
  what: { partition?: number; offset?: number; key?: string | Uint8Array },
  options: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'> | undefined,
): Promise<ReadMessage> {
  checkStreamName(stream, 'name')
  const { timeoutMs, signal } = checkCallOptions(options)
  const auth = checkAuthOptions(options)
  const w = checkOptions<{ partition?: unknown; offset?: unknown; key?: unknown }>(what, 'options')
  const body =
    w.key !== undefined
      ? {
          kind: 'last' as const,
          partition: 0,
          offset: 0,
          key: typeof w.key === 'string' ? utf8.encode(w.key) : (w.key as Uint8Array),
        }
      : {
          kind: 'offset' as const,
          partition: (w.partition as number) ?? 0,
          offset: w.offset as number,
          key: new Uint8Array(0),
        }
  if (body.kind === 'last' && !(body.key instanceof Uint8Array))
    throw new InvalidArgumentError('options.key must be a string or a Uint8Array')
  if (body.kind === 'offset')
    for (const [k, v] of [
      ['partition', body.partition],
      ['offset', body.offset],
    ] as const)
      if (
        typeof v !== 'number' ||
        !Number.isSafeInteger(v) ||
        v < 0 ||
        v > 2 ** 32 * (k === 'partition' ? 1 : 2 ** 20)
      )
        throw new InvalidArgumentError(`options.${k} must be an integer >= 0, got ${String(v)}`)
  const f = await host.call(
    Op.StreamRead,
    (out) => encodeStreamRead(out, { stream, ...body, timeoutMs, auth }),
    signal,
  )
  host.expect(f, Op.StreamReadReply)
  return decodeReadReply(f.body)
}
