/**
 * Member choice for requests (pure): fewest outstanding requests first; among those, the
 * members whose latency is within `LATENCY_TOLERANCE` (+ `LATENCY_SLACK_MS`) of the best (or
 * not yet measured)
 * take turns in round-robin order, so equally fast members share sequential load while a
 * clearly slower one is used only when the faster ones are busier.
 *
 * The latency of a member is its link's `LatencyWindow`: the lowest heartbeat round trip of
 * the last few seconds (samples age out by time), and neutral while the link is new, so a
 * restarted member whose first samples are slow (a busy machine, a cold process) takes its
 * share at once instead of waiting for an average to decay.
 */
import { BALANCER_LATENCY, LATENCY_SLACK_MS, LATENCY_TOLERANCE } from '../constants.js'

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

/**
 * Recent round-trip samples of one link, read by the balancer (pure: the caller passes the
 * time). `estimate` is the lowest sample of the last `windowMs`, or null (neutral: counted as
 * fast as the best) while the window started less than `warmupMs` ago or holds no sample.
 * Memory is fixed (`samples` entries).
 */
export class LatencyWindow {
  private readonly at: Float64Array
  private readonly ms: Float64Array
  private next = 0
  private count = 0

  constructor(
    /** Local time the link opened (ms): the warm-up counts from it. */
    private readonly startedAt: number,
    private readonly opts: { windowMs: number; warmupMs: number; samples: number } = BALANCER_LATENCY,
  ) {
    this.at = new Float64Array(opts.samples)
    this.ms = new Float64Array(opts.samples)
  }

  /** Records a round trip of `rttMs` measured at `now` (negative or NaN samples are ignored). */
  add(rttMs: number, now: number): void {
    if (!(rttMs >= 0)) return
    this.at[this.next] = now
    this.ms[this.next] = rttMs
    this.next = (this.next + 1) % this.at.length
    if (this.count < this.at.length) this.count++
  }

  /** The latency to balance on at `now` (ms), or null for neutral. */
  estimate(now: number): number | null {
    if (now - this.startedAt < this.opts.warmupMs) return null
    let best = Number.POSITIVE_INFINITY
    for (let i = 0; i < this.count; i++) {
      if (now - this.at[i]! <= this.opts.windowMs && this.ms[i]! < best) best = this.ms[i]!
    }
    return best === Number.POSITIVE_INFINITY ? null : best
  }
}
