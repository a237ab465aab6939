/**
 * The text form of a capability, `pxc1.<token>.<secret>` (pure, no Node imports): its first
 * checks are shared by src/cluster/capability.ts and the browser bundle's stand-in
 * relay/browser/capability.ts.
 */
import { InvalidArgumentError } from '../errors.js'
import { describe } from '../util/validate.js'

/** First part of every capability text. */
export const CAPABILITY_PREFIX = 'pxc1'

/**
 * Splits a capability text (trimmed) into its three parts, or throws `InvalidArgumentError`
 * naming `field` when it is not a string of the form `pxc1.<token>.<secret>`; `bad(why)` makes
 * the same error for the caller's further checks.
 */
export function splitCapability(
  text: unknown,
  field: string,
): { text: string; parts: string[]; bad: (why: string) => InvalidArgumentError } {
  const bad = (why: string) =>
    new InvalidArgumentError(`${field} must be a capability from plexus keygen --capability (${why})`)
  if (typeof text !== 'string') throw bad(`got ${describe(text)}`)
  const trimmed = text.trim()
  const parts = trimmed.split('.')
  if (parts.length !== 3 || parts[0] !== CAPABILITY_PREFIX)
    throw bad(`expected ${CAPABILITY_PREFIX}.<token>.<secret>`)
  return { text: trimmed, parts, bad }
}
