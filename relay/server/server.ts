/**
 * The relay endpoint: a TCP server (127.0.0.1 by default) through which thin clients in
 * any language use a local node — request, join (serve requests, broadcasts and tunnels of
 * a cluster), leave, broadcast, publish/subscribe, tunnels, durable streams (create, info,
 * delete, list, consume), status. The wire
 * protocol is `relay/wire/protocol.ts`, documented in `docs/relay-protocol.md`.
 *
 * Guarantees: frames from one client are handled in arrival order; replies go back in
 * completion order, each REQUEST answered exactly once (REPLY or ERROR, also after CANCEL);
 * many clients and many requests per client run concurrently. Memory per client is
 * bounded (frame size, requests in flight, outbound buffer). A malformed frame gets an
 * ERROR naming the problem and the connection is closed; the node never crashes. When a
 * client goes away, the memberships it joined are left, its pending invocations fail
 * with RemoteError, its subscriptions end and its tunnels fail (the remote ends see
 * TunnelClosedError), its consumers close. Subscriptions (`server-pubsub.ts`), tunnels
 * (`server-tunnels.ts`) and consumers (`server-streams.ts`) are bounded per connection; see
 * docs/relay-protocol.md for the policies.
 *
 * Connections cannot lock local clients out: one that sends no HELLO within
 * `handshakeTimeoutMs` is refused and closed; a handshaken one with nothing open (no
 * subscription, consumer, tunnel, membership or call) and no frame from the client for
 * `idleTimeoutMs` is closed (a fatal ERROR `TimeoutError` first); at `maxConnections` a new
 * client is accepted by closing the idle connection silent the longest (fatal ERROR
 * `OverloadedError`), and refused (REFUSE) when none is idle.
 *
 * With `wsPort` the same protocol is also served over WebSocket (`server-ws.ts`): the
 * connections of both transports share these limits.
 */
import { createServer, type Server } from 'node:net'
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_RELAY_HANDSHAKE_TIMEOUT,
  DEFAULT_RELAY_IDLE_TIMEOUT,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  LOG_RATE_INTERVAL,
} from '../../src/constants.js'
import { PlexusError } from '../../src/errors.js'
import type { Logger, PlexusNode } from '../../src/types.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { RateLimitedLog, SILENT_LOGGER } from '../../src/util/logger.js'
import { Op, writeFrame } from '../wire/protocol.js'
import type { ByteTransport } from '../wire/transport.js'
import { tcpTransport } from '../wire/transport-tcp.js'
import { RelayClientConnection, type RelayStats } from './server-connection.js'
import { startWsRelay, type WsRelay } from './server-ws.js'

export { RELAY_LIMITS, type RelayStats } from './server-connection.js'

/** A running relay endpoint. */
export interface RelayServer {
  /** `host:port` actually listened on (the real port when 0 was asked). */
  address: string
  /** `host:port` of the WebSocket endpoint when `wsPort` was given (the real port when 0 was asked). */
  wsAddress: string | undefined
  /** Stops accepting, closes every client (leaving their memberships). Idempotent. */
  close(): Promise<void>
  /** Connections, subscriptions and per-tunnel buffering right now (memory bounds are visible here). */
  stats(): RelayStats
}

/** Options of `startRelay`. */
export interface RelayServerOptions {
  host: string
  port: number
  /** Largest payload (defaults to the node's `maxMessageSize` when it exposes one, else 1 MiB). */
  maxMessageSize?: number
  /**
   * Connections held at once (default 1024). At the limit a new client is accepted by
   * closing the oldest idle connection, or refused when none is idle.
   */
  maxConnections?: number
  /** A connection with nothing open and no frame from its client this long is closed (ms, default 5 min). */
  idleTimeoutMs?: number
  /** A connection must send HELLO within this long (ms, default 5 s). */
  handshakeTimeoutMs?: number
  /** Also serve the relay over WebSocket on this port of `host` (0 picks a free one). */
  wsPort?: number
  /**
   * Browser origins (`https://app.example:8443`, or `null`) allowed on the WebSocket besides
   * the endpoint's own (pages it serves); requests without `Origin` (non-browser) always are.
   */
  wsOrigins?: string[]
  /** Directory of static files the WebSocket endpoint's HTTP side serves (pages of its own origin). */
  wsStatic?: string
  /**
   * Where clients attaching and detaching are logged (info), and connections evicted, timed
   * out or refused at the limit (refusals at most once per `LOG_RATE_INTERVAL`). Default silent.
   */
  logger?: Logger
}

/** Connections beyond `maxConnections` still accepted long enough to be told REFUSE. */
const REFUSING_BACKLOG = 256

/**
 * Starts the relay for `node` on `host:port` (port 0 picks a free one). Rejects with a
 * `PlexusError` naming the port when it is in use.
 */
export async function startRelay(node: PlexusNode, opts: RelayServerOptions): Promise<RelayServer> {
  const maxMessageSize =
    opts.maxMessageSize ?? (node as { maxMessageSize?: number }).maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
  const maxConnections = opts.maxConnections ?? DEFAULT_RELAY_MAX_CONNECTIONS
  const idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_RELAY_IDLE_TIMEOUT
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_RELAY_HANDSHAKE_TIMEOUT
  const clients = new Set<RelayClientConnection>()
  const counts = { idleClosed: 0, evicted: 0, refused: 0 }
  const log = opts.logger ?? SILENT_LOGGER
  const refusals = new RateLimitedLog(log, LOG_RATE_INTERVAL)
  let clientSeq = 0
  /** The idle connection silent the longest, if any. */
  const oldestIdle = (): RelayClientConnection | undefined => {
    let oldest: RelayClientConnection | undefined
    for (const c of clients) if (c.idle && (!oldest || c.lastActivity < oldest.lastActivity)) oldest = c
    return oldest
  }
  /** A new client connection, over either transport. */
  const accept = (transport: ByteTransport, kind: 'tcp' | 'websocket'): void => {
    if (clients.size >= maxConnections) {
      const victim = oldestIdle()
      if (!victim) {
        counts.refused++
        refusals.log(
          'warn',
          'limit',
          { maxConnections, transport: kind },
          'relay client refused: connection limit',
        )
        refuseTransport(
          transport,
          `relay connection limit reached: ${maxConnections} connections open and none idle; try again later`,
        )
        return
      }
      counts.evicted++
      const idleMs = Date.now() - victim.lastActivity
      log.info({ maxConnections, idleMs }, 'relay client evicted to make room for a new one')
      void victim.closeFor(
        'OverloadedError',
        `relay connection limit (${maxConnections}) reached: this connection had nothing open and was idle for ${idleMs} ms, closed to make room for a new client`,
      )
    }
    const client = ++clientSeq
    const c = new RelayClientConnection(
      node,
      transport,
      maxMessageSize,
      () => {
        if (!clients.delete(c)) return
        if (c.timedOut) counts.idleClosed++
        const fields = { client, transport: kind, connections: clients.size }
        if (c.timedOut) log.info(fields, 'relay client detached: no HELLO in time')
        else log.info(fields, 'relay client detached')
      },
      handshakeTimeoutMs,
    )
    clients.add(c)
    log.info({ client, transport: kind, connections: clients.size }, 'relay client attached')
  }
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) =>
    accept(tcpTransport(socket), 'tcp'),
  )
  // A hard backstop: past it the OS-level accept is closed without a word.
  server.maxConnections = maxConnections + REFUSING_BACKLOG
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
  // Idle timeout: checked a few times per period.
  const sweep = setInterval(
    () => {
      const now = Date.now()
      for (const c of [...clients]) {
        if (c.welcomed && c.idle && now - c.lastActivity >= idleTimeoutMs) {
          counts.idleClosed++
          log.info({ idleMs: now - c.lastActivity }, 'relay client idle; closing it')
          void c.closeFor(
            'TimeoutError',
            `relay connection idle for ${now - c.lastActivity} ms with nothing open (idle timeout ${idleTimeoutMs} ms); closing`,
          )
        }
      }
    },
    Math.max(20, Math.min(30_000, Math.floor(idleTimeoutMs / 4))),
  )
  sweep.unref()
  const bound = server.address()
  const port = bound && typeof bound === 'object' ? bound.port : opts.port
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  let ws: WsRelay | undefined
  if (opts.wsPort !== undefined) {
    try {
      ws = await startWsRelay({
        host: opts.host,
        port: opts.wsPort,
        origins: opts.wsOrigins ?? [],
        staticDir: opts.wsStatic,
        maxMessageSize,
        accept: (t) => accept(t, 'websocket'),
      })
    } catch (err) {
      clearInterval(sweep)
      await new Promise<void>((resolve) => server.close(() => resolve()))
      throw err
    }
  }
  let closing: Promise<void> | undefined
  return {
    address: `${host}:${port}`,
    wsAddress: ws?.address,
    stats() {
      const st: RelayStats = {
        connections: clients.size,
        subscriptions: 0,
        subscriptionQueuedBytes: 0,
        subscriptionDrops: 0,
        tunnels: [],
        consumers: [],
        consumerBytes: 0,
        outboundBytes: 0,
        maxOutboundBytes: 0,
        ...counts,
      }
      for (const c of clients) c.addStats(st)
      return st
    },
    close() {
      closing ??= (async () => {
        clearInterval(sweep)
        const done = new Promise<void>((resolve) => server.close(() => resolve()))
        const wsDone = ws?.close()
        await Promise.all([...clients].map((c) => c.shutdown()))
        await done
        await wsDone
      })()
      return closing
    },
  }
}

/** Tells a connection over the limit why it is refused (REFUSE, id 0), then closes it. */
function refuseTransport(transport: ByteTransport, reason: string): void {
  transport.listen({ data: () => {}, drain: () => {}, end: () => {}, close: () => {} })
  const w = new BinaryWriter(256)
  writeFrame(w, Op.Refuse, 0, (b) => b.str(reason))
  transport.write(w.finish())
  transport.end()
  setTimeout(() => transport.destroy(), 1000).unref()
}
