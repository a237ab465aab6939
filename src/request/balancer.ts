/**
 * Member choice for requests (pure): fewest outstanding requests first; among those, the
 * members whose latency is within `LATENCY_TOLERANCE` (+ `LATENCY_SLACK_MS`) of the best (or
 * not yet measured)
 * take turns in round-robin order, so equally fast members share sequential load while a
 * clearly slower one is used only when the faster ones are busier.
 */
import { LATENCY_SLACK_MS, LATENCY_TOLERANCE } from '../constants.js'

/** A member the balancer may pick. */
export interface Candidate {
  peer: string
  /** Requests this node has sent to it and not yet seen answered. */
  outstanding: number
  /** Smoothed latency (ms), or null before the first sample. */
  latencyMs: number | null
}

/**
 * Picks one candidate, or undefined when there are none. `turn` is a counter the caller
 * increments on every pick (the round-robin position).
 */
export function chooseMember<T extends Candidate>(cands: readonly T[], turn: number): T | undefined {
  if (cands.length === 0) return undefined
  if (cands.length === 1) return cands[0]
  let min = Number.POSITIVE_INFINITY
  for (const c of cands) if (c.outstanding < min) min = c.outstanding
  const least = cands.filter((c) => c.outstanding === min)
  let best = Number.POSITIVE_INFINITY
  for (const c of least) if (c.latencyMs !== null && c.latencyMs < best) best = c.latencyMs
  const fast =
    best === Number.POSITIVE_INFINITY
      ? least
      : least.filter(
          (c) => c.latencyMs === null || c.latencyMs <= best * LATENCY_TOLERANCE + LATENCY_SLACK_MS,
        )
  // Sort by peer id so the round-robin order is stable whatever order candidates came in.
  fast.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0))
  return fast[turn % fast.length]
}
