/**
 * Hostile peers, signed records, Raft and internal calls (issue 18): a keyless peer replays
 * the announcements and stream tables the victim sent it (as they are, and in reverse
 * order), sends Raft messages to the victim's metadata group although it is no voter, and
 * floods every internal method the victim serves with seeded junk. The good peer is served
 * throughout at `KEEP_RATE` of its baseline; membership and the stream directory are
 * unchanged; once the attacker goes, the victim holds nothing for it.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FrameType, writeFrame } from '../../src/link/frames.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { raftMsg } from '../helpers/fuzz.js'
import { stopStartedNodes, waitFor } from '../helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from '../helpers/rng.js'
import {
  batchOf,
  counter,
  expectHeapBack,
  expectRate,
  heapUsed,
  held,
  hostile,
  KEEP_RATE,
  requestRate,
  victimAndGood,
  whileFlooding,
} from './harness.js'

const roots: string[] = []
afterEach(async () => {
  await stopStartedNodes() // before their directories go
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

describe('hostile records, raft and internal calls', () => {
  it('replays, raft from a non-voter and floods of every internal method leave the victim serving and holding nothing', async () => {
    const seed = testSeed()
    console.log(`records seed ${seed} (TEST_SEED=${seed} to replay)`)
    const rand = mulberry32(seed)
    const root = await mkdtemp(join(tmpdir(), 'plexus-hostile-'))
    roots.push(root)
    const { victim, good } = await victimAndGood({ dataDir: join(root, 'victim') })
    await good.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
    const baseline = await requestRate(good, 'db')
    const before = held(victim)
    const heap = heapUsed()
    const evil = await hostile(victim)
    await waitFor(
      () =>
        evil.records.some((r) => r.type === FrameType.StreamTable) &&
        evil.records.some((r) => r.type === FrameType.Announce),
      15_000,
      'the victim’s records',
    )
    const flood = async (name: string, batch: Uint8Array) => {
      let best = 0
      for (let k = 0; k < 3 && best < baseline * KEEP_RATE; k++)
        best = Math.max(best, (await whileFlooding(evil, batch, () => requestRate(good, 'db'))).result)
      expectRate(name, baseline, best)
      expect(evil.open, `${name}: the link stays`).toBe(true)
    }

    // Replayed and reordered signed records.
    const records = (list: typeof evil.records) => {
      const w = new BinaryWriter(64 * 1024)
      for (const r of list) writeFrame(w, r.type, (b) => b.bytes(r.body))
      return w.finish().slice()
    }
    const refused = () =>
      Object.entries(victim.status().counters)
        .filter(([k]) => k.startsWith('announcements.refused.') || k.startsWith('streamTables.refused.'))
        .reduce((n, [, v]) => n + v, 0)
    const refusedBefore = refused()
    await flood('replayed records', records(evil.records))
    await flood('reordered records', records([...evil.records].reverse()))
    expect(refused()).toBeGreaterThan(refusedBefore)
    expect(victim.status().clusters.find((c) => c.name === 'db')?.members.length).toBe(2)
    expect((await good.streams.info('orders')).name).toBe('orders')

    // Raft messages from a peer that is no voter of the group.
    const raftBefore = counter(victim, 'raft.refused')
    await flood(
      'raft from a non-voter',
      batchOf(FrameType.Raft, (w) => w.str('meta/db').bytes(raftMsg)),
    )
    expect(counter(victim, 'raft.refused')).toBeGreaterThan(raftBefore)
    // The metadata group still works.
    await good.streams.create('payments', { cluster: 'db', subject: 'payments.>', replicas: 1 })

    // Every internal method the victim serves, with junk bodies.
    const methods = [
      ...(victim as unknown as { rpc: { handlers: Map<string, unknown> } }).rpc.handlers.keys(),
    ]
    expect(methods.length).toBeGreaterThan(5)
    for (const method of methods) {
      await flood(
        `${method} calls`,
        batchOf(FrameType.RpcCall, (w, i) =>
          w
            .u32(i + 1)
            .str(method)
            .u32(30_000)
            .u8(0)
            .bytes(randomBytesFrom(rand, Math.floor(rand() * 96))),
        ),
      )
    }

    await evil.disconnect()
    await waitFor(
      () => JSON.stringify(held(victim)) === JSON.stringify(before),
      10_000,
      'the victim holds nothing for the attacker',
    )
    await expectHeapBack(heap)
    expect(counter(victim, 'links.aborted.error')).toBe(0)
  }, 90_000)
})
