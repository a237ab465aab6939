/**
 * Cuts noise transport messages (u16 big-endian length, then cipher text and tag) out of the
 * chunks a socket delivers and decrypts them, without joining a message that spans chunks
 * (the cipher takes its pieces in turn) and without exceptions for a chunk that ends inside a
 * length prefix. Holds at most one incomplete message between calls.
 */
import { Uint8ArrayList } from 'uint8arraylist'
import { HandshakeError } from '../../errors.js'
import { type CipherState, TAG_BYTES } from './cipher.js'

/** Decrypts the noise messages in a byte stream (see the module doc). */
export class NoiseFrameReader {
  /** Bytes of an incomplete message (its prefix included) carried to the next chunk. */
  private readonly pending = new Uint8ArrayList()

  constructor(private readonly cipher: CipherState) {}

  /** Bytes held back waiting for the rest of a message. */
  get pendingBytes(): number {
    return this.pending.byteLength
  }

  /**
   * Takes the next chunk; returns the plaintext of every message it completes (undefined when
   * none). Throws `HandshakeError` when a message is shorter than its tag or fails
   * authentication; the reader is unusable then.
   */
  push(chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList | undefined {
    let out: Uint8ArrayList | undefined
    if (this.pending.byteLength === 0 && chunk instanceof Uint8Array) {
      // Fast path: whole messages straight out of the chunk.
      let at = 0
      while (chunk.byteLength - at >= 2) {
        const length = (chunk[at]! << 8) | chunk[at + 1]!
        if (chunk.byteLength - at - 2 < length) break
        out = this.open(chunk.subarray(at + 2, at + 2 + length), length, out)
        at += 2 + length
      }
      if (at < chunk.byteLength) this.pending.append(chunk.subarray(at))
      return out
    }
    this.pending.append(chunk)
    const p = this.pending
    while (p.byteLength >= 2) {
      const length = (p.get(0) << 8) | p.get(1)
      if (p.byteLength - 2 < length) break
      const message = p.sublist(2, 2 + length)
      p.consume(2 + length)
      out = this.open(message, length, out)
    }
    return out
  }

  private open(
    message: Uint8Array | Uint8ArrayList,
    length: number,
    out: Uint8ArrayList | undefined,
  ): Uint8ArrayList {
    if (length < TAG_BYTES)
      throw new HandshakeError(`noise message of ${length} bytes is shorter than its tag`)
    const plain = this.cipher.decrypt(message, length)
    const list = out ?? new Uint8ArrayList()
    for (const piece of plain) if (piece.byteLength > 0) list.append(piece)
    return list
  }
}
