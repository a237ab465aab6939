import { afterEach, describe, expect, it } from 'vitest'
import { type Message, message } from '../../src/raft/index.js'
import { CommitHold } from '../../src/replication/commit-hold.js'
import { until } from './helpers.js'

const commitOnly = (to: string, commit: number): Message =>
  message({ type: 'MsgApp', from: 'a', to, term: 1, commit })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('CommitHold', () => {
  const holds: CommitHold[] = []
  afterEach(() => {
    for (const h of holds.splice(0)) h.takeAll()
  })
  function make(delay: number) {
    const sent: Array<{ m: Message; at: number }> = []
    const h = new CommitHold(delay, (m) => sent.push({ m, at: performance.now() }))
    holds.push(h)
    return { h, sent }
  }

  it('releases each append once it has itself been held for the delay, not on an earlier timer', async () => {
    // Margins of 100 ms or more either way: timers may run late on a loaded machine.
    const { h, sent } = make(300)
    h.hold(commitOnly('b', 1))
    await sleep(20)
    expect(h.drop('b')).toBe(true) // an append with entries carried the commit
    await sleep(130)
    const heldAt = performance.now()
    h.hold(commitOnly('b', 2)) // 150 ms after the first hold: its own 300 ms start now
    await sleep(250)
    expect(sent).toHaveLength(0) // the first hold's 300 ms passed: nothing leaves for it
    await until(() => sent.length > 0, 2000)
    expect(sent.map((x) => x.m.commit)).toEqual([2])
    expect(sent[0]!.at - heldAt).toBeGreaterThanOrEqual(299)
    expect(h.size).toBe(0)
  })

  it('a newer commit replaces the held one and keeps its time; followers are held apart', async () => {
    const { h, sent } = make(300)
    const t0 = performance.now()
    expect(h.hold(commitOnly('b', 1))).toBe(false)
    await sleep(50)
    expect(h.hold(commitOnly('b', 2))).toBe(true)
    await sleep(150)
    h.hold(commitOnly('c', 2))
    await until(() => sent.length > 0, 2000)
    // b leaves 300 ms after its first hold (not after the second), c 200 ms later
    expect(sent.map((x) => `${x.m.to}${x.m.commit}`)).toEqual(['b2'])
    expect(sent[0]!.at - t0).toBeGreaterThanOrEqual(299)
    await until(() => sent.length > 1, 2000)
    expect(sent.map((x) => `${x.m.to}${x.m.commit}`)).toEqual(['b2', 'c2'])
    expect(sent[1]!.at - t0).toBeGreaterThanOrEqual(499)
  })

  it('drop and takeAll stop holding (nothing is released later)', async () => {
    const { h, sent } = make(20)
    h.hold(commitOnly('b', 1))
    h.hold(commitOnly('c', 1))
    expect(h.drop('b')).toBe(true)
    expect(h.drop('b')).toBe(false)
    expect(h.takeAll().map((m) => m.to)).toEqual(['c'])
    await sleep(40)
    expect(sent).toHaveLength(0)
    expect(h.size).toBe(0)
  })
})
