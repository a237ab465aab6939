/**
 * Key-value buckets and single-message reads on one relay connection (protocol-kv.ts):
 * KV_CALL runs one bucket operation of the node (`node.kv`, opened per call: a bucket is only
 * its stream's name), KV_WATCH bridges `kv.watch` as KV_CHANGE frames, STREAM_READ is
 * `streams.get` / `streams.last`. A watch sends one change at a time and waits while the
 * connection holds more than `WATCH_PAUSE_BYTES` unsent (the client reads slowly): it holds
 * at most one change. Calls count against the connection's in-flight bounds (`track`).
 */
import { errorMessage, errorName, InvalidArgumentError, OverloadedError } from '../../src/errors.js'
import type { KvBucket, KvEntry, KvWatch, PlexusNode, StreamMessage } from '../../src/types.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { type Frame, Op } from '../wire/protocol.js'
import {
  decodeKvCall,
  decodeKvWatch,
  decodeStreamRead,
  encodeReadReply,
  KvOp,
  type KvWatchBody,
  writeKvEntry,
} from '../wire/protocol-kv.js'
import type { RelayAuth } from '../wire/protocol-streams.js'
import type { RelayStreamsHost } from './server-streams.js'

/** Unsent bytes on the connection above which a watch waits before its next change. */
export const WATCH_PAUSE_BYTES = 1 << 20
/** Watches one connection may hold open. */
export const MAX_WATCHES = 64

const timeoutOf = (ms: number) => (ms === 0 ? undefined : ms)

/** The KV and read frames of one relay connection. */
export class RelayKv {
  private readonly watches = new Map<number, KvWatch>()
  private readonly waiting: Array<() => void> = []
  private closed = false

  constructor(
    private readonly host: RelayStreamsHost,
    private readonly maxFrame: () => number,
  ) {}

  /** Watches open. */
  get size(): number {
    return this.watches.size
  }

  /** Handles a KV or read frame; false when `f` is not one. */
  onFrame(f: Frame): boolean {
    switch (f.opcode) {
      case Op.KvCall:
        this.onCall(f)
        return true
      case Op.KvWatch:
        this.onWatch(f.id, decodeKvWatch(f.body))
        return true
      case Op.KvWatchClose:
        f.body.u8('kind')
        this.watches.get(f.id)?.stop()
        this.watches.delete(f.id)
        return true
      case Op.StreamRead:
        this.onRead(f)
        return true
      default:
        return false
    }
  }

  /** The connection drained: watches waiting for room go on. */
  pump(): void {
    if (this.host.conn.outbound > WATCH_PAUSE_BYTES) return
    for (const go of this.waiting.splice(0)) go()
  }

  /** Stops every watch without telling the client (it is gone). */
  closeAll(): void {
    this.closed = true
    for (const w of this.watches.values()) w.stop()
    this.watches.clear()
    this.pump()
  }

  private bucket(
    name: string,
    cluster: string,
    replicas: number,
    timeoutMs: number,
    auth: RelayAuth | undefined,
  ) {
    return openForRelay(this.host.node, name, cluster, replicas, timeoutOf(timeoutMs), auth)
  }

  private onCall(f: Frame): void {
    const m = decodeKvCall(f.body)
    this.host.track(
      f.id,
      m.value.length,
      async (): Promise<[number, ((w: BinaryWriter) => void)?]> => {
        const kv = await this.bucket(m.bucket, m.cluster, m.replicas, m.timeoutMs, m.auth)
        const revision = (n: number) => this.reply((w) => void w.u64(n))
        switch (m.op) {
          case KvOp.Open:
            return this.reply(() => {})
          case KvOp.Get: {
            const e = await kv.get(m.key)
            return this.reply((w) => {
              if (e === null) w.u8(0)
              else writeKvEntry(w.u8(1), e)
            })
          }
          case KvOp.Put:
            return revision(await kv.put(m.key, m.value))
          case KvOp.Create:
            return revision(await kv.create(m.key, m.value))
          case KvOp.Update:
            return revision(await kv.update(m.key, m.value, m.revision))
          case KvOp.Delete:
            return revision(await kv.delete(m.key))
          case KvOp.Keys: {
            const keys = await kv.keys()
            return this.reply((w) => {
              w.u32(keys.length)
              for (const k of keys) w.str(k)
            })
          }
          case KvOp.History: {
            const h = await kv.history(m.key)
            return this.reply((w) => {
              w.u32(h.length)
              for (const e of h) writeKvEntry(w, e)
            })
          }
        }
      },
      (r) => r,
    )
  }

  private onRead(f: Frame): void {
    const m = decodeStreamRead(f.body)
    this.host.track(
      f.id,
      0,
      async (signal) => {
        const o = { timeout: timeoutOf(m.timeoutMs), signal, capability: m.auth?.capability }
        const s = this.host.node.streams
        const msg: StreamMessage =
          m.kind === 'offset'
            ? await s.get(m.stream, { partition: m.partition, offset: m.offset }, o)
            : await s.last(m.stream, { key: m.key }, o)
        const out = {
          partition: msg.partition,
          offset: msg.offset,
          timestamp: msg.timestamp,
          topic: msg.topic,
          key: msg.key,
          headers: msg.headers,
          data: msg.data,
        }
        return this.reply((w) => encodeReadReply(w, out), Op.StreamReadReply)
      },
      (r) => r,
    )
  }

  private onWatch(callId: number, m: KvWatchBody): void {
    const id = m.watchId
    if (this.watches.has(id)) {
      this.host.sendError(callId, new InvalidArgumentError(`watch id ${id} is already in use`))
      return
    }
    if (this.watches.size >= MAX_WATCHES) {
      this.host.sendError(callId, new OverloadedError(`${MAX_WATCHES} watches open on this relay connection`))
      return
    }
    const placeholder: KvWatch = { stop: () => {}, [Symbol.asyncIterator]: () => ({}) as never }
    this.watches.set(id, placeholder)
    void (async () => {
      let w: KvWatch
      try {
        const kv = await this.bucket(m.bucket, m.cluster, 0, 0, m.auth)
        w = kv.watch(m.pattern || '>')
      } catch (err) {
        this.watches.delete(id)
        this.host.sendError(callId, err)
        return
      }
      if (this.watches.get(id) !== placeholder || this.closed) return w.stop()
      this.watches.set(id, w)
      this.host.conn.send(Op.Ok, callId)
      try {
        for await (const e of w) {
          if (this.watches.get(id) !== w) break
          this.send(id, e)
          if (this.host.conn.outbound > WATCH_PAUSE_BYTES)
            await new Promise<void>((resolve) => this.waiting.push(resolve))
        }
        if (this.watches.get(id) === w) this.host.conn.send(Op.KvWatchClose, id, (b) => void b.u8(0))
      } catch (err) {
        if (this.watches.get(id) === w)
          this.host.conn.send(
            Op.KvWatchClose,
            id,
            (b) => void b.u8(1).str(errorName(err)).str(errorMessage(err)),
          )
      } finally {
        if (this.watches.get(id) === w) this.watches.delete(id)
        w.stop()
      }
    })()
  }

  private send(id: number, e: KvEntry): void {
    if (e.value.length + 512 > this.maxFrame()) return // never larger than the node's messages
    this.host.conn.send(Op.KvChange, id, (w) => writeKvEntry(w, e))
  }

  /** Encodes a reply up front: one over the client's frame limit becomes an ERROR. */
  private reply(
    encode: (w: BinaryWriter) => void,
    opcode: number = Op.KvReply,
  ): [number, (w: BinaryWriter) => void] {
    const w = new BinaryWriter(256)
    encode(w)
    const bytes = w.finish()
    if (bytes.length + 5 > this.maxFrame())
      throw new OverloadedError(`the answer is ${bytes.length} bytes, over the relay's frame limit`)
    return [opcode, (out) => void out.raw(bytes)]
  }
}

/** Opens a bucket for a relay call; cluster '' means the cluster of the existing bucket. */
async function openForRelay(
  node: PlexusNode,
  bucket: string,
  cluster: string,
  replicas: number,
  timeout: number | undefined,
  auth: RelayAuth | undefined,
): Promise<KvBucket> {
  let c = cluster
  if (c === '') {
    if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]{1,61}$/.test(bucket))
      throw new InvalidArgumentError(
        `bucket must be 1-61 characters of [A-Za-z0-9_-], got ${JSON.stringify(bucket)}`,
      )
    c = (await node.streams.info(`KV_${bucket}`, { timeout })).cluster
  }
  return node.kv(bucket, {
    cluster: c,
    ...(replicas > 0 ? { replicas } : {}),
    ...(timeout !== undefined ? { timeout } : {}),
    ...(auth?.capability !== undefined ? { capability: auth.capability } : {}),
    ...(auth?.clusterKey !== undefined ? { clusterKey: auth.clusterKey } : {}),
  })
}
