/**
 * `ConsumerLeases`: what a metadata leader keeps in memory about running durable consumers —
 * partition leases (one holder per durable name and partition), which consumers asked lately
 * (fair sharing, `lastActive`), and which consumers were running under a name when it was
 * deleted (`streams.deleteConsumer`). A new leader starts with none of it: leases are taken
 * again within a lease time, and a consumer that outlived a deletion across a leader change
 * is no longer told (its next commit records the name again).
 *
 * It also adds up what the consumers of each name report (`tally`: redeliveries,
 * terminations, drops after `maxDeliver`), for `consumerInfo`; a new leader starts at zero.
 *
 * Bounded: at most `MAX_LEASES` leases and as many durable names seen, ended or tallied
 * (expired or oldest entries go first).
 */
import type { Tally } from '../consumer/consumer-wire.js'

/** Most consumer leases (and durable names tracked) a metadata leader keeps. */
const MAX_LEASES = 65_536

/** Key of one durable consumer of one stream incarnation. */
export function durableKey(stream: string, createdIndex: number, durable: string): string {
  return `${stream}/${createdIndex}/${durable}`
}

/** The metadata leader's in-memory consumer state; see the module doc. */
export class ConsumerLeases {
  /** durable key/partition → holder and expiry, in expiry order. */
  private readonly leases = new Map<string, { holder: string; expires: number }>()
  /** durable key → holder → last lease request (ms). */
  private readonly seen = new Map<string, Map<string, number>>()
  /** durable key → holders running when the name was deleted. */
  private readonly ended = new Map<string, Set<string>>()
  /** durable key → last lease request of any of its consumers (ms). */
  private readonly active = new Map<string, number>()
  /** durable key → counts reported by its consumers. */
  private readonly tallies = new Map<string, Tally>()

  /** Adds `t` to the counts of `key`; returns the totals. */
  tally(key: string, t: Tally): Tally {
    let sum = this.tallies.get(key)
    if (sum === undefined) {
      if (t.redelivered + t.terminated + t.dropped === 0) return { redelivered: 0, terminated: 0, dropped: 0 }
      if (this.tallies.size >= MAX_LEASES) this.tallies.delete(this.tallies.keys().next().value!)
      this.tallies.set(key, (sum = { redelivered: 0, terminated: 0, dropped: 0 }))
    }
    sum.redelivered += t.redelivered
    sum.terminated += t.terminated
    sum.dropped += t.dropped
    return { ...sum }
  }

  /**
   * Takes, renews (`ttlMs` > 0, capped at 60 s) or releases (0) the lease of `partition` for
   * `holder`. Returns whether it holds it, the current holder, and how many distinct
   * consumers asked within two lease lifetimes.
   */
  lease(
    key: string,
    partition: number,
    holder: string,
    ttlMs: number,
    now: number,
  ): { granted: boolean; holder: string; consumers: number } {
    const k = `${key}/${partition}`
    const held = this.leases.get(k)
    const free = held === undefined || held.expires <= now || held.holder === holder
    if (free && ttlMs === 0) this.leases.delete(k)
    else if (free) {
      this.leases.delete(k) // re-insert: the map stays in expiry order for pruning
      this.leases.set(k, { holder, expires: now + Math.min(ttlMs, 60_000) })
      for (const [x, l] of this.leases) {
        if (l.expires > now || this.leases.size <= MAX_LEASES) break
        this.leases.delete(x)
      }
    }
    const consumers = this.note(key, holder, ttlMs, now)
    return { granted: free, holder: free ? holder : held!.holder, consumers }
  }

  /** True when `holder` ran under durable `key` when it was deleted (it must stop). */
  isEnded(key: string, holder: string | undefined): boolean {
    return holder !== undefined && (this.ended.get(key)?.has(holder) ?? false)
  }

  /** Last lease request of any consumer of `key` (ms), 0 when none is known. */
  lastActive(key: string): number {
    return this.active.get(key) ?? 0
  }

  /** Unexpired lease holders of `key`'s first `partitions` partitions. */
  holders(key: string, partitions: number, now: number): Map<number, string> {
    const out = new Map<number, string>()
    for (let p = 0; p < partitions; p++) {
      const l = this.leases.get(`${key}/${p}`)
      if (l !== undefined && l.expires > now) out.set(p, l.holder)
    }
    return out
  }

  /** True when a consumer of `key` asked for a lease since this leader took over. */
  known(key: string): boolean {
    return this.active.has(key)
  }

  /**
   * A deleted durable name: its leases go, and the consumers that ran under it are told so
   * (`isEnded`) from now on; a new consumer of the name starts fresh.
   */
  forget(key: string, partitions: number): void {
    for (let p = 0; p < partitions; p++) this.leases.delete(`${key}/${p}`)
    const holders = this.seen.get(key)
    this.seen.delete(key)
    this.active.delete(key)
    this.tallies.delete(key)
    if (holders === undefined || holders.size === 0) return
    if (this.ended.size >= MAX_LEASES) this.ended.delete(this.ended.keys().next().value!)
    const set = this.ended.get(key) ?? new Set()
    for (const h of holders.keys()) set.add(h)
    this.ended.set(key, set)
  }

  private note(key: string, holder: string, ttlMs: number, now: number): number {
    this.active.delete(key) // re-insert: oldest first for pruning
    this.active.set(key, now)
    if (this.active.size > MAX_LEASES) this.active.delete(this.active.keys().next().value!)
    let seen = this.seen.get(key)
    if (seen === undefined) {
      if (this.seen.size >= MAX_LEASES) this.seen.delete(this.seen.keys().next().value!)
      this.seen.set(key, (seen = new Map()))
    }
    if (ttlMs === 0) seen.delete(holder)
    else seen.set(holder, now)
    for (const [h, t] of seen) if (now - t > 2 * Math.max(ttlMs, 5000)) seen.delete(h)
    return Math.max(1, seen.size)
  }
}
