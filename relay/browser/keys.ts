/**
 * Browser stand-in for `src/util/keys.ts` in the browser bundle (no `node:crypto`):
 * `parseKey` with the same rules (src/util/parse-key.ts) and the same result (SHA-256 from
 * @noble/hashes, bundled).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { KEY_BYTES, parseKeyWith } from '../../src/util/parse-key.js'

export { KEY_BYTES }

/** Turns a user-supplied key into 32 bytes, or throws `InvalidArgumentError` naming `field`. */
export function parseKey(value: unknown, field: string): Uint8Array {
  return parseKeyWith(sha256, value, field)
}
