/**
 * Thin TypeScript client of the relay: the library's method names (`request`, `join`,
 * `status`) without embedding libp2p — the local node does the overlay work. Errors that
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
  InvalidArgumentError,
  PlexusError,
  RemoteError,
  TimeoutError,
} from '../src/errors.js'
import type { Limits, NodeStatus, RequestContext } from '../src/types.js'
import { type BinaryWriter, DecodeError } from '../src/util/binary.js'
import { parseKey } from '../src/util/keys.js'
import {
  checkClusterName,
  checkFunction,
  checkOptions,
  checkPort,
  checkPositiveInt,
  checkTimeout,
  describe,
  toBytes,
  toPayload,
} from '../src/util/validate.js'
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
  Op,
  opcodeName,
  PROTOCOL_VERSION,
  type Welcome,
} from './protocol.js'

/**
 * No relay could be reached (nothing listening, refused handshake, connection lost).
 * Requests in flight when the connection is lost may or may not have run.
 */
export class RelayUnavailableError extends PlexusError {}

/** Options of `connectRelay`. */
export interface ConnectRelayOptions {
  /** Relay host; default from `PLEXUS_RELAY`, else 127.0.0.1. */
  host?: string
  /** Relay port; default from `PLEXUS_RELAY`, else 55555. */
  port?: number
  /** `host:port` (wins over `host`/`port`). */
  address?: string
  /** Aborts connecting (AbortedError). */
  signal?: AbortSignal
  /** Connect + handshake deadline in ms (default 5000; TimeoutError). */
  timeout?: number
  /** Name sent in HELLO (for the node's logs). */
  clientName?: string
}

/** Options of `RelayClient.request`. */
export interface RelayRequestOptions {
  /** Deadline in ms (default: the node's, 10 s); enforced by the node. */
  timeout?: number
  /** Aborting sends CANCEL and rejects with AbortedError. */
  signal?: AbortSignal
}

/** Options of `RelayClient.join`. */
export interface RelayJoinOptions {
  /** The cluster key; it goes to the local node over loopback, never to the network. */
  key: string | Uint8Array
  onRequest?: (data: Uint8Array, ctx: RequestContext) => Uint8Array | string | Promise<Uint8Array | string>
  limits?: Limits
}

/** A cluster joined through the relay; `leave()` withdraws it (peers drop it at once). */
export interface RelayMembership {
  readonly cluster: string
  leave(): Promise<void>
}

/**
 * A connection to a node's relay. Calls may run concurrently; each resolves or rejects
 * exactly once. Closing (or losing the connection) fails pending calls and makes the node
 * leave every cluster joined through this client.
 */
export interface RelayClient {
  /** Peer id of the node behind the relay. */
  readonly id: string
  /** Network of that node. */
  readonly network: string
  /** Largest payload the node accepts (bytes). */
  readonly maxMessageSize: number
  /** One request to one member of `cluster` (at-most-once); resolves to its reply. */
  request(cluster: string, data: Uint8Array | string, opts?: RelayRequestOptions): Promise<Uint8Array>
  /** Serve `cluster` from this process; resolves once the node announced the membership. */
  join(cluster: string, opts: RelayJoinOptions): Promise<RelayMembership>
  /** The node's status snapshot. */
  status(): Promise<NodeStatus>
  /** Closes the connection; pending calls reject with AbortedError. Idempotent. */
  close(): Promise<void>
}

/** Parses `host:port` (IPv6 as `[::1]:55555`); throws InvalidArgumentError naming `field`. */
export function parseRelayAddress(value: unknown, field: string): { host: string; port: number } {
  const bad = () =>
    new InvalidArgumentError(`${field} must be host:port (e.g. 127.0.0.1:55555), got ${describe(value)}`)
  if (typeof value !== 'string') throw bad()
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim())
  if (!m) throw bad()
  const port = Number(m[3])
  if (port < 1 || port > 65535) throw bad()
  return { host: (m[1] ?? m[2])!, port }
}

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

function invalid(field: string, value: unknown, what = 'a non-empty string'): InvalidArgumentError {
  return new InvalidArgumentError(`${field} must be ${what}, got ${describe(value)}`)
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
  private readonly handlers = new Map<string, RelayJoinOptions['onRequest']>()
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

  private onInvoke(f: Frame): void {
    const inv = decodeInvoke(f.body, this.maxMessageSize)
    const handler = this.handlers.get(inv.cluster)
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
  private call(opcode: number, body?: (w: BinaryWriter) => void, signal?: AbortSignal): Promise<Frame> {
    if (this.closedErr) return Promise.reject(this.closedErr)
    let id = this.nextId
    while (id === CONNECTION_ID || this.pending.has(id)) id = (id + 1) >>> 0
    this.nextId = (id + 1) >>> 0
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
    this.handlers.set(cluster, onRequest)
    try {
      this.expect(await this.call(Op.Join, (w) => encodeJoin(w, { cluster, key, limits })), Op.Ok)
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

function checkU32(v: unknown, field: string): number {
  const n = checkPositiveInt(v, field) ?? 0
  if (n > 0xffffffff) throw invalid(field, v, 'at most 4294967295')
  return n
}
