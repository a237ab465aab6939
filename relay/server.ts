/**
 * The relay endpoint: a TCP server (127.0.0.1 by default) through which thin clients in
 * any language use a local node — request, join (serve a cluster), leave, status. The wire
 * protocol is `relay/protocol.ts`, documented in `docs/relay-protocol.md`.
 *
 * Guarantees: frames from one client are handled in arrival order; replies go back in
 * completion order, each REQUEST answered exactly once (REPLY or ERROR, also after CANCEL);
 * many clients and many requests per client run concurrently. Memory per client is
 * bounded (frame size, requests in flight, outbound buffer). A malformed frame gets an
 * ERROR naming the problem and the connection is closed; the node never crashes. When a
 * client goes away, the memberships it joined are left and its pending invocations fail
 * with RemoteError.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../src/constants.js'
import {
  AbortedError,
  errorMessage,
  errorName,
  InvalidArgumentError,
  OverloadedError,
  PlexusError,
  RemoteError,
  TimeoutError,
} from '../src/errors.js'
import type { Limits, Membership, PlexusNode, RequestContext } from '../src/types.js'
import { DecodeError } from '../src/util/binary.js'
import { FramedConnection } from './connection.js'
import {
  CONNECTION_ID,
  decodeBytesBody,
  decodeHello,
  decodeJoin,
  decodeRequest,
  decodeStrBody,
  encodeError,
  encodeInvoke,
  encodeWelcome,
  FRAME_OVERHEAD,
  type Frame,
  Op,
  opcodeName,
  PROTOCOL_VERSION,
} from './protocol.js'

/** A running relay endpoint. */
export interface RelayServer {
  /** `host:port` actually listened on (the real port when 0 was asked). */
  address: string
  /** Stops accepting, closes every client (leaving their memberships). Idempotent. */
  close(): Promise<void>
}

/** Options of `startRelay`. */
export interface RelayServerOptions {
  host: string
  port: number
  /** Largest payload (defaults to the node's `maxMessageSize` when it exposes one, else 1 MiB). */
  maxMessageSize?: number
}

/** Per-connection bounds. */
export const RELAY_LIMITS = {
  /** A connection must send HELLO within this many ms. */
  handshakeTimeout: 5000,
  /** Requests one client may have in flight; more are answered OverloadedError. */
  maxInFlight: 4096,
  /** Request payload bytes one client may have in flight. */
  maxInFlightBytes: 64 * 1024 * 1024,
  /** Outbound bytes above which reading from the client pauses. */
  pauseAt: 8 * 1024 * 1024,
  /** Outbound bytes above which the client is dropped (added to one max frame). */
  dropAt: 64 * 1024 * 1024,
} as const

/**
 * Starts the relay for `node` on `host:port` (port 0 picks a free one). Rejects with a
 * `PlexusError` naming the port when it is in use.
 */
export async function startRelay(node: PlexusNode, opts: RelayServerOptions): Promise<RelayServer> {
  const maxMessageSize =
    opts.maxMessageSize ?? (node as { maxMessageSize?: number }).maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
  const clients = new Set<RelayClientConnection>()
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    const c = new RelayClientConnection(node, socket, maxMessageSize, () => clients.delete(c))
    clients.add(c)
  })
  server.maxConnections = 1024
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${opts.host}:${opts.port}`
      if (err.code === 'EADDRINUSE') {
        reject(
          new PlexusError(
            `relay port ${opts.port} on ${opts.host} is already in use (another node or program listens at ${where}); choose another with relay: { port } or --relay-port`,
            { cause: err },
          ),
        )
      } else if (err.code === 'EACCES') {
        reject(
          new PlexusError(`relay port ${opts.port} on ${opts.host} needs privileges (EACCES)`, {
            cause: err,
          }),
        )
      } else {
        reject(new PlexusError(`relay cannot listen on ${where}: ${err.message}`, { cause: err }))
      }
    }
    server.once('error', onError)
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off('error', onError)
      server.on('error', () => {})
      resolve()
    })
  })
  const bound = server.address()
  const port = bound && typeof bound === 'object' ? bound.port : opts.port
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  let closing: Promise<void> | undefined
  return {
    address: `${host}:${port}`,
    close() {
      closing ??= (async () => {
        const done = new Promise<void>((resolve) => server.close(() => resolve()))
        await Promise.all([...clients].map((c) => c.shutdown()))
        await done
      })()
      return closing
    },
  }
}

interface PendingInvoke {
  resolve(data: Uint8Array): void
  reject(err: Error): void
}

/** One thin client's connection. */
class RelayClientConnection {
  private readonly conn: FramedConnection
  private welcomed = false
  private readonly requests = new Map<number, AbortController>()
  private inFlightBytes = 0
  private readonly memberships = new Map<string, Membership>()
  private readonly invokes = new Map<number, PendingInvoke>()
  private nextInvokeId = 1
  private handshakeTimer: NodeJS.Timeout | undefined
  private cleanedUp: Promise<void> | undefined
  private peerEnded = false

  constructor(
    private readonly node: PlexusNode,
    socket: Socket,
    private readonly maxMessageSize: number,
    private readonly onGone: () => void,
  ) {
    this.conn = new FramedConnection(socket, {
      // Before HELLO only small frames are accepted.
      maxFrame: 4096,
      pauseAt: RELAY_LIMITS.pauseAt,
      dropAt: RELAY_LIMITS.dropAt + maxMessageSize + FRAME_OVERHEAD,
      onFrame: (f) => this.onFrame(f),
      onFatal: (err) => this.fatal(err),
      onClose: () => void this.cleanup(),
      onEnd: () => {
        // The client sends nothing more: it cannot answer INVOKEs, so leave its clusters,
        // but answer the requests it already sent before closing.
        this.peerEnded = true
        void this.leaveAll()
        this.maybeEnd()
      },
    })
    this.handshakeTimer = setTimeout(
      () => this.refuse('no HELLO within 5000 ms'),
      RELAY_LIMITS.handshakeTimeout,
    )
    this.handshakeTimer.unref()
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

  /** Leaves every cluster joined through this connection; pending INVOKEs fail. */
  private async leaveAll(): Promise<void> {
    const invokes = [...this.invokes.values()]
    this.invokes.clear()
    for (const p of invokes) p.reject(new RemoteError('the relay client serving this request disconnected'))
    const ms = [...this.memberships.values()]
    this.memberships.clear()
    await Promise.all(ms.map((m) => m.leave().catch(() => {})))
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
    if (!this.welcomed) {
      if (f.opcode !== Op.Hello) {
        this.refuse(`expected HELLO (0x01) as the first frame, got ${opcodeName(f.opcode)}`)
        return
      }
      const hello = decodeHello(f.body)
      if (hello.version !== PROTOCOL_VERSION) {
        this.refuse(
          `unsupported protocol version ${hello.version}; this relay speaks version ${PROTOCOL_VERSION}`,
        )
        return
      }
      clearTimeout(this.handshakeTimer)
      this.welcomed = true
      this.conn.decoder.maxFrame = this.maxMessageSize + FRAME_OVERHEAD
      this.conn.send(Op.Welcome, CONNECTION_ID, (w) =>
        encodeWelcome(w, {
          version: PROTOCOL_VERSION,
          nodeId: this.node.id,
          network: this.node.network,
          maxMessageSize: this.maxMessageSize,
        }),
      )
      return
    }
    switch (f.opcode) {
      case Op.Request:
        this.onRequest(f)
        return
      case Op.Cancel:
        f.body.end('CANCEL')
        this.requests.get(f.id)?.abort(new AbortedError('cancelled by the relay client'))
        return
      case Op.Join:
        this.onJoin(f)
        return
      case Op.Leave:
        this.onLeave(f.id, decodeStrBody(f.body, 'LEAVE'))
        return
      case Op.InvokeReply:
        this.settleInvoke(f.id, decodeBytesBody(f.body, 'INVOKE_REPLY', this.maxMessageSize))
        return
      case Op.InvokeError:
        this.settleInvoke(f.id, new RemoteError(decodeStrBody(f.body, 'INVOKE_ERROR')))
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
      case Op.Hello:
        throw new DecodeError('HELLO sent twice')
      default:
        this.sendError(f.id, new InvalidArgumentError(`unsupported opcode ${opcodeName(f.opcode)}`))
    }
  }

  private sendError(id: number, err: unknown): void {
    this.conn.send(Op.Error, id, (w) => encodeError(w, { name: errorName(err), message: errorMessage(err) }))
  }

  private onRequest(f: Frame): void {
    const req = decodeRequest(f.body, this.maxMessageSize)
    if (this.requests.has(f.id)) throw new DecodeError(`correlation id ${f.id} is already in flight`)
    if (this.requests.size >= RELAY_LIMITS.maxInFlight) {
      this.sendError(
        f.id,
        new OverloadedError(`${RELAY_LIMITS.maxInFlight} requests in flight on this relay connection`),
      )
      return
    }
    if (this.inFlightBytes + req.data.length > RELAY_LIMITS.maxInFlightBytes) {
      this.sendError(
        f.id,
        new OverloadedError(
          `over ${RELAY_LIMITS.maxInFlightBytes} request bytes in flight on this relay connection`,
        ),
      )
      return
    }
    const ac = new AbortController()
    this.requests.set(f.id, ac)
    this.inFlightBytes += req.data.length
    const done = () => {
      this.inFlightBytes -= req.data.length
      if (this.requests.get(f.id) === ac) this.requests.delete(f.id)
      queueMicrotask(() => this.maybeEnd())
    }
    let p: Promise<Uint8Array>
    try {
      p = this.node.request(req.cluster, req.data, {
        timeout: req.timeoutMs === 0 ? undefined : req.timeoutMs,
        signal: ac.signal,
      })
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(
      (reply) => {
        done()
        this.conn.send(Op.Reply, f.id, (w) => w.bytes(reply))
      },
      (err) => {
        done()
        this.sendError(f.id, err)
      },
    )
  }

  private onJoin(f: Frame): void {
    const j = decodeJoin(f.body)
    const limits: Limits = {}
    for (const k of ['requests', 'broadcasts', 'tunnels', 'queueBytes'] as const) {
      if (j.limits[k] > 0) limits[k] = j.limits[k]
    }
    if (this.memberships.has(j.cluster)) {
      this.sendError(
        f.id,
        new InvalidArgumentError(`cluster ${j.cluster} is already joined on this connection`),
      )
      return
    }
    const cluster = j.cluster
    let p: Promise<Membership>
    try {
      p = this.node.join(cluster, {
        key: j.key,
        limits,
        onRequest: (data, ctx) => this.invoke(cluster, data, ctx),
      })
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(
      (m) => {
        if (this.cleanedUp || this.peerEnded) {
          void m.leave()
          return
        }
        this.memberships.set(cluster, m)
        this.conn.send(Op.Ok, f.id)
      },
      (err) => this.sendError(f.id, err),
    )
  }

  private onLeave(id: number, cluster: string): void {
    const m = this.memberships.get(cluster)
    if (!m) {
      this.sendError(id, new InvalidArgumentError(`cluster ${cluster} was not joined on this connection`))
      return
    }
    this.memberships.delete(cluster)
    m.leave().then(
      () => this.conn.send(Op.Ok, id),
      (err) => this.sendError(id, err),
    )
  }

  /** Forwards one request for a joined cluster to the client; resolves with its reply. */
  private invoke(cluster: string, data: Uint8Array, ctx: RequestContext): Promise<Uint8Array> {
    if (this.conn.isClosed)
      return Promise.reject(new RemoteError('the relay client serving this cluster disconnected'))
    const remaining = Math.max(1, Math.min(0xffffffff, Math.round(ctx.deadline - Date.now())))
    let id = this.nextInvokeId
    while (id === CONNECTION_ID || this.invokes.has(id)) id = (id + 1) >>> 0
    this.nextInvokeId = (id + 1) >>> 0
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = () => {
        if (!this.invokes.delete(id)) return
        this.conn.send(Op.InvokeCancel, id)
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
      this.conn.send(Op.Invoke, id, (w) =>
        encodeInvoke(w, { cluster, remainingMs: remaining, from: ctx.from, data }),
      )
    })
  }

  private settleInvoke(id: number, outcome: Uint8Array | Error): void {
    const p = this.invokes.get(id)
    if (!p) return // late (after cancel) or unknown: ignored
    this.invokes.delete(id)
    if (outcome instanceof Error) p.reject(outcome)
    else p.resolve(outcome)
  }
}
