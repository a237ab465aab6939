/**
 * `ByteTransport` over a Node TCP socket (`node:net`): the relay's original transport.
 * Half-close is TCP's (the socket needs `allowHalfOpen: true` for `end` events to leave it
 * writable).
 */
import { connect, type Socket } from 'node:net'
import type { ByteTransport, TransportEvents } from './transport.js'

/** Wraps a connected (or connecting) socket; Nagle is switched off. */
export function tcpTransport(socket: Socket): ByteTransport {
  socket.setNoDelay(true)
  return {
    write: (bytes) => socket.write(Buffer.from(bytes)),
    get buffered() {
      return socket.writableLength
    },
    get destroyed() {
      return socket.destroyed
    },
    pause: () => void socket.pause(),
    resume: () => void socket.resume(),
    end: () => void socket.end(),
    destroy: (err) => void socket.destroy(err),
    listen(events: TransportEvents) {
      socket.on('data', (chunk: Buffer) => events.data(chunk))
      socket.on('drain', () => events.drain())
      socket.on('error', () => {}) // 'close' follows with hadError
      socket.on('close', () => events.close())
      socket.on('end', () => events.end())
    },
  }
}

/**
 * Connects to `host:port` (half-open allowed). `onError` gets the socket's error when it
 * fails (connection refused, unreachable…); the transport closes after it.
 */
export function connectTcp(
  host: string,
  port: number,
  onError: (err: NodeJS.ErrnoException) => void,
): ByteTransport {
  const socket = connect({ host, port, allowHalfOpen: true })
  socket.once('error', onError)
  return tcpTransport(socket)
}
