/**
 * Two costs fewer on the noise read path, applied to the connections links run on.
 *
 * - One copy fewer per received message. `@chainsafe/libp2p-noise` takes a `dst` view of
 *   each ciphertext for ciphers that decrypt in place; when the message spans two socket
 *   reads (nearly always for a full 65,537-byte message: Node reads at most 64 KiB at a time)
 *   that view is a fresh 64 KiB joined copy, which Node's cipher then ignores. Messages given
 *   as a list are decrypted here without it (the cipher takes the pieces one by one);
 *   single-buffer messages go the original way. Patched once on the class of the noise
 *   stream, which the package does not export.
 * - No exception per drained socket. Noise's length-prefix decoder reads each message's
 *   2-byte length with a function that throws a `RangeError` (stack trace and all) whenever
 *   fewer than 2 bytes are buffered, which is every time a read ends on a message boundary,
 *   and reads the length of a list through a new `DataView`. Each connection's decoder gets
 *   one that answers "more than is buffered" instead (the decoder then waits for more data,
 *   as it does after the throw) and reads the two bytes directly.
 *
 * Decrypted bytes and errors are unchanged. The noise stream is found at
 * `connection.muxer.maConn` (libp2p 3); when that shape is not there nothing is changed.
 */
import type { Connection } from '@libp2p/interface'

/** Largest noise message (length prefix is a u16), and the AEAD tag size. */
const NOISE_MAX = 65_535
const TAG_BYTES = 16

interface ByteList {
  byteLength: number
  get(index: number): number
}

interface LengthDecoder {
  lengthDecoder?: unknown
  maxDataLength?: unknown
  __plexusFast?: boolean
}

interface NoiseStream {
  handshake?: { decrypt(ciphertext: unknown): unknown }
  metrics?: { decryptedPackets: { increment(): void }; decryptErrors: { increment(): void } }
  decoder?: LengthDecoder
  decrypt(chunk: unknown): unknown
  __plexusNoCopy?: boolean
}

/** Applies both read-path changes to the noise stream under `connection` (see the module doc). */
export function tuneNoiseReads(connection: Connection): void {
  const stream = (connection as unknown as { muxer?: { maConn?: NoiseStream } }).muxer?.maConn
  if (
    stream === undefined ||
    typeof stream.decrypt !== 'function' ||
    typeof stream.handshake?.decrypt !== 'function'
  )
    return
  decryptWithoutJoin(Object.getPrototypeOf(stream) as NoiseStream)
  const d = stream.decoder
  if (
    d !== undefined &&
    !d.__plexusFast &&
    typeof d.lengthDecoder === 'function' &&
    typeof d.maxDataLength === 'number'
  ) {
    d.lengthDecoder = lengthOrWait(d.maxDataLength)
    d.__plexusFast = true
  }
}

/** The u16 big-endian length of the next message, or `wait` when fewer than 2 bytes are buffered (exported for tests). */
export function lengthOrWait(wait: number): (data: Uint8Array | ByteList) => number {
  return (data) => {
    if (data.byteLength < 2) return wait
    return data instanceof Uint8Array ? (data[0]! << 8) | data[1]! : (data.get(0) << 8) | data.get(1)
  }
}

function decryptWithoutJoin(proto: NoiseStream): void {
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
