/**
 * How much of a member's limit one remote peer may hold (docs/security.md, "Per-peer
 * bounds"): `PEER_SHARE` of it, but never less than `PEER_SHARE_MIN` (or the whole limit
 * when that is smaller), so a member with small limits still serves one busy caller fully.
 */
import { PEER_SHARE, PEER_SHARE_MIN } from '../constants.js'

/**
 * The part of `limit` one remote peer may hold at once (at least 1): `PEER_SHARE` of it, or
 * `floor` (`PEER_SHARE_MIN` for counts; bytes pass their own) when that is more.
 */
export function peerShare(limit: number, floor = PEER_SHARE_MIN): number {
  return Math.max(1, Math.floor(limit * PEER_SHARE), Math.min(limit, floor))
}
