/**
 * The redialler's schedule under fake timers: exponential backoff with jitter, reset on a
 * link, the kick when any link comes up, and forgetting peers whose records expired.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { REDIAL } from '../../src/constants.js'
import { Redialer } from '../../src/discovery/redial.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const seed = testSeed()
console.log(`redial test seed ${seed} (TEST_SEED=${seed} to replay)`)

/** A host whose dials fail until `up` holds the peer; records the time of every dial. */
function fakeHost(random = mulberry32(seed), self?: string) {
  const up = new Set<string>()
  const reachable = new Set<string>()
  const dials: Array<{ peer: string; at: number }> = []
  const r = new Redialer({
    linked: (p) => up.has(p),
    dial: async (peer) => {
      dials.push({ peer, at: Date.now() })
      if (!reachable.has(peer)) return false
      up.add(peer)
      return true
    },
    random,
    self,
  })
  return { r, up, reachable, dials }
}

/** Lets the dial promise chain settle under fake timers. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

describe('Redialer', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('dials a found peer at once, then backs off exponentially with jitter up to maxDelay', async () => {
    const { r, dials } = fakeHost()
    r.found('a', ['/ip4/10.0.0.1/tcp/1'])
    await settle()
    expect(dials).toHaveLength(1)
    // Found again while waiting: no extra dial (the backoff holds).
    r.found('a', [])
    await settle()
    expect(dials).toHaveLength(1)
    for (let i = 0; i < 12; i++) {
      r.found('a', []) // found again (mDNS answers): still wanted, yet no extra dial
      await vi.advanceTimersByTimeAsync(REDIAL.maxDelay)
    }
    const gaps = dials.slice(1).map((d, i) => d.at - dials[i]!.at)
    for (const [i, gap] of gaps.entries()) {
      const step = Math.min(REDIAL.maxDelay, REDIAL.minDelay * 2 ** (i + 1)) // after i + 1 failures
      expect(gap, `gap ${i}`).toBeGreaterThanOrEqual(step * (1 - REDIAL.jitter) - 1)
      expect(gap, `gap ${i}`).toBeLessThanOrEqual(step + 1)
    }
    expect(Math.max(...gaps)).toBeLessThanOrEqual(REDIAL.maxDelay + 1)
    expect(r.unreachable('a')).toBe(true)
    r.stop()
  })

  it('redials a dropped link after minDelay and stops once linked', async () => {
    const { r, up, reachable, dials } = fakeHost()
    up.add('b')
    r.linkUp('b')
    up.delete('b')
    r.linkDown('b')
    await vi.advanceTimersByTimeAsync(REDIAL.minDelay * (1 - REDIAL.jitter) - 1)
    expect(dials).toHaveLength(0)
    reachable.add('b')
    await vi.advanceTimersByTimeAsync(REDIAL.minDelay)
    expect(dials).toHaveLength(1)
    expect(up.has('b')).toBe(true)
    expect(r.unreachable('b')).toBe(false)
    await vi.advanceTimersByTimeAsync(REDIAL.forgetAfter)
    expect(dials).toHaveLength(1)
    r.stop()
  })

  it('after a link drops, the end with the higher peer id redials yieldDelay later', async () => {
    for (const [self, peer, extra] of [
      ['b', 'a', REDIAL.yieldDelay],
      ['a', 'b', 0],
    ] as const) {
      const { r, reachable, dials } = fakeHost(mulberry32(seed), self)
      reachable.add(peer)
      const t0 = Date.now()
      r.linkDown(peer)
      await vi.advanceTimersByTimeAsync(REDIAL.minDelay + REDIAL.yieldDelay)
      expect(dials).toHaveLength(1)
      expect(dials[0]!.at - t0).toBeGreaterThanOrEqual(REDIAL.minDelay * (1 - REDIAL.jitter) + extra)
      expect(dials[0]!.at - t0).toBeLessThanOrEqual(REDIAL.minDelay + extra)
      r.stop()
    }
  })

  it('stops dialling a peer forgetAfter after it was last found or linked', async () => {
    const { r, dials } = fakeHost()
    r.linkDown('c')
    await vi.advanceTimersByTimeAsync(REDIAL.forgetAfter + 2 * REDIAL.maxDelay)
    const n = dials.length
    expect(n).toBeGreaterThan(3)
    expect(dials.every((d) => d.at <= 1_000_000 + REDIAL.forgetAfter + REDIAL.maxDelay)).toBe(true)
    expect(r.size).toBe(0)
    await vi.advanceTimersByTimeAsync(5 * REDIAL.maxDelay)
    expect(dials.length).toBe(n)
    r.stop()
  })

  it('keeps dialling a member until it is no longer one', async () => {
    const { r, dials } = fakeHost()
    r.member('m', [])
    await vi.advanceTimersByTimeAsync(3 * REDIAL.forgetAfter)
    const n = dials.length
    expect(dials.at(-1)!.at).toBeGreaterThan(1_000_000 + 2 * REDIAL.forgetAfter)
    r.notMember('m')
    expect(r.size).toBe(0)
    await vi.advanceTimersByTimeAsync(3 * REDIAL.maxDelay)
    expect(dials.length).toBe(n)
    r.stop()
  })

  it('a link coming up dials peers in a long wait again within minDelay (backoff kept)', async () => {
    const { r, up, reachable, dials } = fakeHost()
    r.member('d', [])
    await vi.advanceTimersByTimeAsync(10_000) // several failures: the wait is now seconds
    const before = dials.length
    reachable.add('d')
    up.add('e')
    r.linkUp('e') // the network is back somewhere
    await vi.advanceTimersByTimeAsync(REDIAL.minDelay)
    expect(dials.length).toBe(before + 1)
    expect(up.has('d')).toBe(true)
    r.stop()
  })

  it('remembers at most maxPeers, forgetting non-members first', async () => {
    const { r } = fakeHost()
    r.member('member', [])
    await settle()
    for (let i = 0; i < REDIAL.maxPeers + 10; i++) r.linkDown(`p${i}`)
    expect(r.size).toBe(REDIAL.maxPeers)
    expect(r.unreachable('member')).toBe(true)
    r.stop()
    expect(r.size).toBe(0)
  })
})
