/**
 * Issue 19's reproduction: kill -9 after writing well past every in-memory window, with the
 * library's default windows (raft entries kept in memory: 16 MiB; raft log compacted after
 * 32 MiB applied, a quarter kept).
 *
 * About 58 MiB is published with `ack: 'all'` in 1 KiB messages since the stream's first
 * election, so a follower's raft log holds ~26 MiB after its last compaction and the commit
 * index in its hard state file is the one of that election. Then: kill -9 of a follower and a
 * restart on the same data directory, the same for the other follower, then kill -9 of all
 * three and a restart. After each restart the replica must come back without a replica error,
 * reach the leader's end, publishing must go on, and every acknowledged message must be read
 * back at its offset. Before the fix the first restarted replica died
 * (`streams.replicaErrors` 1) and after the second one every publish timed out.
 */
import { describe, expect } from 'vitest'
import type { PublishAck, StreamMessage } from '../../src/index.js'
import { waitFor, waitForMembers } from '../helpers/nodes.js'
import {
  CLUSTER,
  type Ctx,
  crashTest,
  info0,
  kill9,
  launch,
  type Member,
  memberStatus,
  nameOf,
  readFromStart,
  STREAM,
  settled,
  text,
} from './crash-harness.js'

const KIB = 1024
const PAD = 'x'.repeat(KIB)
const MIB = 1024 * KIB

/**
 * Publishes `n` messages of `size` bytes numbered from `from`, `window` in flight; all must
 * be acked.
 */
async function publishMany(
  ctx: Ctx,
  from: number,
  n: number,
  window = 512,
  size = KIB,
): Promise<PublishAck[]> {
  const acks: PublishAck[] = new Array(n)
  const pad = PAD.repeat(Math.ceil(size / KIB))
  let next = 0
  const worker = async () => {
    while (next < n) {
      const k = next++
      const i = from + k
      const payload = `m${i}:${pad}`.slice(0, size)
      acks[k] = (await ctx.pub.publish(`ev.w.${i % 7}`, payload, {
        ack: 'all',
        timeout: 20_000,
      })) as PublishAck
    }
  }
  await Promise.all(Array.from({ length: window }, worker))
  return acks
}

/**
 * Every publish was acknowledged once, at its own offset, and that offset holds it. (Offsets
 * follow the order publishes reached the leader: concurrent publishes resent to a new leader
 * may be stored after later ones, so publish order is not checked.) `acks[i]` is message i.
 */
function checkReadBack(acks: PublishAck[], got: StreamMessage[]): void {
  expect(new Set(acks.map((a) => a.offset)).size, 'one offset per ack').toBe(acks.length)
  for (let i = 0; i < acks.length; i++) {
    const o = acks[i]!.offset
    const m = got[o]
    if (m === undefined || m.offset !== o || !text(m.data).startsWith(`m${i}:`))
      throw new Error(
        `m${i} acked at ${o}, which holds ${m && text(m.data).slice(0, 12)} (offset ${m?.offset})`,
      )
  }
}

/** The member's own replica: no replica error, and its log reaches `end`. */
async function replicaHealthy(m: Member, end: number): Promise<void> {
  let last: unknown
  await waitFor(
    async () => {
      const s = await memberStatus(m)
      const h = s.streams.find((x) => x.name === STREAM)?.hosted.find((p) => p.partition === 0)
      last = { hosted: h, replicaErrors: s.counters['streams.replicaErrors'] ?? 0 }
      if ((s.counters['streams.replicaErrors'] ?? 0) > 0)
        throw new Error(`${m.name}: replica error after restart: ${JSON.stringify(last)}`)
      return h !== undefined && h.nextOffset >= end
    },
    30_000,
    `${m.name}'s replica reaching offset ${end}`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; its last view: ${JSON.stringify(last)}`)
  })
}

async function restart(ctx: Ctx, m: Member, end: number): Promise<void> {
  await kill9(ctx, m)
  await launch(ctx, m)
  await settled(ctx, 3, 30_000)
  await replicaHealthy(m, end)
  ctx.log(`${m.name} back and caught up to ${end}`)
}

describe('durable streams: kill -9 after writing past every in-memory window', () => {
  crashTest(
    'a follower, then the other follower, then all three restart after 58 MiB of 1 KiB acks',
    240_000,
    async (ctx) => {
      const { members, pub, log } = ctx
      const N = 58 * KIB // 58 MiB of 1 KiB messages
      const t0 = Date.now()
      const acks = await publishMany(ctx, 0, N)
      log(`${N} acked in ${Date.now() - t0} ms`)

      const leaderId = (await info0(ctx)).leader
      const followers = members.filter((m) => m.id !== leaderId)
      log(`leader ${nameOf(ctx, leaderId)}; followers ${followers.map((m) => m.name).join(', ')}`)
      await restart(ctx, followers[0]!, N)
      acks.push(...(await publishMany(ctx, N, 2 * KIB)))
      await restart(ctx, followers[1]!, acks.length)
      acks.push(...(await publishMany(ctx, acks.length, 2 * KIB)))

      await Promise.all(members.map((m) => kill9(ctx, m)))
      log('all three killed')
      await Promise.all(members.map((m) => launch(ctx, m)))
      await waitForMembers(pub, CLUSTER, 3, 15_000)
      await settled(ctx, 3, 30_000)
      acks.push(...(await publishMany(ctx, acks.length, 100, 16)))
      for (const m of members) await replicaHealthy(m, acks.length)
      checkReadBack(acks, await readFromStart(pub, acks.length, 60_000))
      expect((await info0(ctx)).nextOffset).toBe(acks.length)
    },
    {},
  )

  crashTest(
    'the leader restarts twice after 58 MiB of 16 KiB acks; then all three',
    240_000,
    async (ctx) => {
      const { members, pub, log } = ctx
      const SIZE = 16 * KIB
      const N = (58 * MIB) / SIZE
      const acks = await publishMany(ctx, 0, N, 64, SIZE)
      for (let round = 0; round < 2; round++) {
        const leaderId = (await info0(ctx)).leader
        const leader = members.find((m) => m.id === leaderId)!
        log(`round ${round}: killing the leader ${leader.name}`)
        await restart(ctx, leader, acks.length)
        acks.push(...(await publishMany(ctx, acks.length, (4 * MIB) / SIZE, 64, SIZE)))
      }
      await Promise.all(members.map((m) => kill9(ctx, m)))
      await Promise.all(members.map((m) => launch(ctx, m)))
      await waitForMembers(pub, CLUSTER, 3, 15_000)
      await settled(ctx, 3, 30_000)
      acks.push(...(await publishMany(ctx, acks.length, 20, 8, SIZE)))
      for (const m of members) await replicaHealthy(m, acks.length)
      checkReadBack(acks, await readFromStart(pub, acks.length, 60_000))
    },
    {},
  )
})
