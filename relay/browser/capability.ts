/**
 * Browser stand-in for `src/cluster/capability.ts` in the browser bundle (no `node:crypto`):
 * `parseCapability` checks the text form only (prefix, token, 32-byte secret); the node
 * checks the signature and scope when the call reaches it, and its refusal crosses the
 * relay as `InvalidArgumentError` / `UnauthorizedError` as usual.
 */
import { splitCapability } from '../../src/cluster/capability-text.js'

const BASE64URL_RE = /^[A-Za-z0-9_-]+$/

/** Checks a capability's text form, or throws `InvalidArgumentError` naming `field`. */
export function parseCapability(text: unknown, field: string): { text: string } {
  const { text: trimmed, parts, bad } = splitCapability(text, field)
  if (!BASE64URL_RE.test(parts[1]!)) throw bad('its token is not base64url')
  if (!BASE64URL_RE.test(parts[2]!) || parts[2]!.length !== 43) throw bad('its secret is not 32 bytes')
  return { text: trimmed }
}
