/**
 * `ReadBudget`: bytes of stored messages that reads (`s.fetch`) may hold at once on a
 * serving replica, per calling peer and in all (docs/security.md, "Per-peer bounds"). A
 * read takes what it may return before it reads and gives it back once its reply is
 * encoded; it is granted less than it asked when its caller's share or the total is short
 * (a shorter reply), and nothing (`OverloadedError`) when either is spent. A read waiting
 * for new messages holds nothing. This node's own reads count only against the total.
 */
import { READS } from '../../constants.js'
import { OverloadedError } from '../../errors.js'

/** See the module doc. */
export class ReadBudget {
  private total = 0
  private readonly byPeer = new Map<string, number>()

  constructor(
    private readonly self: string,
    private readonly count: (name: string) => void,
    private readonly limits: { perPeer: number; total: number } = {
      perPeer: READS.bytesPerPeer,
      total: READS.bytesTotal,
    },
  ) {}

  /** Bytes held now (for status). */
  get held(): number {
    return this.total
  }

  /**
   * Takes up to `want` bytes for a read by `peer`; returns the grant (at least 1). Throws
   * `OverloadedError` (counted `streams.refused.readBytes`) when nothing is left.
   */
  take(peer: string, want: number): number {
    const mine = this.byPeer.get(peer) ?? 0
    const peerLeft = peer === this.self ? Number.POSITIVE_INFINITY : this.limits.perPeer - mine
    const grant = Math.min(want, peerLeft, this.limits.total - this.total)
    if (grant < 1) {
      this.count('streams.refused.readBytes')
      throw new OverloadedError(`reads of ${peer} already hold ${mine} bytes (${this.total} in all)`)
    }
    this.total += grant
    this.byPeer.set(peer, mine + grant)
    return grant
  }

  /** Gives back a grant of `take`. */
  give(peer: string, bytes: number): void {
    this.total -= bytes
    const left = (this.byPeer.get(peer) ?? 0) - bytes
    if (left > 0) this.byPeer.set(peer, left)
    else this.byPeer.delete(peer)
  }
}
