/**
 * The member side of one thin client's relay connection: clusters it joined through the
 * relay, the requests forwarded to it as INVOKE, the broadcasts delivered to it as
 * BROADCAST_DELIVER and the tunnels announced to it as TUNNEL_INCOMING.
 */
import { InvalidArgumentError, RemoteError, TimeoutError } from '../../src/errors.js'
import type {
  BroadcastContext,
  JoinOptions,
  Limits,
  Membership,
  PlexusNode,
  ReplyWithHeaders,
  RequestContext,
  Tunnel,
} from '../../src/types.js'
import type { FramedConnection } from '../wire/connection.js'
import {
  CONNECTION_ID,
  decodeBytesBody,
  decodeJoin,
  decodeStrBody,
  encodeInvoke,
  type Frame,
  JoinFlag,
  Op,
} from '../wire/protocol.js'
import { encodeBroadcastDeliver, encodeTunnelIncoming } from '../wire/protocol-ext.js'
import { decodeReplyHeaders, encodeInvokeHeaders } from '../wire/protocol-requests.js'
import type { RelayTunnels } from './server-tunnels.js'

interface PendingInvoke {
  resolve(reply: ReplyWithHeaders): void
  reject(err: Error): void
}

/** What `RelayMemberships` needs from the connection that owns it. */
export interface RelayMembershipHost {
  readonly node: PlexusNode
  readonly conn: FramedConnection
  readonly tunnels: RelayTunnels
  /** Tunnels (opened and incoming) the connection may have. */
  readonly maxTunnels: number
  /** True once the connection was cleaned up. */
  cleanedUp(): boolean
  /** True once the client half-closed its side. */
  peerEnded(): boolean
  /** Answers call `id` with an ERROR frame describing `err`. */
  sendError(id: number, err: unknown): void
}

/** The clusters one relay connection joined, and the calls the node routes to them. */
export class RelayMemberships {
  private readonly memberships = new Map<string, Membership>()
  private readonly invokes = new Map<number, PendingInvoke>()
  private nextInvokeId = 1
  private readonly deliveries = new Map<number, () => void>()
  private nextDeliveryId = 1

  /** Memberships, INVOKEs and broadcast deliveries open (0: nothing keeps the client busy). */
  get open(): number {
    return this.memberships.size + this.invokes.size + this.deliveries.size
  }

  constructor(private readonly host: RelayMembershipHost) {}

  /**
   * Pending broadcast deliveries count as done, pending INVOKEs fail, then every cluster
   * joined through this connection is left.
   */
  async leaveAll(): Promise<void> {
    const deliveries = [...this.deliveries.values()]
    this.deliveries.clear()
    for (const d of deliveries) d()
    const invokes = [...this.invokes.values()]
    this.invokes.clear()
    for (const p of invokes) p.reject(new RemoteError('the relay client serving this request disconnected'))
    const ms = [...this.memberships.values()]
    this.memberships.clear()
    await Promise.all(ms.map((m) => m.leave().catch(() => {})))
  }

  /** The client's BROADCAST_ACK for delivery `id`. */
  ackDelivery(id: number): void {
    const d = this.deliveries.get(id)
    this.deliveries.delete(id)
    d?.()
  }

  /** A tunnel accepted by the node for a cluster this client joined with tunnels. */
  private incomingTunnel(t: Tunnel, ctx: { from: string; cluster: string }): void {
    const { conn, tunnels } = this.host
    if (conn.isClosed || this.host.peerEnded() || tunnels.size >= this.host.maxTunnels) {
      t.abort('the relay client cannot take more tunnels')
      return
    }
    const b = tunnels.add(t, 'incoming', 0)
    conn.send(Op.TunnelIncoming, b.id, (w) =>
      encodeTunnelIncoming(w, { cluster: ctx.cluster, from: ctx.from, window: b.window }),
    )
  }

  /** A broadcast for a joined cluster: resolves when the client sends BROADCAST_ACK. */
  private deliverBroadcast(data: Uint8Array, ctx: BroadcastContext): Promise<void> {
    const conn = this.host.conn
    if (conn.isClosed) return Promise.resolve()
    let id = this.nextDeliveryId
    while (id === CONNECTION_ID || this.deliveries.has(id)) id = (id + 1) >>> 0
    this.nextDeliveryId = (id + 1) >>> 0
    return new Promise<void>((resolve) => {
      this.deliveries.set(id, resolve)
      conn.send(Op.BroadcastDeliver, id, (w) =>
        encodeBroadcastDeliver(w, { cluster: ctx.cluster, from: ctx.from, data }),
      )
    })
  }

  /** A JOIN frame, decoded for protocol `version`. */
  onJoin(f: Frame, version: number): void {
    const j = decodeJoin(f.body, version)
    const limits: Limits = {}
    for (const k of ['requests', 'broadcasts', 'tunnels', 'queueBytes'] as const) {
      if (j.limits[k] > 0) limits[k] = j.limits[k]
    }
    if (this.memberships.has(j.cluster)) {
      this.host.sendError(
        f.id,
        new InvalidArgumentError(`cluster ${j.cluster} is already joined on this connection`),
      )
      return
    }
    const cluster = j.cluster
    const opts: JoinOptions = { key: j.key, limits }
    const headers = (j.flags & JoinFlag.Headers) !== 0
    if (j.flags & JoinFlag.Requests) opts.onRequest = (data, ctx) => this.invoke(cluster, data, ctx, headers)
    if (j.flags & JoinFlag.Broadcasts) opts.onBroadcast = (data, ctx) => this.deliverBroadcast(data, ctx)
    if (j.flags & JoinFlag.Tunnels) opts.onTunnel = (t, ctx) => this.incomingTunnel(t, ctx)
    let p: Promise<Membership>
    try {
      p = this.host.node.join(cluster, opts)
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(
      (m) => {
        if (this.host.cleanedUp() || this.host.peerEnded()) {
          void m.leave()
          return
        }
        this.memberships.set(cluster, m)
        this.host.conn.send(Op.Ok, f.id)
      },
      (err) => this.host.sendError(f.id, err),
    )
  }

  /** A LEAVE call `id` for `cluster`. */
  onLeave(id: number, cluster: string): void {
    const m = this.memberships.get(cluster)
    if (!m) {
      this.host.sendError(
        id,
        new InvalidArgumentError(`cluster ${cluster} was not joined on this connection`),
      )
      return
    }
    this.memberships.delete(cluster)
    m.leave().then(
      () => this.host.conn.send(Op.Ok, id),
      (err) => this.host.sendError(id, err),
    )
  }

  /**
   * Forwards one request for a joined cluster to the client (as INVOKE_HEADERS when it joined
   * with `JoinFlag.Headers`, else INVOKE: the request's headers are not passed on); resolves
   * with its reply.
   */
  private invoke(
    cluster: string,
    data: Uint8Array,
    ctx: RequestContext,
    withHeaders: boolean,
  ): Promise<ReplyWithHeaders> {
    const conn = this.host.conn
    if (conn.isClosed)
      return Promise.reject(new RemoteError('the relay client serving this cluster disconnected'))
    const remaining = Math.max(1, Math.min(0xffffffff, Math.round(ctx.deadline - Date.now())))
    let id = this.nextInvokeId
    while (id === CONNECTION_ID || this.invokes.has(id)) id = (id + 1) >>> 0
    this.nextInvokeId = (id + 1) >>> 0
    return new Promise<ReplyWithHeaders>((resolve, reject) => {
      const onAbort = () => {
        if (!this.invokes.delete(id)) return
        conn.send(Op.InvokeCancel, id)
        reject(new TimeoutError(`${cluster}: the caller gave up`))
      }
      const signal = ctx.signal
      this.invokes.set(id, {
        resolve: (d) => {
          signal.removeEventListener('abort', onAbort)
          resolve(d)
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort)
          reject(e)
        },
      })
      signal.addEventListener('abort', onAbort, { once: true })
      if (withHeaders)
        conn.send(Op.InvokeHeaders, id, (w) =>
          encodeInvokeHeaders(w, {
            cluster,
            remainingMs: remaining,
            from: ctx.from,
            headers: ctx.headers,
            data,
          }),
        )
      else
        conn.send(Op.Invoke, id, (w) =>
          encodeInvoke(w, { cluster, remainingMs: remaining, from: ctx.from, data }),
        )
    })
  }

  /** An INVOKE_REPLY, INVOKE_REPLY_HEADERS or INVOKE_ERROR frame from the client. */
  onInvokeAnswer(f: Frame, maxMessageSize: number): void {
    if (f.opcode === Op.InvokeError)
      this.settleInvoke(f.id, new RemoteError(decodeStrBody(f.body, 'INVOKE_ERROR')))
    else if (f.opcode === Op.InvokeReplyHeaders)
      this.settleInvoke(f.id, decodeReplyHeaders(f.body, maxMessageSize, 'INVOKE_REPLY_HEADERS'))
    else this.settleInvoke(f.id, { data: decodeBytesBody(f.body, 'INVOKE_REPLY', maxMessageSize) })
  }

  /** The client's answer to invoke `id`: its reply (the node checks reply headers) or error. */
  settleInvoke(id: number, outcome: ReplyWithHeaders | Error): void {
    const p = this.invokes.get(id)
    if (!p) return // late (after cancel) or unknown: ignored
    this.invokes.delete(id)
    if (outcome instanceof Error) p.reject(outcome)
    else p.resolve(outcome)
  }
}
