/**
 * One end of a tunnel: an ordered, reliable, bidirectional message channel to one peer,
 * carried on the two links between the ends. Flow control is by byte credit: each end
 * grants the other a window; `send` waits while the window is used up and the reader
 * returns credit as the application consumes messages, so a slow reader slows the writer
 * and each end buffers at most its window. Messages larger than a chunk are cut into
 * fragments and joined again before delivery.
 *
 * Closing: `close()` sends everything already queued, then a close; the other end reads
 * the messages sent before it, then its iteration ends; sends after a close throw
 * `TunnelClosedError`. When the peer dies (its link closes), both iteration and `send`
 * throw `TunnelClosedError`.
 */
import { InvalidArgumentError, TunnelClosedError } from '../errors.js'
import type { Link } from '../link/link.js'
import { BoundedQueue } from '../pubsub/queue.js'
import { toBytes } from '../util/validate.js'
import { CloseReason, TUNNEL_CHUNK, writeClose, writeCredit, writeData } from './frames.js'

/** The public face of a tunnel. */
export interface Tunnel extends AsyncIterable<Uint8Array> {
  /** Peer id of the other end. */
  readonly peer: string
  /** Cluster the tunnel was opened to. */
  readonly cluster: string
  /** Sends one message; waits while the receiver's window is full. */
  send(data: Uint8Array | string, options?: { signal?: AbortSignal }): Promise<void>
  /** Closes both directions after queued messages are sent. Idempotent. */
  close(): Promise<void>
  /** True once closed by either side or by the peer's death. */
  readonly closed: boolean
}

/** How a tunnel end talks to its peer. */
export interface TunnelWire {
  link(): Link | undefined
  /** Called once when the tunnel is finished (to forget it). */
  finished(): void
}

/** One end of a tunnel (internal implementation). */
export class TunnelEnd implements Tunnel {
  private credit: number
  private readonly inbox: BoundedQueue<Uint8Array>
  private fragments: Uint8Array[] = []
  private fragmentBytes = 0
  private unacked = 0
  private creditWaiters: Array<() => void> = []
  private sending: Promise<void> = Promise.resolve()
  private state: 'open' | 'closed' = 'open'
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
    this.inbox = new BoundedQueue<Uint8Array>(
      Number.MAX_SAFE_INTEGER,
      window + maxMessageSize,
      (m) => m.length,
      (m) => this.consumed(m.length),
    )
  }

  get closed(): boolean {
    return this.state === 'closed'
  }

  /** Sends one message, cut into chunks, each waiting for credit. */
  send(data: Uint8Array | string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const bytes = toBytes(data, 'data')
    if (bytes.length > this.maxMessageSize) {
      return Promise.reject(
        new InvalidArgumentError(`data is ${bytes.length} bytes, over maxMessageSize (${this.maxMessageSize} bytes)`),
      )
    }
    if (this.state === 'closed') return Promise.reject(this.closedError())
    // Serialize sends so fragments of two messages never interleave.
    const p = this.sending.then(() => this.sendNow(bytes, options.signal))
    this.sending = p.catch(() => {})
    return p
  }

  private async sendNow(bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    let off = 0
    do {
      const len = Math.min(TUNNEL_CHUNK, bytes.length - off)
      while (this.credit < len && this.state === 'open') await this.waitCredit(signal)
      if (this.state === 'closed') throw this.closedError()
      const link = this.wire.link()
      if (!link) {
        this.terminate(new TunnelClosedError(`tunnel to ${this.peer}: link lost`))
        throw this.closedError()
      }
      if (link.full) await link.writable()
      const chunk = bytes.subarray(off, off + len)
      off += len
      const more = off < bytes.length
      this.credit -= len
      link.write((w) => writeData(w, this.tid, this.dir, more, chunk))
    } while (off < bytes.length)
  }

  private waitCredit(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const done = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = () => {
        this.creditWaiters = this.creditWaiters.filter((f) => f !== done)
        reject(signal!.reason)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.creditWaiters.push(done)
    })
  }

  private wakeSenders(): void {
    const ws = this.creditWaiters
    this.creditWaiters = []
    for (const w of ws) w()
  }

  /** The peer returned credit. */
  onCredit(bytes: number): void {
    this.credit += bytes
    this.wakeSenders()
  }

  /** A chunk arrived. Returns false on a flow-control violation (caller closes). */
  onData(more: boolean, chunk: Uint8Array): boolean {
    if (this.state === 'closed') return true
    this.fragmentBytes += chunk.length
    if (this.fragmentBytes > this.maxMessageSize) return false
    if (!more && this.fragments.length === 0) {
      this.fragmentBytes = 0
      return this.inbox.push(chunk)
    }
    this.fragments.push(chunk)
    if (more) return true
    const msg = new Uint8Array(this.fragmentBytes)
    let o = 0
    for (const f of this.fragments) {
      msg.set(f, o)
      o += f.length
    }
    this.fragments = []
    this.fragmentBytes = 0
    return this.inbox.push(msg)
  }

  /** The application consumed `n` bytes: return credit in batches of a quarter window. */
  private consumed(n: number): void {
    this.unacked += n
    if (this.unacked >= this.window / 4 && this.state === 'open') {
      const bytes = this.unacked
      this.unacked = 0
      this.wire.link()?.write((w) => writeCredit(w, this.tid, this.dir, bytes))
    }
  }

  /** The peer closed: deliver what arrived, then end. */
  onRemoteClose(reason: number, message: string): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.closeError = new TunnelClosedError(
      reason === CloseReason.Normal ? `tunnel closed by ${this.peer}` : `tunnel closed by ${this.peer}: ${message}`,
    )
    this.inbox.end()
    this.wakeSenders()
    this.wire.finished()
  }

  /** Ends the tunnel with an error on both reading and sending (peer death). */
  terminate(err: Error): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.closeError = err
    this.inbox.fail(err)
    this.wakeSenders()
    this.wire.finished()
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return
    await this.sending.catch(() => {})
    if (this.closed) return
    this.state = 'closed'
    this.closeError = new TunnelClosedError('tunnel closed')
    this.wire.link()?.write((w) => writeClose(w, this.tid, this.dir, CloseReason.Normal, ''))
    this.inbox.end()
    this.wakeSenders()
    this.wire.finished()
  }

  /** Closes with a reason sent to the peer (errors, refusals). */
  abort(reason: number, message: string): void {
    if (this.state === 'closed') return
    this.wire.link()?.write((w) => writeClose(w, this.tid, this.dir, reason, message))
    this.terminate(new TunnelClosedError(message))
  }

  private closedError(): Error {
    return this.closeError ?? new TunnelClosedError('tunnel closed')
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterating) throw new InvalidArgumentError('this tunnel is already being iterated')
    this.iterating = true
    return {
      next: () => this.inbox.next(),
      return: async () => ({ value: undefined, done: true }),
    }
  }
}
