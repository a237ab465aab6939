/**
 * Tells a link when the bytes it handed to its stream are no longer referenced below it, so
 * the block buffer they came from can be written again. A yamux stream keeps what it could
 * not send yet in its write buffer, and so does the noise connection under it; once both are
 * empty, everything handed down has been encrypted by noise into buffers of its own (the
 * ciphertext is what TCP, and pnet, see). Only the public `writeBufferLength` of the stream
 * and the same property of the noise connection (`connection.muxer.maConn`, libp2p 3) are
 * read; when the connection is not shaped like that (another encrypter, another version),
 * there is no check and buffers are never reused.
 */
import type { Connection, Stream } from '@libp2p/interface'

interface NoiseConnection {
  writeBufferLength?: unknown
  encrypt?: unknown
  decrypt?: unknown
  handshake?: unknown
}

/** True when nothing handed to the stream is still held by the layers below it. */
export type ReleasedCheck = () => boolean

/** The release check for a link's stream, or undefined when it cannot be known (see module doc). */
export function sendReleased(stream: Stream, connection: Connection | undefined): ReleasedCheck | undefined {
  const enc = (connection as unknown as { muxer?: { maConn?: NoiseConnection } } | undefined)?.muxer?.maConn
  if (
    enc === undefined ||
    typeof enc.writeBufferLength !== 'number' ||
    typeof enc.encrypt !== 'function' ||
    typeof enc.decrypt !== 'function' ||
    enc.handshake === undefined ||
    typeof stream.writeBufferLength !== 'number'
  )
    return undefined
  return () => stream.writeBufferLength === 0 && enc.writeBufferLength === 0
}
