/**
 * One socket write per encrypted message. `@chainsafe/libp2p-noise` hands each encrypted
 * message to the TCP connection as a list of pieces (2-byte length, the encrypted yamux
 * header, the encrypted body, the 16-byte tag), and `@libp2p/tcp` writes every piece with its
 * own `socket.write`: four system calls per link block instead of one, and the peer, woken
 * by the first piece, often reads the message in as many wake-ups. We cork the socket while
 * the TCP connection writes one list, so the pieces leave in a single `writev` (no copy).
 * The bytes on the wire are unchanged.
 *
 * Applied once per process to the class of the TCP connection, which `@libp2p/tcp` does not
 * export: it is found on the first connection a link is made on (`connection.maConn`, libp2p
 * 3). When that shape is not there (another transport or version) nothing is changed.
 */
import type { Connection } from '@libp2p/interface'

interface CorkableSocket {
  cork(): void
  uncork(): void
}

interface SocketConnection {
  socket?: CorkableSocket
  sendData(data: unknown): unknown
  __plexusCorked?: boolean
}

let applied = false

/** Makes the TCP connection write each list of pieces with one system call (see the module doc). */
export function corkSocketWrites(connection: Connection): void {
  if (applied) return
  const raw = (connection as unknown as { maConn?: SocketConnection }).maConn
  const socket = raw?.socket
  if (raw === undefined || typeof socket?.cork !== 'function' || typeof socket.uncork !== 'function') return
  const proto = Object.getPrototypeOf(raw) as SocketConnection
  if (typeof proto.sendData !== 'function') return
  applied = true
  if (proto.__plexusCorked) return
  const original = proto.sendData
  proto.sendData = function (this: SocketConnection, data: unknown): unknown {
    const s = this.socket
    if (s === undefined) return original.call(this, data)
    s.cork()
    try {
      return original.call(this, data)
    } finally {
      s.uncork()
    }
  }
  proto.__plexusCorked = true
}
