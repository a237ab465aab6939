/**
 * Thin TypeScript client of the relay: the library's method names (`request`, `join`,
 * `broadcast`, `subscribe`, `publish`, `tunnel`, `status`) without embedding libp2p — the
 * local node does the overlay work. Errors that
 * cross the wire by name are rebuilt as the same exported classes (`errorFromWire`).
 */
import { connect, type Socket } from 'node:net'
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_RELAY_HOST,
  DEFAULT_RELAY_PORT,
  RELAY_ENV,
} from '../src/constants.js'
import {
  AbortedError,
  errorFromWire,
  errorMessage,
  RemoteError,
  TimeoutError,
  TunnelClosedError,
} from '../src/errors.js'
import { checkPattern, checkTopic } from '../src/pubsub/subject.js'
import type { Limits, Message, NodeStatus, PublishAck, PublishOptions, RequestContext } from '../src/types.js'
import { type BinaryWriter, DecodeError } from '../src/util/binary.js'
import { parseKey } from '../src/util/keys.js'
import {
  checkClusterName,
  checkFunction,
  checkOptions,
  checkPort,
  checkTimeout,
  toBytes,
  toPayload,
} from '../src/util/validate.js'
import {
  type ConnectRelayOptions,
  checkHeaders,
  checkU32,
  invalid,
  parseRelayAddress,
  type RelayClient,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayRequestOptions,
  type RelayTunnelOptions,
  RelayUnavailableError,
} from './client-api.js'
import { ClientSubscription, type RelaySubscription } from './client-subscription.js'
import { ClientTunnel, clientTunnelWindow, type RelayTunnel } from './client-tunnel.js'
import { FramedConnection } from './connection.js'
import {
  CONNECTION_ID,
  decodeBytesBody,
  decodeError,
  decodeInvoke,
  decodeStrBody,
  decodeWelcome,
  encodeHello,
  encodeJoin,
  encodeRequest,
  FRAME_OVERHEAD,
  type Frame,
  JoinFlag,
  Op,
  opcodeName,
  PROTOCOL_VERSION,
  type Welcome,
} from './protocol.js'
import {
  decodeBroadcastDeliver,
  decodeMessage,
  decodePublishAck,
  decodeTunnelClose,
  decodeTunnelCredit,
  decodeTunnelIncoming,
  decodeTunnelOpened,
  encodeBroadcast,
  encodePublish,
  encodeSubscribe,
  encodeTunnelOpen,
} from './protocol-ext.js'

export {
  type ConnectRelayOptions,
  parseRelayAddress,
  type RelayClient,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayRequestOptions,
  type RelayTunnelOptions,
  RelayUnavailableError,
} from './client-api.js'
export type { RelaySubscription } from './client-subscription.js'
export type { RelayTunnel } from './client-tunnel.js'

/** Connects to a node's relay and completes the handshake. */
export async function connectRelay(opts: ConnectRelayOptions = {}): Promise<RelayClient> {
  const o = checkOptions<ConnectRelayOptions>(opts, 'options')
  let target: { host: string; port: number }
  if (o.address !== undefined) target = parseRelayAddress(o.address, 'options.address')
  else {
    const env = process.env[RELAY_ENV]
    const base = env
      ? parseRelayAddress(env, RELAY_ENV)
      : { host: DEFAULT_RELAY_HOST, port: DEFAULT_RELAY_PORT }
    if (o.host !== undefined && (typeof o.host !== 'string' || o.host === '')) {
      throw invalid('options.host', o.host)
    }
    target = { host: o.host ?? base.host, port: checkPort(o.port, 'options.port') ?? base.port }
  }
  const timeout = checkTimeout(o.timeout, 'options.timeout') ?? 5000
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw invalid('options.signal', o.signal, 'an AbortSignal')
  }
  const name = o.clientName === undefined ? 'plexus-ts' : String(o.clientName).slice(0, 200)
  const client = new Client(target)
  await client.open(name, timeout, o.signal)
  return client
}

interface Pending {
  resolve(frame: Frame): void
  reject(err: Error): void
}

class Client implements RelayClient {
  id = ''
  network = ''
  maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE
  private conn!: FramedConnection
  private readonly pending = new Map<number, Pending>()
  private readonly handlers = new Map<string, RelayJoinOptions>()
  private readonly subs = new Map<number, ClientSubscription>()
  private nextSubId = 1
  private readonly tunnels = new Map<number, ClientTunnel>()
  /** Tunnels created on TUNNEL_OPENED, by the TUNNEL_OPEN call id, until the caller takes them. */
  private readonly opened = new Map<number, ClientTunnel>()
  private readonly openingCluster = new Map<number, string>()
  private readonly invocations = new Map<number, AbortController>()
  private nextId = 1
  private closedErr: Error | undefined
  private welcome: Pending | undefined

  constructor(private readonly target: { host: string; port: number }) {}

  private get where(): string {
    const h = this.target.host.includes(':') ? `[${this.target.host}]` : this.target.host
    return `${h}:${this.target.port}`
  }

  async open(name: string, timeout: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw new AbortedError('connectRelay aborted')
    const socket: Socket = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true })
    const welcome = new Promise<Frame>((resolve, reject) => {
      this.welcome = { resolve, reject }
    })
    const timer = setTimeout(
      () => this.fail(new TimeoutError(`no answer from the relay at ${this.where} within ${timeout} ms`)),
      timeout,
    )
    const onAbort = () => this.fail(new AbortedError('connectRelay aborted'))
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const refused = err.code === 'ECONNREFUSED'
      this.fail(
        new RelayUnavailableError(
          refused
            ? `no Plexus node's relay is listening at ${this.where} (connection refused); start one with "plexus node" or set ${RELAY_ENV}`
            : `cannot reach the relay at ${this.where}: ${err.message}`,
          { cause: err },
        ),
      )
    })
    this.conn = new FramedConnection(socket, {
      maxFrame: this.maxMessageSize + FRAME_OVERHEAD,
      pauseAt: 8 * 1024 * 1024,
      dropAt: 256 * 1024 * 1024,
      onFrame: (f) => this.onFrame(f),
      onFatal: (err) =>
        this.fail(new RelayUnavailableError(`relay at ${this.where} sent ${errorMessage(err)}`)),
      onClose: () =>
        this.fail(new RelayUnavailableError(`connection to the relay at ${this.where} was lost`)),
    })
    this.conn.send(Op.Hello, CONNECTION_ID, (w) =>
      encodeHello(w, { version: PROTOCOL_VERSION, client: name }),
    )
    try {
      const f = await welcome
      const w: Welcome = decodeWelcome(f.body)
      this.id = w.nodeId
      this.network = w.network
      this.maxMessageSize = w.maxMessageSize
      this.conn.decoder.maxFrame = w.maxMessageSize + FRAME_OVERHEAD
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      this.welcome = undefined
    }
  }

  /** Ends the connection and fails everything pending with `err` (first error wins). */
  private fail(err: Error): void {
    if (!this.closedErr) this.closedErr = err
    this.conn?.destroy()
    this.welcome?.reject(this.closedErr)
    this.welcome = undefined
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const p of pending) p.reject(this.closedErr)
    for (const ac of this.invocations.values()) ac.abort(this.closedErr)
    this.invocations.clear()
    for (const s of [...this.subs.values()]) s.fail(this.closedErr)
    const lost = new TunnelClosedError(`tunnel lost: ${this.closedErr.message}`, { cause: this.closedErr })
    for (const t of [...this.tunnels.values()]) t.terminate(lost)
    this.tunnels.clear()
  }

  private tunnelWire = {
    send: (opcode: number, id: number, body?: (w: BinaryWriter) => void) => this.conn.send(opcode, id, body),
    finished: (id: number) => this.tunnels.delete(id),
  }

  private onFrame(f: Frame): void {
    switch (f.opcode) {
      case Op.Welcome:
        if (!this.welcome) throw new DecodeError('unexpected WELCOME')
        this.welcome.resolve(f)
        return
      case Op.Refuse: {
        const reason = decodeStrBody(f.body, 'REFUSE')
        this.fail(new RelayUnavailableError(`relay at ${this.where} refused the connection: ${reason}`))
        return
      }
      case Op.Invoke:
        this.onInvoke(f)
        return
      case Op.InvokeCancel:
        this.invocations.get(f.id)?.abort(new TimeoutError('the caller gave up'))
        this.invocations.delete(f.id)
        return
      case Op.BroadcastDeliver:
        this.onBroadcastDeliver(f)
        return
      case Op.Message: {
        const m = decodeMessage(f.body, this.maxMessageSize)
        const msg: Message = { topic: m.topic, data: m.data, from: m.from }
        if (m.key) msg.key = m.key
        if (m.headers) msg.headers = m.headers
        this.subs.get(f.id)?.deliver(msg, m.dropped)
        return
      }
      case Op.TunnelOpened: {
        const o = decodeTunnelOpened(f.body)
        const p = this.pending.get(f.id)
        const t = new ClientTunnel(
          o.tunnelId,
          o.peer,
          this.openingCluster.get(f.id) ?? '',
          o.window,
          clientTunnelWindow(this.maxMessageSize),
          this.maxMessageSize,
          this.tunnelWire,
        )
        this.tunnels.set(o.tunnelId, t)
        if (!p) {
          t.abort('the tunnel setup was abandoned')
          return
        }
        this.opened.set(f.id, t)
        break
      }
      case Op.TunnelIncoming:
        this.onTunnelIncoming(f)
        return
      case Op.TunnelData:
        this.tunnels.get(f.id)?.onData(decodeBytesBody(f.body, 'TUNNEL_DATA', this.maxMessageSize))
        return
      case Op.TunnelCredit:
        this.tunnels.get(f.id)?.onCredit(decodeTunnelCredit(f.body))
        return
      case Op.TunnelClose: {
        const c = decodeTunnelClose(f.body)
        this.tunnels.get(f.id)?.onClose(c.kind, c.name, c.message)
        return
      }
      case Op.Ping:
        this.conn.send(Op.Pong, f.id)
        return
      case Op.Error:
        if (f.id === CONNECTION_ID) {
          const e = decodeError(f.body)
          this.fail(errorFromWire(e.name, `relay at ${this.where} closed the connection: ${e.message}`))
          return
        }
        break
    }
    const p = this.pending.get(f.id)
    if (!p) return // answer to a cancelled call
    this.pending.delete(f.id)
    p.resolve(f)
  }

  private onBroadcastDeliver(f: Frame): void {
    const b = decodeBroadcastDeliver(f.body, this.maxMessageSize)
    const handler = this.handlers.get(b.cluster)?.onBroadcast
    const id = f.id
    const ack = () => void this.conn.send(Op.BroadcastAck, id)
    if (!handler) {
      ack()
      return
    }
    Promise.resolve()
      .then(() => handler(b.data, { from: b.from, cluster: b.cluster }))
      .then(ack, ack)
  }

  private onTunnelIncoming(f: Frame): void {
    const inc = decodeTunnelIncoming(f.body)
    const window = clientTunnelWindow(this.maxMessageSize)
    const t = new ClientTunnel(
      f.id,
      inc.from,
      inc.cluster,
      inc.window,
      window,
      this.maxMessageSize,
      this.tunnelWire,
    )
    this.tunnels.set(f.id, t)
    const handler = this.handlers.get(inc.cluster)?.onTunnel
    if (!handler) {
      t.abort(`${inc.cluster}: this member does not accept tunnels`)
      return
    }
    this.conn.send(Op.TunnelCredit, f.id, (w) => w.u32(window))
    Promise.resolve()
      .then(() => handler(t, { from: inc.from, cluster: inc.cluster }))
      .catch((err) => t.abort(`handler failed: ${errorMessage(err)}`))
  }

  private onInvoke(f: Frame): void {
    const inv = decodeInvoke(f.body, this.maxMessageSize)
    const handler = this.handlers.get(inv.cluster)?.onRequest
    const id = f.id
    const ac = new AbortController()
    this.invocations.set(id, ac)
    const deadline = Date.now() + inv.remainingMs
    const timer = setTimeout(() => ac.abort(new TimeoutError('deadline passed')), inv.remainingMs)
    timer.unref()
    const finish = (err: unknown, data?: Uint8Array) => {
      clearTimeout(timer)
      if (this.invocations.get(id) !== ac) return
      this.invocations.delete(id)
      if (err === undefined) this.conn.send(Op.InvokeReply, id, (w) => w.bytes(data!))
      else this.conn.send(Op.InvokeError, id, (w) => w.str(errorMessage(err).slice(0, 4096)))
    }
    if (!handler) {
      finish(new RemoteError(`${inv.cluster}: this member has no request handler`))
      return
    }
    const ctx: RequestContext = { from: inv.from, cluster: inv.cluster, deadline, signal: ac.signal }
    Promise.resolve()
      .then(() => handler(inv.data, ctx))
      .then(
        (r) => finish(undefined, toPayload(r, 'reply', this.maxMessageSize)),
        (err) => finish(err),
      )
      .catch((err) => finish(err))
  }

  /** Sends one call frame and resolves with the answering frame. */
  private call(
    opcode: number,
    body?: (w: BinaryWriter) => void,
    signal?: AbortSignal,
    onId?: (id: number) => void,
  ): Promise<Frame> {
    if (this.closedErr) return Promise.reject(this.closedErr)
    let id = this.nextId
    while (id === CONNECTION_ID || this.pending.has(id)) id = (id + 1) >>> 0
    this.nextId = (id + 1) >>> 0
    onId?.(id)
    return new Promise<Frame>((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return
        this.conn.send(Op.Cancel, id)
        reject(new AbortedError('request aborted', { cause: signal?.reason }))
      }
      this.pending.set(id, {
        resolve: (f) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(f)
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort)
          reject(e)
        },
      })
      signal?.addEventListener('abort', onAbort, { once: true })
      this.conn.send(opcode, id, body)
    })
  }

  /** Throws the error carried by an ERROR frame; otherwise checks the opcode. */
  private expect(f: Frame, opcode: number): void {
    if (f.opcode === Op.Error) {
      const e = decodeError(f.body)
      throw errorFromWire(e.name, e.message)
    }
    if (f.opcode !== opcode) {
      throw new RelayUnavailableError(
        `relay sent ${opcodeName(f.opcode)} where ${opcodeName(opcode)} was expected`,
      )
    }
  }

  async request(
    cluster: string,
    data: Uint8Array | string,
    opts: RelayRequestOptions = {},
  ): Promise<Uint8Array> {
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.maxMessageSize)
    const o = checkOptions<RelayRequestOptions>(opts, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
      throw invalid('options.signal', o.signal, 'an AbortSignal')
    }
    if (o.signal?.aborted) throw new AbortedError('request aborted before it was sent')
    const timeoutMs = timeout === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(timeout)))
    const f = await this.call(
      Op.Request,
      (w) => encodeRequest(w, { cluster, timeoutMs, data: payload }),
      o.signal,
    )
    this.expect(f, Op.Reply)
    return decodeBytesBody(f.body, 'REPLY', this.maxMessageSize).slice()
  }

  async join(cluster: string, opts: RelayJoinOptions): Promise<RelayMembership> {
    checkClusterName(cluster, 'cluster')
    const o = checkOptions<RelayJoinOptions>(opts, 'options')
    if (o.key === undefined) throw invalid('options.key', o.key, 'the cluster key (required to join)')
    parseKey(o.key, 'options.key')
    const onRequest = checkFunction<RelayJoinOptions['onRequest']>(o.onRequest, 'options.onRequest')
    const onBroadcast = checkFunction<RelayJoinOptions['onBroadcast']>(o.onBroadcast, 'options.onBroadcast')
    const onTunnel = checkFunction<RelayJoinOptions['onTunnel']>(o.onTunnel, 'options.onTunnel')
    const flags =
      (onRequest ? JoinFlag.Requests : 0) |
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
    try {
      this.expect(await this.call(Op.Join, (w) => encodeJoin(w, { cluster, key, limits, flags })), Op.Ok)
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
            if (!this.closedErr) this.expect(await this.call(Op.Leave, (w) => w.str(cluster)), Op.Ok)
          } finally {
            this.handlers.delete(cluster)
          }
        })()
        return left
      },
    }
  }

  async broadcast(cluster: string, data: Uint8Array | string): Promise<number> {
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.maxMessageSize)
    const f = await this.call(Op.Broadcast, (w) => encodeBroadcast(w, { cluster, data: payload }))
    this.expect(f, Op.Ok)
    const n = f.body.u32('count')
    f.body.end('OK')
    return n
  }

  subscribe(pattern: string, handler?: (msg: Message) => void | Promise<void>): RelaySubscription {
    checkPattern(pattern, 'pattern')
    const h = checkFunction<(msg: Message) => void | Promise<void>>(handler, 'handler')
    if (this.closedErr) throw this.closedErr
    let id = this.nextSubId
    while (id === 0 || this.subs.has(id)) id = (id + 1) >>> 0
    this.nextSubId = (id + 1) >>> 0
    const sub = new ClientSubscription(id, pattern, h, (s, tellRelay) => {
      if (this.subs.get(s.id) === s) this.subs.delete(s.id)
      if (tellRelay && !this.closedErr) this.call(Op.Unsubscribe, (w) => w.u32(s.id)).catch(() => {})
    })
    this.subs.set(id, sub)
    this.call(Op.Subscribe, (w) => encodeSubscribe(w, { subId: id, pattern, maxPending: 0 })).then(
      (f) => {
        try {
          this.expect(f, Op.Ok)
          sub.confirmed()
        } catch (err) {
          sub.confirmed(err as Error)
        }
      },
      (err) => sub.confirmed(err),
    )
    return sub
  }

  async publish(
    topic: string,
    data: Uint8Array | string,
    opts: PublishOptions = {},
  ): Promise<PublishAck | undefined> {
    checkTopic(topic, 'topic')
    const payload = toPayload(data, 'data', this.maxMessageSize)
    const o = checkOptions<PublishOptions>(opts, 'options')
    const key = o.key === undefined ? undefined : toBytes(o.key, 'options.key')
    const headers = checkHeaders(o.headers)
    const ack = o.ack ?? 'none'
    if (ack !== 'none' && ack !== 'leader' && ack !== 'all') {
      throw invalid('options.ack', o.ack, "'none', 'leader' or 'all'")
    }
    if (o.msgId !== undefined && (typeof o.msgId !== 'string' || o.msgId === '')) {
      throw invalid('options.msgId', o.msgId)
    }
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    const timeoutMs = timeout === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(timeout)))
    const f = await this.call(Op.Publish, (w) =>
      encodePublish(w, { topic, key, headers, msgId: o.msgId, ack, timeoutMs, data: payload }),
    )
    if (f.opcode === Op.PublishAck) return decodePublishAck(f.body)
    this.expect(f, Op.Ok)
    return undefined
  }

  async tunnel(cluster: string, opts: RelayTunnelOptions = {}): Promise<RelayTunnel> {
    checkClusterName(cluster, 'cluster')
    const o = checkOptions<RelayTunnelOptions>(opts, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
      throw invalid('options.signal', o.signal, 'an AbortSignal')
    }
    if (o.signal?.aborted) throw new AbortedError('tunnel aborted before it was opened')
    const timeoutMs = timeout === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(timeout)))
    const window = clientTunnelWindow(this.maxMessageSize)
    let callId = 0
    const f = await this.call(
      Op.TunnelOpen,
      (w) => encodeTunnelOpen(w, { cluster, timeoutMs, window }),
      o.signal,
      (id) => {
        callId = id
        this.openingCluster.set(id, cluster)
      },
    ).finally(() => this.openingCluster.delete(callId))
    const t = this.opened.get(callId)
    this.opened.delete(callId)
    this.expect(f, Op.TunnelOpened)
    if (!t) throw new RelayUnavailableError('relay sent TUNNEL_OPENED without a tunnel')
    return t
  }

  async status(): Promise<NodeStatus> {
    const f = await this.call(Op.Status)
    this.expect(f, Op.StatusReply)
    const json = decodeBytesBody(f.body, 'STATUS_REPLY', 64 * 1024 * 1024)
    return JSON.parse(new TextDecoder().decode(json)) as NodeStatus
  }

  async close(): Promise<void> {
    if (this.closedErr) return
    this.closedErr = new AbortedError('relay client closed')
    const socket = this.conn.socket
    const closed = new Promise<void>((resolve) => {
      if (socket.destroyed) resolve()
      else socket.once('close', () => resolve())
    })
    this.conn.end()
    this.fail(this.closedErr)
    await closed
  }
}
