/**
 * The neighbour policy of src/overlay/overlay.ts on an in-memory network (no sockets): N
 * nodes that all know each other run their ticks; every node ends with at most `maxLinks`
 * neighbours, the neighbour graph is connected with a small diameter, both ends agree on
 * (nearly) every neighbour link, and a small network is a full mesh. Peer ids come from a
 * seeded generator (printed; TEST_SEED replays).
 */
import { describe, expect, it } from 'vitest'
import type { Link } from '../../src/link/link.js'
import { OVERLAY_DROP, OVERLAY_PROPOSE, Overlay } from '../../src/overlay/overlay.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const seed = testSeed()
console.log(`overlay sim seed ${seed} (TEST_SEED=${seed} to replay)`)

interface SimNode {
  id: string
  overlay: Overlay
  links: Map<string, Link>
}

/** Builds `n` nodes wired through an in-memory network; every node knows every other. */
function network(n: number, maxLinks: number, random: () => number): SimNode[] {
  const byId = new Map<string, SimNode>()
  const nodes: SimNode[] = []
  const connect = (a: SimNode, b: SimNode) => {
    if (a.links.has(b.id)) return
    a.links.set(b.id, { peer: b.id, closed: false, used: false } as unknown as Link)
    b.links.set(a.id, { peer: a.id, closed: false, used: false } as unknown as Link)
    a.overlay.linkUp(a.links.get(b.id)!)
    b.overlay.linkUp(b.links.get(a.id)!)
  }
  const disconnect = (a: SimNode, b: SimNode) => {
    if (!a.links.delete(b.id)) return
    b.links.delete(a.id)
    a.overlay.linkDown(b.id)
    b.overlay.linkDown(a.id)
  }
  for (let i = 0; i < n; i++) {
    const id = `12D3Koo${Math.floor(random() * 2 ** 48).toString(36)}${i}`
    const node: SimNode = { id, links: new Map(), overlay: undefined as unknown as Overlay }
    node.overlay = new Overlay({
      self: id,
      maxLinks,
      now: () => Date.now(),
      link: (p) => node.links.get(p),
      links: () => [...node.links.values()],
      takeUse: () => false,
      hangUp: (p) => {
        const other = byId.get(p)
        if (other) disconnect(node, other)
      },
      dial: async (p) => {
        const other = byId.get(p)
        if (!other) return false
        connect(node, other)
        return true
      },
      call: async (p, method) => {
        const other = byId.get(p)
        if (!other || !node.links.has(p)) throw new Error('no link')
        if (method === OVERLAY_PROPOSE) return other.overlay.onPropose(node.id)
        if (method === OVERLAY_DROP) return other.overlay.onDrop(node.id)
        throw new Error(`unknown method ${method}`)
      },
      count: () => {},
      changed: () => {},
    })
    byId.set(id, node)
    nodes.push(node)
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) a.overlay.learn(b.id, [])
  return nodes
}

async function settle(nodes: SimNode[], rounds: number): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    for (const node of nodes) node.overlay.tick()
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res))
  }
}

/** Neighbour edges (either end's view) as adjacency; and how many edges only one end sees. */
function graph(nodes: SimNode[]): { adj: Map<string, Set<string>>; oneSided: number } {
  const adj = new Map<string, Set<string>>(nodes.map((x) => [x.id, new Set<string>()]))
  let oneSided = 0
  const byId = new Map(nodes.map((x) => [x.id, x]))
  for (const a of nodes) {
    for (const p of a.links.keys()) {
      if (!a.overlay.isNeighbour(p)) continue
      adj.get(a.id)!.add(p)
      adj.get(p)!.add(a.id)
      if (!byId.get(p)!.overlay.isNeighbour(a.id)) oneSided++
    }
  }
  return { adj, oneSided }
}

/** Largest shortest-path length (Infinity when not connected). */
function diameter(adj: Map<string, Set<string>>): number {
  let worst = 0
  for (const start of adj.keys()) {
    const dist = new Map([[start, 0]])
    const todo = [start]
    for (let i = 0; i < todo.length; i++) {
      const d = dist.get(todo[i]!)!
      for (const p of adj.get(todo[i]!)!) {
        if (!dist.has(p)) {
          dist.set(p, d + 1)
          todo.push(p)
        }
      }
    }
    if (dist.size < adj.size) return Number.POSITIVE_INFINITY
    worst = Math.max(worst, ...dist.values())
  }
  return worst
}

describe('overlay neighbour policy (simulated network)', () => {
  it('300 nodes, maxLinks 8: bounded degree, connected, small diameter, agreed links', async () => {
    const nodes = network(300, 8, mulberry32(seed))
    await settle(nodes, 20)
    const { adj, oneSided } = graph(nodes)
    const degrees = nodes.map((x) => x.overlay.counts().neighbours)
    const d = diameter(adj)
    const mean = degrees.reduce((a, b) => a + b, 0) / degrees.length
    console.log(
      `300 nodes: neighbours max ${Math.max(...degrees)} mean ${mean.toFixed(2)}, diameter ${d}, one-sided ${oneSided}`,
    )
    expect(Math.max(...degrees)).toBeLessThanOrEqual(8)
    expect(mean).toBeGreaterThan(6)
    expect(d).toBeLessThanOrEqual(8)
    expect(oneSided).toBe(0)
    // Links that are not neighbours' are closed (nothing uses them).
    const extra = nodes.reduce((s, x) => s + x.overlay.counts().onDemand, 0)
    expect(extra).toBe(0)
  }, 60_000)

  it('a network of maxLinks + 1 nodes is a full mesh', async () => {
    const nodes = network(9, 8, mulberry32(seed + 1))
    await settle(nodes, 5)
    for (const x of nodes) expect(x.overlay.counts().neighbours).toBe(8)
  })
})
