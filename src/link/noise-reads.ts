/**
 * One copy fewer per received noise message. `@chainsafe/libp2p-noise` decrypts each
 * message it gets from its length-prefixed decoder, and first takes a `dst` view of the
 * ciphertext for ciphers that decrypt in place; when the message spans two socket reads
 * (nearly always for a full 65,537-byte message: Node reads at most 64 KiB at a time) that
 * view is a fresh 64 KiB joined copy, which Node's cipher then ignores. Messages given as a
 * list are decrypted here without it (the cipher takes the pieces one by one); single-buffer
 * messages go the original way. Decrypted bytes and errors are unchanged.
 *
 * Applied once per process to the class of the noise stream, which the package does not
 * export: found on the first connection (`connection.muxer.maConn`, libp2p 3). When that
 * shape is not there nothing is changed.
 */
import type { Connection } from '@libp2p/interface'

/** Largest noise message (length prefix is a u16), and the AEAD tag size. */
const NOISE_MAX = 65_535
const TAG_BYTES = 16

interface NoiseStream {
  handshake?: { decrypt(ciphertext: unknown): unknown }
  metrics?: { decryptedPackets: { increment(): void }; decryptErrors: { increment(): void } }
  decrypt(chunk: unknown): unknown
  __plexusNoCopy?: boolean
}

let applied = false

/** Makes noise decrypt split messages without joining them first (see the module doc). */
export function decryptWithoutJoin(connection: Connection): void {
  if (applied) return
  const stream = (connection as unknown as { muxer?: { maConn?: NoiseStream } }).muxer?.maConn
  if (
    stream === undefined ||
    typeof stream.decrypt !== 'function' ||
    typeof stream.handshake?.decrypt !== 'function'
  )
    return
  applied = true
  const proto = Object.getPrototypeOf(stream) as NoiseStream
  if (proto.__plexusNoCopy || typeof proto.decrypt !== 'function') return
  const original = proto.decrypt
  proto.decrypt = function (this: NoiseStream, chunk: unknown): unknown {
    const len = (chunk as { byteLength?: number }).byteLength ?? 0
    if (chunk instanceof Uint8Array || len > NOISE_MAX || len < TAG_BYTES || this.handshake === undefined) {
      return original.call(this, chunk)
    }
    try {
      const plaintext = this.handshake.decrypt(chunk)
      this.metrics?.decryptedPackets.increment()
      return plaintext
    } catch (err) {
      this.metrics?.decryptErrors.increment()
      throw err
    }
  }
  proto.__plexusNoCopy = true
}
