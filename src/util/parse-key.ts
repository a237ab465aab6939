/**
 * The rules of `parseKey` (src/util/keys.ts), pure and with no Node imports so that the
 * browser bundle's stand-in (relay/browser/keys.ts) shares them: each side passes its own
 * SHA-256 (node:crypto in Node, @noble/hashes in the browser).
 */
import { InvalidArgumentError } from '../errors.js'
import { describe } from './validate.js'

/** Length of a generated key in bytes. */
export const KEY_BYTES = 32
const HEX_KEY_RE = /^[0-9a-fA-F]{64}$/

/** `parseKey` with the given SHA-256: 32 bytes, or `InvalidArgumentError` naming `field`. */
export function parseKeyWith(
  sha256: (data: Uint8Array) => Uint8Array,
  value: unknown,
  field: string,
): Uint8Array {
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
