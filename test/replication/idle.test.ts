/**
 * What an idle Raft group costs: the leader's heartbeats (a third of the election timeout
 * apart by default, not one per tick) and the shared clock that ticks every driver of the
 * process in one timer callback (replication/ticker.ts).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { defaultHeartbeatTick } from '../../src/replication/driver.js'
import { onTick, runningClocks } from '../../src/replication/ticker.js'
import { leaderOf, makeCluster } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

describe('shared Raft clock', () => {
  it('ticks every subscriber of one period in the same turn, and stops when the last leaves', async () => {
    const before = runningClocks()
    // A opens a turn, B closes it; an immediate queued by A runs after the timers phase, so it
    // finds the turn closed only when B ticked in the same turn (as a link flush would).
    let open = false
    let ticks = 0
    let split = 0
    const offA = onTick(7, () => {
      open = true
      ticks++
      setImmediate(() => {
        if (open) split++
      })
    })
    // Subscribed a few ms later: separate timers would fire in separate turns.
    await new Promise((r) => setTimeout(r, 3))
    const offB = onTick(7, () => {
      open = false
    })
    expect(runningClocks()).toBe(before + 1)
    await new Promise<void>((r) => {
      const off = onTick(7, () => {
        if (ticks >= 6) {
          off()
          r()
        }
      })
    })
    offA()
    expect(runningClocks()).toBe(before + 1)
    offB()
    expect(runningClocks()).toBe(before)
    offA() // twice: no effect
    expect(runningClocks()).toBe(before)
    await new Promise((r) => setImmediate(r))
    expect(split).toBe(0)
  })

  it('keeps ticking the others when one subscriber throws', async () => {
    let ticks = 0
    const off1 = onTick(5, () => {
      throw new Error('boom')
    })
    const off2 = onTick(5, () => ticks++)
    const seen: unknown[] = []
    const onErr = (err: unknown) => seen.push(err)
    process.on('uncaughtException', onErr)
    try {
      await new Promise<void>((r) => {
        const off = onTick(5, () => {
          if (ticks >= 3) {
            off()
            r()
          }
        })
      })
    } finally {
      off1()
      off2()
      process.off('uncaughtException', onErr)
    }
    expect(ticks).toBeGreaterThanOrEqual(3)
    expect(seen.length).toBeGreaterThan(0) // rethrown, not swallowed
  })
})

describe('idle Raft group', () => {
  it('sends a heartbeat every third of the election timeout, and keeps its leader', async () => {
    expect(defaultHeartbeatTick(10)).toBe(3)
    expect(defaultHeartbeatTick(2)).toBe(1)
    // 20 ms ticks, 10 ticks to an election (the test harness's settings): a heartbeat every
    // 3 ticks (60 ms). One heartbeat per tick, as before, was three times as many messages.
    const c = await makeCluster(3)
    cleanups.push(c.cleanup)
    const leader = await leaderOf(c.reps)
    await new Promise((r) => setTimeout(r, 300)) // settle: the election's own messages are done
    const changes = c.reps.map((r) => r.leaderChanges)
    // Count the ticks of the window on the drivers' own clock (same period, same callback):
    // a loaded machine delays ticks, and heartbeats follow ticks, not wall time.
    let ticks = 0
    const off = onTick(20, () => ticks++)
    const d0 = c.net.delivered
    await new Promise((r) => setTimeout(r, 1200))
    off()
    const delivered = c.net.delivered - d0
    // A heartbeat round (2 heartbeats, 2 answers) every third tick, give or take the rounds
    // in flight at either end of the window; one round per tick (as before) is 4 per tick.
    expect(ticks).toBeGreaterThan(6)
    expect(delivered).toBeLessThanOrEqual(4 * (Math.ceil(ticks / 3) + 1))
    expect(delivered).toBeGreaterThanOrEqual(4 * (Math.floor(ticks / 3) - 1))
    expect(leader.driver.role).toBe('leader')
    expect(c.reps.map((r) => r.leaderChanges)).toEqual(changes)
    expect(c.reps.map((r) => r.driver.leader)).toEqual(c.reps.map(() => leader.id))
  })
})
