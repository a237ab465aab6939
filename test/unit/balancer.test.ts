import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chooseMember, LatencyWindow } from '../../src/request/balancer.js'

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

describe('LatencyWindow', () => {
  const opts = { windowMs: 5000, warmupMs: 2000, samples: 8 }

  it('a new link is neutral during its warm-up, whatever its first samples say', () => {
    const w = new LatencyWindow(0, opts)
    w.add(300, 900)
    w.add(250, 1900)
    expect(w.estimate(1999)).toBeNull()
    expect(w.estimate(2000)).toBe(250)
    // Neutral counts as fast as the best: the new member shares sequential load at once.
    const picks = new Set<string>()
    for (let turn = 0; turn < 4; turn++)
      picks.add(
        chooseMember(
          [
            { peer: 'old', outstanding: 0, latencyMs: 1 },
            { peer: 'new', outstanding: 0, latencyMs: w.estimate(1000) },
          ],
          turn,
        )!.peer,
      )
    expect(picks).toEqual(new Set(['old', 'new']))
  })

  it('slow samples age out by time: one fast sample after a slow start is enough', () => {
    const w = new LatencyWindow(0, opts)
    for (let t = 1000; t <= 3000; t += 1000) w.add(400, t) // a cold, busy start
    expect(w.estimate(3000)).toBe(400)
    w.add(1, 4000)
    expect(w.estimate(4000)).toBe(1)
    // An old fast sample ages out too: the estimate follows the last windowMs only.
    const v = new LatencyWindow(0, opts)
    v.add(1, 2000)
    for (let t = 3000; t <= 8000; t += 1000) v.add(50, t)
    expect(v.estimate(7000)).toBe(1)
    expect(v.estimate(7001)).toBe(50)
  })

  it('with no sample within the window the link is neutral again', () => {
    const w = new LatencyWindow(0, opts)
    w.add(20, 3000)
    expect(w.estimate(8000)).toBe(20)
    expect(w.estimate(8001)).toBeNull()
  })

  it('keeps a fixed number of samples and ignores invalid ones', () => {
    const w = new LatencyWindow(0, opts)
    w.add(Number.NaN, 2500)
    w.add(-1, 2500)
    expect(w.estimate(2500)).toBeNull()
    for (let i = 0; i < 20; i++) w.add(i === 0 ? 0.5 : 10, 2500 + i)
    // The 0.5 ms sample was overwritten by later ones (8 kept): only 10 ms samples remain.
    expect(w.estimate(2600)).toBe(10)
  })
})
