/**
 * One tunnel carried over the relay hop: a library `Tunnel` on the node side, TUNNEL_*
 * frames with byte credit on the client side.
 *
 * Client → node: the relay grants the client `window` bytes. Each TUNNEL_DATA is handed to
 * the library tunnel's `send` (which waits for the remote reader's credit); its credit
 * goes back to the client once `send` resolved, so the relay holds at most `window` bytes
 * for this direction. A client that sends beyond its credit fails the tunnel.
 *
 * Node → client: the relay reads the next message from the library tunnel only while the
 * client has granted credit, and sends it once the credit covers it; the library tunnel
 * returns credit to the remote writer only as the relay reads, so a slow client slows the
 * remote writer end to end. The relay holds at most one message for this direction.
 *
 * Closing follows the library: TUNNEL_CLOSE kind 0 from the client half-closes the library
 * tunnel; the end of the library tunnel's iteration becomes TUNNEL_CLOSE kind 0 to the
 * client after the data before it; failures become TUNNEL_CLOSE kind 1 with the error name.
 * The bridge is finished when both directions closed, or on the first failure.
 */
import {
  errorMessage,
  errorName,
  InvalidArgumentError,
  OverloadedError,
  TunnelClosedError,
} from '../../src/errors.js'
import type { Tunnel } from '../../src/types.js'
import type { FramedConnection } from '../wire/connection.js'
import { CreditReturn, SendCredit } from '../wire/credit.js'
import { CONNECTION_ID, Op } from '../wire/protocol.js'
import { CloseKind, encodeTunnelClose } from '../wire/protocol-ext.js'

/** Credit (bytes) the relay grants a client per tunnel: also the bound on what it buffers. */
export function relayTunnelWindow(maxMessageSize: number): number {
  return Math.max(2 * 1024 * 1024, maxMessageSize)
}

/** The bridged tunnels of one relay connection, by tunnel id. */
export class RelayTunnels {
  private readonly map = new Map<number, TunnelBridge>()
  private nextId = 1

  constructor(
    private readonly conn: FramedConnection,
    private readonly maxMessageSize: number,
    private readonly maxTunnels: number,
  ) {}

  /** Tunnels open. */
  get size(): number {
    return this.map.size
  }

  /** The bridge with this id, if open. */
  get(id: number): TunnelBridge | undefined {
    return this.map.get(id)
  }

  /** Why a TUNNEL_OPEN granting `window` must be refused, if it must. */
  refusal(window: number): Error | undefined {
    if (window < this.maxMessageSize) {
      return new InvalidArgumentError(
        `TUNNEL_OPEN window must be at least the max message size (${this.maxMessageSize} bytes), got ${window}`,
      )
    }
    if (this.map.size >= this.maxTunnels) {
      return new OverloadedError(`${this.maxTunnels} tunnels open on this relay connection`)
    }
    return undefined
  }

  /** Bridges a library tunnel under a fresh id (never 0, never one in use). */
  add(t: Tunnel, direction: 'opened' | 'incoming', clientCredit: number): TunnelBridge {
    let id = this.nextId
    while (id === CONNECTION_ID || this.map.has(id)) id = (id + 1) >>> 0
    this.nextId = (id + 1) >>> 0
    const window = relayTunnelWindow(this.maxMessageSize)
    const b = new TunnelBridge(id, direction, t, clientCredit, window, this.conn, (tid) => {
      if (this.map.get(tid) === b) this.map.delete(tid)
    })
    this.map.set(id, b)
    return b
  }

  /** Counters of every open tunnel. */
  stats(): TunnelBridgeStats[] {
    return [...this.map.values()].map((b) => b.stats())
  }

  /** Fails every tunnel without telling the client (it is gone). */
  abortAll(reason: string): void {
    for (const b of [...this.map.values()]) b.abort(reason)
    this.map.clear()
  }
}

/** Counters of one bridged tunnel for `RelayServer.stats()`. */
export interface TunnelBridgeStats {
  id: number
  cluster: string
  peer: string
  direction: 'opened' | 'incoming'
  window: number
  /** Bytes received from the client not yet handed to the library tunnel (≤ window). */
  bufferedToNode: number
  /** Bytes read from the library tunnel not yet sent to the client (≤ one message). */
  bufferedToClient: number
  /** Credit the client granted that the relay has not used. */
  clientCredit: number
}

/** A library tunnel bridged to TUNNEL_* frames of one relay connection. */
export class TunnelBridge {
  private toNodeBytes = 0
  private sendsPending = 0
  private held = 0
  private clientClosed = false
  private nodeClosed = false
  private done = false
  /** Credit the client granted the relay (node → client direction). */
  private readonly credit: SendCredit
  /** Credit the relay owes the client (client → node direction). */
  private readonly returns: CreditReturn

  constructor(
    readonly id: number,
    readonly direction: 'opened' | 'incoming',
    private readonly tunnel: Tunnel,
    /** Credit the client granted the relay when the tunnel opened. */
    clientCredit: number,
    readonly window: number,
    private readonly conn: FramedConnection,
    private readonly onFinished: (id: number) => void,
  ) {
    this.credit = new SendCredit(clientCredit)
    this.returns = new CreditReturn(window, (n) => this.conn.send(Op.TunnelCredit, this.id, (w) => w.u32(n)))
    void this.readLoop()
  }

  /** True once finished (both closed, failed, or aborted). */
  get finished(): boolean {
    return this.done
  }

  /** TUNNEL_DATA from the client. */
  onData(data: Uint8Array): void {
    if (this.done) return
    if (this.clientClosed) {
      this.fail(new TunnelClosedError('TUNNEL_DATA after TUNNEL_CLOSE'))
      return
    }
    // Credit the client holds = window − bytes it sent that the relay has not credited back.
    const used = this.toNodeBytes + this.returns.pending + data.length
    if (used > this.window) {
      this.fail(
        new TunnelClosedError(`flow control violated: ${used} bytes sent against a window of ${this.window}`),
      )
      return
    }
    this.toNodeBytes += data.length
    this.sendsPending++
    this.tunnel.send(data).then(
      () => {
        this.sendsPending--
        this.toNodeBytes -= data.length
        if (this.done) return
        this.returns.consumed(data.length, this.sendsPending === 0)
        this.maybeFinish()
      },
      (err) => this.fail(err),
    )
  }

  /** TUNNEL_CREDIT from the client. */
  onCredit(bytes: number): void {
    this.credit.grant(bytes)
  }

  /** TUNNEL_CLOSE from the client. */
  onClose(kind: number, message: string): void {
    if (this.done) return
    if (kind === CloseKind.Failed) {
      this.abort(`closed by the relay client: ${message}`)
      return
    }
    if (this.clientClosed) return
    this.clientClosed = true
    this.tunnel.close().then(
      () => this.maybeFinish(),
      (err) => this.fail(err),
    )
  }

  /** Ends the tunnel without telling the client (it is gone); the remote end sees TunnelClosedError. */
  abort(reason: string): void {
    if (this.done) return
    this.finish()
    this.tunnel.abort(reason)
  }

  /** Counters for stats. */
  stats(): TunnelBridgeStats {
    return {
      id: this.id,
      cluster: this.tunnel.cluster,
      peer: this.tunnel.peer,
      direction: this.direction,
      window: this.window,
      bufferedToNode: this.toNodeBytes,
      bufferedToClient: this.held,
      clientCredit: this.credit.available,
    }
  }

  private fail(err: unknown): void {
    if (this.done) return
    const name = err instanceof TunnelClosedError ? 'TunnelClosedError' : errorName(err)
    this.conn.send(Op.TunnelClose, this.id, (w) =>
      encodeTunnelClose(w, { kind: CloseKind.Failed, name, message: errorMessage(err) }),
    )
    this.abort(errorMessage(err))
  }

  private maybeFinish(): void {
    if (this.clientClosed && this.nodeClosed && this.toNodeBytes === 0) this.finish()
  }

  private finish(): void {
    if (this.done) return
    this.done = true
    this.held = 0
    this.credit.kick()
    this.onFinished(this.id)
  }

  /** Node → client: read only with credit, send when the credit covers the message. */
  private async readLoop(): Promise<void> {
    let it: AsyncIterator<Uint8Array>
    try {
      it = this.tunnel[Symbol.asyncIterator]()
    } catch (err) {
      this.fail(err)
      return
    }
    try {
      const stopped = () => this.done
      for (;;) {
        if (!(await this.credit.acquire(0, stopped, true))) return
        const r = await it.next()
        if (this.done) return
        if (r.done) {
          this.conn.send(Op.TunnelClose, this.id, (w) =>
            encodeTunnelClose(w, { kind: CloseKind.Half, name: '', message: '' }),
          )
          this.nodeClosed = true
          this.maybeFinish()
          return
        }
        const data = r.value
        this.held = data.length
        if (!(await this.credit.acquire(data.length, stopped))) return
        this.credit.take(data.length)
        this.held = 0
        this.conn.send(Op.TunnelData, this.id, (w) => w.bytes(data))
      }
    } catch (err) {
      this.fail(err)
    }
  }
}
