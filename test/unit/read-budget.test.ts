import { describe, expect, it } from 'vitest'
import { OverloadedError } from '../../src/errors.js'
import { ReadBudget } from '../../src/streams/access/read-budget.js'

describe('ReadBudget', () => {
  it('grants within the caller share and the total, refuses when spent, and gives back', () => {
    const counts: string[] = []
    const b = new ReadBudget('me', (n) => counts.push(n), { perPeer: 100, total: 250 })
    expect(b.take('a', 60)).toBe(60)
    expect(b.take('a', 60)).toBe(40) // a shorter read: the rest of a's share
    expect(() => b.take('a', 1)).toThrow(OverloadedError)
    expect(counts).toEqual(['streams.refused.readBytes'])
    expect(b.take('b', 100)).toBe(100) // another peer is unaffected
    expect(b.take('me', 500)).toBe(50) // this node: only the total
    expect(() => b.take('c', 1)).toThrow(OverloadedError)
    b.give('a', 60)
    b.give('a', 40)
    expect(b.take('c', 80)).toBe(80)
    b.give('b', 100)
    b.give('me', 50)
    b.give('c', 80)
    expect(b.held).toBe(0)
  })
})
