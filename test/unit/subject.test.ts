import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../src/errors.js'
import { checkPattern, checkTopic, matches, patternCovers, SubjectIndex } from '../../src/pubsub/subject.js'

/** Reference matcher: a regular expression built token by token. */
function reference(pattern: string, topic: string): boolean {
  const parts = pattern.split('.').map((t) => (t === '*' ? '[^.]+' : t === '>' ? '[^.]+(\\.[^.]+)*' : t))
  return new RegExp(`^${parts.join('\\.')}$`).test(topic)
}

const token = fc.constantFrom('a', 'b', 'c', 'orders', 'eu')
const topicArb = fc.array(token, { minLength: 1, maxLength: 5 }).map((t) => t.join('.'))
const patternArb = fc
  .tuple(fc.array(fc.oneof(token, fc.constant('*')), { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([t, tail]) => (tail ? [...t.slice(0, -1), '>'] : t).join('.'))

describe('subjects', () => {
  it('matches exactly like the reference matcher (property)', () => {
    fc.assert(
      fc.property(patternArb, topicArb, (p, t) => {
        expect(matches(p, t)).toBe(reference(p, t))
      }),
      { numRuns: 2000 },
    )
  })

  it('SubjectIndex finds exactly the matching patterns, also after deletions (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(patternArb, { maxLength: 12 }),
        fc.array(fc.nat(11)),
        topicArb,
        (pats, dels, t) => {
          const idx = new SubjectIndex<string>()
          for (const p of pats) idx.add(p, p)
          const live = new Set(pats)
          for (const d of dels) {
            const p = pats[d % Math.max(1, pats.length)]
            if (p !== undefined) {
              idx.delete(p, p)
              live.delete(p)
            }
          }
          expect([...idx.match(t)].sort()).toEqual([...live].filter((p) => reference(p, t)).sort())
          expect(idx.size).toBe(live.size)
        },
      ),
      { numRuns: 1000 },
    )
  })

  it('NATS examples', () => {
    expect(matches('orders.*', 'orders.eu')).toBe(true)
    expect(matches('orders.*', 'orders.eu.created')).toBe(false)
    expect(matches('orders.>', 'orders.eu.created')).toBe(true)
    expect(matches('orders.>', 'orders')).toBe(false)
    expect(matches('>', 'x')).toBe(true)
    expect(matches('*.eu.*', 'orders.eu.created')).toBe(true)
  })

  it('refuses wildcards in published topics and malformed patterns, naming the field', () => {
    for (const bad of ['orders.*', 'orders.>', '', 'a..b', '.a', 'a.', 'a b', 'or*ders']) {
      expect(() => checkTopic(bad), bad).toThrow(InvalidArgumentError)
    }
    for (const bad of ['', 'a.>.b', 'a..b', 'x*', 'a.b>', 5]) {
      expect(() => checkPattern(bad), String(bad)).toThrow(/pattern/)
    }
    expect(checkPattern('a.*.>')).toBe('a.*.>')
  })
})

describe('patternCovers', () => {
  it('is true exactly when every topic of the inner pattern matches the outer one', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a.>', 'a.>', true],
      ['a.>', 'a.b.*', true],
      ['a.*', 'a.b', true],
      ['a.*', 'a.>', false],
      ['a.b', 'a.*', false],
      ['>', 'x.y.z', true],
      ['a.*.c', 'a.*.c', true],
      ['a.*.c', 'a.b', false],
      ['a.b.>', 'a.>', false],
    ]
    for (const [outer, inner, want] of cases)
      expect(patternCovers(outer, inner), `${outer} ⊇ ${inner}`).toBe(want)
  })

  it('agrees with matches on concrete topics (seeded)', () => {
    const tok = fc.constantFrom('a', 'b', '*', '>')
    const pat = fc.array(tok, { minLength: 1, maxLength: 4 }).map((t) => {
      const i = t.indexOf('>')
      return (i >= 0 ? t.slice(0, i + 1) : t).join('.')
    })
    const topic = fc.array(fc.constantFrom('a', 'b'), { minLength: 1, maxLength: 4 }).map((t) => t.join('.'))
    fc.assert(
      fc.property(pat, pat, topic, (outer, inner, t) => {
        // covers ⇒ every topic the inner pattern matches, the outer matches too
        if (patternCovers(outer, inner) && matches(inner, t)) expect(matches(outer, t)).toBe(true)
      }),
      { seed: 18, numRuns: 2000 },
    )
  })
})
