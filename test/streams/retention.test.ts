/**
 * Retention on partition replicas: whole old segments go, identically on every replica
 * (same offsets everywhere), and readers below the earliest offset continue from it.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { PartitionReplica } from '../../src/streams/partition/index.js'
import { mulberry32 } from '../helpers/rng.js'
import { MemNet, tempDir, until } from '../replication/helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

describe('partition retention', () => {
  it('trims the same whole segments on every replica; offsets stay the same everywhere', async () => {
    const { dir: root, cleanup } = await tempDir('plexus-ret-')
    const net = new MemNet()
    const ids = ['n1', 'n2', 'n3']
    const make = (id: string) =>
      new PartitionReplica({
        id,
        dir: join(root, id),
        voters: ids,
        send: (to, bytes) => net.send(id, to, bytes),
        segmentBytes: 4096,
        retention: { maxMessages: 50 },
        driver: { tickMs: 20, electionTick: 10, rand: mulberry32(id.charCodeAt(1)) },
      })
    let reps = ids.map(make)
    for (const r of reps) net.nodes.set(r.id, r)
    for (const r of reps) await r.start()
    cleanups.push(async () => {
      for (const r of reps) await r.stop().catch(() => {})
      await cleanup()
    })
    reps[0]!.raft!.campaign()
    await until(() => reps[0]!.role === 'leader', 5000, 'leader')
    for (let i = 0; i < 300; i++)
      await reps[0]!.publish([{ value: `message-${String(i).padStart(4, '0')}-${'x'.repeat(80)}` }], {
        ack: 'all',
      })
    await until(() => reps.every((r) => r.latest() === 299), 5000, 'all applied')
    for (const r of reps) await r.maintain()
    const earliest = reps.map((r) => r.earliest())
    expect(earliest[0]).toBeGreaterThan(0)
    expect(earliest[0]).toBeLessThanOrEqual(250) // at least maxMessages remain
    expect(new Set(earliest).size).toBe(1)
    const views = await Promise.all(
      reps.map(async (r) => (await r.read(0, { maxRecords: 400 })).map((m) => m.offset)),
    )
    expect(views[0]![0]).toBe(earliest[0]) // reading below the earliest starts at it
    expect(views[1]).toEqual(views[0])
    expect(views[2]).toEqual(views[0])

    // a restarted replica comes back with the same bounds and goes on appending in step
    await reps[2]!.stop()
    net.nodes.delete('n3')
    const again = make('n3')
    net.nodes.set('n3', again)
    await again.start()
    reps = [reps[0]!, reps[1]!, again]
    await reps[0]!.publish([{ value: 'after' }], { ack: 'all' })
    await until(() => again.latest() === 300, 5000, 'restarted replica caught up')
    expect(again.earliest()).toBe(earliest[0])
  }, 60_000)
})
