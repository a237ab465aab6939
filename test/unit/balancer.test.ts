import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chooseMember } from '../../src/request/balancer.js'

describe('chooseMember', () => {
  it('returns undefined with no candidates', () => {
    expect(chooseMember([], 0)).toBeUndefined()
  })

  it('prefers the member with fewest outstanding requests', () => {
    const c = chooseMember(
      [
        { peer: 'a', outstanding: 3, latencyMs: 0.1 },
        { peer: 'b', outstanding: 1, latencyMs: 9 },
      ],
      0,
    )
    expect(c?.peer).toBe('b')
  })

  it('on equal load prefers a clearly faster member', () => {
    for (let turn = 0; turn < 5; turn++) {
      const c = chooseMember(
        [
          { peer: 'a', outstanding: 0, latencyMs: 10 },
          { peer: 'b', outstanding: 0, latencyMs: 1 },
        ],
        turn,
      )
      expect(c?.peer).toBe('b')
    }
  })

  it('spreads sequential load over equally fast members', () => {
    const picks = new Set<string>()
    for (let turn = 0; turn < 4; turn++) {
      picks.add(
        chooseMember(
          [
            { peer: 'a', outstanding: 0, latencyMs: 1 },
            { peer: 'b', outstanding: 0, latencyMs: 1.2 },
          ],
          turn,
        )!.peer,
      )
    }
    expect(picks).toEqual(new Set(['a', 'b']))
  })

  it('property: the pick always has the minimum outstanding count', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            peer: fc.string({ minLength: 1, maxLength: 4 }),
            outstanding: fc.nat(20),
            latencyMs: fc.option(fc.double({ min: 0, max: 100, noNaN: true })),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        fc.nat(),
        (cands, turn) => {
          const pick = chooseMember(cands, turn)!
          expect(pick.outstanding).toBe(Math.min(...cands.map((c) => c.outstanding)))
        },
      ),
    )
  })
})
