/**
 * `DedupeWindow`: the message ids a partition stored recently, so a publish retried with the
 * same `msgId` (after a timeout, a lost link or a leader change) is stored once.
 *
 * Decisions depend only on what the raft log holds — the id, the leader's timestamp of the
 * message and its offset — so every replica, applying the same entries in the same order,
 * decides the same way (and a replica rebuilding the window from its partition log after a
 * restart gets the same state back).
 *
 * Memory: ids older than `windowMs` (by message timestamp, relative to the newest seen) are
 * forgotten; beyond `maxIds` the oldest are forgotten first, so under very high rates the
 * effective window is shorter than `windowMs` (stated in docs/architecture.md).
 */

/** Most ids one partition remembers. */
export const MAX_DEDUPE_IDS = 262_144

/** The duplicate detector of one partition; see the module doc. */
export class DedupeWindow {
  /** id → { offset, timestamp }, in insertion (application) order. */
  private readonly ids = new Map<string, { offset: number; timestamp: number }>()
  private newest = 0

  constructor(
    readonly windowMs: number,
    private readonly maxIds = MAX_DEDUPE_IDS,
  ) {}

  /**
   * The offset `id` was stored at, if it was stored within the window before `timestamp`
   * (the message is then a duplicate); undefined otherwise. Changes nothing.
   */
  duplicateOf(id: string, timestamp: number): number | undefined {
    const seen = this.ids.get(id)
    return seen !== undefined && timestamp - seen.timestamp <= this.windowMs ? seen.offset : undefined
  }

  /**
   * Records that `id` was stored at `offset` with `timestamp`, and forgets ids older than the
   * window behind the newest stored timestamp. Only stored messages move the window, so a
   * replica rebuilding it from its partition log reaches the same state.
   */
  record(id: string, timestamp: number, offset: number): void {
    this.newest = Math.max(this.newest, timestamp)
    this.ids.delete(id)
    this.ids.set(id, { offset, timestamp })
    if (this.ids.size > this.maxIds) this.ids.delete(this.ids.keys().next().value!)
    this.prune()
  }

  /** `duplicateOf`, then `record` when it is not a duplicate. */
  check(id: string, timestamp: number, offset: number): number | undefined {
    const dup = this.duplicateOf(id, timestamp)
    if (dup === undefined) this.record(id, timestamp, offset)
    return dup
  }

  /** Number of ids remembered. */
  get size(): number {
    return this.ids.size
  }

  private prune(): void {
    const horizon = this.newest - this.windowMs
    for (const [id, e] of this.ids) {
      if (e.timestamp >= horizon) break
      this.ids.delete(id)
    }
  }
}
