/**
 * The ChaCha20-Poly1305 used by noise, through noise's own "bring your own crypto" option,
 * with one copy fewer per encrypted message. The default implementation joins the cipher
 * output and its 16-byte tag into a new buffer (`Buffer.concat`): a 64 KiB allocation and
 * copy for every full link block on every link. Here the two pieces go on as a list, which
 * noise appends to its output list and the TCP connection writes in one corked `writev`
 * (see `link/socket-writes.ts`). Every other function, and small messages (the default picks
 * a WebAssembly cipher below 1,200 bytes), are the default's. Bytes on the wire are unchanged.
 *
 * Fewer large short-lived buffers matter beyond the copy: V8 runs a young-generation
 * collection every ~32 MiB of new array-buffer memory, so a publisher sending to five peers
 * collected about a third less often.
 */
import crypto from 'node:crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'

const CHACHA_POLY1305 = 'chacha20-poly1305'
/** Below this size the default's WebAssembly cipher is faster than OpenSSL (noise's own figure). */
const NODE_CIPHER_MIN = 1200
const TAG_BYTES = 16

/** Noise crypto: the default, except large single-buffer encryptions avoid the final join. */
export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (!(plaintext instanceof Uint8Array) || plaintext.byteLength < NODE_CIPHER_MIN) {
      return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    }
    const cipher = crypto.createCipheriv(CHACHA_POLY1305, k, nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const body = cipher.update(plaintext)
    const final = cipher.final()
    const out = new Uint8ArrayList(body)
    if (final.byteLength > 0) out.append(final)
    out.append(cipher.getAuthTag())
    // Noise types this with its own copy of uint8arraylist (2.x); lists of both versions
    // carry the same marker symbol and are interchangeable at run time.
    return out as unknown as Uint8Array
  },
}
