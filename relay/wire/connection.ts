/**
 * A framed relay connection over one byte transport (a TCP socket or a WebSocket, see
 * `transport.ts`), used by both the server and the client.
 * Outbound frames written during one event-loop turn are coalesced into a single
 * transport write (in the order they were sent). Inbound bytes are split into frames by a
 * bounded `FrameDecoder`. Memory stays bounded: reading pauses while the peer does not
 * read its own inbound data (our outbound buffer above `pauseAt`), and the connection is
 * dropped when that buffer exceeds `dropAt`. Any decoding or handler failure ends the
 * connection through `onFatal`; nothing here ever throws into the event loop.
 */
import { BinaryWriter } from '../../src/util/binary.js'
import { type Frame, FrameDecoder, writeFrame } from './protocol.js'
import { type ByteTransport, nextTurn, unrefTimer } from './transport.js'

/** Callbacks and bounds of a framed connection. */
export interface ConnectionOptions {
  /** Largest length field accepted from the peer. */
  maxFrame: number
  /** Outbound bytes (queued + unsent) above which reading from the peer pauses. */
  pauseAt: number
  /** Outbound bytes above which the peer is considered stuck and the connection dropped. */
  dropAt: number
  /** One complete inbound frame; throwing ends the connection through `onFatal`. */
  onFrame(frame: Frame): void
  /** A framing error or a throwing `onFrame`; the connection is still open (send a last frame). */
  onFatal(err: unknown): void
  /** The socket closed (once); `err` when it closed on an error. */
  onClose(err?: Error): void
  /**
   * The peer half-closed (sent FIN): it will send nothing more but may still read. Default:
   * flush and close at once. A TCP socket must be created with `allowHalfOpen: true` for the
   * owner to keep writing answers after this (a WebSocket has no half-close).
   */
  onEnd?(): void
  /**
   * The outbound buffer has room again: a flush the socket accepted at once, or 'drain'
   * (a chance to send frames held back to keep the buffer bounded).
   */
  onDrain?(): void
}

/** Batched, bounded framing over a byte transport. */
export class FramedConnection {
  private readonly out = new BinaryWriter(4096)
  private scheduled = false
  private closed = false
  private ending = false
  private paused = false
  readonly decoder: FrameDecoder
  /** Resolves once the transport closed. */
  readonly done: Promise<void>

  constructor(
    readonly transport: ByteTransport,
    private readonly opts: ConnectionOptions,
  ) {
    this.decoder = new FrameDecoder(opts.maxFrame)
    let closedNow = () => {}
    this.done = new Promise<void>((resolve) => {
      closedNow = resolve
    })
    transport.listen({
      data: (chunk) => this.onData(chunk),
      drain: () => this.onDrain(),
      close: () => {
        closedNow()
        if (this.closed) return
        this.closed = true
        opts.onClose()
      },
      end: () => {
        if (opts.onEnd) opts.onEnd()
        else this.end()
      },
    })
  }

  /** True once the socket closed or `end`/`destroy` was called. */
  get isClosed(): boolean {
    return this.closed || this.ending
  }

  /** Bytes accepted for sending but not yet on the wire. */
  get outbound(): number {
    return this.out.length + this.transport.buffered
  }

  /**
   * Queues one frame; frames go out in call order, coalesced per event-loop turn.
   * Returns false (and sends nothing) once the connection is closing.
   */
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): boolean {
    if (this.isClosed) return false
    writeFrame(this.out, opcode, id, body)
    if (this.outbound > this.opts.dropAt) {
      this.destroy(new Error(`peer is not reading: ${this.outbound} bytes queued`))
      return false
    }
    if (!this.scheduled) {
      this.scheduled = true
      nextTurn(() => this.flush())
    }
    return true
  }

  /** Writes everything queued now (normally called by the scheduler). */
  flush(): void {
    this.scheduled = false
    if (this.out.length === 0 || this.transport.destroyed) return
    const accepted = this.transport.write(this.out.finish())
    this.out.reset()
    if (this.transport.buffered > this.opts.pauseAt && !this.paused) {
      this.paused = true
      this.transport.pause()
    }
    if (accepted && !this.isClosed) this.opts.onDrain?.()
  }

  /** Flushes queued frames, then closes gracefully; destroys after `graceMs`. Idempotent. */
  end(graceMs = 2000): void {
    if (this.ending || this.closed) return
    this.flush()
    this.ending = true
    this.transport.end()
    // A peer that never reads must not keep the transport forever.
    unrefTimer(() => this.transport.destroy(), graceMs)
  }

  /** Closes at once, dropping anything queued. Idempotent. */
  destroy(err?: Error): void {
    this.ending = true
    this.out.reset()
    this.transport.destroy(err)
  }

  private onDrain(): void {
    if (this.paused && this.transport.buffered <= this.opts.pauseAt) {
      this.paused = false
      if (!this.ending) this.transport.resume()
    }
    if (!this.isClosed) this.opts.onDrain?.()
  }

  private onData(chunk: Uint8Array): void {
    if (this.ending) return
    this.decoder.push(chunk)
    try {
      for (;;) {
        if (this.ending) return
        const frame = this.decoder.next()
        if (!frame) return
        this.opts.onFrame(frame)
      }
    } catch (err) {
      try {
        this.opts.onFatal(err)
      } catch {
        // never let a fatal handler throw into the socket
      }
      this.end()
    }
  }
}
