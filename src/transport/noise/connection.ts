/**
 * The noise transport phase: the encrypted connection libp2p runs its muxer on.
 *
 * - **Writes.** `send()` encrypts what it is given before it returns, into ONE buffer per call
 *   (each noise message's 2-byte length, cipher text and tag, one after another), which the
 *   connection below writes with one system call. So a caller's bytes are never referenced
 *   after `send()` returns: what waits for the socket is cipher text only. A link uses this to
 *   reuse its block buffers (`releasedOnSend`).
 * - **Backpressure.** When the connection below returns false from `send()`, so does ours
 *   until it emits 'drain', which we pass on; cipher text waiting meanwhile is held here (the
 *   caller is expected to wait for 'drain', as libp2p's muxer does).
 * - **Reads.** Noise messages are cut from the socket's chunks without joining them: a
 *   message spanning two reads is decrypted piece by piece. The decoder holds at most one
 *   partial message (64 KiB) beyond the chunk being read, and never throws for want of bytes.
 *   A message that fails authentication closes the connection.
 */
import type { AbortOptions, MessageStream, StreamMessageEvent } from '@libp2p/interface'
import { StreamStateError } from '@libp2p/interface'
import { AbstractMessageStream, type SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import { type CipherState, MAX_PLAINTEXT, TAG_BYTES } from './cipher.js'
import { NoiseFrameReader } from './reader.js'

const EMPTY = new Uint8Array(0)

/**
 * Cipher text of large sends is carved from a shared slab: a fresh 64 KiB buffer per block
 * costs its allocation and the first touch of its pages, several times the copy into it
 * (`docs/benchmarks-history.md`, 8 December 2026). A slab stays alive while any frame cut
 * from it is still queued below us. Small frames come from Node's own buffer pool.
 */
const SLAB_BYTES = 1024 * 1024
const SMALL_FRAME = 4096
let slab: Buffer | undefined
let slabAt = 0

function frameBuffer(size: number): Buffer {
  if (size < SMALL_FRAME) return Buffer.allocUnsafe(size)
  if (size > SLAB_BYTES / 4) return Buffer.allocUnsafeSlow(size)
  if (slab === undefined || slabAt + size > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
    slabAt = 0
  }
  const out = slab.subarray(slabAt, slabAt + size)
  slabAt += size
  return out
}

/** An encrypted libp2p message stream over `raw` (see the module doc). */
export class NoiseConnection extends AbstractMessageStream {
  private readonly reader: NoiseFrameReader

  constructor(
    private readonly raw: MessageStream,
    private readonly sender: CipherState,
    receiver: CipherState,
    /** Bytes read past the handshake's last message. */
    leftover: Uint8ArrayList,
  ) {
    super({
      log: raw.log,
      inactivityTimeout: raw.inactivityTimeout,
      maxReadBufferLength: raw.maxReadBufferLength,
      direction: raw.direction,
    })
    this.reader = new NoiseFrameReader(receiver)
    const onMessage = (evt: StreamMessageEvent): void => this.receive(evt.data)
    raw.addEventListener('message', onMessage)
    raw.addEventListener('close', (evt) => {
      if (evt.error === undefined) this.onTransportClosed()
      else if (evt.local === true) this.abort(evt.error)
      else this.onRemoteReset()
    })
    raw.addEventListener('drain', () => this.safeDispatchEvent('drain'))
    raw.addEventListener('remoteCloseWrite', () => this.onRemoteCloseWrite())
    if (leftover.byteLength > 0) queueMicrotask(() => this.receive(leftover))
  }

  /** Encrypts `data` now (see the module doc) and queues the cipher text for the socket. */
  override send(data: Uint8Array | Uint8ArrayList): boolean {
    if (this.writeStatus === 'closed' || this.writeStatus === 'closing') {
      throw new StreamStateError(`Cannot write to a stream that is ${this.writeStatus}`)
    }
    if (data.byteLength === 0) return this.processSendQueue()
    this.writeBuffer.append(this.seal(data))
    return this.processSendQueue()
  }

  /** `data` as noise messages in one buffer: per message a u16 length, cipher text, tag. */
  private seal(data: Uint8Array | Uint8ArrayList): Uint8Array {
    const total = data.byteLength
    const messages = Math.ceil(total / MAX_PLAINTEXT)
    const out = frameBuffer(total + messages * (2 + TAG_BYTES))
    let at = 0
    for (let start = 0; start < total; start += MAX_PLAINTEXT) {
      const length = Math.min(MAX_PLAINTEXT, total - start)
      out.writeUInt16BE(length + TAG_BYTES, at)
      const part =
        data instanceof Uint8Array
          ? data.subarray(start, start + length)
          : start === 0 && length === total
            ? data
            : data.sublist(start, start + length)
      at = this.sender.encryptInto(part, length, EMPTY, out, at + 2)
    }
    return out
  }

  private receive(data: Uint8Array | Uint8ArrayList): void {
    // After an abort the reader's state is unknown; a half-closed connection still reads.
    if (this.status === 'aborted' || this.status === 'reset') return
    let plain: Uint8ArrayList | undefined
    try {
      plain = this.reader.push(data)
    } catch (err) {
      this.abort(err as Error)
      return
    }
    if (plain !== undefined) this.onData(plain)
  }

  /** Hands cipher text queued by `send()` to the connection below. */
  sendData(data: Uint8ArrayList): SendResult {
    return { sentBytes: data.byteLength, canSendMore: this.raw.send(data) }
  }

  sendReset(err: Error): void {
    this.raw.abort(err)
  }

  sendPause(): void {
    this.raw.pause()
  }

  sendResume(): void {
    this.raw.resume()
  }

  /** Closes once queued cipher text has been handed down, then closes the connection below. */
  async close(options?: AbortOptions): Promise<void> {
    if (this.writeBuffer.byteLength > 0 && this.status === 'open') {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.removeEventListener('idle', done)
          this.removeEventListener('close', done)
          options?.signal?.removeEventListener('abort', done)
          resolve()
        }
        this.addEventListener('idle', done)
        this.addEventListener('close', done)
        options?.signal?.addEventListener('abort', done)
      })
    }
    await this.raw.close(options)
  }
}
