import { describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../src/index.js'
import { startNodes, waitFor, waitForMembers } from './helpers/nodes.js'
import { mulberry32, testSeed } from './helpers/rng.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

describe('broadcast', () => {
  it('reaches every member exactly once and never a non-member', async () => {
    const nodes = await startNodes(6)
    const [sender, outsider, ...members] = nodes as [PlexusNode, PlexusNode, ...PlexusNode[]]
    const key = generateKey()
    const got = new Map<string, string[]>()
    for (const m of members) {
      got.set(m.id, [])
      await m.join('all', { key, onBroadcast: (d) => void got.get(m.id)!.push(dec(d)) })
    }
    let outsiderGot = 0
    await outsider.join('other', { key, onBroadcast: () => void outsiderGot++ })
    await waitForMembers(sender, 'all', members.length)
    for (let i = 0; i < 50; i++) expect(await sender.broadcast('all', `b${i}`)).toBe(members.length)
    await waitFor(() => [...got.values()].every((g) => g.length === 50))
    for (const g of got.values()) expect(g).toEqual(Array.from({ length: 50 }, (_, i) => `b${i}`))
    expect(outsiderGot).toBe(0)
  })

  it('fans out through members: with more members than the fan-out, each still gets it once', async () => {
    const nodes = await startNodes(12)
    const [sender, ...members] = nodes as [PlexusNode, ...PlexusNode[]]
    const key = generateKey()
    const counts = new Map<string, number>()
    for (const m of members) {
      await m.join('wide', { key, onBroadcast: () => void counts.set(m.id, (counts.get(m.id) ?? 0) + 1) })
    }
    await waitForMembers(sender, 'wide', members.length, 8000)
    await Promise.all(members.map((m) => waitForMembers(m, 'wide', members.length, 8000)))
    for (let i = 0; i < 10; i++) await sender.broadcast('wide', 'x')
    await waitFor(() => members.every((m) => counts.get(m.id) === 10), 5000, 'all delivered')
    await new Promise((r) => setTimeout(r, 100))
    for (const m of members) expect(counts.get(m.id)).toBe(10)
  })

  it('no duplicates while members join and leave', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    try {
      const nodes = await startNodes(7)
      const [sender, ...pool] = nodes as [PlexusNode, ...PlexusNode[]]
      const key = generateKey()
      const seen = new Map<string, Set<string>>()
      const dupes: string[] = []
      const memberships = new Map<string, { leave(): Promise<void> }>()
      const join = async (m: PlexusNode) => {
        if (!seen.has(m.id)) seen.set(m.id, new Set())
        memberships.set(
          m.id,
          await m.join('churn', {
            key,
            onBroadcast: (d) => {
              const s = seen.get(m.id)!
              const msg = dec(d)
              if (s.has(msg)) dupes.push(`${m.id}:${msg}`)
              s.add(msg)
            },
          }),
        )
      }
      for (const m of pool) await join(m)
      await waitForMembers(sender, 'churn', pool.length)
      for (let i = 0; i < 200; i++) {
        await sender.broadcast('churn', `m${i}`)
        if (i % 10 === 0) {
          const m = pool[Math.floor(rand() * pool.length)]!
          if (memberships.has(m.id)) {
            await memberships.get(m.id)!.leave()
            memberships.delete(m.id)
          } else await join(m)
        }
        if (i % 5 === 0) await new Promise((r) => setTimeout(r, 5))
      }
      await new Promise((r) => setTimeout(r, 300))
      expect(dupes).toEqual([])
    } catch (err) {
      console.error(`broadcast churn seed ${seed} (TEST_SEED=${seed})`)
      throw err
    }
  })

  it('handlers over the broadcasts limit are dropped and counted', async () => {
    const [sender, m] = await startNodes(2)
    const release: Array<() => void> = []
    await m.join('lim', {
      key: generateKey(),
      limits: { broadcasts: 2 },
      onBroadcast: () => new Promise<void>((r) => release.push(r)),
    })
    await waitForMembers(sender, 'lim', 1)
    for (let i = 0; i < 5; i++) await sender.broadcast('lim', 'x')
    await waitFor(() => (m.status().counters['broadcasts.dropped'] ?? 0) === 3)
    expect(release.length).toBe(2)
    for (const r of release) r()
  })

  it('bad input', async () => {
    const [n] = await startNodes(1)
    await expect(n.broadcast('bad name', 'x')).rejects.toThrow(/cluster/)
    await expect(n.broadcast('ok', {} as never)).rejects.toThrow(/data/)
    await expect(n.join('ok', { key: generateKey(), onBroadcast: 1 as never })).rejects.toThrow(/onBroadcast/)
  })
})
