/**
 * Relay test helpers: a raw TCP peer that speaks (or mangles) the relay protocol, for
 * handshake, refusal and fuzz tests.
 */
import { connect, type Socket } from 'node:net'
import { parseRelayAddress } from '../../relay/client/client.js'
import {
  encodeHello,
  type Frame,
  FrameDecoder,
  Op,
  PROTOCOL_VERSION,
  writeFrame,
} from '../../relay/wire/protocol.js'
import { BinaryWriter } from '../../src/util/binary.js'

/** A raw socket to a relay that collects decoded frames and notices the close. */
export class RawPeer {
  readonly frames: Frame[] = []
  closed = false
  private readonly decoder = new FrameDecoder(16 * 1024 * 1024)
  private waiters: Array<() => void> = []
  readonly closedPromise: Promise<void>

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk) => {
      this.decoder.push(chunk)
      for (let f = this.decoder.next(); f; f = this.decoder.next()) this.frames.push(f)
      this.wake()
    })
    socket.on('error', () => {})
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true
        this.wake()
        resolve()
      }),
    )
  }

  static async open(address: string): Promise<RawPeer> {
    const { host, port } = parseRelayAddress(address, 'address')
    const socket = connect({ host, port })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new RawPeer(socket)
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }

  /** Sends raw bytes. */
  write(bytes: Uint8Array): void {
    this.socket.write(bytes)
  }

  /** Sends one well-formed frame. */
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): void {
    const w = new BinaryWriter()
    writeFrame(w, opcode, id, body)
    this.write(w.finish())
  }

  /** Sends a version-1 HELLO (or another version). */
  hello(version = PROTOCOL_VERSION): void {
    this.send(Op.Hello, 0, (w) => encodeHello(w, { version, client: 'raw-test' }))
  }

  /** Waits for the next frame (in arrival order) or throws when the socket closed first. */
  async next(ms = 3000): Promise<Frame> {
    const end = Date.now() + ms
    for (;;) {
      const f = this.frames.shift()
      if (f) return f
      if (this.closed) throw new Error('relay closed the connection')
      if (Date.now() > end) throw new Error('no frame within timeout')
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve)
        setTimeout(resolve, 50)
      })
    }
  }

  /** Resolves when the relay closes the socket (or throws after `ms`). */
  async waitClosed(ms = 3000): Promise<void> {
    await Promise.race([
      this.closedPromise,
      new Promise((_, reject) => setTimeout(() => reject(new Error('socket still open')), ms)),
    ])
  }

  destroy(): void {
    this.socket.destroy()
  }
}
