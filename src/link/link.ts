/**
 * One peer's link: a long-lived outbound libp2p stream that carries every frame this node
 * sends to that peer, written in batches. Frames queued in the same turn of the event loop
 * leave in one `send()`; when the stream pushes back (`send()` false) frames wait in one
 * bounded buffer until `drain`. Frames from the peer arrive on its own outbound stream
 * (our inbound) and are read by `FrameReader`.
 *
 * Ordering: frames are sent in the order `write` was called. Durability: none; a frame
 * still queued when the stream closes is lost, and `isFlushed(batch)` tells callers whether
 * theirs had been handed to the stream.
 */
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import { FRAME_HEADER_BYTES } from './frames.js'

/** Called for each complete frame; throwing `DecodeError` resets the stream. */
export type FrameHandler = (peer: string, type: number, body: BinaryReader) => void

/** The sending half of a peer link. */
export class Link {
  private w = new BinaryWriter(16 * 1024)
  private scheduled = false
  private waitingDrain = false
  private writableWaiters: Array<() => void> = []
  private closeListeners: Array<() => void> = []
  /** Number of the batch that frames written now belong to. */
  batch = 1
  /** Last batch handed to the stream. */
  flushedBatch = 0
  closed = false
  /** Smoothed round-trip time (ms) from heartbeats and replies; null before a sample. */
  latencyMs: number | null = null
  /** Local time of the last frame received from this peer. */
  lastSeen: number

  constructor(
    readonly peer: string,
    private readonly stream: Stream,
    private readonly maxQueuedBytes: number,
    now: number,
  ) {
    this.lastSeen = now
    stream.addEventListener('drain', () => {
      this.waitingDrain = false
      if (this.w.length > 0) this.flush()
    })
    stream.addEventListener('close', () => this.markClosed())
  }

  /** Bytes queued and not yet handed to the stream. */
  get queuedBytes(): number {
    return this.w.length
  }

  /** True when the queue is over its bound; callers that can wait should `await writable()`. */
  get full(): boolean {
    return this.w.length >= this.maxQueuedBytes
  }

  /**
   * Queues one frame (`encode` appends it to the writer) and returns the batch number it
   * will leave in. Throws when the link is closed.
   */
  write(encode: (w: BinaryWriter) => void): number {
    if (this.closed) throw new Error(`link to ${this.peer} is closed`)
    encode(this.w)
    if (!this.scheduled && !this.waitingDrain) {
      this.scheduled = true
      setImmediate(this.flushCb)
    }
    return this.batch
  }

  /** True once the batch has been handed to the stream. */
  isFlushed(batch: number): boolean {
    return batch <= this.flushedBatch
  }

  /** Resolves when the queue is below its bound (or rejects when the link closes). */
  writable(): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`link to ${this.peer} is closed`))
    if (!this.full) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.writableWaiters.push(() => (this.closed ? reject(new Error(`link to ${this.peer} is closed`)) : resolve()))
    })
  }

  /** Registers a callback run once when the link closes. */
  onClose(fn: () => void): void {
    if (this.closed) fn()
    else this.closeListeners.push(fn)
  }

  private readonly flushCb = () => {
    this.scheduled = false
    this.flush()
  }

  private flush(): void {
    if (this.closed || this.waitingDrain || this.w.length === 0) return
    // Copy the batch out at its exact size (the stream may keep a reference to it) and
    // keep reusing the writer's buffer: small batches then cost small allocations.
    const data = this.w.finish().slice()
    if (data.length > 4 * 1024 * 1024) this.w = new BinaryWriter(16 * 1024)
    else this.w.reset()
    this.flushedBatch = this.batch
    this.batch++
    let ok: boolean
    try {
      ok = this.stream.send(data)
    } catch {
      this.abort(new Error('send failed'))
      return
    }
    if (!ok) this.waitingDrain = true
    if (this.writableWaiters.length > 0 && !this.full) {
      const waiters = this.writableWaiters
      this.writableWaiters = []
      for (const fn of waiters) fn()
    }
  }

  /** Closes the write side gracefully after queued frames leave. */
  async close(): Promise<void> {
    if (this.closed) return
    this.flush()
    try {
      await this.stream.close({ signal: AbortSignal.timeout(1000) })
    } catch {
      this.stream.abort(new Error('close timed out'))
    }
    this.markClosed()
  }

  /** Resets the stream at once. */
  abort(err: Error): void {
    if (!this.closed) this.stream.abort(err)
    this.markClosed()
  }

  private markClosed(): void {
    if (this.closed) return
    this.closed = true
    const waiters = this.writableWaiters
    this.writableWaiters = []
    for (const fn of waiters) fn()
    const listeners = this.closeListeners
    this.closeListeners = []
    for (const fn of listeners) fn()
  }
}

/**
 * Reads frames from a peer's stream. Bounded: a length prefix above `maxFrameSize` or a
 * frame that fails to decode aborts the stream.
 */
export function readFrames(stream: Stream, peer: string, maxFrameSize: number, handle: FrameHandler): void {
  const buf = new Uint8ArrayList()
  stream.addEventListener('message', (evt) => {
    buf.append(evt.data)
    try {
      while (buf.byteLength >= FRAME_HEADER_BYTES) {
        const len = buf.getUint32(0)
        if (len < 1 || len > maxFrameSize) throw new DecodeError(`frame length ${len} out of range`)
        if (buf.byteLength < FRAME_HEADER_BYTES + len) break
        const frame = buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + len)
        buf.consume(FRAME_HEADER_BYTES + len)
        const r = new BinaryReader(frame)
        handle(peer, r.u8('frame type'), r)
      }
    } catch (err) {
      buf.consume(buf.byteLength)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  })
}
