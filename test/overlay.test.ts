/**
 * Bounded links (src/overlay/): real nodes over loopback on one network, found through the
 * same-host registry. With `maxLinks: 4`, 12 nodes keep at most 4 neighbour links each, the
 * neighbour graph stays connected, membership still reaches everyone, a member that is not a
 * neighbour is reached over an on-demand link, an idle on-demand link closes, and a
 * subscriber with no link to the publisher gets every message in order (its interest travels
 * in a signed record over the neighbours; the publisher links on demand). A small
 * network under the default bound stays a full mesh.
 */
import { describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../src/index.js'
import { nodeInternals } from '../src/node.js'
import { startNodes, waitFor } from './helpers/nodes.js'

/** Peers `node` holds a neighbour link to. */
function neighbours(node: PlexusNode): string[] {
  return node
    .status()
    .peers.filter((p) => p.link === 'neighbour')
    .map((p) => p.id)
}

/** True when the graph of neighbour links (either end's view) connects every node. */
function connected(nodes: PlexusNode[]): boolean {
  const edges = new Map<string, Set<string>>(nodes.map((n) => [n.id, new Set<string>()]))
  for (const n of nodes) {
    for (const p of neighbours(n)) {
      edges.get(n.id)?.add(p)
      edges.get(p)?.add(n.id)
    }
  }
  const seen = new Set([nodes[0]!.id])
  const todo = [nodes[0]!.id]
  while (todo.length > 0) {
    for (const p of edges.get(todo.pop()!) ?? []) {
      if (!seen.has(p)) {
        seen.add(p)
        todo.push(p)
      }
    }
  }
  return seen.size === nodes.length
}

function memberCount(node: PlexusNode, cluster: string): number {
  return node.status().clusters.find((c) => c.name === cluster)?.members.length ?? 0
}

describe('bounded links', () => {
  it('12 nodes with maxLinks 4: bounded, connected, membership everywhere, on-demand links', async () => {
    const nodes = await startNodes(12, { maxLinks: 4 })
    const key = generateKey()
    for (const n of nodes) await n.join('all', { key, onRequest: () => 'ok' })
    await waitFor(
      () => nodes.every((n) => memberCount(n, 'all') === 12),
      20_000,
      'every node to know all 12 members',
    )
    await waitFor(() => connected(nodes), 10_000, 'a connected neighbour graph')
    for (const n of nodes) expect(neighbours(n).length).toBeLessThanOrEqual(4)
    for (const n of nodes) expect(n.status().counters['links.neighbours']).toBeLessThanOrEqual(4)

    // A cluster served by one node that is not a neighbour of the client.
    const client = nodes[0]!
    const near = new Set(neighbours(client))
    const server = nodes.find((n) => n !== client && !near.has(n.id))
    expect(server, 'some node is not a neighbour of the client').toBeDefined()
    const internals = nodeInternals(client).overlay
    internals.idleAfter = 300
    nodeInternals(server!).overlay.idleAfter = 300
    await server!.join('solo', { key: generateKey(), onRequest: (d) => d })
    await waitFor(() => memberCount(client, 'solo') === 1, 10_000, 'the client to learn the solo member')
    const reply = await client.request('solo', 'ping', { timeout: 5000 })
    expect(Buffer.from(reply).toString()).toBe('ping')
    expect(client.status().peers.find((p) => p.id === server!.id)?.link).toBe('on-demand')
    // Idle: the on-demand link closes (one tick after 300 ms without data).
    await waitFor(
      () => !client.status().peers.some((p) => p.id === server!.id),
      10_000,
      'the idle on-demand link to close',
    )
    expect(client.status().counters['links.idleClosed']).toBeGreaterThan(0)
    // And opens again on the next request.
    expect(Buffer.from(await client.request('solo', 'again', { timeout: 5000 })).toString()).toBe('again')

    // Pub/sub: a subscriber with no link to the publisher gets every message, in order.
    const linkedTo = (a: PlexusNode, b: PlexusNode) => a.status().peers.some((p) => p.id === b.id)
    let pair: [PlexusNode, PlexusNode] | undefined
    for (const p of nodes) {
      const s = nodes.find((n) => n !== p && !linkedTo(p, n) && !linkedTo(n, p))
      if (s) {
        pair = [p, s]
        break
      }
    }
    expect(pair, 'some pair of nodes has no link').toBeDefined()
    const [publisher, subscriber] = pair!
    const got: string[] = []
    const sub = subscriber.subscribe('news.>', (m) => {
      got.push(m.string())
    })
    await sub.ready
    await waitFor(
      () => nodeInternals(publisher).records.route('news.eu').includes(subscriber.id),
      10_000,
      "the subscriber's interest record to reach the publisher",
    )
    expect(linkedTo(publisher, subscriber)).toBe(false)
    const n = 200
    for (let i = 0; i < n; i++) await publisher.publish(`news.${i % 2 ? 'eu' : 'us'}`, `m${i}`)
    await waitFor(() => got.length >= n, 10_000, `${n} messages at the subscriber`)
    expect(got).toEqual(Array.from({ length: n }, (_, i) => `m${i}`))
    expect(publisher.status().peers.find((p) => p.id === subscriber.id)?.link).toBe('on-demand')
    // Unsubscribed: the record without the pattern reaches the publisher, which stops sending.
    sub.unsubscribe()
    await waitFor(
      () => !nodeInternals(publisher).records.route('news.eu').includes(subscriber.id),
      10_000,
      'the withdrawn interest to reach the publisher',
    )
  }, 60_000)

  it('a 3-node network under the default bound is a full mesh of neighbours', async () => {
    const nodes = await startNodes(3)
    await waitFor(() => nodes.every((n) => neighbours(n).length === 2), 10_000, 'full mesh')
    for (const n of nodes) {
      expect(n.status().counters['links.onDemand']).toBe(0)
      expect(n.status().counters['links.maxLinks']).toBe(24)
    }
    // Interest records travel in a full mesh too; a node that stops sends a leave at once.
    const [a, , c] = nodes as [PlexusNode, PlexusNode, PlexusNode]
    c.subscribe('x.>')
    await waitFor(() => nodeInternals(a).records.route('x.y').includes(c.id), 5000, "c's record at a")
    await c.stop()
    await waitFor(
      () => !nodeInternals(a).records.route('x.y').includes(c.id),
      5000,
      "c's leave at a (not its 60 s expiry)",
    )
  }, 30_000)

  it('refuses a bad maxLinks naming the field', async () => {
    await expect(startNodes(1, { maxLinks: 0 })).rejects.toThrow(/maxLinks/)
    await expect(startNodes(1, { maxLinks: 2.5 })).rejects.toThrow(/maxLinks/)
    // 1 can split the graph (two pairs each holding their only link).
    await expect(startNodes(1, { maxLinks: 1 })).rejects.toThrow(/maxLinks must be at least 2, got 1/)
  })
})
