/**
 * Noise cipher states over Node's AEADs (OpenSSL): ChaCha20-Poly1305, the cipher of the
 * libp2p noise spec, and AES-256-GCM for Plexus's own suite.
 *
 * Nonces are those of `@chainsafe/libp2p-noise` (and the noise spec for ChaChaPoly): four
 * zero bytes, then the message counter little-endian. The AES suite uses the same layout, so
 * it speaks with Plexus nodes built on that library. A cipher state refuses to go past
 * 2^32 - 1 messages (a new connection is needed then), as that library does.
 */
import crypto from 'node:crypto'
import { HandshakeError } from '../../errors.js'

/** The AEADs a noise suite can use (Node cipher names). */
export type AeadName = 'chacha20-poly1305' | 'aes-256-gcm'

/** Bytes of an AEAD tag. */
export const TAG_BYTES = 16
/** Largest noise message (its length prefix is a u16), tag included. */
export const MAX_MESSAGE = 65_535
/** Largest plaintext of one transport message. */
export const MAX_PLAINTEXT = MAX_MESSAGE - TAG_BYTES
/** Last nonce a cipher state uses. */
const MAX_NONCE = 0xffff_ffff
const EMPTY = new Uint8Array(0)

/** Bytes the AEAD reads, in order: one buffer, or pieces of one message. */
export type Pieces = Uint8Array | Iterable<Uint8Array>

/**
 * One direction's key and message counter. `encryptInto` and `decrypt` each use the next
 * nonce; neither keeps a reference to its input after it returns.
 */
export class CipherState {
  private readonly nonce = Buffer.alloc(12)
  private n = 0

  constructor(
    readonly aead: AeadName,
    private readonly key: Uint8Array,
  ) {}

  /** Messages this state has encrypted or decrypted. */
  get count(): number {
    return this.n
  }

  private next(): Buffer {
    if (this.n > MAX_NONCE) throw new HandshakeError('noise cipher state used up its nonces; reconnect')
    this.nonce.writeUInt32LE(this.n, 4)
    this.n++
    return this.nonce
  }

  /**
   * Encrypts `length` bytes of `plaintext` with associated data `ad` into `out` at `offset`:
   * cipher text then tag. Returns the offset after the tag.
   */
  encryptInto(plaintext: Pieces, length: number, ad: Uint8Array, out: Uint8Array, offset: number): number {
    const cipher = crypto.createCipheriv(this.aead as 'aes-256-gcm', this.key, this.next(), {
      authTagLength: TAG_BYTES,
    })
    if (ad.byteLength > 0) cipher.setAAD(ad, { plaintextLength: length })
    let at = offset
    if (plaintext instanceof Uint8Array) {
      at += copy(cipher.update(plaintext), out, at)
    } else {
      for (const piece of plaintext) at += copy(cipher.update(piece), out, at)
    }
    at += copy(cipher.final(), out, at)
    return at + copy(cipher.getAuthTag(), out, at)
  }

  /** Encrypts `plaintext` with associated data `ad`: a new buffer of cipher text then tag. */
  encrypt(plaintext: Uint8Array, ad: Uint8Array = EMPTY): Uint8Array {
    const out = Buffer.allocUnsafe(plaintext.byteLength + TAG_BYTES)
    this.encryptInto(plaintext, plaintext.byteLength, ad, out, 0)
    return out
  }

  /**
   * Decrypts cipher text then tag (`ciphertext`, `length` bytes in all) with associated
   * data `ad`. Returns the plaintext as one buffer per piece given; throws `HandshakeError`
   * when the tag does not verify (then nothing is returned).
   */
  decrypt(ciphertext: Pieces, length: number, ad: Uint8Array = EMPTY): Uint8Array[] {
    if (length < TAG_BYTES)
      throw new HandshakeError(`noise message of ${length} bytes is shorter than its tag`)
    const body = length - TAG_BYTES
    const decipher = crypto.createDecipheriv(this.aead as 'aes-256-gcm', this.key, this.next(), {
      authTagLength: TAG_BYTES,
    })
    if (ad.byteLength > 0) decipher.setAAD(ad, { plaintextLength: body })
    const out: Uint8Array[] = []
    let tag: Uint8Array
    if (ciphertext instanceof Uint8Array) {
      if (body > 0) out.push(decipher.update(ciphertext.subarray(0, body)))
      tag = ciphertext.subarray(body, length)
    } else {
      // Pieces: the body spans some of them, the tag the rest (possibly split).
      let at = 0
      const tagParts: Uint8Array[] = []
      for (const piece of ciphertext) {
        const end = at + piece.byteLength
        if (at < body) {
          const take = Math.min(piece.byteLength, body - at)
          out.push(decipher.update(take === piece.byteLength ? piece : piece.subarray(0, take)))
          if (take < piece.byteLength) tagParts.push(piece.subarray(take))
        } else {
          tagParts.push(piece)
        }
        at = end
      }
      tag = tagParts.length === 1 ? tagParts[0]! : Buffer.concat(tagParts)
    }
    decipher.setAuthTag(tag)
    let final: Buffer
    try {
      final = decipher.final()
    } catch (err) {
      throw new HandshakeError('noise message failed authentication', { cause: err })
    }
    if (final.byteLength > 0) out.push(final)
    return out
  }
}

function copy(from: Uint8Array, to: Uint8Array, at: number): number {
  if (from.byteLength > 0) to.set(from, at)
  return from.byteLength
}
