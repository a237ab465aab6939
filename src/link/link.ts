/**
 * One peer's link: a long-lived outbound libp2p stream that carries every frame this node
 * sends to that peer, written in batches. Frames are encoded straight into ~64 KiB blocks;
 * full blocks and, at the end of each event-loop turn, the partial one are handed to the
 * stream, so frames queued in one turn leave together. When the stream pushes back
 * (`send()` false) blocks wait, bounded by `maxQueuedBytes`, until `drain`. Frames from the
 * peer arrive on its own outbound stream (our inbound) and are read by `readFrames` (reader.ts).
 *
 * Ordering: frames are sent in the order `write` was called. Durability: none; a frame
 * still queued when the stream closes is lost, and `isFlushed(ticket)` tells callers
 * whether theirs had been handed to the stream.
 */
import type { Stream } from '@libp2p/interface'
import { LatencyWindow } from '../request/balancer.js'
import type { ReleasedCheck } from '../transport/noise/index.js'
import { BinaryWriter } from '../util/binary.js'

export { abortCounter, type FrameHandler, FrameLengthError, type ReadOptions, readFrames } from './reader.js'

/** Frames are gathered into blocks of exactly this size: one yamux data frame that fills one
 * noise message (65,535 − 16 tag − 12 yamux header = 65,507 bytes). A full block leaves as
 * it is; a frame that crosses the end of a block continues in the next one (the reader
 * joins it), so large frames never make yamux or noise split a write into a full and a
 * tiny piece. */
export const LINK_BLOCK = 65_535 - 16 - 12

/**
 * Pub/sub publishers and broadcasters wait while a link holds this much (below its own bound,
 * `maxQueuedBytes`, 8 MiB by default): 8 blocks keep the link busy. Queueing more only kept
 * 64 KiB blocks alive long enough to reach V8's old generation, where their external memory
 * set off major garbage collections, and outgrew the shared pool of block buffers (a
 * publisher to 5 subscribers: 1 MiB → 512 KiB took its CPU per message from 14.4 to 11.8 µs,
 * 256 KiB was no better; 1→1 unchanged; broadcast to 5 members, which waited at the 8 MiB
 * bound: 63.8–69.4k → 70.0–73.3k deliveries per member, 3 alternating pairs).
 */
export const SENDER_WAIT_BYTES = 512 * 1024

/** Buffer size of a block writer: one block plus room for the frame that overflows it. */
const WRITER_BYTES = LINK_BLOCK + 8 * 1024

/**
 * Writer buffers kept for reuse (shared by every link of the process) once their block was
 * sent and released: 64 covers a publisher's links each holding up to `SENDER_WAIT_BYTES`,
 * at most 4.6 MiB. Buffers that cycle stay in the old generation instead of being 64 KiB
 * of new external memory per block (V8 runs a young collection every ~32 MiB of it, and
 * promoted blocks set off major ones: a publisher to 5 subscribers spent a large part of
 * its CPU in collector threads).
 */
const SPARE_BUFFERS = 64
const spare: Uint8Array[] = []
/** Sent block buffers remembered until released; older ones are left to the collector. */
const MAX_UNRELEASED = 32

/** A plain Uint8Array over memory that is not zero-filled (the caller overwrites it all). */
function uninitialized(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n)
  return new Uint8Array(b.buffer, b.byteOffset, n)
}

/** The sending half of a peer link. */
export class Link {
  /** The buffer the block writer was given (it is replaced when a frame outgrows it). */
  private wBuf = uninitialized(WRITER_BYTES)
  /** The block frames are being written into. */
  private w = new BinaryWriter(0, this.wBuf)
  /** Full blocks waiting to be sent, in order. */
  private sealed: Uint8Array[] = []
  /** For each block in `sealed`: its writer buffer when that can be reused after sending. */
  private sealedBuffers: Array<Uint8Array | undefined> = []
  /** Writer buffers whose block was sent but may still be held below (oldest first). */
  private unreleased: Uint8Array[] = []
  private sealedBytes = 0
  private scheduled = false
  private waitingDrain = false
  /** Callers of `writable`, each with the queue size it waits to fall below. */
  private writableWaiters: Array<{ below: number; fn: () => void }> = []
  private closeListeners: Array<() => void> = []
  /** Bytes ever queued on this link (a frame's end position is its ticket). */
  private queuedTotal = 0
  /** Bytes ever handed to the stream. */
  private flushedTotal = 0
  closed = false
  /** Why the link closed (for the log; set once it has). */
  closeReason: string | undefined
  /** Local time the link opened (ms). */
  readonly openedAt: number
  /** Smoothed round-trip time (ms) from heartbeats and replies; null before a sample. */
  latencyMs: number | null = null
  /** Recent heartbeat round trips, which the request balancer reads (ageing, neutral start). */
  readonly recentRtt: LatencyWindow
  /** Local time of the last frame received from this peer. */
  lastSeen: number
  /** Bytes received from this peer on its stream while this link was up (metrics). */
  bytesReceived = 0
  /**
   * Set by every `write` (not `writeControl`): the link carried data since the overlay last
   * looked (it clears the flag; idle on-demand links close, src/overlay/).
   */
  used = false

  constructor(
    readonly peer: string,
    private readonly stream: Stream,
    private readonly maxQueuedBytes: number,
    now: number,
    /** Whether bytes handed to the stream are released; without it buffers are never reused. */
    private readonly released?: ReleasedCheck,
  ) {
    this.lastSeen = now
    this.openedAt = now
    this.recentRtt = new LatencyWindow(now)
    stream.addEventListener('drain', () => {
      this.waitingDrain = false
      this.flush()
    })
    stream.addEventListener('close', (evt) => {
      const e = evt as { error?: Error; local?: boolean }
      this.markClosed(e.error?.message ?? (e.local ? 'closed' : 'closed by the peer'))
    })
  }

  /** Bytes handed to the stream since the link opened. */
  get sentBytes(): number {
    return this.flushedTotal
  }

  /** Bytes queued and not yet handed to the stream. */
  get queuedBytes(): number {
    return this.sealedBytes + this.w.length
  }

  /**
   * True while publishers and broadcasters should wait: `SENDER_WAIT_BYTES` or more queued
   * (they `await writable(SENDER_WAIT_BYTES)`).
   */
  get crowded(): boolean {
    return this.queuedBytes >= SENDER_WAIT_BYTES
  }

  /** True when the queue is over its bound; callers that can wait should `await writable()`. */
  get full(): boolean {
    return this.queuedBytes >= this.maxQueuedBytes
  }

  /**
   * Queues one frame (`encode` appends it) and returns its ticket for `isFlushed`.
   * Throws when the link is closed.
   */
  write(encode: (w: BinaryWriter) => void): number {
    if (this.closed) throw new Error(`link to ${this.peer} is closed`)
    this.used = true
    const before = this.w.length
    encode(this.w)
    this.queuedTotal += this.w.length - before
    if (this.w.length >= LINK_BLOCK) {
      this.seal()
      // A full block leaves now (while its bytes are still in the CPU cache, and so the peer
      // starts on it while we fill the next); the partial rest waits for the end of the turn.
      if (!this.waitingDrain) this.guarded(this.sendSealed)
    }
    if (!this.scheduled && !this.waitingDrain) {
      this.scheduled = true
      setImmediate(this.flushCb)
    }
    return this.queuedTotal
  }

  /**
   * Moves full blocks out of the writer and starts a new writer with what lies past the
   * last one.
   */
  private seal(): void {
    const data = this.w.finish()
    // The writer's own buffer holding exactly one block can be reused once that block is
    // sent and released (the bytes past it are copied to the next writer below).
    const reusable =
      this.released !== undefined &&
      data.buffer === this.wBuf.buffer &&
      this.wBuf.length === WRITER_BYTES &&
      data.length < 2 * LINK_BLOCK
    let off = 0
    // Full blocks leave as views of the writer's buffer (no copy); the writer moves on to a
    // buffer that is not zero-filled, starting with the bytes past the last block.
    while (data.length - off >= LINK_BLOCK) {
      this.sealed.push(data.subarray(off, off + LINK_BLOCK))
      this.sealedBuffers.push(reusable ? this.wBuf : undefined)
      this.sealedBytes += LINK_BLOCK
      off += LINK_BLOCK
    }
    const rest = data.subarray(off)
    const need = rest.length + 1024
    if (spare.length === 0) this.reclaim()
    this.wBuf = need <= WRITER_BYTES ? (spare.pop() ?? uninitialized(WRITER_BYTES)) : uninitialized(need)
    this.w = new BinaryWriter(0, this.wBuf)
    if (rest.length > 0) this.w.raw(rest)
  }

  /**
   * Once the layers below hold nothing handed to them, every sent block's buffer is free:
   * up to `SPARE_BUFFERS` are kept, the rest left to the collector.
   */
  private reclaim(): void {
    if (this.unreleased.length === 0 || !this.released!()) return
    for (const b of this.unreleased) if (spare.length < SPARE_BUFFERS) spare.push(b)
    this.unreleased = []
  }

  /**
   * `write` for overlay upkeep (heartbeats, announcements, interest): the same queue and
   * order, but it does not mark the link `used`, so it does not keep an on-demand link open.
   */
  writeControl(encode: (w: BinaryWriter) => void): number {
    const used = this.used
    const ticket = this.write(encode)
    this.used = used
    return ticket
  }

  /** True once the frame with this ticket has been handed to the stream. */
  isFlushed(ticket: number): boolean {
    return ticket <= this.flushedTotal
  }

  /**
   * Resolves when the queue is below its bound, or below `below` bytes when that is lower
   * (or rejects when the link closes).
   */
  writable(below = this.maxQueuedBytes): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`link to ${this.peer} is closed`))
    const limit = Math.min(below, this.maxQueuedBytes)
    if (this.queuedBytes < limit) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.writableWaiters.push({
        below: limit,
        fn: () => (this.closed ? reject(new Error(`link to ${this.peer} is closed`)) : resolve()),
      })
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

  /**
   * Hands everything queued to the stream now instead of at the end of the turn, for a
   * small frame the peer is waiting on (tunnel credit): a receiver busy with a long run of
   * reads would otherwise hold it back until the run ends, stalling the sender.
   */
  flushNow(): void {
    if (!this.waitingDrain) this.flush()
  }

  /** Hands full blocks to the stream until it pushes back. */
  private readonly sendSealed = (): void => {
    while (!this.waitingDrain && this.sealed.length > 0) {
      const block = this.sealed.shift()!
      const buffer = this.sealedBuffers.shift()
      this.sealedBytes -= block.length
      this.flushedTotal += block.length
      if (!this.stream.send(block)) this.waitingDrain = true
      if (buffer !== undefined) {
        if (this.unreleased.length >= MAX_UNRELEASED) this.unreleased.shift()
        this.unreleased.push(buffer)
      }
    }
    this.reclaim()
  }

  /** Hands full blocks, then the partial one, to the stream until it pushes back. */
  private readonly sendAll = (): void => {
    this.sendSealed()
    if (!this.waitingDrain && this.w.length > 0) {
      // The partial block is copied at its exact size so its buffer can be reused.
      const data = this.w.finish().slice()
      this.w.reset()
      this.flushedTotal += data.length
      if (!this.stream.send(data)) this.waitingDrain = true
    }
  }

  /** Runs a send step; a stream that throws aborts the link. False when it threw. */
  private guarded(step: () => void): boolean {
    if (this.closed) return false
    try {
      step()
      return true
    } catch {
      this.abort(new Error('send failed'))
      return false
    }
  }

  /** Hands queued blocks to the stream until it pushes back. */
  private flush(): void {
    if (!this.guarded(this.sendAll)) return
    if (this.writableWaiters.length > 0) {
      const queued = this.queuedBytes
      const waiters = this.writableWaiters
      let ready = false
      for (const w of waiters) if (queued < w.below) ready = true
      if (!ready) return
      this.writableWaiters = waiters.filter((w) => queued >= w.below)
      for (const w of waiters) if (queued < w.below) w.fn()
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
    this.markClosed('closed')
  }

  /** Resets the stream at once. */
  abort(err: Error): void {
    if (!this.closed) this.closeReason = err.message
    if (!this.closed) this.stream.abort(err)
    this.markClosed(err.message)
  }

  private markClosed(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.closeReason ??= reason
    const waiters = this.writableWaiters
    this.writableWaiters = []
    for (const w of waiters) w.fn()
    const listeners = this.closeListeners
    this.closeListeners = []
    for (const fn of listeners) fn()
  }
}
