/**
 * Handshake messages over the raw connection: each a u16 big-endian length then the message.
 * Listens to the connection only while the handshake runs; `release()` hands the bytes read
 * past the last handshake message to the transport phase.
 */
import type { MessageStream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { HandshakeError } from '../../errors.js'

/**
 * Bytes buffered during a handshake: its three messages, and what a dialler sends straight
 * after its last one while we verify it (up to a few socket reads); more is an attack.
 */
const MAX_BUFFERED = 4 * 1024 * 1024

/** Reads and writes length-prefixed handshake messages on `raw` (see the module doc). */
export class HandshakeChannel {
  private readonly buffer = new Uint8ArrayList()
  private waiter: (() => void) | undefined
  private failure: Error | undefined
  private readonly onMessage = (evt: StreamMessageEvent): void => {
    this.buffer.append(evt.data)
    if (this.buffer.byteLength > MAX_BUFFERED) {
      this.fail(new HandshakeError(`peer sent over ${MAX_BUFFERED} bytes during the noise handshake`))
    }
    this.wake()
  }
  private readonly onClose = (evt: StreamCloseEvent): void => {
    this.fail(new HandshakeError('connection closed during the noise handshake', { cause: evt.error }))
  }
  private readonly onEnd = (): void =>
    this.fail(new HandshakeError('connection ended during the noise handshake'))
  private readonly onAbort = (): void =>
    this.fail(new HandshakeError('noise handshake aborted', { cause: this.signal?.reason }))

  constructor(
    private readonly raw: MessageStream,
    private readonly signal?: AbortSignal,
  ) {
    raw.addEventListener('message', this.onMessage)
    raw.addEventListener('close', this.onClose)
    raw.addEventListener('remoteCloseWrite', this.onEnd)
    signal?.addEventListener('abort', this.onAbort)
    if (signal?.aborted === true) this.onAbort()
  }

  /** Sends one handshake message. */
  write(message: Uint8Array): void {
    if (this.failure !== undefined) throw this.failure
    const frame = Buffer.allocUnsafe(2 + message.byteLength)
    frame.writeUInt16BE(message.byteLength, 0)
    frame.set(message, 2)
    this.raw.send(frame)
  }

  /** The next handshake message; rejects with `HandshakeError` when the connection closes or the signal aborts. */
  async read(): Promise<Uint8Array> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      if (this.buffer.byteLength >= 2) {
        const length = (this.buffer.get(0) << 8) | this.buffer.get(1)
        if (this.buffer.byteLength >= 2 + length) {
          const message = this.buffer.subarray(2, 2 + length)
          this.buffer.consume(2 + length)
          return message
        }
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve
      })
    }
  }

  /** Stops listening; returns the bytes read past the last message (at most one socket read). */
  release(): Uint8ArrayList {
    this.raw.removeEventListener('message', this.onMessage)
    this.raw.removeEventListener('close', this.onClose)
    this.raw.removeEventListener('remoteCloseWrite', this.onEnd)
    this.signal?.removeEventListener('abort', this.onAbort)
    return this.buffer
  }

  private fail(err: Error): void {
    this.failure ??= err
    this.wake()
  }

  private wake(): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }
}
