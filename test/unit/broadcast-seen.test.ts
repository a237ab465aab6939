import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SeenWindows } from '../../src/broadcast/seen.js'

describe('SeenWindows (broadcast de-duplication)', () => {
  it('accepts each (origin, seq) once, in any order within the window', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 0, max: 1000 })), {
          maxLength: 400,
        }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (events, base) => {
          const seen = new SeenWindows(1024, 16)
          const reference = new Set<string>()
          for (const [origin, off] of events) {
            const seq = (base + off) >>> 0 // also crosses 2^32 for some bases
            const fresh = !reference.has(`${origin}/${seq}`)
            reference.add(`${origin}/${seq}`)
            expect(seen.check(origin, seq)).toBe(fresh)
          }
        },
      ),
    )
  })

  it('forgets what falls out of the window and takes a far-behind number as a restart', () => {
    const seen = new SeenWindows(64, 4)
    expect(seen.check('o', 1000)).toBe(true)
    expect(seen.check('o', 990)).toBe(true)
    expect(seen.check('o', 990)).toBe(false)
    expect(seen.check('o', 1000 + 64)).toBe(true) // 990 and 1000 now out of the window
    expect(seen.check('o', 1001)).toBe(true)
    expect(seen.check('o', 1001)).toBe(false)
    expect(seen.check('o', 5)).toBe(true) // restarted origin: starts over
    expect(seen.check('o', 6)).toBe(true)
    expect(seen.check('o', 5)).toBe(false)
    expect(seen.check('o', 2000)).toBe(true) // a jump beyond the window clears it
    expect(seen.check('o', 1999)).toBe(true)
  })

  it('bounds the number of origins it tracks', () => {
    const seen = new SeenWindows(32, 3)
    for (const o of ['a', 'b', 'c', 'd', 'e']) expect(seen.check(o, 1)).toBe(true)
    expect(seen.size).toBe(3)
    expect(() => new SeenWindows(100, 3)).toThrow(RangeError)
  })
})
