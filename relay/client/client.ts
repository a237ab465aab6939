/**
 * Thin TypeScript client of the relay: the library's method names (`request`, `join`,
 * `broadcast`, `subscribe`, `publish`, `tunnel`, `streams`, `consume`, `status`) without
 * embedding libp2p — the
 * local node does the overlay work. Errors that
 * cross the wire by name are rebuilt as the same exported classes (`errorFromWire`).
 */
import { DEFAULT_MAX_MESSAGE_SIZE } from '../../src/constants.js'
import {
  AbortedError,
  errorFromWire,
  errorMessage,
  TimeoutError,
  TunnelClosedError,
} from '../../src/errors.js'
import { checkPattern, checkTopic } from '../../src/pubsub/subject.js'
import type {
  ConsumeOptions,
  KvBucket,
  Message,
  NodeStatus,
  PublishAck,
  PublishOptions,
  SubscribeOptions,
} from '../../src/types.js'
import { type BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { ReceivedMessage } from '../../src/util/received.js'
import {
  checkClusterName,
  checkOptions,
  checkSignal,
  checkSubscribeArgs,
  checkTimeout,
  toPayload,
} from '../../src/util/validate.js'
import { FramedConnection } from '../wire/connection.js'
import {
  CONNECTION_ID,
  decodeBytesBody,
  decodeError,
  decodeStrBody,
  decodeWelcome,
  encodeHello,
  FRAME_OVERHEAD,
  type Frame,
  Op,
  opcodeName,
  PROTOCOL_VERSION,
  type Welcome,
} from '../wire/protocol.js'
import {
  decodeMessage,
  decodePublishAck,
  decodeTunnelClose,
  decodeTunnelCredit,
  decodeTunnelOpened,
  encodeBroadcast,
  encodeFlush,
  encodePublish,
  encodeSubscribe,
  encodeTunnelOpen,
} from '../wire/protocol-ext.js'
import { unrefInterval } from '../wire/transport.js'
import type { WebSocketConstructor } from '../wire/transport-ws.js'
import {
  type ConnectRelayOptions,
  type FlushOptions,
  invalid,
  type RelayClient,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayTunnelOptions,
  RelayUnavailableError,
} from './client-api.js'
import type { RelayConsumer } from './client-consumer.js'
import { type RelayKvOptions, relayKv } from './client-kv.js'
import { ClientMemberships } from './client-members.js'
import { checkPublishOptions, type RelayTarget, resolveConnectOptions } from './client-options.js'
import { connectReconnecting } from './client-reconnect.js'
import { ClientRequests } from './client-requests.js'
import { ClientStreams, type ClientStreamsHost } from './client-streams.js'
import { ClientSubscription, type RelaySubscription } from './client-subscription.js'
import { openClientTransport } from './client-transport.js'
import { ClientTunnel, clientTunnelWindow, type RelayTunnel } from './client-tunnel.js'

export {
  type ConnectRelayOptions,
  parseRelayAddress,
  type RelayClient,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayRequestManyOptions,
  type RelayRequestOptions,
  type RelayTunnelOptions,
  RelayUnavailableError,
} from './client-api.js'

export type { RelayConsumer } from './client-consumer.js'
export type { RelayStreams } from './client-streams.js'
export type { RelaySubscription } from './client-subscription.js'
export type { RelayTunnel } from './client-tunnel.js'

/** A subscription's message handler. */
type SubHandler = (msg: Message) => void | Promise<void>

/**
 * Connects to a node's relay and completes the handshake. `opts` may be the relay's address
 * alone: `'host:port'` (TCP) or a `ws://` / `wss://` URL. With `reconnect`, the client
 * opens a new connection with backoff whenever one is lost (`client-reconnect.ts`).
 */
export async function connectRelay(opts: ConnectRelayOptions | string = {}): Promise<RelayClient> {
  const { target, timeout, signal, name, WebSocket, reconnect } = resolveConnectOptions(opts)
  const once = async () => {
    const client = new Client(target, WebSocket)
    await client.open(name, timeout, signal)
    return client
  }
  if (!reconnect) return once()
  return connectReconnecting(once, reconnect, timeout)
}

interface Pending {
  resolve(frame: Frame): void
  reject(err: Error): void
}

/**
 * The client sends PING this often (ms) while connected, so that the relay's idle timeout
 * (default 5 min, for connections with nothing open) never closes a client its program
 * still holds; a process that hangs stops pinging and its connection is reclaimed.
 */
export const RELAY_KEEPALIVE_MS = 60_000

class Client implements RelayClient {
  id = ''
  network = ''
  maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE
  private conn!: FramedConnection
  private readonly pending = new Map<number, Pending>()
  private readonly subs = new Map<number, ClientSubscription>()
  private nextSubId = 1
  private readonly tunnels = new Map<number, ClientTunnel>()
  /** Tunnels created on TUNNEL_OPENED, by the TUNNEL_OPEN call id, until the caller takes them. */
  private readonly opened = new Map<number, ClientTunnel>()
  private readonly openingCluster = new Map<number, string>()
  private nextId = 1
  private closedErr: Error | undefined
  private welcome: Pending | undefined
  private keepAlive: ReturnType<typeof setInterval> | undefined
  private lost!: (err: Error) => void
  /** Resolves with the error that ended the connection (lost, refused, or `close()`). */
  readonly closed = new Promise<Error>((resolve) => {
    this.lost = resolve
  })

  constructor(
    private readonly target: RelayTarget,
    private readonly WebSocketImpl?: WebSocketConstructor,
  ) {}

  private get where(): string {
    if (this.target.url !== undefined) return this.target.url
    const h = this.target.host.includes(':') ? `[${this.target.host}]` : this.target.host
    return `${h}:${this.target.port}`
  }

  async open(name: string, timeout: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw new AbortedError('connectRelay aborted')
    const welcome = new Promise<Frame>((resolve, reject) => {
      this.welcome = { resolve, reject }
    })
    const timer = setTimeout(
      () => this.fail(new TimeoutError(`no answer from the relay at ${this.where} within ${timeout} ms`)),
      timeout,
    )
    const onAbort = () => this.fail(new AbortedError('connectRelay aborted'))
    signal?.addEventListener('abort', onAbort, { once: true })
    const transport = openClientTransport(this.target, this.where, this.WebSocketImpl, (err) =>
      this.fail(err),
    )
    this.conn = new FramedConnection(transport, {
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
      this.keepAlive = unrefInterval(() => {
        this.call(Op.Ping).catch(() => {})
      }, RELAY_KEEPALIVE_MS)
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      this.welcome = undefined
    }
  }

  /** Ends the connection and fails everything pending with `err` (first error wins). */
  private fail(err: Error): void {
    if (!this.closedErr) this.closedErr = err
    this.lost(this.closedErr)
    clearInterval(this.keepAlive)
    this.conn?.destroy()
    this.welcome?.reject(this.closedErr)
    this.welcome = undefined
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const p of pending) p.reject(this.closedErr)
    this.members.abortAll(this.closedErr)
    for (const s of [...this.subs.values()]) s.fail(this.closedErr)
    const lost = new TunnelClosedError(`tunnel lost: ${this.closedErr.message}`, { cause: this.closedErr })
    for (const t of [...this.tunnels.values()]) t.terminate(lost)
    this.tunnels.clear()
    this.streams.failAll(this.closedErr)
  }

  private tunnelWire = {
    send: (opcode: number, id: number, body?: (w: BinaryWriter) => void) => this.conn.send(opcode, id, body),
    finished: (id: number) => this.tunnels.delete(id),
  }

  /** Durable streams through the relay: create, info, delete, list. */
  private readonly streamsHost: ClientStreamsHost = {
    maxMessageSize: () => this.maxMessageSize,
    closedError: () => this.closedErr,
    send: (opcode, id, body) => this.conn.send(opcode, id, body),
    call: (opcode, body, signal) => this.call(opcode, body, signal),
    expect: (f, opcode) => this.expect(f, opcode),
  }

  readonly streams: ClientStreams = new ClientStreams(this.streamsHost)

  private readonly members = new ClientMemberships({
    maxMessageSize: () => this.maxMessageSize,
    tunnels: this.tunnels,
    tunnelWire: this.tunnelWire,
    closed: () => this.closedErr !== undefined,
    send: (opcode, id, body) => void this.conn.send(opcode, id, body),
    call: (opcode, body) => this.call(opcode, body),
    expect: (f, opcode) => this.expect(f, opcode),
  })

  private readonly requests = new ClientRequests({
    maxMessageSize: () => this.maxMessageSize,
    call: (opcode, body, signal, onId) => this.call(opcode, body, signal, onId),
    expect: (f, opcode) => this.expect(f, opcode),
  })
  readonly request: RelayClient['request'] = (c, d, o) => this.requests.request(c, d, o)
  readonly requestMany: RelayClient['requestMany'] = (c, d, o) => this.requests.requestMany(c, d, o)

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
      case Op.InvokeHeaders:
        this.members.onInvoke(f)
        return
      case Op.ManyReply:
        this.requests.onManyReply(f)
        return
      case Op.InvokeCancel:
        this.members.cancelInvoke(f.id)
        return
      case Op.BroadcastDeliver:
        this.members.onBroadcastDeliver(f)
        return
      case Op.Message: {
        const m = decodeMessage(f.body, this.maxMessageSize)
        const msg: Message = new ReceivedMessage(m.topic, m.data, m.from)
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
        this.members.onTunnelIncoming(f)
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
      default:
        if (this.streams.onFrame(f)) return
    }
    const p = this.pending.get(f.id)
    if (!p) return // answer to a cancelled call
    this.pending.delete(f.id)
    p.resolve(f)
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

  /** A subscription ended (`tellRelay`: by the application, so the relay is told). */
  private readonly subEnded = (s: ClientSubscription, tellRelay: boolean): void => {
    if (this.subs.get(s.id) === s) this.subs.delete(s.id)
    if (tellRelay && !this.closedErr) this.call(Op.Unsubscribe, (w) => w.u32(s.id)).catch(() => {})
  }

  join(cluster: string, opts: RelayJoinOptions): Promise<RelayMembership> {
    return this.members.join(cluster, opts)
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

  subscribe(
    pattern: string,
    handlerOrOptions?: SubHandler | SubscribeOptions,
    options?: SubscribeOptions,
  ): RelaySubscription {
    checkPattern(pattern, 'pattern')
    const { handler, queue } = checkSubscribeArgs<SubHandler>(handlerOrOptions, options)
    if (this.closedErr) throw this.closedErr
    let id = this.nextSubId
    while (id === 0 || this.subs.has(id)) id = (id + 1) >>> 0
    this.nextSubId = (id + 1) >>> 0
    const sub = new ClientSubscription(id, pattern, handler, this.subEnded, queue)
    this.subs.set(id, sub)
    this.call(Op.Subscribe, (w) => encodeSubscribe(w, { subId: id, pattern, maxPending: 0, queue })).then(
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

  async flush(opts: FlushOptions = {}): Promise<void> {
    const o = checkOptions<FlushOptions>(opts, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    checkSignal(o.signal)
    if (o.signal?.aborted) throw new AbortedError('flush aborted before it was sent')
    const timeoutMs = timeout === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(timeout)))
    this.expect(await this.call(Op.Flush, (w) => encodeFlush(w, timeoutMs), o.signal), Op.Ok)
  }

  async publish(
    topic: string,
    data: Uint8Array | string,
    opts: PublishOptions = {},
  ): Promise<PublishAck | undefined> {
    checkTopic(topic, 'topic')
    const payload = toPayload(data, 'data', this.maxMessageSize)
    const p = checkPublishOptions(opts)
    const f = await this.call(Op.Publish, (w) => encodePublish(w, { topic, ...p, data: payload }))
    if (f.opcode === Op.PublishAck) return decodePublishAck(f.body)
    this.expect(f, Op.Ok)
    return undefined
  }

  consume(stream: string, options?: ConsumeOptions): RelayConsumer {
    return this.streams.consume(stream, options)
  }
  /** A key-value bucket through the relay (client-kv.ts): the library's `KvBucket`. */
  kv(bucket: string, options?: RelayKvOptions): Promise<KvBucket> {
    return relayKv(this.streamsHost, this.streams.watches, bucket, options)
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
    this.conn.end()
    this.fail(this.closedErr)
    await this.conn.done
  }
}
