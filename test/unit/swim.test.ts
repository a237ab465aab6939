/**
 * The failure detector's core (src/overlay/swim.ts) step by step, with a fake clock and
 * transport: indirect probes before any suspicion, suspicion spread once, refutation by a
 * newer record, death after the timeout, confirmations shortening it, a suspected node
 * refuting, and a slow node (local health) waiting longer before it declares anyone dead.
 */
import { describe, expect, it } from 'vitest'
import { SWIM } from '../../src/constants.js'
import { type Suspicion, Swim, type SwimIO } from '../../src/overlay/swim.js'

function harness(self = 'me', neighbours = ['a', 'b', 'c', 'x']) {
  let clock = 0
  const asked: [string, string][] = []
  const spread: [Suspicion, string | undefined][] = []
  const dead: string[] = []
  const refuted: number[] = []
  const versions = new Map<string, number>([['x', 10]])
  const io: SwimIO = {
    self,
    now: () => clock,
    random: () => 0.5,
    neighbours: () => neighbours,
    size: () => 10,
    incarnation: (p) => versions.get(p) ?? 0,
    askProbe: (via, target) => asked.push([via, target]),
    spread: (s, except) => spread.push([s, except]),
    refute: (inc) => refuted.push(inc),
    dead: (p) => dead.push(p),
  }
  const swim = new Swim(io)
  const advance = (ms: number) => {
    for (let t = 0; t < ms; t += 50) {
      clock += 50
      swim.tick()
    }
  }
  return { swim, asked, spread, dead, refuted, versions, advance, now: () => clock }
}

describe('swim core', () => {
  it('a failed link is probed by ourselves, then through K other neighbours; one alive answer ends it', () => {
    const h = harness()
    h.swim.linkFailed('x')
    expect(h.asked).toEqual([['me', 'x']])
    h.swim.probeAnswer('x', 'me', false)
    h.asked.shift()
    expect(h.asked.length).toBe(SWIM.indirectProbes)
    expect(h.asked.every(([via, t]) => via !== 'x' && t === 'x')).toBe(true)
    h.swim.probeAnswer('x', h.asked[0]![0], false)
    h.swim.probeAnswer('x', h.asked[1]![0], true)
    h.advance(10_000)
    expect(h.spread.length).toBe(0)
    expect(h.dead).toEqual([])
    expect(h.swim.stats.probedAlive).toBe(1)
  })

  it('all answers "not alive": suspected at its incarnation, spread, dead after the timeout', () => {
    const h = harness()
    h.swim.linkFailed('x')
    h.swim.probeAnswer('x', 'me', false)
    for (const [via] of h.asked.slice(1)) h.swim.probeAnswer('x', via, false)
    expect(h.spread).toEqual([[{ target: 'x', incarnation: 10, accuser: 'me' }, undefined]])
    expect(h.swim.isSuspect('x')).toBe(true)
    // N = 10: min = 2 × 1 × 1000 ms, max = 3 × min; one accuser waits the max.
    expect(h.swim.suspicionTimeout(1)).toBe(6000)
    h.advance(5900)
    expect(h.dead).toEqual([])
    h.advance(200)
    expect(h.dead).toEqual(['x'])
    expect(h.swim.isDead('x')).toBe(true)
    // Dead stays dead for older records; a newer one brings it back.
    h.swim.onRecord('x', 10)
    expect(h.swim.isDead('x')).toBe(true)
    h.swim.onRecord('x', 11)
    expect(h.swim.isDead('x')).toBe(false)
  })

  it('no answer at all: suspects after two probeTimeouts and its own health worsens', () => {
    const h = harness()
    h.swim.linkFailed('x')
    h.advance(SWIM.probeTimeout + 50)
    expect(h.swim.isSuspect('x')).toBe(false) // our own dial timed out: the others are asked
    expect(h.asked.length).toBe(1 + SWIM.indirectProbes)
    h.advance(SWIM.probeTimeout + 50)
    expect(h.swim.isSuspect('x')).toBe(true)
    expect(h.swim.health).toBe(1)
  })

  it('a newer record refutes a suspicion; an older suspicion is ignored', () => {
    const h = harness()
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'a' }, 'a')
    expect(h.spread).toEqual([[{ target: 'x', incarnation: 10, accuser: 'a' }, 'a']])
    // The same accusation again (from another neighbour) is not passed on twice.
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'a' }, 'b')
    expect(h.spread.length).toBe(1)
    h.versions.set('x', 12)
    h.swim.onRecord('x', 12)
    expect(h.swim.isSuspect('x')).toBe(false)
    expect(h.swim.stats.refuted).toBe(1)
    h.swim.onSuspect({ target: 'x', incarnation: 11, accuser: 'b' }, 'b')
    expect(h.swim.isSuspect('x')).toBe(false)
    h.advance(20_000)
    expect(h.dead).toEqual([])
  })

  it('confirmations from other accusers shorten the timeout to the minimum', () => {
    const h = harness()
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'a' }, 'a')
    for (const acc of ['b', 'c', 'd']) h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: acc }, acc)
    expect(h.swim.suspicionTimeout(4)).toBeCloseTo(2000, 6)
    h.advance(2050)
    expect(h.dead).toEqual(['x'])
    expect(h.spread.length).toBe(4)
  })

  it('a suspected node refutes once per incarnation and does not spread its own suspicion', () => {
    const h = harness('x')
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'a' }, 'a')
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'b' }, 'b')
    expect(h.refuted).toEqual([10])
    expect(h.spread).toEqual([])
    h.advance(2000) // nothing pending: version 10 was refuted already
    expect(h.refuted).toEqual([10])
    // Our newer record (11) is suspected in turn: refuted again.
    h.versions.set('x', 11)
    h.swim.onSuspect({ target: 'x', incarnation: 11, accuser: 'a' }, 'a')
    expect(h.refuted).toEqual([10, 11])
    // And 12 at once after: refuted a second after the last refutation, not before.
    h.versions.set('x', 12)
    h.swim.onSuspect({ target: 'x', incarnation: 12, accuser: 'a' }, 'a')
    expect(h.refuted).toEqual([10, 11])
    h.advance(1000)
    expect(h.refuted).toEqual([10, 11, 12])
    // An accuser behind (version 10 while we are at 12): refuted too, at most once a second.
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'c' }, 'c')
    expect(h.refuted).toEqual([10, 11, 12])
    h.advance(1000)
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'c' }, 'c')
    expect(h.refuted).toEqual([10, 11, 12, 10])
  })

  it('however many accusers, one suspicion travels at most K + 1 times', () => {
    const h = harness()
    for (let i = 0; i < 100; i++) h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: `acc${i}` }, 'a')
    expect(h.spread.length).toBe(SWIM.indirectProbes + 1)
  })

  it('suspicions of unknown peers are dropped; a future incarnation is clamped to ours', () => {
    const h = harness()
    h.swim.onSuspect({ target: 'nobody', incarnation: 5, accuser: 'a' }, 'a')
    expect(h.spread).toEqual([])
    // A hostile "version 1e12" could never be refuted; it is taken as the 10 we hold.
    h.swim.onSuspect({ target: 'x', incarnation: 1e12, accuser: 'a' }, 'a')
    expect(h.spread).toEqual([[{ target: 'x', incarnation: 10, accuser: 'a' }, 'a']])
    h.versions.set('x', 11)
    h.swim.onRecord('x', 11)
    expect(h.swim.isSuspect('x')).toBe(false)
  })

  it('a slow node (late timers) waits longer: a refutation in time keeps the peer alive', () => {
    const h = harness()
    for (let i = 0; i < 4; i++) h.swim.late(2000)
    expect(h.swim.health).toBe(4)
    h.swim.onSuspect({ target: 'x', incarnation: 10, accuser: 'a' }, 'a')
    expect(h.swim.suspicionTimeout(1)).toBe(6000 * 5)
    h.advance(20_000) // a healthy node would have declared it dead after 6 s
    expect(h.dead).toEqual([])
    h.swim.onRecord('x', 11)
    h.advance(30_000)
    expect(h.dead).toEqual([])
    // Timely ticks bring health back down.
    for (let i = 0; i < 20 * 4; i++) h.swim.late(0)
    expect(h.swim.health).toBe(0)
  })
})
