/**
 * `ByteTransport` over the platform's WebSocket (browsers, Node 22+, Deno, Bun): the client
 * side of the relay's WebSocket transport (docs/relay-protocol.md). Each binary message
 * carries bytes of the relay stream; writes made before the socket opens are queued.
 * Browser WebSockets cannot pause reading, so `pause` is a no-op; `drain` is reported by
 * polling `bufferedAmount` while it is above zero.
 */
import type { ByteTransport, TransportEvents } from './transport.js'

/** Outbound bytes above which `write` reports a full buffer. */
const HIGH_WATER = 1024 * 1024
/** How often `bufferedAmount` is polled while it is non-zero (ms). */
const DRAIN_POLL_MS = 10

/** The WebSocket constructor shape this transport needs (the standard one). */
export type WebSocketConstructor = new (url: string) => WebSocket

/**
 * Opens `url` (`ws://` or `wss://`) with `Impl` (default: the global WebSocket). `onError`
 * is called once if the socket fails before it opened, with a message saying why when the
 * platform tells.
 */
export function connectWebSocket(
  url: string,
  onError: (err: Error) => void,
  Impl: WebSocketConstructor | undefined = globalThis.WebSocket as WebSocketConstructor | undefined,
): ByteTransport {
  if (!Impl) throw new Error('this runtime has no WebSocket; pass one as options.WebSocket')
  const ws = new Impl(url)
  ws.binaryType = 'arraybuffer'
  let events: TransportEvents | undefined
  let opened = false
  let closed = false
  let ending = false
  let queued: Uint8Array[] = []
  let queuedBytes = 0
  let poll: ReturnType<typeof setInterval> | undefined
  const buffered = () => queuedBytes + (opened && !closed ? ws.bufferedAmount : 0)
  const watchDrain = () => {
    if (poll !== undefined || closed) return
    poll = setInterval(() => {
      if (closed || buffered() === 0) {
        clearInterval(poll)
        poll = undefined
        if (!closed) events?.drain()
      }
    }, DRAIN_POLL_MS)
  }
  const finish = () => {
    if (closed) return
    closed = true
    clearInterval(poll)
    queued = []
    queuedBytes = 0
    events?.close()
  }
  ws.addEventListener('open', () => {
    opened = true
    for (const b of queued) ws.send(b)
    queued = []
    queuedBytes = 0
    if (ending) ws.close(1000)
    else if (ws.bufferedAmount > 0) watchDrain()
  })
  ws.addEventListener('message', (ev: MessageEvent) => {
    if (closed) return
    if (!(ev.data instanceof ArrayBuffer)) {
      ws.close(1003, 'the Plexus relay speaks binary messages only')
      return
    }
    events?.data(new Uint8Array(ev.data))
  })
  ws.addEventListener('error', (ev: Event) => {
    if (opened || closed || ending) return
    const detail = (ev as { message?: string }).message
    onError(new Error(detail || 'the WebSocket connection failed'))
  })
  ws.addEventListener('close', finish)
  return {
    write(bytes) {
      if (closed || ending) return false
      const copy = bytes.slice()
      if (!opened) {
        queued.push(copy)
        queuedBytes += copy.length
      } else {
        ws.send(copy)
        if (ws.bufferedAmount > 0) watchDrain()
      }
      return buffered() <= HIGH_WATER
    },
    get buffered() {
      return buffered()
    },
    get destroyed() {
      return closed || ending
    },
    pause() {},
    resume() {},
    end() {
      if (ending || closed) return
      ending = true
      if (opened) ws.close(1000)
    },
    destroy() {
      if (closed || ending) {
        finish()
        return
      }
      ending = true
      try {
        ws.close(1000)
      } catch {
        // already closing
      }
      finish()
    },
    listen(e) {
      events = e
    },
  }
}
