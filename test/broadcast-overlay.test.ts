/**
 * Broadcast over the bounded overlay (issue 15): with `maxLinks: 2`, 8 loopback nodes are far
 * from a full mesh, yet a broadcast sent as soon as the sender knows the members reaches every
 * member once and in order (members without a link get it over on-demand links, which the
 * fan-out's group heads open too), and `broadcast()` counts every member reached. Then the
 * sender's fan-out, scripted (no sockets): a group whose head cannot be dialled is carried by
 * its next member, and members nobody can reach are not counted.
 */
import { describe, expect, it } from 'vitest'
import { BROADCAST_FANOUT, Broadcaster } from '../src/broadcast/broadcast.js'
import { generateKey } from '../src/index.js'
import { FRAME_HEADER_BYTES } from '../src/link/frames.js'
import { BinaryReader } from '../src/util/binary.js'
import { startNodes, waitFor } from './helpers/nodes.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

describe('broadcast without a full mesh (loopback, maxLinks 2)', () => {
  it('the first broadcast reaches every member once, in order, linked or not', async () => {
    const nodes = await startNodes(8, { maxLinks: 2 })
    const [sender, ...members] = nodes
    const key = generateKey()
    const got = new Map<string, string[]>()
    for (const m of members) {
      got.set(m.id, [])
      await m.join('all', { key, onBroadcast: (d) => void got.get(m.id)!.push(dec(d)) })
    }
    const known = () => sender!.status().clusters.find((c) => c.name === 'all')?.members.length ?? 0
    await waitFor(() => known() === members.length, 15_000, 'the sender to know all 7 members')
    const linked = new Set(sender!.status().peers.map((p) => p.id))
    const unlinked = members.filter((m) => !linked.has(m.id)).length
    console.log(`sender links ${linked.size} peers; ${unlinked} of 7 members have no link to it`)
    expect(unlinked).toBeGreaterThan(0)

    // Awaited one by one, then 30 more at once (they queue behind the links being opened).
    for (let i = 0; i < 10; i++) expect(await sender!.broadcast('all', `b${i}`)).toBe(members.length)
    const burst = await Promise.all(
      Array.from({ length: 30 }, (_, i) => sender!.broadcast('all', `b${10 + i}`)),
    )
    expect(burst).toEqual(Array(30).fill(members.length))
    const want = Array.from({ length: 40 }, (_, i) => `b${i}`)
    await waitFor(() => [...got.values()].every((g) => g.length >= want.length), 10_000, 'all 40 everywhere')
    await new Promise((r) => setTimeout(r, 200)) // a duplicate would arrive by now
    for (const g of got.values()) expect(g).toEqual(want)
    expect(sender!.status().counters['broadcasts.unreachable'] ?? 0).toBe(0)
  }, 30_000)
})

/** A sender whose members have no link; `dial` says which on-demand links open. */
function scripted(count: number, dial: (peer: string) => boolean) {
  const members = Array.from({ length: count }, (_, i) => `m${String(i).padStart(3, '0')}`)
  const sent: Array<{ to: string; delegates: string[] }> = []
  const counters: Record<string, number> = {}
  const down = new Set<string>()
  const b = new Broadcaster({
    self: 'self',
    members: () => members,
    isMember: () => true,
    linkQueueBytes: 1 << 20,
    link: () => undefined,
    unreachable: (p) => down.has(p),
    far: {
      waits: () => false,
      send: async (to, frame) => {
        await new Promise((r) => setImmediate(r))
        if (!dial(to)) {
          down.add(to)
          return false
        }
        const r = new BinaryReader(frame.subarray(FRAME_HEADER_BYTES + 1))
        r.str()
        r.u32()
        r.str()
        const delegates: string[] = []
        for (let i = r.u16(); i > 0; i--) delegates.push(r.str())
        sent.push({ to, delegates })
        return true
      },
    },
    count: (c) => void (counters[c] = (counters[c] ?? 0) + 1),
  })
  return { b, members, sent, counters, down }
}

describe('the sender fan-out over on-demand links (scripted)', () => {
  it('a group whose head cannot be dialled is carried by its next member', async () => {
    const n = BROADCAST_FANOUT * 3
    const { b, members, sent } = scripted(n, (p) => p !== 'm000')
    expect(await b.broadcast('c', new Uint8Array([1]))).toBe(n - 1) // m000 not counted
    expect(sent).toHaveLength(BROADCAST_FANOUT)
    const first = sent.find((s) => s.delegates.includes('m000') || s.to === 'm001')!
    expect(first.to).toBe('m001') // m000 failed: m001 carries the group, m000 still named
    expect(first.delegates).toEqual(['m000', 'm002'])
    const reached = new Set(sent.flatMap((s) => [s.to, ...s.delegates]))
    expect(reached.size).toBe(members.length)
  })

  it('members nobody can reach are not counted (and are counted unreachable)', async () => {
    const { b, counters, down } = scripted(5, (p) => p !== 'm003')
    expect(await b.broadcast('c', new Uint8Array([1]))).toBe(4)
    expect(counters['broadcasts.unreachable']).toBe(1)
    // While it is unreachable it is not dialled again.
    expect(down.has('m003')).toBe(true)
    expect(await b.broadcast('c', new Uint8Array([2]))).toBe(4)
  })
})
