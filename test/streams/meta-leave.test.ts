/**
 * Voters leave the metadata group: a member that stops takes itself out of the voters, an
 * outside member takes a free seat, and a voter that vanished without leaving is removed once
 * it is gone from the members. Before leaving existed, a two-voter group whose other voter
 * stopped had no leader forever, and a joiner waited on it forever (CI saw `streams.delete`
 * find no metadata leader for 30 s after one of three members stopped while the third was
 * still joining).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { PlexusNode } from '../../src/index.js'
import { nodeInternals } from '../../src/node.js'
import { MetaGroup, type MetaGroupOptions } from '../../src/streams/meta/meta-group.js'
import { StreamCatalog } from '../../src/streams/partition/index.js'
import { startJoinedNodes, startStreamCluster, stopStartedNodes, waitFor } from '../helpers/nodes.js'

const groups: MetaGroup[] = []
const dirs: string[] = []
afterEach(async () => {
  await Promise.all(groups.splice(0).map((g) => g.stop().catch(() => {})))
  await stopStartedNodes()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-meta-leave-'))
  dirs.push(root)
  return root
}

/** A metadata group member on `n` (not started); errors collected per member. */
function member(n: PlexusNode, root: string, extra: Partial<MetaGroupOptions> = {}) {
  const errors: unknown[] = []
  const g = new MetaGroup({
    host: nodeInternals(n),
    id: n.id,
    cluster: 'db',
    dir: join(root, n.id),
    catalog: new StreamCatalog(),
    driver: { tickMs: 20, electionTick: 10, onError: (e) => errors.push(e) },
    settleMs: 200,
    ...extra,
  })
  groups.push(g)
  return { n, g, errors }
}
type Member = ReturnType<typeof member>

const sorted = (ids: string[]) => [...ids].sort().join()
const leaders = (ms: Member[]) => ms.filter((m) => m.g.role === 'leader')

async function settled(ms: Member[], what: string): Promise<Member> {
  const ids = sorted(ms.map((m) => m.n.id))
  await waitFor(() => ms.every((m) => sorted(m.g.voters) === ids) && leaders(ms).length === 1, 10_000, what)
  return leaders(ms)[0]!
}

describe('metadata group voters leaving', () => {
  it.each(['leader', 'follower'] as const)(
    'a joiner gets in after the %s of a two-voter group stopped',
    async (stopped) => {
      const root = await tempRoot()
      // By id: the lowest bootstraps, so x0 and x2 form the two-voter group; x1 comes later.
      const nodes = (await startJoinedNodes(3)).sort((p, q) => (p.id < q.id ? -1 : 1))
      const [x0, x1, x2] = nodes.map((n) => member(n, root)) as [Member, Member, Member]
      await x0.g.start()
      await x2.g.start()
      const leader = await settled([x0, x2], 'x0 and x2 form a group')
      const gone = stopped === 'leader' ? leader : leader === x0 ? x2 : x0
      const stays = gone === x0 ? x2 : x0
      await gone.g.stop()
      expect(stays.g.voters).toEqual([stays.n.id])
      await x1.g.start()
      await settled([stays, x1], 'the joiner is added and the group has a leader')
      expect([...x0.errors, ...x1.errors, ...x2.errors]).toEqual([])
    },
    30_000,
  )

  it('an outside member takes the seat of a voter that left', async () => {
    const root = await tempRoot()
    const nodes = await startJoinedNodes(3)
    const ms = nodes.map((n) => member(n, root, { maxVoters: 2, outsideRetryMs: 100 }))
    await Promise.all(ms.map((m) => m.g.start()))
    await waitFor(
      () => ms.filter((m) => m.g.role === 'outside').length === 1 && leaders(ms).length === 1,
      10_000,
      'two voters and one member outside',
    )
    const outside = ms.find((m) => m.g.role === 'outside')!
    const follower = ms.find((m) => m !== outside && m.g.role === 'follower')!
    await follower.g.stop()
    const rest = ms.filter((m) => m !== follower)
    await settled(rest, 'the outside member is a voter')
    expect(outside.g.role).not.toBe('outside')
  }, 30_000)

  it('the leader removes a voter whose node vanished from the members', async () => {
    const root = await tempRoot()
    const nodes = await startJoinedNodes(3)
    const ms = nodes.map((n) => member(n, root, { departedVoterMs: 300 }))
    await Promise.all(ms.map((m) => m.g.start()))
    const leader = await settled(ms, 'three voters')
    const victim = ms.find((m) => m !== leader)!
    // The node goes (its membership leaves with it); its group is not asked to leave.
    await victim.n.stop()
    const rest = ms.filter((m) => m !== victim)
    await settled(rest, 'the vanished voter removed')
    expect(leader.errors).toEqual([])
  }, 30_000)
})

describe('metadata of a cluster whose members stop one by one', () => {
  it('stays available while any member runs', async () => {
    const root = await tempRoot()
    const { members } = await startStreamCluster(root, { outside: 0 })
    const [a, b, c] = members as [PlexusNode, PlexusNode, PlexusNode]
    await a.streams.create('orders', { cluster: 'db', subject: 'orders.>', partitions: 1, replicas: 3 })
    await c.stop()
    await b.streams.delete('orders', { timeout: 10_000 })
    await b.stop()
    // One member left of three: it is the whole metadata group now.
    await a.streams.create('solo', { cluster: 'db', subject: 'solo.>', replicas: 1 }, { timeout: 10_000 })
    expect(a.streams.list().map((s) => s.name)).toEqual(['solo'])
  }, 60_000)
})
