/**
 * The node's HTTP endpoint (`http` option, `plexus node --http-port`): `GET /metrics`
 * (Prometheus text format), `GET /healthz` and `GET /readyz` (health.ts), and whatever the
 * extra handlers given to `startHttp` serve (the dashboard at `/`). Loopback only by
 * default. Started with the node and closed with it; a closed server holds no handle (its
 * keep-alive connections are closed too).
 *
 * Extension point: `startHttp(opts, core, handlers)` takes a list of `HttpHandler`s, tried
 * in order for every request the built-in routes do not answer; a handler returns true when
 * it answered the request (it then owns `res`), false to let the next one try. No handler
 * answering gives 404.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PlexusError } from '../errors.js'
import type { Health } from './health.js'
import type { NodeMetrics } from './metrics.js'

/** A route beside the built-in ones: returns true when it answered the request. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => boolean

/** A running HTTP endpoint. */
export interface HttpEndpoint {
  /** `host:port` it listens on. */
  readonly address: string
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>
}

/** Where to listen. */
export interface HttpListen {
  host: string
  /** 0: any free port. */
  port: number
}

/** The built-in routes' sources. */
export interface HttpCore {
  metrics: NodeMetrics
  health: Health
}

const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * Starts the endpoint. Rejects with a `PlexusError` naming the address when it cannot listen
 * (port taken, address not local).
 */
export async function startHttp(
  opts: HttpListen,
  core: HttpCore,
  handlers: readonly HttpHandler[] = [],
): Promise<HttpEndpoint> {
  const server = createServer((req, res) => {
    route(req, res, core, handlers).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
      res.end(`internal error: ${(err as Error)?.message ?? String(err)}\n`)
    })
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${opts.host}:${opts.port}`
      const why =
        err.code === 'EADDRINUSE'
          ? `port ${opts.port} on ${opts.host} is already in use`
          : `cannot listen on ${where}: ${err.message}`
      reject(
        new PlexusError(`http: ${why}; choose another with http: { port } or --http-port`, { cause: err }),
      )
    }
    server.once('error', onError)
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off('error', onError)
      server.on('error', () => {})
      resolve()
    })
  })
  const a = server.address() as AddressInfo
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
  let closing: Promise<void> | undefined
  return {
    address: `${host}:${a.port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}

async function route(
  req: IncomingMessage,
  res: ServerResponse,
  core: HttpCore,
  handlers: readonly HttpHandler[],
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]
  const builtIn = path === '/metrics' || path === '/healthz' || path === '/readyz'
  if (builtIn && req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' })
    res.end('method not allowed\n')
    return
  }
  if (path === '/metrics') {
    const text = await core.metrics.text()
    res.writeHead(200, { 'content-type': core.metrics.contentType, 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : text)
    return
  }
  if (path === '/healthz') {
    const live = core.health.live()
    send(res, live ? 200 : 503, { status: live ? 'ok' : 'stopped' }, req.method === 'HEAD')
    return
  }
  if (path === '/readyz') {
    const failing = core.health.check()
    const ready = failing.length === 0
    send(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', failing }, req.method === 'HEAD')
    return
  }
  for (const h of handlers) if (h(req, res)) return
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
  res.end('not found: /metrics, /healthz and /readyz are served here\n')
}

function send(res: ServerResponse, code: number, body: unknown, head: boolean): void {
  res.writeHead(code, { 'content-type': JSON_TYPE, 'cache-control': 'no-store' })
  res.end(head ? undefined : `${JSON.stringify(body)}\n`)
}
