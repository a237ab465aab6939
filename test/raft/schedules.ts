/**
 * Randomized schedules for the Raft simulation: one seed fixes the fault profile, the
 * configuration knobs and every random choice, so a failing seed replays exactly.
 */
import { expect } from 'vitest'
import { type Faults, mulberry32, Sim } from './sim.js'

const CHAOS: Faults = {
  drop: 0.1,
  dup: 0.05,
  maxDelay: 3,
  partition: 0.03,
  heal: 0.08,
  crash: 0.02,
  restart: 0.1,
  leaderCrash: 0.3,
  crashMidReady: 0.01,
  skipReady: 0.3,
  compact: 0,
}

const CALM: Faults = {
  ...CHAOS,
  drop: 0,
  dup: 0,
  maxDelay: 1,
  partition: 0,
  crash: 0,
  crashMidReady: 0,
  skipReady: 0,
}

export const ELECTION = 10

/** Runs one schedule; returns a short summary. Throws (with the seed) on any violation. */
export function runSchedule(
  seed: number,
  size: number,
  chaosRounds: number,
): { commits: number; terms: number } {
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`)
  // Per-seed variety: a quarter of the schedules run plain Raft (no pre-vote, no check-quorum),
  // which produces many more elections; short election timeouts make delays look like failures.
  const knobs = mulberry32(seed ^ 0x5eed)
  const compact = knobs() < 0.5 ? 0.1 : 0
  const plain = knobs() < 0.25
  const electionTick = knobs() < 0.5 ? 5 : ELECTION
  const sim = new Sim({
    ids,
    seed,
    electionTick,
    maxSizePerMsg: knobs() < 0.5 ? 1 : 256, // 1: one entry per MsgApp
    maxInflightMsgs: 1 + Math.floor(knobs() * 4),
    preVote: !plain,
    checkQuorum: !plain,
    faults: CHAOS,
  })
  // Vary the intensity per seed so that some schedules are gentle and some brutal.
  const x = sim.rng()
  sim.faults = {
    ...CHAOS,
    drop: 0.3 * x,
    partition: 0.02 + 0.06 * sim.rng(),
    heal: 0.02 + 0.1 * sim.rng(),
    crash: 0.01 + 0.15 * sim.rng(),
    restart: 0.05 + 0.3 * sim.rng(),
    leaderCrash: 0.8 * sim.rng(),
    compact, // snapshots: compacted logs force catch-up by MsgSnap
  }
  // "Storm" schedules crash leaders right after they take a proposal, before it spreads:
  // the breeding ground of divergent tails and of the Figure 8 commit hazard.
  const storm = knobs() < 0.4 ? 0.05 + 0.2 * knobs() : 0
  let p = 0
  try {
    for (let r = 0; r < chaosRounds; r++) {
      if (sim.rng() < 0.5) {
        const up = sim.alive()
        const l = sim.leader()
        if (l !== undefined && sim.rng() < 0.5) {
          sim.propose(l.id, `c${p++}`)
          if (sim.rng() < storm) {
            sim.processReady(l) // persisted and (maybe) partly sent...
            if (l.alive) sim.crash(l.id) // ...then gone
          }
        } else if (up.length > 0) sim.propose(sim.pick(up).id, `c${p++}`)
      }
      if (sim.rng() < 0.03) {
        // Leadership transfer: its MsgTimeoutNow campaign bypasses pre-vote and leases.
        const l = sim.leader()
        if (l !== undefined) l.node().transferLeader(sim.pick(ids))
      }
      sim.round()
    }
    // Heal: restart everyone, reconnect, stop losing messages (delays/reordering stay small).
    sim.faults = { ...CALM, compact }
    sim.heal()
    for (const id of ids) sim.restart(id)
    const healedAt = sim.now
    // A leader cut off just before healing may still step down once (its check-quorum window
    // spans the partition), so let two election timeouts pass before asking for agreement.
    for (let r = 0; r < 2 * ELECTION; r++) sim.round()
    const deadline = healedAt + 12 * ELECTION
    let leader: string | undefined
    while (sim.now < deadline) {
      sim.round()
      const l = sim.leader()
      const term = l?.node().raft.term
      if (l && sim.alive().every((n) => n.node().raft.leader === l.id && n.node().raft.term === term)) {
        leader = l.id
        break
      }
    }
    if (leader === undefined)
      throw new Error(`liveness: no agreed leader ${sim.now - healedAt} ticks after healing`)
    const wanted: string[] = []
    for (let i = 0; i < 10; i++) {
      const k = `h${i}`
      if (!sim.propose(leader, k))
        throw new Error(`liveness: leader ${leader} dropped a proposal after healing`)
      wanted.push(k)
    }
    // The leader commits (and applies) them within a bound: a few round trips each at worst.
    // The bound covers the backlog the new leader must push first (one entry per round trip
    // when maxSizePerMsg is 1), then a few round trips per proposal.
    const lr = sim.n(leader).node().raft
    const commitBy = sim.now + 6 * ELECTION + 4 * (lr.log.lastIndex() - lr.log.committed) + 3 * wanted.length
    const leaderDone = () => wanted.every((k) => sim.n(leader!).applied.includes(k))
    while (!leaderDone() && sim.now < commitBy) sim.round()
    if (!leaderDone()) throw new Error(`liveness: proposals after healing not committed by ${leader}`)
    if (sim.n(leader).node().raft.role !== 'leader')
      throw new Error('liveness: leadership changed on a healed network')
    // Every member catches up; the bound allows one entry per round trip (maxSizePerMsg 1).
    const lag = sim.n(leader).node().raft.log.lastIndex()
    const convergeBy = sim.now + 4 * lag + 6 * ELECTION
    const done = () => sim.alive().every((n) => wanted.every((k) => n.applied.includes(k)))
    while (!done() && sim.now < convergeBy) sim.round()
    if (!done()) throw new Error(`liveness: members did not catch up within ${4 * lag + 6 * ELECTION} ticks`)
    // Everyone applied the same sequence.
    const ref = sim.n(leader).applied
    for (const n of sim.alive()) {
      const len = Math.min(ref.length, n.applied.length)
      expect(n.applied.slice(0, len)).toEqual(ref.slice(0, len))
    }
    return { commits: sim.committed.length - 1, terms: sim.leaders.size }
  } catch (err) {
    const e = err as Error
    e.message = `[RAFT_SEED=${seed} size=${size} round=${sim.now}] ${e.message}`
    console.error(e.message)
    throw e
  }
}

/**
 * Membership under chaos: a 3-member group adds two members and removes up to two (the leader
 * included), one change at a time, while the network misbehaves. Same safety checks; after
 * healing, every member of the final configuration applies the new proposals.
 */
export function runMembership(seed: number, chaosRounds: number): { changes: number } {
  const sim = new Sim({
    ids: ['n1', 'n2', 'n3'],
    joiners: ['n4', 'n5'],
    seed,
    electionTick: ELECTION,
    faults: CHAOS,
  })
  const compact = seed % 2 === 0 ? 0.1 : 0
  sim.faults = { ...CHAOS, drop: 0.2 * sim.rng(), crash: 0.05 * sim.rng(), leaderCrash: 0.5, compact }
  let changes = 0
  let removals = 0
  const toAdd = ['n4', 'n5']
  try {
    for (let r = 0; r < chaosRounds; r++) {
      const l = sim.leader()
      if (l !== undefined && sim.rng() < 0.05) {
        const voters = l.node().raft.tracker.confState().voters
        try {
          if (toAdd.length > 0 && (removals >= 2 || sim.rng() < 0.5)) {
            l.node().proposeConfChange({ type: 'addNode', nodeId: toAdd[0]! })
            toAdd.shift()
            changes++
          } else if (removals < 2 && voters.length > 3) {
            l.node().proposeConfChange({ type: 'removeNode', nodeId: sim.pick(voters) })
            removals++
            changes++
          }
        } catch (err) {
          if ((err as Error).name !== 'ProposalDroppedError') throw err
        }
      }
      if (sim.rng() < 0.4) {
        const up = sim.alive()
        if (up.length > 0) sim.propose(sim.pick(up).id, `c${r}`)
      }
      sim.round()
    }
    sim.faults = { ...CALM, compact }
    sim.heal()
    for (const id of sim.order) sim.restart(id)
    for (let r = 0; r < 2 * ELECTION; r++) sim.round()
    const deadline = sim.now + 15 * ELECTION
    let leader: string | undefined
    while (sim.now < deadline && leader === undefined) {
      sim.round()
      const l = sim.leader()
      if (l === undefined) continue
      // Agreed and settled: every voter follows it, and no conf change (possibly its own
      // removal, which would make it step down) is still pending.
      const r = l.node().raft
      const voters = r.tracker.confState().voters
      const settled = voters.includes(l.id) && r.pendingConfIndex <= r.log.applied
      if (settled && voters.every((v) => sim.n(v).node().raft.leader === l.id)) leader = l.id
    }
    if (leader === undefined) throw new Error('liveness: no agreed leader after healing')
    const wanted = ['m0', 'm1', 'm2']
    for (const k of wanted) {
      if (!sim.propose(leader, k)) throw new Error(`liveness: ${leader} dropped ${k}`)
    }
    const voters = () => sim.n(leader!).node().raft.tracker.confState().voters
    const done = () => voters().every((v) => wanted.every((k) => sim.n(v).applied.includes(k)))
    const by = sim.now + 4 * sim.n(leader).node().raft.log.lastIndex() + 10 * ELECTION
    while (!done() && sim.now < by) sim.round()
    if (!done()) throw new Error('liveness: the final configuration did not apply new proposals')
    return { changes }
  } catch (err) {
    const e = err as Error
    e.message = `[RAFT_SEED=${seed} membership round=${sim.now}] ${e.message}`
    console.error(e.message)
    throw e
  }
}
