/**
 * X25519 key pairs and Diffie-Hellman through Node's KeyObjects (OpenSSL). Public keys on the
 * wire are the raw 32 bytes; Node takes them wrapped in a fixed SubjectPublicKeyInfo header.
 */
import crypto, { type KeyObject } from 'node:crypto'
import { HandshakeError } from '../../errors.js'

/** Bytes of an X25519 public key or secret. */
export const DH_BYTES = 32

/** DER headers of an X25519 public key (SPKI) and of a private key from its seed (PKCS#8). */
const SPKI_HEADER = Buffer.from('302a300506032b656e032100', 'hex')
const PKCS8_HEADER = Buffer.from('302e020100300506032b656e04220420', 'hex')

/** An X25519 key pair: the private key object and the raw public key. */
export interface DhKeyPair {
  readonly privateKey: KeyObject
  readonly publicKey: Uint8Array
}

/** A fresh random key pair, or the one of a 32-byte `seed` (tests and vectors). */
export function dhKeyPair(seed?: Uint8Array): DhKeyPair {
  let privateKey: KeyObject
  if (seed === undefined) {
    privateKey = crypto.generateKeyPairSync('x25519').privateKey
  } else {
    if (seed.byteLength !== DH_BYTES) throw new HandshakeError(`X25519 seed must be ${DH_BYTES} bytes`)
    privateKey = crypto.createPrivateKey({
      key: Buffer.concat([PKCS8_HEADER, seed]),
      format: 'der',
      type: 'pkcs8',
    })
  }
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return { privateKey, publicKey: new Uint8Array(spki.subarray(SPKI_HEADER.byteLength)) }
}

/** The shared secret of our `privateKey` and the peer's raw `publicKey`; throws `HandshakeError` on a bad key. */
export function dh(privateKey: KeyObject, publicKey: Uint8Array): Uint8Array {
  if (publicKey.byteLength !== DH_BYTES)
    throw new HandshakeError(`X25519 public key must be ${DH_BYTES} bytes`)
  try {
    const peer = crypto.createPublicKey({
      key: Buffer.concat([SPKI_HEADER, publicKey]),
      format: 'der',
      type: 'spki',
    })
    return crypto.diffieHellman({ privateKey, publicKey: peer })
  } catch (err) {
    // OpenSSL refuses low-order points (an all-zero shared secret).
    throw new HandshakeError('X25519 key agreement failed (invalid public key)', { cause: err })
  }
}
