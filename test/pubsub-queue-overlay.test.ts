/**
 * Queue groups over the bounded overlay (issue 15): with `maxLinks: 2`, 7 loopback nodes are
 * far from a full mesh. Members of one queue group sit on nodes the publisher has no link to;
 * their entries travel in the signed interest records, so the publisher still hands each
 * message to exactly one member of the group (over on-demand links), while a plain
 * subscriber far away gets every message, in order.
 */
import { describe, expect, it } from 'vitest'
import { nodeInternals } from '../src/node.js'
import { startNodes, waitFor } from './helpers/nodes.js'

describe('queue groups without a full mesh (loopback, maxLinks 2)', () => {
  it('each message reaches one far member of the group; far plain subscribers get all', async () => {
    const nodes = await startNodes(7, { maxLinks: 2 })
    const [publisher, ...rest] = nodes
    const linked = (a: string) => publisher!.status().peers.some((p) => p.id === a)
    // Discovery links everyone at first; links that carried no data close after 5 s: wait
    // for the publisher to hold only its neighbours, unchanged for 2 s.
    let since = 0
    await waitFor(
      () => {
        const ok = publisher!.status().peers.length <= 2 && rest.filter((n) => !linked(n.id)).length >= 3
        since = ok ? since || Date.now() : 0
        return ok && Date.now() - since >= 2000
      },
      20_000,
      'the overlay to settle',
    )
    const far = rest.filter((n) => !linked(n.id)).slice(0, 3)
    const [plain, ...workers] = far as [(typeof far)[0], ...typeof far]
    const got = new Map<string, string[]>()
    for (const w of workers) {
      got.set(w.id, [])
      w.subscribe('jobs.*', (m) => void got.get(w.id)!.push(m.string()), { queue: 'workers' })
    }
    const all: string[] = []
    plain!.subscribe('jobs.>', (m) => void all.push(m.string()))
    const recs = nodeInternals(publisher!).records
    await waitFor(
      () =>
        workers.every((w) => recs.groupRoute('jobs.x').some(([p, q]) => p === w.id && q === 'workers')) &&
        recs.route('jobs.x').includes(plain!.id),
      10_000,
      'the interest records to reach the publisher',
    )
    for (const w of [plain!, ...workers]) expect(linked(w.id)).toBe(false)
    const n = 60
    for (let i = 0; i < n; i++) await publisher!.publish('jobs.x', `j${i}`)
    const total = () => [...got.values()].reduce((a, g) => a + g.length, 0)
    await waitFor(() => total() >= n && all.length >= n, 10_000, 'every job taken once')
    await new Promise((r) => setTimeout(r, 200)) // a duplicate would arrive by now
    expect(total()).toBe(n)
    expect(all).toEqual(Array.from({ length: n }, (_, i) => `j${i}`))
    const taken = [...got.values()].flat().sort()
    expect(new Set(taken).size).toBe(n)
    // Round-robin over both far member nodes: each took a share, each in publish order.
    for (const g of got.values()) {
      expect(g.length).toBeGreaterThan(0)
      expect(g).toEqual([...g].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))))
    }
    console.log(`jobs per far member: ${[...got.values()].map((g) => g.length).join(', ')}`)
  }, 30_000)
})
