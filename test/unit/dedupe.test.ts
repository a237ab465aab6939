import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DedupeWindow } from '../../src/streams/partition/dedupe.js'

describe('DedupeWindow', () => {
  it('stores an id once within the window and again after it', () => {
    const w = new DedupeWindow(1000)
    expect(w.check('a', 0, 0)).toBeUndefined()
    expect(w.check('a', 500, 1)).toBe(0)
    expect(w.check('b', 600, 1)).toBeUndefined()
    expect(w.check('a', 1001, 2)).toBeUndefined() // window passed: stored again
    expect(w.check('a', 1500, 3)).toBe(2)
  })

  it('forgets old ids and stays bounded', () => {
    const w = new DedupeWindow(100, 10)
    for (let i = 0; i < 50; i++) w.check(`id${i}`, i, i)
    expect(w.size).toBeLessThanOrEqual(10)
    expect(w.check('id49', 60, 99)).toBe(49)
    expect(w.check('id0', 60, 100)).toBeUndefined()
  })

  it('two replicas fed the same sequence decide the same (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 50 })), {
          maxLength: 200,
        }),
        (ops) => {
          const a = new DedupeWindow(30, 16)
          const b = new DedupeWindow(30, 16)
          let t = 0
          let off = 0
          for (const [id, dt] of ops) {
            t += dt % 7
            const x = a.check(`m${id}`, t, off)
            const y = b.check(`m${id}`, t, off)
            expect(x).toEqual(y)
            if (x === undefined) off++
          }
        },
      ),
    )
  })
})
