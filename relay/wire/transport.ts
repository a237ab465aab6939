/**
 * The byte pipe under a relay connection (`FramedConnection`), so the same framing runs
 * over a TCP socket (`tcpTransport`, Node) and over a WebSocket (`ws-transport.ts`: the
 * browser's native WebSocket on the client side, the `ws` library on the node side). A
 * transport carries the relay's byte stream; it knows nothing of frames. This file imports
 * nothing from Node, so the browser client can use it.
 */

/** What a transport reports to its owner. */
export interface TransportEvents {
  /** Bytes from the peer (a fresh buffer: the owner may keep it). */
  data(chunk: Uint8Array): void
  /** The outbound buffer emptied (a chance to send what was held back). */
  drain(): void
  /** The peer half-closed: it sends nothing more but may still read (TCP only). */
  end(): void
  /** The transport closed (once); `err` when it closed on an error. */
  close(err?: Error): void
}

/** A bidirectional byte pipe. */
export interface ByteTransport {
  /**
   * Queues `bytes` for sending (the transport copies them or sends them before returning:
   * the caller reuses the buffer). Returns true while the outbound buffer is below the
   * transport's high-water mark.
   */
  write(bytes: Uint8Array): boolean
  /** Bytes accepted by `write` but not yet handed to the network. */
  readonly buffered: number
  /** True once the transport closed or was destroyed. */
  readonly destroyed: boolean
  /** Stops reading from the peer (best effort: a browser WebSocket cannot pause). */
  pause(): void
  /** Reads from the peer again. */
  resume(): void
  /** Sends what is queued, then closes our side (a half-close over TCP, a close handshake over WebSocket). */
  end(): void
  /** Closes at once. Idempotent. */
  destroy(err?: Error): void
  /** Sets the event handlers (called once, before any event). */
  listen(events: TransportEvents): void
}

/** Runs `fn` after the current event-loop turn (setImmediate in Node, a 0 ms timer elsewhere). */
export const nextTurn: (fn: () => void) => void =
  typeof globalThis.setImmediate === 'function'
    ? (fn) => void globalThis.setImmediate(fn)
    : (fn) => void setTimeout(fn, 0)

/** `setTimeout` that does not keep a Node process alive (plain in browsers). */
export function unrefTimer(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
  const t = setTimeout(fn, ms)
  ;(t as { unref?: () => void }).unref?.()
  return t
}

/** `setInterval` that does not keep a Node process alive (plain in browsers). */
export function unrefInterval(fn: () => void, ms: number): ReturnType<typeof setInterval> {
  const t = setInterval(fn, ms)
  ;(t as { unref?: () => void }).unref?.()
  return t
}
