/**
 * Digests and anti-entropy (src/overlay/digest.ts, anti-entropy.ts) without sockets: the
 * codec and its bounds, `missing`, and two in-memory nodes that repair each other's records
 * by one push-pull round; with 10,000 records every digest stays under 64 KiB + header.
 */
import { describe, expect, it } from 'vitest'
import { AntiEntropy, type AntiEntropyHost, OVERLAY_DIGEST } from '../../src/overlay/anti-entropy.js'
import {
  DIGEST_MAX_ENTRIES,
  decodeDigest,
  encodeDigest,
  ID_SPACE,
  missing,
  recordId,
  Section,
  slice,
  sliceCount,
  type Versioned,
  WANT_REPLY,
} from '../../src/overlay/digest.js'
import { DecodeError } from '../../src/util/binary.js'

const rec = (key: string, version: number): Versioned => ({
  key,
  version,
  bytes: new TextEncoder().encode(`${key}@${version}`),
})

describe('digests', () => {
  it('round-trips and lists only the slice asked', () => {
    const rs = Array.from({ length: 100 }, (_, i) => rec(`p${i}/c`, i + 1))
    const { lo, hi } = slice(1, 2)
    const d = decodeDigest(encodeDigest(Section.announcements, WANT_REPLY, lo, hi, rs, []))
    expect(d.flags).toBe(WANT_REPLY)
    expect([d.lo, d.hi]).toEqual([lo, hi])
    const inSlice = rs.filter((r) => recordId(r.key) >= lo && recordId(r.key) < hi)
    expect(d.announcements.size).toBe(inSlice.length)
    for (const r of inSlice) expect(d.announcements.get(recordId(r.key))).toBe(r.version)
    expect(d.interest.size).toBe(0)
  })

  it('missing: what the other lacks or holds older, never what it holds newer', () => {
    const mine = [rec('a', 2), rec('b', 1), rec('c', 5)]
    const theirs = new Map([
      [recordId('a'), 1],
      [recordId('c'), 7],
    ])
    expect(missing(mine, theirs, 0, ID_SPACE).map((r) => r.key)).toEqual(['a', 'b'])
  })

  it('refuses malformed digests', () => {
    const good = encodeDigest(Section.interest, 0, 0, ID_SPACE, [], [rec('x', 1)])
    expect(() => decodeDigest(good.subarray(0, good.length - 1))).toThrow(DecodeError)
    const bad = new Uint8Array(good)
    bad[0] = 7
    expect(() => decodeDigest(bad)).toThrow(DecodeError)
    expect(() => decodeDigest(encodeDigest(1, 0, 5, 5, [], []))).toThrow(/slice/)
  })

  it('10,000 records: every digest within DIGEST_MAX_ENTRIES, all slices together cover them', () => {
    const rs = Array.from({ length: 10_000 }, (_, i) => rec(`peer${i}`, 1))
    const n = sliceCount(rs.length)
    let covered = 0
    for (let i = 0; i < n; i++) {
      const { lo, hi } = slice(i, n)
      const bytes = encodeDigest(Section.interest, 0, lo, hi, [], rs)
      expect(bytes.length).toBeLessThanOrEqual(DIGEST_MAX_ENTRIES * 16 + 32)
      covered += decodeDigest(bytes).interest.size
    }
    expect(covered).toBe(rs.length)
  })
})

/** Two nodes, their records and an in-memory call path between them. */
function pair() {
  const held = { a: new Map<string, Versioned>(), b: new Map<string, Versioned>() }
  const sent = { a: 0, b: 0 }
  const make = (self: 'a' | 'b', other: 'a' | 'b'): AntiEntropy => {
    const put = (r: Versioned) => {
      const have = held[other].get(r.key)
      if (!have || have.version < r.version) held[other].set(r.key, r)
      sent[self]++
    }
    const host: AntiEntropyHost = {
      announcements: () => [...held[self].values()].filter((r) => r.key.includes('/')),
      interest: () => [...held[self].values()].filter((r) => !r.key.includes('/')),
      neighbours: () => [other],
      sendAnnouncement: (_p, bytes) => put(decode(bytes)),
      sendInterest: (_p, bytes) => put(decode(bytes)),
      notify: (_p, method, body) => {
        expect(method).toBe(OVERLAY_DIGEST)
        nodes[other].onDigest(body, self)
      },
      call: async (_p, _m, body) => nodes[other].onDigest(body, self),
      random: () => 0,
    }
    return new AntiEntropy(host)
  }
  const decode = (bytes: Uint8Array): Versioned => {
    const [key, v] = new TextDecoder().decode(bytes).split('@') as [string, string]
    return rec(key, Number(v))
  }
  const nodes = { a: make('a', 'b'), b: make('b', 'a') }
  return { held, nodes, sent }
}

describe('anti-entropy', () => {
  it('one push-pull round repairs both sides and sends nothing already held', async () => {
    const { held, nodes, sent } = pair()
    for (const r of [rec('x/c', 2), rec('y/c', 1), rec('i1', 3)]) held.a.set(r.key, r)
    for (const r of [rec('x/c', 1), rec('z/c', 4), rec('i1', 3), rec('i2', 1)]) held.b.set(r.key, r)
    nodes.a.tick()
    await new Promise((r) => setImmediate(r))
    const view = (m: Map<string, Versioned>) => Object.fromEntries([...m].map(([k, r]) => [k, r.version]))
    const want = { 'x/c': 2, 'y/c': 1, 'z/c': 4, i1: 3, i2: 1 }
    expect(view(held.a)).toEqual(want)
    expect(view(held.b)).toEqual(want)
    // b lacked x/c@2 and y/c; a lacked z/c and i2: four records, no more.
    expect(sent.a + sent.b).toBe(4)
  })

  it('a link that comes up exchanges announcement digests, not the records both hold', () => {
    const { held, nodes, sent } = pair()
    for (let i = 0; i < 500; i++) {
      held.a.set(`p${i}/c`, rec(`p${i}/c`, 1))
      held.b.set(`p${i}/c`, rec(`p${i}/c`, 1))
    }
    held.a.set('new/c', rec('new/c', 1))
    nodes.a.linkUp('b')
    nodes.b.linkUp('a')
    expect(sent.a + sent.b).toBe(1)
    expect(held.b.has('new/c')).toBe(true)
  })
})
