/**
 * Errors of the replication layer. They extend `PlexusError`, so `err.name` is the class
 * name. Overload and shutdown reuse the project-wide `OverloadedError` and `AbortedError`.
 */
import { PlexusError } from '../errors.js'

/**
 * A proposal was made on a member that is not the leader; nothing was appended. `leader`
 * names the current leader when one is known, so the caller can redirect.
 */
export class NotLeaderError extends PlexusError {
  constructor(
    readonly leader: string | null,
    message = leader === null ? 'no leader is known' : `not the leader (leader is ${leader})`,
  ) {
    super(message)
  }
}

/**
 * This member lost leadership while the proposal was appended but not yet committed. The
 * outcome is unknown: a later leader may still commit the entry, or may overwrite it. Retry
 * only with an idempotent payload (or deduplicate on apply). The public class of that name
 * (errors.ts): it crosses the wire by name, so a publisher sees it as such.
 */
export { LeadershipLostError } from '../errors.js'

/**
 * A different entry was committed at the proposal's index: the proposal definitely did not
 * commit and never will.
 */
export class EntryOverwrittenError extends PlexusError {}

/**
 * A persisted replica state file (hard state, configuration or snapshot metadata) failed
 * its checksum or does not decode. Nothing is changed on disk when it is thrown; the replica
 * must be restored from another member.
 */
export class CorruptReplicaStateError extends PlexusError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`corrupt replica state file ${file}: ${reason}`)
  }
}
