/**
 * Keys: `generateKey()` makes 32 random bytes printed as 64 hex characters; `parseKey`
 * accepts that form, raw bytes (at least 16), or a passphrase of at least 16 characters
 * (stretched with SHA-256 under a domain tag). Keys never cross the wire.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { InvalidArgumentError } from '../errors.js'
import { describe } from './validate.js'

/** Length of a generated key in bytes. */
export const KEY_BYTES = 32
const HEX_KEY_RE = /^[0-9a-fA-F]{64}$/

/** A new random key as 64 hex characters (for `networkKey`, cluster `key`, key files). */
export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('hex')
}

/** Turns a user-supplied key into 32 bytes, or throws `InvalidArgumentError` naming `field`. */
export function parseKey(value: unknown, field: string): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length < 16)
      throw new InvalidArgumentError(`${field} must be at least 16 bytes, got ${value.length}`)
    return value.length === KEY_BYTES ? value : sha256(concat(tag('plexus-key-bytes'), value))
  }
  if (typeof value === 'string') {
    const s = value.trim()
    if (HEX_KEY_RE.test(s)) return new Uint8Array(Buffer.from(s, 'hex'))
    if (s.length >= 16) return sha256(concat(tag('plexus-key-passphrase'), new TextEncoder().encode(s)))
    throw new InvalidArgumentError(
      `${field} must be a key from generateKey() (64 hex characters) or a passphrase of at least 16 characters`,
    )
  }
  throw new InvalidArgumentError(`${field} must be a string or Uint8Array key, got ${describe(value)}`)
}

/** HKDF-like derivation: HMAC-SHA256(key, label) — a sub-key per purpose. */
export function deriveKey(key: Uint8Array, label: string): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(label).digest())
}

/** SHA-256 of bytes. */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest())
}

function tag(s: string): Uint8Array {
  return new TextEncoder().encode(`${s}\0`)
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}
