/**
 * The relay over WebSocket (docs/relay-protocol.md, "WebSocket transport"): an HTTP server
 * on `host:port` whose upgrades carry the relay's byte stream in binary messages, handed to
 * the relay as one more `ByteTransport` (same handshake, limits and errors as TCP).
 *
 * Origin policy: a browser lets any web site open a WebSocket to 127.0.0.1, so an upgrade
 * whose `Origin` is not allowed is answered `403 Forbidden` and never reaches the relay.
 * Allowed: no `Origin` header (non-browser clients), this endpoint's own origin (pages it
 * serves from `staticDir`, under any loopback name), and the `origins` given. `null` (the
 * origin of sandboxed frames and file: pages, which any site can produce) only when listed.
 *
 * The HTTP side serves `staticDir` (GET/HEAD, no directory listings, nothing outside it)
 * and the browser client bundle at `/plexus-relay.js`, only to requests whose `Host` is a
 * loopback name or the bound host (a DNS-rebinding page has another host).
 */
import { createReadStream, existsSync, statSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { extname, join, resolve, sep } from 'node:path'
import type { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { WebSocket, WebSocketServer } from 'ws'
import { FRAME_OVERHEAD } from '../../src/constants.js'
import { PlexusError } from '../../src/errors.js'
import type { ByteTransport, TransportEvents } from '../wire/transport.js'

/** Options of `startWsRelay`. */
export interface WsRelayOptions {
  host: string
  port: number
  /** Allowed origins besides the endpoint's own (`null` allows the opaque origin). */
  origins: string[]
  /** Directory served over HTTP (pages of the endpoint's own origin), if any. */
  staticDir: string | undefined
  /** The relay's max message size (bounds one WebSocket message). */
  maxMessageSize: number
  /** Takes each accepted connection. */
  accept(transport: ByteTransport): void
}

/** A listening WebSocket endpoint. */
export interface WsRelay {
  /** `host:port` listened on. */
  address: string
  /** Stops listening and closes every WebSocket. */
  close(): Promise<void>
}

/** Outbound bytes above which `write` reports a full buffer. */
const HIGH_WATER = 1024 * 1024

/** Content types of the files a page needs. */
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
}

/** The prebuilt browser client (`npm run build`: dist/browser/plexus-relay.js), if present. */
function browserBundle(): string | undefined {
  const here = fileURLToPath(new URL('.', import.meta.url))
  for (const p of [
    join(here, '../../browser/plexus-relay.js'),
    join(here, '../../dist/browser/plexus-relay.js'),
  ]) {
    if (existsSync(p)) return p
  }
  return undefined
}

/** Normalizes an origin for comparison (`null` stays `null`); throws on a malformed one. */
export function normalizeOrigin(origin: string): string {
  if (origin === 'null') return 'null'
  const u = new URL(origin)
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new TypeError(`not an http(s) origin: ${origin}`)
  return u.origin
}

/** Starts the WebSocket endpoint; rejects with a `PlexusError` naming the port when it is taken. */
export async function startWsRelay(opts: WsRelayOptions): Promise<WsRelay> {
  const extra = new Set(opts.origins.map(normalizeOrigin))
  const own = new Set<string>()
  const hosts = new Set<string>()
  const bundle = browserBundle()
  const staticRoot = opts.staticDir === undefined ? undefined : resolve(opts.staticDir)
  if (staticRoot !== undefined && !isDirectory(staticRoot)) {
    throw new PlexusError(`relay.wsStatic (--relay-ws-static) ${opts.staticDir} is not a directory`)
  }
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    // One message holds at most one largest frame: its u32 length and that many bytes.
    maxPayload: opts.maxMessageSize + FRAME_OVERHEAD + 4,
  })
  const http = createServer((req, res) => serveHttp(req, res, hosts, staticRoot, bundle))
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    const origin = req.headers.origin
    if (origin !== undefined) {
      let o: string | undefined
      try {
        o = normalizeOrigin(origin)
      } catch {
        o = undefined
      }
      if (o === undefined || (!own.has(o) && !extra.has(o))) {
        const body = `origin ${origin} is not allowed to use this Plexus relay; start the node with --relay-ws-origin ${origin} (library: relay.wsOrigins) to allow it\n`
        socket.end(
          `HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        )
        return
      }
    }
    wss.handleUpgrade(req, socket, head, (ws) => opts.accept(wsServerTransport(ws)))
  })
  await new Promise<void>((res, rej) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${opts.host}:${opts.port}`
      rej(
        new PlexusError(
          err.code === 'EADDRINUSE'
            ? `relay WebSocket port ${opts.port} on ${opts.host} is already in use (another program listens at ${where}); choose another with relay: { wsPort } or --relay-ws-port`
            : `relay WebSocket endpoint cannot listen on ${where}: ${err.message}`,
          { cause: err },
        ),
      )
    }
    http.once('error', onError)
    http.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      http.off('error', onError)
      http.on('error', () => {})
      res()
    })
  })
  const bound = http.address()
  const port = bound && typeof bound === 'object' ? bound.port : opts.port
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  for (const h of ['127.0.0.1', 'localhost', '[::1]', host]) {
    hosts.add(`${h}:${port}`.toLowerCase())
    own.add(`http://${h}:${port}`.toLowerCase())
  }
  let closing: Promise<void> | undefined
  return {
    address: `${host}:${port}`,
    close() {
      closing ??= new Promise<void>((res) => {
        for (const ws of wss.clients) ws.terminate()
        wss.close()
        http.close(() => res())
        http.closeAllConnections()
      })
      return closing
    },
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** GET/HEAD of a file under `root` (or the client bundle) for a loopback `Host`. */
function serveHttp(
  req: IncomingMessage,
  res: ServerResponse,
  hosts: Set<string>,
  root: string | undefined,
  bundle: string | undefined,
): undefined {
  const fail = (code: number, text: string): undefined => {
    res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8' })
    res.end(`${text}\n`)
  }
  if (!hosts.has((req.headers.host ?? '').toLowerCase())) return fail(403, 'unexpected Host')
  if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed')
  let path: string
  try {
    path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
  } catch {
    return fail(400, 'bad path')
  }
  let file: string | undefined
  if (path === '/plexus-relay.js' && bundle) file = bundle
  else if (root) {
    const p = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`)
    if (p === root || p.startsWith(root + sep)) file = p
  }
  if (!file) return fail(404, 'not found (this is a Plexus relay WebSocket endpoint)')
  let size: number
  try {
    const st = statSync(file)
    if (!st.isFile()) return fail(404, 'not found')
    size = st.size
  } catch {
    return fail(404, 'not found')
  }
  res.writeHead(200, {
    'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
    'Content-Length': size,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  })
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res)
}

/** `ByteTransport` over an accepted `ws` WebSocket: binary messages carry the byte stream. */
function wsServerTransport(ws: WebSocket): ByteTransport {
  let pending = 0
  let events: TransportEvents | undefined
  let closed = false
  return {
    write(bytes) {
      if (ws.readyState !== WebSocket.OPEN) return false
      const copy = bytes.slice()
      pending += copy.length
      ws.send(copy, { binary: true }, () => {
        pending -= copy.length
        if (pending === 0 && !closed) events?.drain()
      })
      return pending <= HIGH_WATER
    },
    get buffered() {
      return pending
    },
    get destroyed() {
      return closed || ws.readyState === WebSocket.CLOSING || ws.readyState === WebSocket.CLOSED
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    end: () => ws.close(1000),
    destroy: () => {
      closed = true
      ws.terminate()
    },
    listen(e) {
      events = e
      ws.on('message', (data, isBinary) => {
        if (!isBinary) {
          ws.close(1003, 'the Plexus relay speaks binary messages only')
          return
        }
        const b = data as Buffer
        e.data(new Uint8Array(b.buffer, b.byteOffset, b.length))
      })
      ws.on('error', () => {}) // 'close' follows
      ws.on('close', () => {
        closed = true
        e.close()
      })
    },
  }
}
