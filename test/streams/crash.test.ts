/**
 * Durable streams across real process crashes: three member processes (each with its own
 * data directory) host the replicas of a one-partition, three-replica stream; the test
 * process publishes with `ack: 'all'` from a node of its own (not a member) and kills
 * members with kill -9.
 *
 * - the partition leader dies in the middle of a publish loop: publishing resumes on a new
 *   leader within seconds, and reading back finds every acknowledged message exactly once,
 *   at the offset its ack named, in ack order, offsets dense from 0; attempts that failed
 *   (outcome unknown) are there at most once;
 * - all three replicas die at once and restart on the same data directories: same messages
 *   at the same offsets, and publishing continues at the next offset;
 * - one replica is down while more messages are acknowledged by the other two, then
 *   restarts: it is back in the in-sync set and its own log reaches the leader's end.
 *
 * Members run with `streams.raftLogBytes` = 16 KiB, so raft logs are compacted every hundred
 * messages or so during all of this, and the returning replica catches up by snapshot plus a
 * copy of the partition log from the others.
 *
 * Randomness (kill point, victim, payload sizes, topics) comes from TEST_SEED; a failure
 * prints the seed and the tail of the timeline (test events and the members' output);
 * STREAM_CRASH_VERBOSE=1 prints the timeline of passing tests too.
 */
import { describe, expect } from 'vitest'
import { waitFor, waitForMembers } from '../helpers/nodes.js'
import {
  type Attempt,
  CLUSTER,
  checkAcks,
  crashTest,
  info0,
  kill9,
  launch,
  memberStatus,
  nameOf,
  publishAcked,
  publishOnce,
  range,
  readFromStart,
  STREAM,
  settled,
  text,
} from './crash-harness.js'

describe('durable streams across kill -9 of member processes', () => {
  crashTest(
    'leader killed during an ack:all publish loop: every ack read back once, in order',
    60_000,
    async (ctx) => {
      const { rand, members, pub, log } = ctx
      const before = await info0(ctx)
      const leader = members.find((m) => m.id === before.leader)
      expect(leader, `leader ${before.leader} is one of the member processes`).toBeDefined()
      const killAfter = 20 + Math.floor(rand() * 40)
      const killDelay = Math.floor(rand() * 4)
      const ACKS_AFTER_KILL = 40
      log(`leader is ${leader!.name}; kill after ${killAfter} acks + ${killDelay} ms`)

      const attempts: Attempt[] = []
      let killedAt: number | undefined
      let killing: Promise<void> | undefined
      let firstAckAfterKill: number | undefined
      let acksAfterKill = 0
      const deadline = Date.now() + 30_000
      for (let i = 0; acksAfterKill < ACKS_AFTER_KILL; i++) {
        if (Date.now() > deadline)
          throw new Error(
            `only ${acksAfterKill} acks in 30 s after the kill; last errors: ${attempts
              .slice(-5)
              .map((a) => a.error)
              .join(' | ')}`,
          )
        const acked = attempts.filter((a) => a.ack).length
        if (killing === undefined && acked === killAfter)
          killing = new Promise<void>((resolve) =>
            setTimeout(() => {
              killedAt = Date.now()
              kill9(ctx, leader!).then(resolve)
            }, killDelay),
          )
        const a = await publishOnce(ctx, i, 5000)
        attempts.push(a)
        if (a.error) log(`m${i} failed: ${a.error}`)
        if (a.ack && killedAt !== undefined && a.startedAt > killedAt) {
          acksAfterKill++
          if (firstAckAfterKill === undefined) {
            firstAckAfterKill = Date.now()
            log(`first ack after the kill: m${i} at offset ${a.ack.offset}`)
          }
        }
      }
      await killing
      const resumedMs = firstAckAfterKill! - killedAt!
      const failed = attempts.filter((a) => a.error)
      log(`publishing resumed ${resumedMs} ms after the kill; ${failed.length} attempts failed`)
      expect(resumedMs, 'publishes resume on a new leader within a few seconds').toBeLessThan(5000)
      const during = await info0(ctx)
      expect(during.leader).not.toBeNull()
      expect(during.leader).not.toBe(leader!.id)

      // The old leader comes back on its data directory (its log may end in entries that were
      // never committed) and catches up while publishing goes on.
      await launch(ctx, leader!)
      attempts.push(...(await publishAcked(ctx, attempts.length, 20)))
      const after = await settled(ctx, 3, 20_000)
      const acked = attempts.filter((a) => a.ack)
      checkAcks(acked)
      expect(after.nextOffset).toBeGreaterThanOrEqual(acked.at(-1)!.ack!.offset + 1)
      expect(after.nextOffset).toBeLessThanOrEqual(attempts.length)

      const got = await readFromStart(pub, after.nextOffset, 20_000)
      expect(got.map((m) => m.offset)).toEqual(range(after.nextOffset))
      expect(got.every((m) => m.partition === 0 && m.stream === STREAM)).toBe(true)
      const payloads = got.map((m) => text(m.data))
      const byPayload = new Map(attempts.map((a) => [a.payload, a]))
      const strangers = payloads.filter((p) => !byPayload.has(p))
      expect(strangers, 'only attempted payloads are stored').toEqual([])
      const seen = new Map<string, number>()
      for (const p of payloads) seen.set(p, (seen.get(p) ?? 0) + 1)
      const twice = [...seen].filter(([, n]) => n > 1).map(([p]) => p.split(':')[0])
      expect(twice, 'no attempt is stored twice').toEqual([])
      for (const a of acked) {
        const m = got[a.ack!.offset]!
        if (text(m.data) !== a.payload)
          throw new Error(
            `offset ${a.ack!.offset} acked for ${a.payload.split(':')[0]} holds ${text(m.data).split(':')[0]}`,
          )
        expect(m.topic).toBe(a.topic)
      }
      // Acked payloads in ack order (a subsequence of the log, which the checks above imply).
      const ackedSet = new Set(acked.map((a) => a.payload))
      expect(payloads.filter((p) => ackedSet.has(p))).toEqual(acked.map((a) => a.payload))
      const storedUnacked = failed.filter((a) => seen.has(a.payload)).length
      log(
        `${acked.length} acked, ${failed.length} failed (${storedUnacked} of them stored), ${got.length} read`,
      )
      // Nothing else turned up meanwhile.
      expect((await info0(ctx)).nextOffset).toBe(after.nextOffset)
    },
  )

  crashTest(
    'all three replicas killed and restarted: data intact, publishing continues',
    60_000,
    async (ctx) => {
      const { members, pub, log } = ctx
      const N = 60
      const acked = await publishAcked(ctx, 0, N)
      checkAcks(acked)
      expect(acked.map((a) => a.ack!.offset)).toEqual(range(N))

      await Promise.all(members.map((m) => kill9(ctx, m)))
      log('all three killed')
      await Promise.all(members.map((m) => launch(ctx, m)))
      await waitForMembers(pub, CLUSTER, 3, 15_000)
      await settled(ctx, 3, 30_000)
      // A new leader may learn the commit point only after committing in its own term.
      let back = await info0(ctx)
      await waitFor(async () => (back = await info0(ctx)).nextOffset >= N, 10_000, 'nextOffset back').catch(
        (err: Error) => {
          throw new Error(`${err.message}: expected ${N}, last info ${JSON.stringify(back)}`)
        },
      )
      log(`back: leader ${nameOf(ctx, back.leader)}, nextOffset ${back.nextOffset}`)
      expect(back.nextOffset).toBe(N)

      const got = await readFromStart(pub, N, 20_000)
      expect(got.map((m) => m.offset)).toEqual(range(N))
      expect(got.map((m) => text(m.data))).toEqual(acked.map((a) => a.payload))
      expect(got.map((m) => m.topic)).toEqual(acked.map((a) => a.topic))

      const more = await publishAcked(ctx, N, 10)
      expect(more.map((a) => a.ack!.offset)).toEqual(range(10).map((k) => N + k))
      const all = await readFromStart(pub, N + 10, 20_000)
      expect(all.map((m) => text(m.data))).toEqual([...acked, ...more].map((a) => a.payload))
    },
  )

  crashTest('a replica down while 300 messages are acked catches up after restart', 60_000, async (ctx) => {
    const { rand, members, pub, log } = ctx
    const first = await publishAcked(ctx, 0, 20)
    await settled(ctx, 3, 10_000)
    const victim = members[Math.floor(rand() * 3)]!
    const wasLeader = (await info0(ctx)).leader === victim.id
    log(`victim ${victim.name} (${wasLeader ? 'leader' : 'follower'})`)
    await kill9(ctx, victim)

    // 300 more acks from the other two (more than the 256-entry in-sync lag allowance).
    const attempts: Attempt[] = []
    let acks = 0
    const deadline = Date.now() + 30_000
    for (let i = 20; acks < 300; i++) {
      if (Date.now() > deadline) throw new Error(`only ${acks} of 300 acks in 30 s with ${victim.name} down`)
      const a = await publishOnce(ctx, i, 5000)
      attempts.push(a)
      if (a.ack) acks++
      else log(`m${i} failed: ${a.error}`)
    }
    const failed = attempts.filter((a) => a.error)
    if (!wasLeader) expect(failed.map((a) => a.error)).toEqual([])
    const acked = [...first, ...attempts.filter((a) => a.ack)]
    checkAcks(acked)
    const down = await settled(ctx, 2, 10_000)
    expect(down.inSync).not.toContain(victim.id)
    expect(down.leader).not.toBe(victim.id)
    log(`with ${victim.name} down: nextOffset ${down.nextOffset}, ${failed.length} failed`)

    await launch(ctx, victim)
    const caught = await settled(ctx, 3, 20_000)
    expect(caught.inSync).toContain(victim.id)
    expect(caught.nextOffset).toBe(down.nextOffset)
    // Its own log reaches the end, not just "within the lag allowance".
    let hosted: unknown
    await waitFor(
      async () => {
        const s = await memberStatus(victim)
        const h = s.streams.find((x) => x.name === STREAM)?.hosted.find((p) => p.partition === 0)
        hosted = h
        return h !== undefined && h.nextOffset === down.nextOffset
      },
      10_000,
      `${victim.name}'s replica reaching offset ${down.nextOffset}`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; its last view: ${JSON.stringify(hosted)}`)
    })
    log(`${victim.name} caught up: ${JSON.stringify(hosted)}`)
    // The entries it missed were compacted away on the others: it came back through a snapshot.
    expect((hosted as { snapshotIndex: number }).snapshotIndex).toBeGreaterThan(0)

    const got = await readFromStart(pub, down.nextOffset, 20_000)
    expect(got.map((m) => m.offset)).toEqual(range(down.nextOffset))
    for (const a of acked) expect(text(got[a.ack!.offset]!.data)).toBe(a.payload)
  })
})
