/**
 * The metadata group compacts its raft log into catalog snapshots: durable consumer commits
 * do not grow it forever, a member restarted from its directory restores the snapshot and
 * replays the rest, and a member that was away past the compaction point is sent the snapshot.
 * Real overlay nodes over loopback.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { PlexusNode } from '../../src/index.js'
import { nodeInternals } from '../../src/node.js'
import { MetaGroup } from '../../src/streams/meta/meta-group.js'
import { encodeCommand, placeStream, StreamCatalog } from '../../src/streams/partition/index.js'
import { startJoinedNodes, waitFor } from '../helpers/nodes.js'

const groups: MetaGroup[] = []
const dirs: string[] = []
afterEach(async () => {
  for (const g of groups.splice(0)) await g.stop().catch(() => {})
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

function member(n: PlexusNode, root: string, errors: unknown[]) {
  const catalog = new StreamCatalog()
  const g = new MetaGroup({
    host: nodeInternals(n),
    id: n.id,
    cluster: 'db',
    dir: join(root, n.id),
    catalog,
    compactEntries: 20,
    driver: { tickMs: 20, electionTick: 10, onError: (e) => errors.push(e) },
  })
  groups.push(g)
  return { g, catalog, node: n }
}

let createdIndex = 0
const commit = (i: number) =>
  encodeCommand({
    type: 'consumerCommit',
    name: 'orders',
    createdIndex,
    durable: `d${i % 3}`,
    offsets: [[0, i]],
    requestId: `c-${i}`,
  })

describe('metadata group compaction', () => {
  it('compacts into catalog snapshots; restarted and returning members get the same catalog', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-meta-compact-'))
    dirs.push(root)
    const nodes = await startJoinedNodes(3)
    const errors: unknown[] = []
    let members = nodes.map((n) => member(n, root, errors))
    await Promise.all(members.map((m) => m.g.start()))
    const leaderOf = async () => {
      await waitFor(
        () =>
          members.filter((m) => m.g.role === 'leader').length === 1 &&
          members.every((m) => m.g.voters.length === 3),
        10_000,
        'one leader, three voters',
      )
      return members.find((m) => m.g.role === 'leader')!
    }
    let leader = await leaderOf()
    const ids = nodes.map((n) => n.id)
    const created = await leader.g.propose(
      encodeCommand({
        type: 'create',
        requestId: 'create-1',
        name: 'orders',
        subject: 'orders.>',
        partitions: 1,
        replicas: 3,
        retention: {},
        compact: false,
        duplicateWindow: 120_000,
        placement: placeStream(ids, new Map(), 1, 3, 1),
      }),
    )
    createdIndex = created.index
    for (let i = 0; i < 60; i++) await leader.g.propose(commit(i))
    await waitFor(
      () =>
        members.every((m) => m.g.snapshotIndex > 0 && m.catalog.lastApplied === leader.catalog.lastApplied),
      5000,
      'every member compacted and caught up',
    )

    // One member goes away; the others commit and compact past everything it has.
    const away = members.find((m) => m !== leader)!
    await away.g.stop()
    groups.splice(groups.indexOf(away.g), 1)
    for (let i = 60; i < 120; i++) await leader.g.propose(commit(i))
    await waitFor(() => leader.g.snapshotIndex > away.catalog.lastApplied, 5000, 'compacted past it')
    const back = member(away.node, root, errors)
    members = members.map((m) => (m === away ? back : m))
    await back.g.start()
    await waitFor(
      () => back.catalog.lastApplied === leader.catalog.lastApplied,
      10_000,
      'the returning member caught up',
    )
    expect(back.catalog.snapshot()).toEqual(leader.catalog.snapshot())
    expect(back.catalog.positions('orders', 'd0').get(0)).toBe(117)

    // Every member restarted from its directory: snapshot restored, the rest replayed.
    const want = leader.catalog.snapshot()
    for (const m of members) await m.g.stop()
    groups.length = 0
    members = nodes.map((n) => member(n, root, errors))
    await Promise.all(members.map((m) => m.g.start()))
    leader = await leaderOf()
    await waitFor(
      () => members.every((m) => m.catalog.lastApplied >= 120),
      10_000,
      'catalogs restored after a full restart',
    )
    for (const m of members) {
      const got = new StreamCatalog()
      got.restore(m.catalog.snapshot())
      expect(got.positions('orders', 'd1').get(0)).toBe(118)
      expect(got.positions('orders', 'd2').get(0)).toBe(119)
    }
    expect(want.length).toBeGreaterThan(0)
    expect(errors).toEqual([])
  }, 60_000)
})
