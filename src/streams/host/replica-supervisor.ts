/**
 * What a member does when one of its partition replicas fails (the self-healing path): pure
 * bookkeeping, no I/O; `ClusterHost` acts on its answers.
 *
 * - A replica that stopped on an error, or could not be opened, is restarted from its own
 *   directory after a backoff (`RESTART_BACKOFF_MS`, doubling up to `MAX_RESTART_BACKOFF_MS`).
 * - It is rebuilt from the other replicas (its directory emptied behind a `recovering`
 *   marker: `resetReplicaLog`, then a snapshot and a copy of the partition log from a peer)
 *   when its state on disk is corrupt, or when it failed `REBUILD_AFTER_FAILURES` times in a
 *   row without running `HEALTHY_MS` in between — but only when enough other replicas are
 *   reachable to form a quorum without it (`canRebuild`), so a rebuild never takes away a
 *   vote the partition needs, and never on a partition with a single replica (nothing to
 *   rebuild from). Otherwise it keeps restarting, with the backoff.
 */

/** First delay before restarting a failed replica (ms). */
export const RESTART_BACKOFF_MS = 500
/** Longest delay between restarts of a replica that keeps failing (ms). */
export const MAX_RESTART_BACKOFF_MS = 30_000
/** Failures in a row (without a healthy run between) after which a replica is rebuilt. */
export const REBUILD_AFTER_FAILURES = 3
/** A replica that ran this long since its last start counts as healthy again (ms). */
export const HEALTHY_MS = 60_000

/** What to do with a failed replica, and when. */
export interface RecoveryStep {
  action: 'restart' | 'rebuild'
  /** Wait this long first (ms). */
  delayMs: number
  /** Failures in a row so far, this one included. */
  failures: number
}

/** Failure history of one hosted replica. */
export class ReplicaSupervisor {
  private failures = 0
  private startedAt: number | undefined
  /** Rebuilds done so far (diagnostics). */
  rebuilds = 0
  /** The last failure, as `ErrorName: message` (diagnostics). */
  lastError: string | undefined

  /** Failures in a row so far (diagnostics). */
  get failuresInARow(): number {
    return this.failures
  }

  /** The replica (re)started at `now`. */
  started(now: number): void {
    this.startedAt = now
  }

  /**
   * The replica failed at `now` (`corrupt`: its state on disk cannot be read). `canRebuild`
   * says whether a rebuild is allowed now (see the module doc). Returns what to do next.
   */
  failed(now: number, error: string, corrupt: boolean, canRebuild: boolean): RecoveryStep {
    if (this.startedAt !== undefined && now - this.startedAt >= HEALTHY_MS) this.failures = 0
    this.startedAt = undefined
    this.failures++
    this.lastError = error
    const rebuild = canRebuild && (corrupt || this.failures >= REBUILD_AFTER_FAILURES)
    const delayMs = Math.min(MAX_RESTART_BACKOFF_MS, RESTART_BACKOFF_MS * 2 ** (this.failures - 1))
    if (rebuild) this.rebuilds++
    return { action: rebuild ? 'rebuild' : 'restart', delayMs, failures: this.failures }
  }
}

/**
 * Whether a replica may be rebuilt: the partition has more than one replica and the other
 * replicas that are reachable form a majority of all of them without this one.
 */
export function canRebuild(
  replicas: readonly string[],
  self: string,
  isUp: (peer: string) => boolean,
): boolean {
  if (replicas.length < 2) return false
  const othersUp = replicas.filter((r) => r !== self && isUp(r)).length
  return othersUp >= Math.floor(replicas.length / 2) + 1
}
