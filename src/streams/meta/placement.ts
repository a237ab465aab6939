/**
 * Placement of a stream's partitions on cluster members: a pure function, so the member
 * that proposes a `CreateStream` computes it once and the metadata group replicates the
 * result (replicas never recompute it, so their views of membership may differ freely).
 * Only members with a data directory (the storage role) are placed; `checkStorageMembers`
 * is the check a creating node makes before asking the metadata leader.
 */
import { noRoleMessage } from '../../cluster/roles.js'
import { InvalidArgumentError, NotEnoughReplicasError } from '../../errors.js'

/**
 * Throws `NotEnoughReplicasError` at once when the members a node knows cannot hold a new
 * stream of `replicas` replicas: `all` members of `cluster` are known and `storing` of them
 * have a data directory. Nothing is thrown while no member is known (they may be on their
 * way) or when enough store.
 */
export function checkStorageMembers(cluster: string, replicas: number, all: number, storing: number): void {
  if (all === 0 || storing >= replicas) return
  if (storing === 0) throw new NotEnoughReplicasError(noRoleMessage(cluster, 'storage', all))
  throw new NotEnoughReplicasError(
    `the stream needs ${replicas} replicas but cluster ${cluster} has only ${storing} member${storing === 1 ? '' : 's'} with a data directory (${all} members in all)`,
  )
}

/** 32-bit FNV-1a of a string: a stable tie-breaker, identical on every platform. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * Chooses `replicas` distinct members for each of `partitions` partitions. Each list starts
 * with the preferred leader. Rules, in order:
 *
 * - leaders: the member with the fewest leaderships in this stream so far, then the least
 *   loaded, then a seeded tie-break; so leader counts across members differ by at most 1;
 * - followers: the least loaded of the other members (load = `load.get(m) ?? 0` plus the
 *   replicas this call already put there), then the seeded tie-break.
 *
 * Deterministic: the same members (in any order, duplicates ignored), load, counts and
 * seed give the same placement. The `seed` (e.g. a hash of the stream name) varies the
 * tie-breaks so that equally loaded members do not all receive the first leader of every
 * stream. Throws `NotEnoughReplicasError` when there are fewer members than `replicas`,
 * `InvalidArgumentError` on malformed arguments.
 */
export function placeStream(
  members: readonly string[],
  load: ReadonlyMap<string, number>,
  partitions: number,
  replicas: number,
  seed: number,
): string[][] {
  if (!Array.isArray(members) || members.some((m) => typeof m !== 'string' || m === ''))
    throw new InvalidArgumentError('members must be an array of non-empty strings')
  if (!Number.isSafeInteger(partitions) || partitions < 1)
    throw new InvalidArgumentError(`partitions must be a positive integer, got ${partitions}`)
  if (!Number.isSafeInteger(replicas) || replicas < 1)
    throw new InvalidArgumentError(`replicas must be a positive integer, got ${replicas}`)
  if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError(`seed must be an integer, got ${seed}`)
  const ids = [...new Set(members)].sort()
  if (ids.length < replicas) {
    throw new NotEnoughReplicasError(
      `the stream needs ${replicas} replicas but only ${ids.length} member${ids.length === 1 ? '' : 's'} with a data directory can host them`,
    )
  }
  const used = new Map<string, number>()
  const leads = new Map<string, number>()
  const rank = new Map<string, number>()
  for (const m of ids) {
    const l = load.get(m) ?? 0
    used.set(m, Number.isFinite(l) ? l : 0)
    leads.set(m, 0)
    rank.set(m, fnv1a(`${seed}/${m}`))
  }
  const byLoad = (a: string, b: string): number =>
    used.get(a)! - used.get(b)! || rank.get(a)! - rank.get(b)! || (a < b ? -1 : a > b ? 1 : 0)
  const out: string[][] = []
  for (let p = 0; p < partitions; p++) {
    const leader = [...ids].sort((a, b) => leads.get(a)! - leads.get(b)! || byLoad(a, b))[0]!
    const followers = ids
      .filter((m) => m !== leader)
      .sort(byLoad)
      .slice(0, replicas - 1)
    const list = [leader, ...followers]
    leads.set(leader, leads.get(leader)! + 1)
    for (const m of list) used.set(m, used.get(m)! + 1)
    out.push(list)
  }
  return out
}
