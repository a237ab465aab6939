/**
 * The replica healer over bounded links (issue 15): with `maxLinks: 2`, a storage cluster of
 * 5 members plus a client is not a full mesh, so the metadata leader holds no link to some
 * healthy members. Their replicas must stay where they are (the leader probes members it is
 * not linked to, streams/host/liveness.ts); a member that is killed has its replicas moved.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../../src/index.js'
import { nodeInternals } from '../../src/node.js'
import { startNode, stopStartedNodes, uniqueNetwork, waitFor } from '../helpers/nodes.js'

const dirs: string[] = []
afterEach(async () => {
  await stopStartedNodes()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

const replaced = (nodes: PlexusNode[]) =>
  nodes.reduce((n, m) => n + (m.status().counters['streams.replicasReplaced'] ?? 0), 0)

describe('replica healer without a full mesh (loopback, maxLinks 2)', () => {
  it('moves no replica while every member is healthy, and moves a killed one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-heal-overlay-'))
    dirs.push(root)
    const network = uniqueNetwork('heal')
    const key = generateKey()
    const opts = { network, maxLinks: 2, streams: { replaceReplicaAfter: 1000 } }
    const members = await Promise.all(
      Array.from({ length: 5 }, (_, i) => startNode({ ...opts, dataDir: join(root, `m${i}`) })),
    )
    const client = await startNode({ ...opts, credentials: { clusterKeys: { db: key } } })
    for (const m of members) await m.join('db', { key })
    // Known, not necessarily linked (startStreamCluster waits for links to every member).
    const known = (n: PlexusNode) => n.status().clusters.find((c) => c.name === 'db')?.members.length ?? 0
    await waitFor(() => [client, ...members].every((n) => known(n) === 5), 15_000, 'all 5 members known')
    // Idle on-demand links close after 0.5 s, so the metadata leader soon holds no link to
    // members it shares no raft group with.
    for (const n of [client, ...members]) nodeInternals(n).overlay.idleAfter = 500
    // Five streams of one replica each: the least loaded placement puts one on every member.
    for (let i = 0; i < 5; i++)
      await client.streams.create(`s${i}`, { cluster: 'db', subject: `s${i}.>`, replicas: 1 })
    const placement = async () => {
      const list = await client.streams.list()
      return list.map((s) => s.placement[0]!.replicas.join()).sort()
    }
    const leaderId = (await client.streams.list())[0]!.metadataLeader
    const leader = members.find((m) => m.id === leaderId)!
    expect(leader).toBeDefined()
    const t0 = Date.now()
    const before = await placement()
    const holders = members.filter((m) => m !== leader && before.includes(m.id))
    // Neither end takes the other as a neighbour for 60 s (as after a drop), so only a raft
    // group they share (the metadata voters) keeps a link between them.
    for (const h of holders) {
      nodeInternals(leader).overlay.onDrop(h.id)
      nodeInternals(h).overlay.onDrop(leader.id)
    }
    await waitFor(
      () => holders.some((h) => !leader.status().peers.some((p) => p.id === h.id)),
      20_000,
      'the metadata leader without a link to a member holding a replica',
    )
    console.log(`leader unlinked from a replica holder after ${Date.now() - t0} ms`)
    // Healthy: over 4 s (4 × replaceReplicaAfter) nothing is replaced.
    const quietUntil = Date.now() + 4000
    await waitFor(() => replaced(members) > 0 || Date.now() > quietUntil, 6000, 'the quiet period')
    expect(replaced(members)).toBe(0)
    expect(await placement()).toEqual(before)

    // A member holding a replica stops: its replica moves to another member.
    const victim = holders[0]!
    const t1 = Date.now()
    await victim.stop()
    await waitFor(
      async () => !(await placement()).includes(victim.id),
      20_000,
      "the victim's replica placed on another member",
    )
    expect(replaced(members.filter((m) => m !== victim))).toBeGreaterThan(0)
    console.log(`replica moved ${Date.now() - t1} ms after the stop`)
  }, 45_000)
})
