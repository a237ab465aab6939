/**
 * One end of a tunnel: an ordered, reliable, bidirectional message channel to one peer,
 * carried on the two links between the ends. Flow control is by byte credit: each end
 * grants the other a window; `send` waits while the window is used up and the reader
 * returns credit as the application consumes messages, so a slow reader slows the writer
 * and each end buffers at most its window. Messages larger than a chunk are cut into
 * fragments and joined again before delivery.
 *
 * Closing is per direction, like TCP: `close()` sends everything already queued, then a
 * close; the other end reads the messages sent before it, then its iteration ends. Sends
 * after our own `close()` throw `TunnelClosedError`; we keep reading until the peer closes
 * too. The tunnel is finished when both sides have closed. When the peer dies (its link
 * closes) or fails the tunnel, both iteration and `send` throw `TunnelClosedError`.
 */
import { InvalidArgumentError, TunnelClosedError } from '../errors.js'
import type { Link } from '../link/link.js'
import { BoundedQueue } from '../pubsub/queue.js'
import type { BinaryWriter } from '../util/binary.js'
import { toBytes } from '../util/validate.js'
import { Waiters } from '../util/waiters.js'
import { CloseReason, TUNNEL_CHUNK, writeClose, writeCredit, writeData } from './frames.js'

const EMPTY = new Uint8Array(0)
const RESOLVED: Promise<void> = Promise.resolve()
const DONE: Promise<IteratorResult<Uint8Array>> = Promise.resolve({ value: undefined, done: true })
const byteLength = (m: Uint8Array): number => m.length

/** The public face of a tunnel. */
export interface Tunnel extends AsyncIterable<Uint8Array> {
  /** Peer id of the other end. */
  readonly peer: string
  /** Cluster the tunnel was opened to. */
  readonly cluster: string
  /** Sends one message; waits while the receiver's window is full. */
  send(data: Uint8Array | string, options?: { signal?: AbortSignal }): Promise<void>
  /** Ends our sending direction after queued messages are sent (half-close). Idempotent. */
  close(): Promise<void>
  /** Ends both directions at once; the peer sees `TunnelClosedError` with `message`. */
  abort(message?: string): void
  /** True once closed by either side or by the peer's death. */
  readonly closed: boolean
}

/** How a tunnel end talks to its peer. */
export interface TunnelWire {
  link(): Link | undefined
  /** Told the payload bytes of each chunk written (metrics). */
  sent?(bytes: number): void
  /** Called once when the tunnel is finished (to forget it). */
  finished(): void
}

/** One end of a tunnel (internal implementation). */
export class TunnelEnd implements Tunnel {
  private credit: number
  /** Received messages. A message holds credit equal to its length, except a reassembled
   * one, which holds only its last chunk's (recorded in `reassembled`). */
  private readonly inbox: BoundedQueue<Uint8Array>
  private readonly reassembled = new Map<Uint8Array, number>()
  private fragments: Uint8Array[] = []
  private fragmentBytes = 0
  private unacked = 0
  /** Credit for fragments received while whole messages were waiting to be read. */
  private deferred = 0
  private readonly senders = new Waiters()
  private sending: Promise<void> = Promise.resolve()
  /** Sends on the slow path not finished yet (the fast path only runs when none are). */
  private pendingSends = 0
  /** The chunk `encodeData` writes next (saves a closure per frame). */
  private outChunk: Uint8Array = EMPTY
  private outMore = false
  private readonly encodeData = (w: BinaryWriter): void =>
    writeData(w, this.tid, this.dir, this.outMore, this.outChunk)
  /** We closed our sending direction. */
  private localClosed = false
  /** The peer closed its sending direction. */
  private remoteClosed = false
  /** Failed (peer death, error): both directions are over. */
  private terminated = false
  private finished = false
  private closeError: Error | undefined
  private iterating = false

  constructor(
    readonly tid: number,
    readonly dir: number,
    readonly peer: string,
    readonly cluster: string,
    /** Credit the peer granted us. */
    peerWindow: number,
    /** Window we grant the peer (bound on our buffered bytes). */
    private readonly window: number,
    private readonly maxMessageSize: number,
    private readonly wire: TunnelWire,
  ) {
    this.credit = peerWindow
    // Bound: the window plus a message being reassembled plus one complete message.
    this.inbox = new BoundedQueue<Uint8Array>(
      Number.MAX_SAFE_INTEGER,
      window + 2 * maxMessageSize,
      byteLength,
      (m) => this.taken(m),
    )
  }

  get closed(): boolean {
    return this.localClosed || this.terminated
  }

  /** Sends one message, cut into chunks, each waiting for credit. */
  send(data: Uint8Array | string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const bytes = toBytes(data, 'data')
    if (bytes.length > this.maxMessageSize) {
      return Promise.reject(
        new InvalidArgumentError(
          `data is ${bytes.length} bytes, over maxMessageSize (${this.maxMessageSize} bytes)`,
        ),
      )
    }
    if (this.closed) return Promise.reject(this.closedError())
    // Fast path: nothing queued before us, one chunk, credit and link room at hand: the
    // frame is queued now, in order, exactly as `sendNow` would queue it.
    if (this.pendingSends === 0 && bytes.length <= TUNNEL_CHUNK && this.credit >= bytes.length) {
      const link = this.wire.link()
      if (link && !link.closed && !link.full) {
        this.credit -= bytes.length
        this.writeChunk(link, false, bytes)
        return RESOLVED
      }
    }
    // Serialize sends so fragments of two messages never interleave.
    this.pendingSends++
    const p = this.sending.then(() => this.sendNow(bytes, options.signal))
    const settled = p.then(
      () => void this.pendingSends--,
      () => void this.pendingSends--,
    )
    this.sending = settled
    return p
  }

  private writeChunk(link: Link, more: boolean, chunk: Uint8Array): void {
    this.outMore = more
    this.outChunk = chunk
    try {
      link.write(this.encodeData)
      this.wire.sent?.(chunk.length)
    } finally {
      this.outChunk = EMPTY
    }
  }

  private async sendNow(bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    let off = 0
    do {
      const len = Math.min(TUNNEL_CHUNK, bytes.length - off)
      while (this.credit < len && !this.terminated) await this.waitCredit(signal)
      if (this.terminated) throw this.closedError()
      const link = this.wire.link()
      if (!link) {
        this.terminate(new TunnelClosedError(`tunnel to ${this.peer}: link lost`))
        throw this.closedError()
      }
      if (link.full) await link.writable()
      const chunk = len === bytes.length ? bytes : bytes.subarray(off, off + len)
      off += len
      this.credit -= len
      this.writeChunk(link, off < bytes.length, chunk)
    } while (off < bytes.length)
  }

  private waitCredit(signal?: AbortSignal): Promise<void> {
    return this.senders.wait(signal)
  }

  private wakeSenders(): void {
    this.senders.wakeAll()
  }

  /** The peer returned credit. */
  onCredit(bytes: number): void {
    this.credit += bytes
    this.wakeSenders()
  }

  /**
   * A chunk arrived. Returns false on a flow-control violation (caller closes).
   * Credit for a fragment of an unfinished message is returned at once while the reader
   * has nothing else waiting (else when it catches up), so messages larger than the
   * window still flow; a complete message returns the credit of its last chunk when read.
   */
  onData(more: boolean, chunk: Uint8Array): boolean {
    if (this.terminated || this.remoteClosed) return true
    this.fragmentBytes += chunk.length
    if (this.fragmentBytes > this.maxMessageSize) return false
    if (!more && this.fragments.length === 0) {
      this.fragmentBytes = 0
      return this.inbox.push(chunk)
    }
    this.fragments.push(chunk)
    if (more) {
      if (this.inbox.length === 0) this.returnCredit(chunk.length)
      else this.deferred += chunk.length
      return true
    }
    const msg = new Uint8Array(this.fragmentBytes)
    let o = 0
    for (const f of this.fragments) {
      msg.set(f, o)
      o += f.length
    }
    this.fragments = []
    this.fragmentBytes = 0
    this.reassembled.set(msg, chunk.length)
    if (this.inbox.push(msg)) return true
    this.reassembled.delete(msg)
    return false
  }

  /** The application read a message: return its credit, and any deferred credit. */
  private taken(m: Uint8Array): void {
    let n = m.length
    if (this.reassembled.size > 0) {
      const c = this.reassembled.get(m)
      if (c !== undefined) {
        this.reassembled.delete(m)
        n = c
      }
    }
    if (this.inbox.length === 0 && this.deferred > 0) {
      n += this.deferred
      this.deferred = 0
    }
    this.returnCredit(n)
  }

  /** Returns credit to the peer in batches of an eighth of the window. */
  private returnCredit(n: number): void {
    this.unacked += n
    if (this.unacked >= this.window / 8 && !this.terminated) {
      const bytes = this.unacked
      this.unacked = 0
      const link = this.wire.link()
      if (link) {
        link.write((w) => writeCredit(w, this.tid, this.dir, bytes))
        link.flushNow()
      }
    }
  }

  /**
   * The peer closed its sending direction: after a normal close our iteration ends once
   * the messages it sent are read; any other reason fails the tunnel.
   */
  onRemoteClose(reason: number, message: string): void {
    if (this.terminated || this.remoteClosed) return
    if (reason !== CloseReason.Normal) {
      this.terminate(new TunnelClosedError(`tunnel closed by ${this.peer}: ${message}`))
      return
    }
    this.remoteClosed = true
    this.inbox.end()
    if (this.localClosed) this.finish()
  }

  /** Ends the tunnel with an error on both reading and sending (peer death). */
  terminate(err: Error): void {
    if (this.terminated) return
    this.terminated = true
    this.closeError = err
    this.inbox.fail(err)
    this.reassembled.clear()
    this.wakeSenders()
    this.finish()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.localClosed = true
    await this.sending.catch(() => {})
    if (this.terminated) return
    this.wire.link()?.write((w) => writeClose(w, this.tid, this.dir, CloseReason.Normal, ''))
    if (this.remoteClosed) this.finish()
  }

  /** Ends both directions at once; the peer sees `TunnelClosedError` with `message`. */
  abort(message = 'tunnel aborted'): void {
    this.fail(CloseReason.Error, message)
  }

  /** Closes with a reason sent to the peer (errors, refusals). */
  fail(reason: number, message: string): void {
    if (this.terminated) return
    this.wire.link()?.write((w) => writeClose(w, this.tid, this.dir, reason, message))
    this.terminate(new TunnelClosedError(message))
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    this.wire.finished()
  }

  private closedError(): Error {
    return this.closeError ?? new TunnelClosedError('tunnel closed')
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterating) throw new InvalidArgumentError('this tunnel is already being iterated')
    this.iterating = true
    // The queue's own results (no wrapper promise or object per message).
    return { next: () => this.inbox.next(), return: () => DONE }
  }
}
