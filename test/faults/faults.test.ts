/**
 * A short run of the fault runner (faults/, docs/faults.md) inside `npm test`: three small
 * schedules against three real member processes on loopback, each checked by reading every
 * member's own replica: every acknowledged write there exactly once at its acked offset,
 * offsets dense, no msgId twice, the same records on all three.
 *
 * - kill -9 of a follower after writing well past a small raft window (64 KiB: dozens of
 *   compactions before the kill), restarted on its data directory;
 * - power loss of the leader (LD_PRELOAD journal, faults/powerloss.c; skipped without gcc);
 * - SIGSTOP of the leader for longer than an election timeout, then SIGCONT.
 *
 * Members run with the library's default maxMessageSize (1 MiB link frames): a replica that
 * copies more than a frame from the others after a snapshot asks for it in frame-sized
 * replies (before, the reply exceeded the frame limit and the copy never finished; found by
 * this runner, docs/faults.md "Results").
 *
 * Randomness (which follower, message contents) comes from TEST_SEED; a failure prints the
 * seed and the end of the schedule's timeline.
 */
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { buildShim } from '../../faults/powerloss.js'
import { runSchedule, type ScheduleResult } from '../../faults/runner.js'
import { prng, type Schedule } from '../../faults/schedule.js'
import { testSeed } from '../helpers/rng.js'

const KiB = 1024
const MiB = 1024 * KiB

const hasGcc = (() => {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

function expectClean(r: ScheduleResult): void {
  const report = `seed ${r.seed}: ${r.error ?? JSON.stringify(r.check)}\n${r.timeline.slice(-60).join('\n')}`
  if (!r.ok) console.error(`[faults] schedule failed, TEST_SEED=${r.seed}\n${report}`)
  expect(r.error, report).toBeUndefined()
  expect(r.check, report).toMatchObject({ lost: 0, unreadable: 0, duplicates: 0, gaps: 0, divergent: 0 })
  expect(r.check!.acked).toBeGreaterThan(0)
  expect(r.ok).toBe(true)
}

describe('fault runner: short schedules', () => {
  it('kill -9 of a follower after writing well past a 64 KiB raft window', async () => {
    const seed = testSeed()
    const s: Schedule = {
      seed,
      profile: 'small',
      messageBytes: KiB,
      raftLogBytes: 64 * KiB,
      totalBytes: 3 * MiB,
      inflight: 256,
      faults: [{ atBytes: (3 * MiB) / 2, kind: 'kill', target: 'follower', pick: prng(seed)(), downMs: 500 }],
    }
    expectClean(await runSchedule(s, { timeoutMs: 40_000 }))
  }, 45_000)

  it.skipIf(!hasGcc)(
    'power loss of the leader (unsynced writes dropped)',
    async () => {
      const seed = testSeed()
      const shim = await buildShim()
      const s: Schedule = {
        seed,
        profile: 'small',
        messageBytes: 16 * KiB,
        raftLogBytes: 256 * KiB,
        totalBytes: 4 * MiB,
        inflight: 32,
        faults: [{ atBytes: 2 * MiB, kind: 'powerloss', target: 'leader', pick: 0, downMs: 300 }],
      }
      expectClean(await runSchedule(s, { timeoutMs: 40_000, shim }))
    },
    45_000,
  )

  it('SIGSTOP of the leader past an election timeout, then SIGCONT', async () => {
    const seed = testSeed()
    const s: Schedule = {
      seed,
      profile: 'small',
      messageBytes: KiB,
      raftLogBytes: 256 * KiB,
      totalBytes: 3 * MiB,
      inflight: 256,
      faults: [{ atBytes: MiB, kind: 'pause', target: 'leader', pick: 0, downMs: 1500 }],
    }
    expectClean(await runSchedule(s, { timeoutMs: 40_000 }))
  }, 45_000)
})
