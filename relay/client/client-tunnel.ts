/**
 * The thin client's end of a tunnel carried by the relay: the library's `Tunnel` semantics
 * over TUNNEL_DATA / TUNNEL_CREDIT / TUNNEL_CLOSE frames. `send` waits until the relay's
 * credit covers the message; received messages wait in a queue bounded by the window this
 * end granted, and their credit goes back to the relay as the application reads them, so
 * a slow reader here slows the remote writer. `close()` is a half-close; the tunnel is
 * finished when both sides closed; a failure (peer death, relay lost) ends both
 * directions with `TunnelClosedError` (or the class the relay named).
 */
import { errorFromWire, InvalidArgumentError, TunnelClosedError } from '../../src/errors.js'
import { BoundedQueue } from '../../src/pubsub/queue.js'
import type { BinaryWriter } from '../../src/util/binary.js'
import { toPayload } from '../../src/util/validate.js'
import { Waiters } from '../../src/util/waiters.js'
import { CreditReturn } from '../wire/credit.js'
import { Op } from '../wire/protocol.js'
import { CloseKind, encodeTunnelClose } from '../wire/protocol-ext.js'

/** A tunnel through the relay: same names and semantics as the library's `Tunnel`. */
export interface RelayTunnel extends AsyncIterable<Uint8Array> {
  /** Node id of the other end. */
  readonly peer: string
  /** Cluster the tunnel was opened to. */
  readonly cluster: string
  /** True once this side closed or the tunnel failed. */
  readonly closed: boolean
  /** Sends one message (at most the max message size); waits while the relay's credit is used up. */
  send(data: Uint8Array | string, options?: { signal?: AbortSignal }): Promise<void>
  /** Half-closes: the other side's iteration ends after the messages sent before it. Idempotent. */
  close(): Promise<void>
}

/** How a client tunnel writes frames and forgets itself. */
export interface ClientTunnelWire {
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): boolean
  finished(id: number): void
}

/** Credit (bytes) a thin client grants the relay per tunnel. */
export function clientTunnelWindow(maxMessageSize: number): number {
  return Math.max(2 * 1024 * 1024, maxMessageSize)
}

/** One tunnel end in the thin client (internal). */
export class ClientTunnel implements RelayTunnel {
  private readonly inbox: BoundedQueue<Uint8Array>
  private readonly returns: CreditReturn
  private readonly senders = new Waiters()
  private sending: Promise<void> = Promise.resolve()
  private localClosed = false
  private remoteClosed = false
  private terminated = false
  private done = false
  private error: Error | undefined
  private iterating = false

  constructor(
    readonly id: number,
    readonly peer: string,
    readonly cluster: string,
    /** Credit the relay granted us. */
    private credit: number,
    /** Credit we grant the relay (bound on our inbox). */
    readonly window: number,
    private readonly maxMessageSize: number,
    private readonly wire: ClientTunnelWire,
  ) {
    this.returns = new CreditReturn(window, (n) => this.wire.send(Op.TunnelCredit, this.id, (w) => w.u32(n)))
    this.inbox = new BoundedQueue<Uint8Array>(
      Number.MAX_SAFE_INTEGER,
      window,
      (m) => m.length,
      (m) => this.taken(m),
    )
  }

  get closed(): boolean {
    return this.localClosed || this.terminated
  }

  send(data: Uint8Array | string, options: { signal?: AbortSignal } = {}): Promise<void> {
    let bytes: Uint8Array
    try {
      bytes = toPayload(data, 'data', this.maxMessageSize)
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.closed) return Promise.reject(this.closedError())
    const p = this.sending.then(() => this.sendNow(bytes, options.signal))
    this.sending = p.catch(() => {})
    return p
  }

  private async sendNow(bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    while (this.credit < bytes.length && !this.terminated) await this.waitCredit(signal)
    if (this.terminated) throw this.closedError()
    this.credit -= bytes.length
    this.wire.send(Op.TunnelData, this.id, (w) => w.bytes(bytes))
  }

  private waitCredit(signal?: AbortSignal): Promise<void> {
    return this.senders.wait(signal)
  }

  private wakeSenders(): void {
    this.senders.wakeAll()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.localClosed = true
    await this.sending
    if (this.terminated) return
    this.wire.send(Op.TunnelClose, this.id, (w) =>
      encodeTunnelClose(w, { kind: CloseKind.Half, name: '', message: '' }),
    )
    if (this.remoteClosed) this.finish()
  }

  /** Fails the tunnel and tells the relay (handler errors, refusals). */
  abort(message: string): void {
    if (this.terminated) return
    this.wire.send(Op.TunnelClose, this.id, (w) =>
      encodeTunnelClose(w, { kind: CloseKind.Failed, name: 'TunnelClosedError', message }),
    )
    this.terminate(new TunnelClosedError(message))
  }

  /** TUNNEL_DATA from the relay. */
  onData(data: Uint8Array): void {
    if (this.terminated || this.remoteClosed) return
    if (!this.inbox.push(data)) this.abort('flow control violated by the relay')
  }

  /** TUNNEL_CREDIT from the relay. */
  onCredit(bytes: number): void {
    this.credit += bytes
    this.wakeSenders()
  }

  /** TUNNEL_CLOSE from the relay. */
  onClose(kind: number, name: string, message: string): void {
    if (this.terminated || this.remoteClosed) return
    if (kind !== CloseKind.Half) {
      const err =
        name === 'TunnelClosedError' || name === ''
          ? new TunnelClosedError(message)
          : errorFromWire(name, message)
      this.terminate(err)
      return
    }
    this.remoteClosed = true
    this.inbox.end()
    if (this.localClosed) this.finish()
  }

  /** Ends both directions with `err` (relay lost, failure). */
  terminate(err: Error): void {
    if (this.terminated) return
    this.terminated = true
    this.error = err
    this.inbox.fail(err)
    this.wakeSenders()
    this.finish()
  }

  private taken(m: Uint8Array): void {
    if (this.terminated) return
    this.returns.consumed(m.length, this.inbox.length === 0)
  }

  private finish(): void {
    if (this.done) return
    this.done = true
    this.wire.finished(this.id)
  }

  private closedError(): Error {
    return this.error ?? new TunnelClosedError('tunnel closed')
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
