/**
 * The two AEADs Plexus runs noise with, both through noise's "bring your own crypto" option
 * (`ICryptoInterface`: the handshake's hash, HKDF and X25519 stay noise's defaults).
 *
 * - `chachaPolyCrypto`: ChaCha20-Poly1305, the cipher of the libp2p noise spec (`/noise`),
 *   spoken with every libp2p node. Bytes on the wire are exactly the default's.
 * - `aesGcmCrypto`: AES-256-GCM, for `/plexus/noise-aes256gcm/1.0.0` (see `encrypters.ts`).
 *   With AES instructions OpenSSL runs it at about twice ChaCha20-Poly1305's speed here
 *   (23 vs 43 µs per 64 KiB block), and every link block is encrypted once per receiving
 *   peer and decrypted at each.
 *
 * Both leave a large encryption's cipher output and its 16-byte tag as a list instead of
 * joining them (`Buffer.concat`, a 64 KiB allocation and copy per full link block per link):
 * noise appends the list to its output and the TCP connection writes it in one corked
 * `writev` (`link/socket-writes.ts`). Fewer large short-lived buffers matter beyond the
 * copy: V8 runs a young-generation collection every ~32 MiB of new array-buffer memory.
 * A ciphertext given as a list (a noise message split over two socket reads) is decrypted
 * piece by piece, one output per piece (`link/noise-reads.ts` routes such lists here).
 */
import crypto from 'node:crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'

const CHACHA_POLY1305 = 'chacha20-poly1305'
const AES_256_GCM = 'aes-256-gcm'
/**
 * Below this size a single output buffer is cheaper than a list; for ChaCha20-Poly1305 the
 * default's WebAssembly cipher is also faster than OpenSSL there (noise's own figure).
 */
const NODE_CIPHER_MIN = 1200
const TAG_BYTES = 16

type Bytes = Uint8Array | Uint8ArrayList

/** Encrypts `plaintext` with `alg`; the output is cipher text then tag, as a list when large. */
function seal(alg: string, plaintext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Bytes {
  const cipher = crypto.createCipheriv(alg as 'aes-256-gcm', k, nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  const out = new Uint8ArrayList()
  if (plaintext instanceof Uint8Array) out.append(cipher.update(plaintext))
  else for (const piece of plaintext) out.append(cipher.update(piece))
  const final = cipher.final()
  if (final.byteLength > 0) out.append(final)
  out.append(cipher.getAuthTag())
  return out.byteLength < NODE_CIPHER_MIN ? out.subarray() : out
}

/**
 * Decrypts cipher text + tag with `alg`; throws when the tag does not verify (nothing of the
 * plaintext is returned then). A list comes back as a list of the decrypted pieces.
 */
function open(alg: string, ciphertext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Bytes {
  const length = ciphertext.byteLength - TAG_BYTES
  if (length < 0) throw new Error(`noise message of ${ciphertext.byteLength} bytes is shorter than its tag`)
  const decipher = crypto.createDecipheriv(alg as 'aes-256-gcm', k, nonce, { authTagLength: TAG_BYTES })
  decipher.setAAD(ad, { plaintextLength: length })
  decipher.setAuthTag(ciphertext.subarray(length))
  if (ciphertext instanceof Uint8Array) {
    const output = decipher.update(ciphertext.subarray(0, length))
    const final = decipher.final()
    return final.byteLength > 0 ? Buffer.concat([output, final]) : output
  }
  const output = new Uint8ArrayList()
  for (const piece of ciphertext.sublist(0, length)) output.append(decipher.update(piece))
  const final = decipher.final()
  if (final.byteLength > 0) output.append(final)
  return output
}

// Noise types its crypto with its own copy of uint8arraylist (2.x); lists of both versions
// carry the same marker symbol and are interchangeable at run time, hence the casts.

/** ChaCha20-Poly1305 (`/noise`): the default, except large encryptions avoid the final join. */
export const chachaPolyCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (!(plaintext instanceof Uint8Array) || plaintext.byteLength < NODE_CIPHER_MIN) {
      return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    }
    return seal(CHACHA_POLY1305, plaintext, nonce, ad, k) as Uint8Array
  },
}

/**
 * AES-256-GCM in the AEAD slots noise names after ChaCha20-Poly1305 (noise calls them for
 * every handshake and transport message). Nonces are noise's: 4 zero bytes and a 64-bit
 * message counter per direction, never repeated under one key.
 */
export const aesGcmCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    return seal(AES_256_GCM, plaintext as Bytes, nonce, ad, k) as Uint8Array
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k) {
    return open(AES_256_GCM, ciphertext as Bytes, nonce, ad, k) as Uint8Array
  },
}
