/**
 * The relay endpoint: a TCP server (127.0.0.1 by default) through which thin clients in
 * any language use a local node — request, join (serve requests, broadcasts and tunnels of
 * a cluster), leave, broadcast, publish/subscribe, tunnels, durable streams (create, info,
 * delete, list, consume), status. The wire
 * protocol is `relay/protocol.ts`, documented in `docs/relay-protocol.md`.
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
 */
import { createServer, type Server } from 'node:net'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../src/constants.js'
import { PlexusError } from '../src/errors.js'
import type { PlexusNode } from '../src/types.js'
import { RelayClientConnection, type RelayStats } from './server-connection.js'

export { RELAY_LIMITS, type RelayStats } from './server-connection.js'

/** A running relay endpoint. */
export interface RelayServer {
  /** `host:port` actually listened on (the real port when 0 was asked). */
  address: string
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
}

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
    stats() {
      const st: RelayStats = {
        connections: clients.size,
        subscriptions: 0,
        subscriptionQueuedBytes: 0,
        subscriptionDrops: 0,
        tunnels: [],
        consumers: [],
      }
      for (const c of clients) c.addStats(st)
      return st
    },
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
