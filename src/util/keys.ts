/**
 * Keys: `generateKey()` makes 32 random bytes printed as 64 hex characters; `parseKey`
 * accepts that form, raw bytes (at least 16), or a passphrase of at least 16 characters
 * (stretched with SHA-256 under a domain tag; the rules are in parse-key.ts, shared with the
 * browser bundle). Keys never cross the wire.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { KEY_BYTES, parseKeyWith } from './parse-key.js'

export { KEY_BYTES }

/** A new random key as 64 hex characters (for `networkKey`, cluster `key`, key files). */
export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('hex')
}

/** Turns a user-supplied key into 32 bytes, or throws `InvalidArgumentError` naming `field`. */
export function parseKey(value: unknown, field: string): Uint8Array {
  return parseKeyWith(sha256, value, field)
}

/** HKDF-like derivation: HMAC-SHA256(key, label) — a sub-key per purpose. */
export function deriveKey(key: Uint8Array, label: string): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(label).digest())
}

/** SHA-256 of bytes. */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest())
}
