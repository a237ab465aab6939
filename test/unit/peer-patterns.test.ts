import { describe, expect, it } from 'vitest'
import { PEER_PATTERNS_TOTAL } from '../../src/constants.js'
import { InterestMode, writeInterest } from '../../src/pubsub/frames.js'
import { PubSub } from '../../src/pubsub/pubsub.js'
import { BinaryReader, BinaryWriter } from '../../src/util/binary.js'

/** An interest frame body from a peer. */
function interest(mode: number, patterns: string[]): BinaryReader {
  const w = new BinaryWriter(64 * 1024)
  writeInterest(w, mode, patterns)
  return new BinaryReader(w.finish())
}

const patterns = (peer: number, n: number) => Array.from({ length: n }, (_, i) => `p${peer}.${i}.>`)

describe('interest patterns of all peers together', () => {
  it('are kept up to PEER_PATTERNS_TOTAL; beyond it new ones are refused until a peer goes', () => {
    const counts: Record<string, number> = {}
    const ps = new PubSub({
      self: 'me',
      links: () => [],
      link: () => undefined,
      count: (n) => {
        counts[n] = (counts[n] ?? 0) + 1
      },
      sync: async () => undefined,
    })
    const perPeer = 10_000
    const peers = PEER_PATTERNS_TOTAL / perPeer + 1
    for (let p = 0; p < peers; p++) {
      for (let f = 0; f < perPeer / 5000; f++) {
        ps.onInterest(
          `peer${p}`,
          interest(InterestMode.Add, patterns(p, perPeer).slice(f * 5000, (f + 1) * 5000)),
        )
      }
    }
    expect(ps.stats().patternsFromPeers).toBe(PEER_PATTERNS_TOTAL)
    expect(counts['pubsub.refused.totalPatterns']).toBe(perPeer)
    // Removals and a replacement give room back; a peer that goes frees its share.
    ps.onInterest('peer0', interest(InterestMode.Remove, patterns(0, 10)))
    expect(ps.stats().patternsFromPeers).toBe(PEER_PATTERNS_TOTAL - 10)
    ps.onInterest('peer1', interest(InterestMode.Replace, ['only.one']))
    expect(ps.stats().patternsFromPeers).toBe(PEER_PATTERNS_TOTAL - 10 - perPeer + 1)
    ps.onPeerGone('peer2')
    ps.onInterest('late', interest(InterestMode.Add, ['late.>']))
    expect(ps.stats().patternsFromPeers).toBe(PEER_PATTERNS_TOTAL - 10 - 2 * perPeer + 2)
    ps.close()
  })
})
