/**
 * The neighbour policy of src/overlay/overlay.ts on an in-memory network (no sockets): N
 * nodes that all know each other run their ticks; every node ends with at most `maxLinks`
 * neighbours, the neighbour graph is connected with a small diameter, both ends agree on
 * every neighbour link, no other link stays open, and a small network is a full mesh. Time
 * is simulated (one second per round of ticks). Peer ids come from a
 * seeded generator (printed; TEST_SEED replays).
 */
import { describe, expect, it } from 'vitest'
import type { Link } from '../../src/link/link.js'
import { OVERLAY_DROP, OVERLAY_PROPOSE, Overlay } from '../../src/overlay/overlay.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const seed = testSeed()
console.log(`overlay sim seed ${seed} (TEST_SEED=${seed} to replay)`)

/** Simulated time (ms): every round of ticks is one second. */
let clock = 0

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
      now: () => clock,
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
    clock += 1000
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
    await settle(nodes, 30)
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
    // Links that are not neighbours' close (nothing uses them): the only ones left are the
    // last round's refused proposals (nodes still filling their last slots), each one that
    // its end no longer wants, so it closes at its next tick.
    let extra = 0
    for (const x of nodes) {
      for (const p of x.links.keys()) {
        if (x.overlay.isNeighbour(p)) continue
        extra++
        expect(x.overlay.wantsLink(p)).toBe(false)
      }
    }
    console.log(`non-neighbour link ends still open after the last round: ${extra}`)
    expect(extra).toBeLessThan(nodes.length / 10)
  }, 60_000)

  it('a network of maxLinks + 1 nodes is a full mesh', async () => {
    const nodes = network(9, 8, mulberry32(seed + 1))
    await settle(nodes, 5)
    for (const x of nodes) expect(x.overlay.counts().neighbours).toBe(8)
  })
})
