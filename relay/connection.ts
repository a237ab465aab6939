/**
 * A framed relay connection over one TCP socket, used by both the server and the client.
 * Outbound frames written during one event-loop turn are coalesced into a single
 * `socket.write` (in the order they were sent). Inbound bytes are split into frames by a
 * bounded `FrameDecoder`. Memory stays bounded: reading pauses while the peer does not
 * read its own inbound data (our outbound buffer above `pauseAt`), and the connection is
 * dropped when that buffer exceeds `dropAt`. Any decoding or handler failure ends the
 * connection through `onFatal`; nothing here ever throws into the event loop.
 */
import type { Socket } from 'node:net'
import { BinaryWriter } from '../src/util/binary.js'
import { type Frame, FrameDecoder, writeFrame } from './protocol.js'

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
   * flush and close at once. The socket must be created with `allowHalfOpen: true` for the
   * owner to keep writing answers after this.
   */
  onEnd?(): void
  /**
   * The outbound buffer has room again: a flush the socket accepted at once, or 'drain'
   * (a chance to send frames held back to keep the buffer bounded).
   */
  onDrain?(): void
}

/** Batched, bounded framing over a socket. */
export class FramedConnection {
  private readonly out = new BinaryWriter(4096)
  private scheduled = false
  private closed = false
  private ending = false
  private paused = false
  readonly decoder: FrameDecoder

  constructor(
    readonly socket: Socket,
    private readonly opts: ConnectionOptions,
  ) {
    this.decoder = new FrameDecoder(opts.maxFrame)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('drain', () => this.onDrain())
    socket.on('error', () => {}) // 'close' follows with hadError
    socket.on('close', () => {
      if (this.closed) return
      this.closed = true
      opts.onClose()
    })
    socket.on('end', () => {
      if (opts.onEnd) opts.onEnd()
      else this.end()
    })
  }

  /** True once the socket closed or `end`/`destroy` was called. */
  get isClosed(): boolean {
    return this.closed || this.ending
  }

  /** Bytes accepted for sending but not yet on the wire. */
  get outbound(): number {
    return this.out.length + this.socket.writableLength
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
      setImmediate(() => this.flush())
    }
    return true
  }

  /** Writes everything queued now (normally called by the scheduler). */
  flush(): void {
    this.scheduled = false
    if (this.out.length === 0 || this.socket.destroyed) return
    const bytes = Buffer.from(this.out.finish())
    this.out.reset()
    const accepted = this.socket.write(bytes)
    if (this.socket.writableLength > this.opts.pauseAt && !this.paused) {
      this.paused = true
      this.socket.pause()
    }
    if (accepted && !this.isClosed) this.opts.onDrain?.()
  }

  /** Flushes queued frames, then closes gracefully; destroys after `graceMs`. Idempotent. */
  end(graceMs = 2000): void {
    if (this.ending || this.closed) return
    this.flush()
    this.ending = true
    this.socket.end()
    // A peer that never reads must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), graceMs).unref()
  }

  /** Closes at once, dropping anything queued. Idempotent. */
  destroy(err?: Error): void {
    this.ending = true
    this.out.reset()
    this.socket.destroy(err)
  }

  private onDrain(): void {
    if (this.paused && this.socket.writableLength <= this.opts.pauseAt) {
      this.paused = false
      if (!this.ending) this.socket.resume()
    }
    if (!this.isClosed) this.opts.onDrain?.()
  }

  private onData(chunk: Buffer): void {
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
