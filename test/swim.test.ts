/**
 * Failure detection over the overlay (src/overlay/swim.ts, gossip.ts) with real nodes on
 * loopback: seven nodes at maxLinks 2, one member in a child process killed with SIGKILL.
 * Its neighbours' links drop, they probe it through their other neighbours, suspect it, and
 * every node declares it dead: a client that has no link to it drops it from the cluster
 * within a few seconds (not at the announcement's 60 s expiry) and never tries it again;
 * no live node is declared dead.
 */
import { describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../src/index.js'
import { startNodes, uniqueNetwork, waitFor } from './helpers/nodes.js'
import { spawnNode, waitForLine } from './helpers/procs.js'

const members = (n: PlexusNode, cluster: string) =>
  n
    .status()
    .clusters.find((c) => c.name === cluster)
    ?.members.map((m) => m.id) ?? []
const linked = (n: PlexusNode, peer: string) => n.status().peers.some((p) => p.id === peer)

describe('failure detection (SWIM over links)', () => {
  it('a killed member leaves every view within seconds, also where nobody links to it', async () => {
    const network = uniqueNetwork('swim')
    const key = generateKey()
    const nodes = await startNodes(6, { network, maxLinks: 2 })
    const victim = spawnNode(['test/fixtures/swim-member.mjs', network, 'svc', key, 'victim', '2'])
    const victimId = (await waitForLine(victim, /^ready (\S+)$/, 20_000))[1]!
    const [server] = nodes as [PlexusNode]
    await server.join('svc', { key, onRequest: () => 'server' })
    await waitFor(() => nodes.every((n) => members(n, 'svc').length === 2), 20_000, 'both members everywhere')
    // A client with no link to the victim (the overlay is bounded: some node has none).
    await waitFor(() => nodes.some((n) => n !== server && !linked(n, victimId)), 10_000, 'an unlinked client')
    const client = nodes.find((n) => n !== server && !linked(n, victimId))!

    const t0 = Date.now()
    victim.kill('SIGKILL')
    // About 4 s on an idle machine; local health (late timers on a loaded one) stretches the
    // timeouts, hence 15 s. Without the detector it takes 60 s (the announcement's expiry).
    const overlayCounters = (n: PlexusNode) =>
      Object.entries(n.status().counters).filter(([k]) => k.startsWith('overlay.') && !k.includes('digests'))
    await waitFor(
      () => !members(client, 'svc').includes(victimId),
      15_000,
      'the client to drop the killed member',
    ).catch((err) => {
      for (const n of nodes) console.log(n === client ? 'client' : n.id, JSON.stringify(overlayCounters(n)))
      throw err
    })
    const tClient = Date.now() - t0
    await waitFor(
      () => nodes.every((n) => !members(n, 'svc').includes(victimId)),
      10_000,
      'every node to drop the killed member',
    )
    console.log(
      `killed member dropped by the unlinked client after ${tClient} ms, by all after ${Date.now() - t0} ms`,
    )
    // Requests go to the live member only, without a dial of the dead one.
    for (let i = 0; i < 20; i++)
      expect(Buffer.from(await client.request('svc', 'x', { timeout: 2000 })).toString()).toBe('server')
    expect(linked(client, victimId)).toBe(false)
    // No live node was declared dead anywhere; the counters tell what happened.
    for (const n of nodes) {
      expect(members(n, 'svc')).toEqual([server.id])
      expect(n.status().counters['overlay.deadKnown']).toBe(1)
    }
    const declared = nodes.reduce((s, n) => s + (n.status().counters['overlay.declaredDead'] ?? 0), 0)
    expect(declared).toBe(nodes.length)
  }, 60_000)
})
