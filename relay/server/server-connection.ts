/**
 * One thin client's connection to the relay (see `server.ts` for the guarantees): the
 * handshake, calls under per-connection in-flight bounds, memberships served through
 * INVOKE / BROADCAST_DELIVER / TUNNEL_INCOMING, subscriptions and tunnels. It tracks when
 * the client last sent a frame and whether anything is open on it (`idle`), for the
 * server's idle timeout and connection limit.
 */
import { DEFAULT_RELAY_HANDSHAKE_TIMEOUT } from '../../src/constants.js'
import {
  AbortedError,
  errorMessage,
  errorName,
  InvalidArgumentError,
  OverloadedError,
} from '../../src/errors.js'
import { checkPattern, checkTopic } from '../../src/pubsub/subject.js'
import type { PlexusNode } from '../../src/types.js'
import { type BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { checkQueueName } from '../../src/util/validate.js'
import { FramedConnection } from '../wire/connection.js'
import {
  CONNECTION_ID,
  decodeBytesBody,
  decodeHello,
  decodeStrBody,
  encodeError,
  encodeWelcome,
  FRAME_OVERHEAD,
  type Frame,
  Op,
  opcodeName,
  PROTOCOL_VERSION,
  SUPPORTED_VERSIONS,
} from '../wire/protocol.js'
import {
  decodeBroadcast,
  decodeFlush,
  decodePublish,
  decodeSubscribe,
  decodeTunnelClose,
  decodeTunnelCredit,
  decodeTunnelOpen,
  decodeUnsubscribe,
  encodePublishAck,
  encodeTunnelOpened,
} from '../wire/protocol-ext.js'
import type { ByteTransport } from '../wire/transport.js'
import type { ConsumerBridgeStats } from './server-consumer.js'
import { RelayMemberships } from './server-members.js'
import { RelaySubscriptions } from './server-pubsub.js'
import { onRequestFrame, type RelayRequestHost } from './server-requests.js'
import { RelayStreams } from './server-streams.js'
import { RelayTunnels, type TunnelBridgeStats } from './server-tunnels.js'

/** Snapshot of a relay's state, from `RelayServer.stats()`. */
export interface RelayStats {
  connections: number
  subscriptions: number
  /** Bytes waiting in subscription queues, all connections. */
  subscriptionQueuedBytes: number
  /** Subscription messages dropped because a client could not keep up, all connections. */
  subscriptionDrops: number
  tunnels: TunnelBridgeStats[]
  /** Stream consumers open, all connections. */
  consumers: ConsumerBridgeStats[]
  /**
   * Bytes held for stream consumers, all connections: messages read and not yet sent
   * (`held`) plus what the node's consumers behind them hold (`inFlight`).
   */
  consumerBytes: number
  /** Bytes waiting to be written to clients, all connections (frames queued + socket buffers). */
  outboundBytes: number
  /** The largest of those per connection. */
  maxOutboundBytes: number
  /** Connections closed after the idle timeout or the handshake timeout, since the start. */
  idleClosed: number
  /** Idle connections closed to make room for a new client at the connection limit. */
  evicted: number
  /** New connections refused at the connection limit (nothing idle to close). */
  refused: number
}

/** Per-connection bounds. */
export const RELAY_LIMITS = {
  /** A connection must send HELLO within this many ms (default of `relay.handshakeTimeoutMs`). */
  handshakeTimeout: DEFAULT_RELAY_HANDSHAKE_TIMEOUT,
  /** Requests one client may have in flight; more are answered OverloadedError. */
  maxInFlight: 4096,
  /** Request payload bytes one client may have in flight. */
  maxInFlightBytes: 64 * 1024 * 1024,
  /** Outbound bytes above which reading from the client pauses. */
  pauseAt: 8 * 1024 * 1024,
  /** Outbound bytes above which the client is dropped (added to one max frame). */
  dropAt: 64 * 1024 * 1024,
  /** Tunnels (opened and incoming) one connection may have. */
  maxTunnels: 256,
} as const

/** One thin client's connection (internal to the relay server). */
export class RelayClientConnection {
  private readonly conn: FramedConnection
  /** True once the client completed the handshake. */
  welcomed = false
  private readonly requests = new Map<number, AbortController>()
  private inFlightBytes = 0
  private handshakeTimer: NodeJS.Timeout | undefined
  private cleanedUp: Promise<void> | undefined
  private peerEnded = false
  private version = PROTOCOL_VERSION
  private readonly subs: RelaySubscriptions
  private readonly tunnels: RelayTunnels
  private readonly members: RelayMemberships
  private readonly streams: RelayStreams
  private readonly requestHost: RelayRequestHost
  /** `Date.now()` when the connection opened or the client last sent a frame. */
  lastActivity = Date.now()
  /** True once the handshake timeout closed this connection. */
  timedOut = false

  constructor(
    private readonly node: PlexusNode,
    transport: ByteTransport,
    private readonly maxMessageSize: number,
    private readonly onGone: () => void,
    handshakeTimeoutMs: number = RELAY_LIMITS.handshakeTimeout,
  ) {
    this.conn = new FramedConnection(transport, {
      // Before HELLO only small frames are accepted.
      maxFrame: 4096,
      pauseAt: RELAY_LIMITS.pauseAt,
      dropAt: RELAY_LIMITS.dropAt + maxMessageSize + FRAME_OVERHEAD,
      onFrame: (f) => this.onFrame(f),
      onFatal: (err) => this.fatal(err),
      onClose: () => void this.cleanup(),
      onDrain: () => {
        this.subs.pump()
        this.streams.pump()
      },
      onEnd: () => {
        // The client sends nothing more: it cannot answer INVOKEs, so leave its clusters,
        // but answer the requests it already sent before closing.
        this.peerEnded = true
        void this.leaveAll()
        this.maybeEnd()
      },
    })
    this.subs = new RelaySubscriptions(node, this.conn)
    this.tunnels = new RelayTunnels(this.conn, maxMessageSize, RELAY_LIMITS.maxTunnels)
    this.members = new RelayMemberships({
      node,
      conn: this.conn,
      tunnels: this.tunnels,
      maxTunnels: RELAY_LIMITS.maxTunnels,
      cleanedUp: () => this.cleanedUp !== undefined,
      peerEnded: () => this.peerEnded,
      sendError: (id, err) => this.sendError(id, err),
    })
    this.requestHost = {
      node,
      conn: this.conn,
      maxMessageSize,
      track: (id, bytes, run, answer) => this.track(id, bytes, run, answer),
    }
    this.streams = new RelayStreams({
      node,
      conn: this.conn,
      maxMessageSize,
      track: (id, bytes, run, answer) => this.track(id, bytes, run, answer),
      sendError: (id, err) => this.sendError(id, err),
    })
    this.handshakeTimer = setTimeout(() => {
      this.timedOut = true
      this.refuse(`no HELLO within ${handshakeTimeoutMs} ms`)
      // A peer that does not read must not hold the slot for the close grace period.
      void this.cleanup()
    }, handshakeTimeoutMs)
    this.handshakeTimer.unref()
  }

  /** True when nothing is open on the connection: no subscription, consumer, tunnel, membership or call. */
  get idle(): boolean {
    return (
      this.cleanedUp === undefined &&
      this.requests.size === 0 &&
      this.subs.size === 0 &&
      this.streams.size === 0 &&
      this.tunnels.size === 0 &&
      this.members.open === 0
    )
  }

  /** Bytes waiting to be written to this client. */
  get outbound(): number {
    return this.conn.outbound
  }

  /**
   * Closes the connection for the server (idle timeout, or room for a new client): a fatal
   * ERROR (id 0) naming `name` and `message` (REFUSE before the handshake), then close.
   */
  closeFor(name: string, message: string): Promise<void> {
    if (!this.welcomed) this.conn.send(Op.Refuse, CONNECTION_ID, (w) => w.str(message))
    else this.conn.send(Op.Error, CONNECTION_ID, (w) => encodeError(w, { name, message }))
    this.conn.end(250)
    return this.cleanup()
  }

  /** Closes the connection and leaves its memberships. */
  shutdown(): Promise<void> {
    this.conn.end(250)
    return this.cleanup()
  }

  private cleanup(): Promise<void> {
    this.cleanedUp ??= (async () => {
      clearTimeout(this.handshakeTimer)
      this.onGone()
      for (const ac of this.requests.values()) ac.abort(new AbortedError('relay client disconnected'))
      this.requests.clear()
      await this.leaveAll()
    })()
    return this.cleanedUp
  }

  /** Adds this connection's counters to `st`. */
  addStats(st: RelayStats): void {
    st.subscriptions += this.subs.size
    st.subscriptionQueuedBytes += this.subs.queued
    st.subscriptionDrops += this.subs.dropped
    st.tunnels.push(...this.tunnels.stats())
    const consumers = this.streams.stats()
    st.consumers.push(...consumers)
    for (const c of consumers) st.consumerBytes += c.held + c.inFlight
    const out = this.conn.outbound
    st.outboundBytes += out
    st.maxOutboundBytes = Math.max(st.maxOutboundBytes, out)
  }

  /**
   * Leaves every cluster joined through this connection; pending INVOKEs fail, pending
   * broadcast deliveries count as done, subscriptions and consumers end and tunnels fail.
   */
  private async leaveAll(): Promise<void> {
    this.subs.closeAll()
    this.streams.closeAll()
    this.tunnels.abortAll('the relay client disconnected')
    await this.members.leaveAll()
  }

  /** After the client's half-close: close once every request it sent is answered. */
  private maybeEnd(): void {
    if (this.peerEnded && this.requests.size === 0) this.conn.end()
  }

  private refuse(reason: string): void {
    this.conn.send(Op.Refuse, CONNECTION_ID, (w) => w.str(reason))
    this.conn.end()
  }

  /** A malformed frame: name the problem, then close. */
  private fatal(err: unknown): void {
    const msg =
      err instanceof DecodeError ? `malformed frame: ${err.message}` : `relay error: ${errorMessage(err)}`
    if (!this.welcomed) this.conn.send(Op.Refuse, CONNECTION_ID, (w) => w.str(msg))
    else
      this.conn.send(Op.Error, CONNECTION_ID, (w) =>
        encodeError(w, { name: 'InvalidArgumentError', message: msg }),
      )
  }

  private onFrame(f: Frame): void {
    this.lastActivity = Date.now()
    if (!this.welcomed) {
      if (f.opcode !== Op.Hello) {
        this.refuse(`expected HELLO (0x01) as the first frame, got ${opcodeName(f.opcode)}`)
        return
      }
      const hello = decodeHello(f.body)
      if (!SUPPORTED_VERSIONS.includes(hello.version)) {
        this.refuse(
          `unsupported protocol version ${hello.version}; this relay speaks versions ${SUPPORTED_VERSIONS.join(' and ')}`,
        )
        return
      }
      clearTimeout(this.handshakeTimer)
      this.welcomed = true
      this.version = hello.version
      this.conn.decoder.maxFrame = this.maxMessageSize + FRAME_OVERHEAD
      this.conn.send(Op.Welcome, CONNECTION_ID, (w) =>
        encodeWelcome(w, {
          version: this.version,
          nodeId: this.node.id,
          network: this.node.network,
          maxMessageSize: this.maxMessageSize,
        }),
      )
      return
    }
    switch (f.opcode) {
      case Op.Request:
      case Op.RequestHeaders:
      case Op.RequestMany:
        onRequestFrame(this.requestHost, f)
        return
      case Op.Cancel:
        f.body.end('CANCEL')
        // REQUEST, BROADCAST, PUBLISH, TUNNEL_OPEN and STREAM_* calls are all cancellable.
        this.requests.get(f.id)?.abort(new AbortedError('cancelled by the relay client'))
        return
      case Op.Join:
        this.members.onJoin(f, this.version)
        return
      case Op.Leave:
        this.members.onLeave(f.id, decodeStrBody(f.body, 'LEAVE'))
        return
      case Op.InvokeReply:
      case Op.InvokeReplyHeaders:
      case Op.InvokeError:
        this.members.onInvokeAnswer(f, this.maxMessageSize)
        return
      case Op.Status:
        f.body.end('STATUS')
        this.conn.send(Op.StatusReply, f.id, (w) =>
          w.bytes(new TextEncoder().encode(JSON.stringify(this.node.status()))),
        )
        return
      case Op.Ping:
        f.body.end('PING')
        this.conn.send(Op.Pong, f.id)
        return
      case Op.Pong:
        return
      case Op.Broadcast: {
        const b = decodeBroadcast(f.body, this.maxMessageSize)
        this.track(
          f.id,
          b.data.length,
          () => this.node.broadcast(b.cluster, b.data),
          (n) => [Op.Ok, (w) => w.u32(n)],
        )
        return
      }
      case Op.BroadcastAck: {
        f.body.end('BROADCAST_ACK')
        this.members.ackDelivery(f.id)
        return
      }
      case Op.Subscribe: {
        const s = decodeSubscribe(f.body)
        let ready: Promise<void>
        try {
          checkPattern(s.pattern, 'pattern')
          checkQueueName(s.queue, 'queue')
          ready = this.subs.subscribe(s.subId, s.pattern, s.maxPending, s.queue)
        } catch (err) {
          this.sendError(f.id, err)
          return
        }
        // OK once the subscription is live across the network (docs/relay-protocol.md).
        void ready.then(() => this.conn.send(Op.Ok, f.id))
        return
      }
      case Op.Flush: {
        const timeoutMs = decodeFlush(f.body)
        this.track(
          f.id,
          0,
          (signal) => this.node.flush({ timeout: timeoutMs === 0 ? undefined : timeoutMs, signal }),
          () => [Op.Ok],
        )
        return
      }
      case Op.Unsubscribe: {
        const id = decodeUnsubscribe(f.body)
        this.answer(f.id, () => this.subs.unsubscribe(id))
        return
      }
      case Op.Publish:
        this.onPublish(f)
        return
      case Op.TunnelOpen:
        this.onTunnelOpen(f)
        return
      case Op.TunnelData: {
        const data = decodeBytesBody(f.body, 'TUNNEL_DATA', this.maxMessageSize)
        this.tunnels.get(f.id)?.onData(data)
        return
      }
      case Op.TunnelCredit: {
        const n = decodeTunnelCredit(f.body)
        this.tunnels.get(f.id)?.onCredit(n)
        return
      }
      case Op.TunnelClose: {
        const c = decodeTunnelClose(f.body)
        this.tunnels.get(f.id)?.onClose(c.kind, c.message)
        return
      }
      case Op.Hello:
        throw new DecodeError('HELLO sent twice')
      default:
        if (this.streams.onFrame(f)) return
        this.sendError(f.id, new InvalidArgumentError(`unsupported opcode ${opcodeName(f.opcode)}`))
    }
  }

  private sendError(id: number, err: unknown): void {
    this.conn.send(Op.Error, id, (w) => encodeError(w, { name: errorName(err), message: errorMessage(err) }))
  }

  /** Runs a synchronous call and answers OK, or ERROR with what it threw. */
  private answer(id: number, run: () => void): void {
    try {
      run()
      this.conn.send(Op.Ok, id)
    } catch (err) {
      this.sendError(id, err)
    }
  }

  /**
   * Runs one asynchronous call under the connection's in-flight bounds (count and payload
   * bytes) and answers it exactly once: the frame `answer(result)` describes, or ERROR.
   */
  private track<T>(
    id: number,
    bytes: number,
    run: (signal: AbortSignal) => Promise<T>,
    answer: (v: T) => [opcode: number, body?: (w: BinaryWriter) => void],
  ): void {
    if (this.requests.has(id)) throw new DecodeError(`correlation id ${id} is already in flight`)
    if (this.requests.size >= RELAY_LIMITS.maxInFlight) {
      this.sendError(
        id,
        new OverloadedError(`${RELAY_LIMITS.maxInFlight} calls in flight on this relay connection`),
      )
      return
    }
    if (this.inFlightBytes + bytes > RELAY_LIMITS.maxInFlightBytes) {
      this.sendError(
        id,
        new OverloadedError(
          `over ${RELAY_LIMITS.maxInFlightBytes} payload bytes in flight on this relay connection`,
        ),
      )
      return
    }
    const ac = new AbortController()
    this.requests.set(id, ac)
    this.inFlightBytes += bytes
    const done = () => {
      this.inFlightBytes -= bytes
      if (this.requests.get(id) === ac) this.requests.delete(id)
      queueMicrotask(() => this.maybeEnd())
    }
    let p: Promise<T>
    try {
      p = run(ac.signal)
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(
      (v) => {
        done()
        const [opcode, body] = answer(v)
        this.conn.send(opcode, id, body)
      },
      (err) => {
        done()
        this.sendError(id, err)
      },
    )
  }

  private onPublish(f: Frame): void {
    const m = decodePublish(f.body, this.maxMessageSize)
    this.track(
      f.id,
      m.data.length,
      async () => {
        checkTopic(m.topic, 'topic')
        return this.node.publish(m.topic, m.data, {
          key: m.key,
          headers: m.headers,
          ack: m.ack,
          msgId: m.msgId,
          timeout: m.timeoutMs === 0 ? undefined : m.timeoutMs,
          // This client's own capability, for this call only (never another client's).
          capability: m.capability,
        })
      },
      (ack) => (ack ? [Op.PublishAck, (w) => encodePublishAck(w, ack)] : [Op.Ok]),
    )
  }

  private onTunnelOpen(f: Frame): void {
    const o = decodeTunnelOpen(f.body)
    const refusal = this.tunnels.refusal(o.window)
    if (refusal) {
      this.sendError(f.id, refusal)
      return
    }
    this.track(
      f.id,
      0,
      async (signal) => {
        const t = await this.node.tunnel(o.cluster, {
          timeout: o.timeoutMs === 0 ? undefined : o.timeoutMs,
          signal,
        })
        if (this.cleanedUp || this.peerEnded || this.conn.isClosed) {
          t.abort('the relay client disconnected')
          throw new AbortedError('the relay client disconnected')
        }
        return this.tunnels.add(t, 'opened', o.window)
      },
      (b) => [
        Op.TunnelOpened,
        (w) => encodeTunnelOpened(w, { tunnelId: b.id, peer: b.stats().peer, window: b.window }),
      ],
    )
  }
}
