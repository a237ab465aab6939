/**
 * Neighbour selection (pure): which known peers a node wants as neighbours, best first.
 *
 * Every peer has a position on a ring (a hash of its peer id) and, seen from one node, a
 * random rank (a hash of both ids: stable across restarts and recomputations, different from
 * every node's point of view). A node wants first its ring successors and predecessors (with
 * everyone linking their ring neighbours the graph is connected, whatever the random links do),
 * then the rest by random rank (random graphs of degree d have a diameter about log N / log d).
 */
import { createHash } from 'node:crypto'

/** A peer's place among the candidates: its ring position and its random rank seen from us. */
export interface Placed {
  peer: string
  pos: number
  rank: number
}

/** A 48-bit number from the sha256 of `text`. */
function hash48(text: string): number {
  return createHash('sha256').update(text).digest().readUIntBE(0, 6)
}

/** Where `peer` sits on the ring. */
export function ringPosition(peer: string): number {
  return hash48(`ring/${peer}`)
}

/** The random rank of `peer` seen from `self` (lower is preferred). */
export function randomRank(self: string, peer: string): number {
  return hash48(`rank/${self}/${peer}`)
}

/** How many ring neighbours on each side a node with this bound wants. */
export function ringSide(maxLinks: number): number {
  return Math.max(1, Math.min(2, Math.floor(maxLinks / 4)))
}

/**
 * The ring neighbours of `selfPos` among `peers`: up to `side` successors and `side`
 * predecessors, never more than `limit` together (successors first).
 */
export function ringClose(
  selfPos: number,
  peers: readonly Placed[],
  side: number,
  limit: number,
): Set<string> {
  const out = new Set<string>()
  if (peers.length === 0) return out
  const sorted = [...peers].sort((a, b) => a.pos - b.pos || (a.peer < b.peer ? -1 : 1))
  // First peer after us on the ring.
  let next = sorted.findIndex((p) => p.pos > selfPos)
  if (next < 0) next = 0
  const n = sorted.length
  for (let i = 0; i < side && out.size < limit; i++) {
    out.add(sorted[(next + i) % n]!.peer)
    if (out.size < limit) out.add(sorted[(next - 1 - i + 2 * n) % n]!.peer)
  }
  return out
}

/**
 * Every candidate in order of preference: ring neighbours, then by random rank. `ring` is the
 * set of ring neighbours (kept when trimming).
 */
export function preferenceOrder(
  selfPos: number,
  peers: readonly Placed[],
  maxLinks: number,
): { order: string[]; ring: Set<string> } {
  const ring = ringClose(selfPos, peers, ringSide(maxLinks), maxLinks)
  const rest = peers.filter((p) => !ring.has(p.peer)).sort((a, b) => a.rank - b.rank)
  return { order: [...ring, ...rest.map((p) => p.peer)], ring }
}
