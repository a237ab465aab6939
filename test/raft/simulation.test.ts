/**
 * Seeded randomized simulation of 3- and 5-node groups (and of membership changes) under
 * message loss, delay, reordering, duplication, partitions and crash/restart, with safety
 * invariants checked after every event and liveness checked after the network heals.
 * Reproduce one schedule with RAFT_SEED=<n> (the failing seed is printed).
 */
import { describe, expect, it } from 'vitest'
import { runMembership, runSchedule } from './schedules.js'

const envSeed = process.env.RAFT_SEED
const seeds = (base: number, count: number): number[] =>
  envSeed !== undefined ? [Number(envSeed)] : Array.from({ length: count }, (_, i) => base + i)

describe('raft simulation', () => {
  it('3 nodes: safety under chaos, liveness after healing', () => {
    let commits = 0
    const list = seeds(1000, 400)
    for (const seed of list) commits += runSchedule(seed, 3, 300).commits
    expect(commits).toBeGreaterThan(list.length * 10)
  })

  it('5 nodes: safety under chaos, liveness after healing', () => {
    let commits = 0
    const list = seeds(5000, 250)
    for (const seed of list) commits += runSchedule(seed, 5, 300).commits
    expect(commits).toBeGreaterThan(list.length * 10)
  })

  it('membership changes: safety under chaos, liveness after healing', () => {
    let changes = 0
    const list = seeds(9000, 250)
    for (const seed of list) changes += runMembership(seed, 300).changes
    expect(changes).toBeGreaterThan(list.length)
  })
})
