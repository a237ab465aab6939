/**
 * The member side of the relay client: clusters joined through the relay and the calls
 * the node routes to them — INVOKE (requests), BROADCAST_DELIVER and TUNNEL_INCOMING.
 */
import { errorMessage, RemoteError, TimeoutError } from '../../src/errors.js'
import type { Limits, RequestContext } from '../../src/types.js'
import type { BinaryWriter } from '../../src/util/binary.js'
import { parseKey } from '../../src/util/keys.js'
import {
  checkClusterName,
  checkFunction,
  checkOptions,
  toBytes,
  toPayload,
  toReply,
} from '../../src/util/validate.js'
import { decodeInvoke, encodeJoin, type Frame, JoinFlag, Op } from '../wire/protocol.js'
import { decodeBroadcastDeliver, decodeTunnelIncoming } from '../wire/protocol-ext.js'
import { decodeInvokeHeaders, encodeReplyHeaders } from '../wire/protocol-requests.js'
import { unrefTimer } from '../wire/transport.js'
import { checkU32, invalid, type RelayJoinOptions, type RelayMembership } from './client-api.js'
import { ClientTunnel, type ClientTunnelWire, clientTunnelWindow } from './client-tunnel.js'

/** What `ClientMemberships` needs from the relay client that owns it. */
export interface ClientMembershipHost {
  /** The relay's current maximum message size. */
  maxMessageSize(): number
  /** Open tunnels by tunnel id; incoming tunnels are added here. */
  readonly tunnels: Map<number, ClientTunnel>
  /** The wire given to every tunnel. */
  readonly tunnelWire: ClientTunnelWire
  /** True once the client is closed or lost. */
  closed(): boolean
  /** Sends one frame that expects no answer. */
  send(opcode: number, id: number, body?: (w: BinaryWriter) => void): void
  /** Sends one call frame and resolves with the answering frame. */
  call(opcode: number, body?: (w: BinaryWriter) => void): Promise<Frame>
  /** Throws the error carried by an ERROR frame; otherwise checks the opcode. */
  expect(f: Frame, opcode: number): void
}

/** The clusters a relay client joined, with their handlers and running invocations. */
export class ClientMemberships {
  private readonly handlers = new Map<string, RelayJoinOptions>()
  private readonly invocations = new Map<number, AbortController>()

  constructor(private readonly host: ClientMembershipHost) {}

  /** Aborts every running invocation with `err`. */
  abortAll(err: Error): void {
    for (const ac of this.invocations.values()) ac.abort(err)
    this.invocations.clear()
  }

  /** The relay's INVOKE_CANCEL for invocation `id`. */
  cancelInvoke(id: number): void {
    this.invocations.get(id)?.abort(new TimeoutError('the caller gave up'))
    this.invocations.delete(id)
  }

  /** Checks `opts`, then joins `cluster` through the relay. */
  async join(cluster: string, opts: RelayJoinOptions): Promise<RelayMembership> {
    checkClusterName(cluster, 'cluster')
    const o = checkOptions<RelayJoinOptions>(opts, 'options')
    if (o.key === undefined) throw invalid('options.key', o.key, 'the cluster key (required to join)')
    parseKey(o.key, 'options.key')
    const onRequest = checkFunction<RelayJoinOptions['onRequest']>(o.onRequest, 'options.onRequest')
    const onBroadcast = checkFunction<RelayJoinOptions['onBroadcast']>(o.onBroadcast, 'options.onBroadcast')
    const onTunnel = checkFunction<RelayJoinOptions['onTunnel']>(o.onTunnel, 'options.onTunnel')
    // With a request handler the client reads request headers (INVOKE_HEADERS).
    const flags =
      (onRequest ? JoinFlag.Requests | JoinFlag.Headers : 0) |
      (onBroadcast ? JoinFlag.Broadcasts : 0) |
      (onTunnel ? JoinFlag.Tunnels : 0)
    const l = checkOptions<Limits>(o.limits, 'options.limits')
    const limits = {
      requests: checkU32(l.requests, 'options.limits.requests'),
      broadcasts: checkU32(l.broadcasts, 'options.limits.broadcasts'),
      tunnels: checkU32(l.tunnels, 'options.limits.tunnels'),
      queueBytes: checkU32(l.queueBytes, 'options.limits.queueBytes'),
    }
    if (this.handlers.has(cluster)) {
      throw invalid('cluster', cluster, 'a cluster not yet joined by this client')
    }
    const key = typeof o.key === 'string' ? o.key : toBytes(o.key, 'options.key')
    this.handlers.set(cluster, { key, onRequest, onBroadcast, onTunnel })
    const host = this.host
    try {
      host.expect(await host.call(Op.Join, (w) => encodeJoin(w, { cluster, key, limits, flags })), Op.Ok)
    } catch (err) {
      this.handlers.delete(cluster)
      throw err
    }
    let left: Promise<void> | undefined
    return {
      cluster,
      leave: () => {
        left ??= (async () => {
          try {
            if (!host.closed()) host.expect(await host.call(Op.Leave, (w) => w.str(cluster)), Op.Ok)
          } finally {
            this.handlers.delete(cluster)
          }
        })()
        return left
      },
    }
  }

  /** A BROADCAST_DELIVER: runs the cluster's broadcast handler, then acknowledges. */
  onBroadcastDeliver(f: Frame): void {
    const b = decodeBroadcastDeliver(f.body, this.host.maxMessageSize())
    const handler = this.handlers.get(b.cluster)?.onBroadcast
    const id = f.id
    const ack = () => void this.host.send(Op.BroadcastAck, id)
    if (!handler) {
      ack()
      return
    }
    Promise.resolve()
      .then(() => handler(b.data, { from: b.from, cluster: b.cluster }))
      .then(ack, ack)
  }

  /** A TUNNEL_INCOMING: hands the new tunnel to the cluster's tunnel handler. */
  onTunnelIncoming(f: Frame): void {
    const host = this.host
    const inc = decodeTunnelIncoming(f.body)
    const window = clientTunnelWindow(host.maxMessageSize())
    const t = new ClientTunnel(
      f.id,
      inc.from,
      inc.cluster,
      inc.window,
      window,
      host.maxMessageSize(),
      host.tunnelWire,
    )
    host.tunnels.set(f.id, t)
    const handler = this.handlers.get(inc.cluster)?.onTunnel
    if (!handler) {
      t.abort(`${inc.cluster}: this member does not accept tunnels`)
      return
    }
    host.send(Op.TunnelCredit, f.id, (w) => w.u32(window))
    Promise.resolve()
      .then(() => handler(t, { from: inc.from, cluster: inc.cluster }))
      .catch((err) => t.abort(`handler failed: ${errorMessage(err)}`))
  }

  /**
   * An INVOKE or INVOKE_HEADERS: runs the cluster's request handler and answers INVOKE_REPLY
   * (INVOKE_REPLY_HEADERS when it returned headers) or INVOKE_ERROR.
   */
  onInvoke(f: Frame): void {
    const inv: {
      cluster: string
      remainingMs: number
      from: string
      data: Uint8Array
      headers?: Record<string, string>
    } =
      f.opcode === Op.InvokeHeaders
        ? decodeInvokeHeaders(f.body, this.host.maxMessageSize())
        : decodeInvoke(f.body, this.host.maxMessageSize())
    const handler = this.handlers.get(inv.cluster)?.onRequest
    const id = f.id
    const ac = new AbortController()
    this.invocations.set(id, ac)
    const deadline = Date.now() + inv.remainingMs
    const timer = unrefTimer(() => ac.abort(new TimeoutError('deadline passed')), inv.remainingMs)
    const finish = (err: unknown, data?: Uint8Array, headers?: Record<string, string>) => {
      clearTimeout(timer)
      if (this.invocations.get(id) !== ac) return
      this.invocations.delete(id)
      if (err === undefined && headers)
        this.host.send(Op.InvokeReplyHeaders, id, (w) => encodeReplyHeaders(w, { headers, data: data! }))
      else if (err === undefined) this.host.send(Op.InvokeReply, id, (w) => w.bytes(data!))
      else this.host.send(Op.InvokeError, id, (w) => w.str(errorMessage(err).slice(0, 4096)))
    }
    if (!handler) {
      finish(new RemoteError(`${inv.cluster}: this member has no request handler`))
      return
    }
    const ctx: RequestContext = { from: inv.from, cluster: inv.cluster, deadline, signal: ac.signal }
    if (inv.headers) ctx.headers = inv.headers
    Promise.resolve()
      .then(() => handler(inv.data, ctx))
      .then(
        (r) => {
          const reply = toReply(r)
          finish(undefined, toPayload(reply.data, 'reply', this.host.maxMessageSize()), reply.headers)
        },
        (err) => finish(err),
      )
      .catch((err) => finish(err))
  }
}
