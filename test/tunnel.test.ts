import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { generateKey, NoMembersError, TimeoutError, type Tunnel, TunnelClosedError } from '../src/index.js'
import { startNodes, waitFor, waitForMembers } from './helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from './helpers/rng.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

describe('tunnels', () => {
  it('carries messages of random sizes (1 B to 4 MiB) in order and intact, both ways', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    try {
      const [a, b] = await startNodes(2, { maxMessageSize: 4 * 1024 * 1024 })
      await b.join('echo', {
        key: generateKey(),
        onTunnel: async (t) => {
          for await (const m of t) await t.send(m)
          await t.close()
        },
      })
      await waitForMembers(a, 'echo', 1)
      const t = await a.tunnel('echo')
      const sizes = Array.from({ length: 40 }, (_, i) =>
        i % 10 === 9 ? 1 + Math.floor(rand() * 4 * 1024 * 1024) : 1 + Math.floor(rand() * 100_000),
      )
      const msgs = sizes.map((n) => randomBytesFrom(rand, Math.min(n, 4096)).slice(0, n))
      const padded = msgs.map((m, i) => {
        const out = new Uint8Array(sizes[i]!)
        for (let o = 0; o < out.length; o += m.length)
          out.set(m.subarray(0, Math.min(m.length, out.length - o)), o)
        return out
      })
      const reading = (async () => {
        const got: string[] = []
        for await (const m of t) got.push(createHash('sha256').update(m).digest('hex'))
        return got
      })()
      for (const m of padded) await t.send(m)
      await t.close()
      const got = await reading.catch((e) => e)
      expect(got).toEqual(padded.map((m) => createHash('sha256').update(m).digest('hex')))
    } catch (err) {
      console.error(`tunnel seed ${seed} (TEST_SEED=${seed})`)
      throw err
    }
  })

  it('a slow reader makes the writer wait: bounded buffering', async () => {
    const [a, b] = await startNodes(2)
    let accepted: Tunnel | undefined
    await b.join('slow', { key: generateKey(), onTunnel: (t) => void (accepted = t) })
    await waitForMembers(a, 'slow', 1)
    const t = await a.tunnel('slow')
    const chunk = new Uint8Array(64 * 1024)
    let sent = 0
    const writer = (async () => {
      for (let i = 0; i < 200; i++) {
        await t.send(chunk)
        sent++
      }
    })()
    await new Promise((r) => setTimeout(r, 300))
    // 1 MiB window / 64 KiB = 16 messages may be in flight, no more.
    expect(sent).toBeLessThanOrEqual(17)
    let read = 0
    for await (const _ of accepted!) {
      if (++read === 200) break
    }
    await writer
    expect(sent).toBe(200)
  })

  it('either side can close: the other side reads what was sent, then its iteration ends', async () => {
    const [a, b] = await startNodes(2)
    const serverGot: string[] = []
    let serverDone: Promise<void> | undefined
    await b.join('c', {
      key: generateKey(),
      onTunnel: (t) => {
        serverDone = (async () => {
          for await (const m of t) serverGot.push(dec(m))
          await t.close()
        })()
      },
    })
    await waitForMembers(a, 'c', 1)
    const t = await a.tunnel('c')
    await t.send('one')
    await t.send('two')
    await t.close()
    await expect(t.send('three')).rejects.toBeInstanceOf(TunnelClosedError)
    await serverDone
    expect(serverGot).toEqual(['one', 'two'])

    // Now the member closes first.
    await b.join('d', {
      key: generateKey(),
      onTunnel: async (t2) => {
        await t2.send('bye')
        await t2.close()
      },
    })
    await waitForMembers(a, 'd', 1)
    const t2 = await a.tunnel('d')
    const got: string[] = []
    for await (const m of t2) got.push(dec(m))
    expect(got).toEqual(['bye'])
    await t2.close()
    expect(t2.closed).toBe(true)
    await expect(t2.send('late')).rejects.toBeInstanceOf(TunnelClosedError)
    await waitFor(
      () => a.status().counters['tunnels.open'] === 0 && b.status().counters['tunnels.open'] === 0,
    )
  })

  it('the death of either end ends the tunnel with TunnelClosedError on the other', async () => {
    const [a, b, c] = await startNodes(3)
    let serverSide: Tunnel | undefined
    await b.join('die', { key: generateKey(), onTunnel: (t) => void (serverSide = t) })
    await waitForMembers(a, 'die', 1)
    const t = await a.tunnel('die')
    const reading = (async () => {
      for await (const _ of t) {
      }
    })().catch((e) => e)
    await b.stop()
    expect(await reading).toBeInstanceOf(TunnelClosedError)
    await expect(t.send('x')).rejects.toBeInstanceOf(TunnelClosedError)
    expect(serverSide).toBeDefined()

    // Client dies: the member side ends.
    let memberEnd: Promise<unknown> | undefined
    await c.join('die2', {
      key: generateKey(),
      onTunnel: (t3) => {
        memberEnd = (async () => {
          for await (const _ of t3) {
          }
        })().catch((e) => e)
      },
    })
    await waitForMembers(a, 'die2', 1)
    await a.tunnel('die2')
    await a.stop()
    expect(await memberEnd).toBeInstanceOf(TunnelClosedError)
  })

  it('setup: TimeoutError when the member does not accept in time', async () => {
    const [a, b] = await startNodes(2)
    await b.join('mute', { key: generateKey(), onTunnel: () => {} })
    // Test seam: make b ignore tunnel setups, as a member stuck in a long GC pause would.
    ;(b as unknown as { tunnels: { accept: () => void } }).tunnels.accept = () => {}
    await waitForMembers(a, 'mute', 1)
    const started = Date.now()
    await expect(a.tunnel('mute', { timeout: 300 })).rejects.toBeInstanceOf(TimeoutError)
    expect(Date.now() - started).toBeLessThan(1500)
  })

  it('setup: no member with onTunnel and an unknown cluster are NoMembersError', async () => {
    const [a, b] = await startNodes(2)
    await b.join('noh', { key: generateKey(), onRequest: () => 'x' })
    await waitForMembers(a, 'noh', 1)
    await new Promise((r) => setTimeout(r, 3000)) // past the start-up discovery grace
    const err = await a.tunnel('noh', { timeout: 2000 }).catch((e) => e)
    expect(err).toBeInstanceOf(NoMembersError)
    expect(err.message).toBe('no member of noh accepts tunnels: 1 member, none with a tunnel handler')
    await expect(a.tunnel('nobody', { timeout: 500 })).rejects.toBeInstanceOf(NoMembersError)
  })

  it('bad input', async () => {
    const [a] = await startNodes(1)
    await expect(a.tunnel('bad name')).rejects.toThrow(/cluster/)
    await expect(a.tunnel('ok', { timeout: 0 })).rejects.toThrow(/options.timeout/)
    await expect(a.join('ok', { key: generateKey(), onTunnel: 'x' as never })).rejects.toThrow(/onTunnel/)
  })
})
