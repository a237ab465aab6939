/**
 * Browser stand-in for `src/util/keys.ts` in the browser bundle (no `node:crypto`):
 * `parseKey` with the same rules and the same result (SHA-256 from @noble/hashes, bundled).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { InvalidArgumentError } from '../../src/errors.js'
import { describe } from '../../src/util/validate.js'

/** Length of a generated key in bytes. */
export const KEY_BYTES = 32
const HEX_KEY_RE = /^[0-9a-fA-F]{64}$/

/** Turns a user-supplied key into 32 bytes, or throws `InvalidArgumentError` naming `field`. */
export function parseKey(value: unknown, field: string): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length < 16)
      throw new InvalidArgumentError(`${field} must be at least 16 bytes, got ${value.length}`)
    return value.length === KEY_BYTES ? value : sha256(concat(tag('plexus-key-bytes'), value))
  }
  if (typeof value === 'string') {
    const s = value.trim()
    if (HEX_KEY_RE.test(s)) return Uint8Array.from(s.match(/../g)!, (h) => Number.parseInt(h, 16))
    if (s.length >= 16) return sha256(concat(tag('plexus-key-passphrase'), new TextEncoder().encode(s)))
    throw new InvalidArgumentError(
      `${field} must be a key from generateKey() (64 hex characters) or a passphrase of at least 16 characters`,
    )
  }
  throw new InvalidArgumentError(`${field} must be a string or Uint8Array key, got ${describe(value)}`)
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
