import { describe, expect, it } from 'vitest'
import {
  generateKey,
  InvalidArgumentError,
  MemberLostError,
  NoMembersError,
  OverloadedError,
  RemoteError,
  TimeoutError,
} from '../src/index.js'
import { startNodes, waitFor, waitForMembers } from './helpers/nodes.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

describe('request-reply', () => {
  it('reaches a member found by same-host discovery and returns its reply', async () => {
    const [a, b] = await startNodes(2)
    await b.join('echo', { key: generateKey(), onRequest: (d) => new Uint8Array([...d, 1]) })
    await waitForMembers(a, 'echo', 1)
    expect([...(await a.request('echo', new Uint8Array([7, 8])))]).toEqual([7, 8, 1])
  })

  it('accepts strings as UTF-8 and async handlers (deferred replies)', async () => {
    const [a, b] = await startNodes(2)
    await b.join('upper', {
      key: generateKey(),
      onRequest: async (d) => {
        await new Promise((r) => setTimeout(r, 20))
        return dec(d).toUpperCase()
      },
    })
    await waitForMembers(a, 'upper', 1)
    expect(dec(await a.request('upper', 'hello'))).toBe('HELLO')
  })

  it('spreads load over members and a new member takes work within 2 s', async () => {
    const [client, m1, m2] = await startNodes(3)
    const key = generateKey()
    await m1.join('db', { key, onRequest: () => 'm1' })
    await waitForMembers(client, 'db', 1)
    const joinedAt = Date.now()
    await m2.join('db', { key, onRequest: () => 'm2' })
    await waitForMembers(client, 'db', 2, 2000)
    expect(Date.now() - joinedAt).toBeLessThan(2000)
    const counts: Record<string, number> = {}
    await Promise.all(
      Array.from({ length: 60 }, async () => {
        const r = dec(await client.request('db', 'x'))
        counts[r] = (counts[r] ?? 0) + 1
      }),
    )
    expect(counts.m1).toBeGreaterThan(10)
    expect(counts.m2).toBeGreaterThan(10)
    // Sequential requests reach both equally fast members (no member starves).
    const seq = new Set<string>()
    for (let i = 0; i < 40 && seq.size < 2; i++) seq.add(dec(await client.request('db', 'x')))
    expect(seq.size).toBe(2)
  })

  it('a member that leaves is dropped at once', async () => {
    const [client, m1, m2] = await startNodes(3)
    const key = generateKey()
    const mem1 = await m1.join('db', { key, onRequest: () => 'm1' })
    await m2.join('db', { key, onRequest: () => 'm2' })
    await waitForMembers(client, 'db', 2)
    await mem1.leave()
    await waitFor(
      () => client.status().clusters.find((c) => c.name === 'db')?.members.length === 1,
      1000,
      'leave seen',
    )
    for (let i = 0; i < 20; i++) expect(dec(await client.request('db', 'x'))).toBe('m2')
  })

  it('errors: handler throws → RemoteError with its message; no members → NoMembersError', async () => {
    const [a, b] = await startNodes(2)
    await b.join('bad', {
      key: generateKey(),
      onRequest: () => {
        throw new Error('disk on fire')
      },
    })
    await waitForMembers(a, 'bad', 1)
    const err = await a.request('bad', 'x').catch((e) => e)
    expect(err).toBeInstanceOf(RemoteError)
    expect(err.name).toBe('RemoteError')
    expect(err.message).toContain('disk on fire')
    await new Promise((r) => setTimeout(r, 3000)) // leave the start-up discovery grace
    const none = await a.request('nobody-serves-this', 'x').catch((e) => e)
    expect(none).toBeInstanceOf(NoMembersError)
    expect(none.name).toBe('NoMembersError')
  })

  it('times out, and the member sees the deadline and the cancel through ctx.signal', async () => {
    const [a, b] = await startNodes(2)
    let aborted: Promise<number> | undefined
    await b.join('slow', {
      key: generateKey(),
      onRequest: (_d, ctx) => {
        const started = Date.now()
        aborted = new Promise((resolve) =>
          ctx.signal.addEventListener('abort', () => resolve(Date.now() - started)),
        )
        expect(ctx.deadline).toBeGreaterThan(Date.now())
        return new Promise(() => {})
      },
    })
    await waitForMembers(a, 'slow', 1)
    const err = await a.request('slow', 'x', { timeout: 300 }).catch((e) => e)
    expect(err).toBeInstanceOf(TimeoutError)
    expect(await aborted).toBeLessThan(1000)
  })

  it('drops work whose deadline has passed instead of replying late', async () => {
    const [a, b] = await startNodes(2)
    let finished = 0
    await b.join('late', {
      key: generateKey(),
      onRequest: async () => {
        await new Promise((r) => setTimeout(r, 300))
        finished++
        return 'late'
      },
    })
    await waitForMembers(a, 'late', 1)
    await expect(a.request('late', 'x', { timeout: 100 })).rejects.toBeInstanceOf(TimeoutError)
    await waitFor(() => finished === 1, 2000)
    await waitFor(() => (b.status().counters['requests.dropped'] ?? 0) >= 1, 2000, 'dropped counter')
  })

  it('answers OverloadedError when every member is at its limit, without queueing', async () => {
    const [a, b] = await startNodes(2)
    const release: Array<() => void> = []
    await b.join('busy', {
      key: generateKey(),
      limits: { requests: 2 },
      onRequest: () => new Promise<string>((r) => release.push(() => r('ok'))),
    })
    await waitForMembers(a, 'busy', 1)
    const first = [a.request('busy', '1'), a.request('busy', '2')]
    await waitFor(() => release.length === 2)
    await expect(a.request('busy', '3')).rejects.toBeInstanceOf(OverloadedError)
    for (const r of release) r()
    expect((await Promise.all(first)).map(dec)).toEqual(['ok', 'ok'])
  })

  it('fails over to another member when one is overloaded', async () => {
    const [a, b, c] = await startNodes(3)
    const key = generateKey()
    const hold: Array<() => void> = []
    await b.join('pool', {
      key,
      limits: { requests: 1 },
      onRequest: () => new Promise((r) => hold.push(() => r('b'))),
    })
    await c.join('pool', {
      key,
      limits: { requests: 1 },
      onRequest: () => new Promise((r) => hold.push(() => r('c'))),
    })
    await waitForMembers(a, 'pool', 2)
    const both = [a.request('pool', '1'), a.request('pool', '2')]
    await waitFor(() => hold.length === 2)
    await expect(a.request('pool', '3')).rejects.toBeInstanceOf(OverloadedError)
    for (const h of hold) h()
    expect(new Set((await Promise.all(both)).map(dec))).toEqual(new Set(['b', 'c']))
  })

  it('a member that dies after the request was written: MemberLostError, or a resend with retry', async () => {
    const [a, b, c] = await startNodes(3)
    const key = generateKey()
    let bGot = 0
    await b.join('flaky', {
      key,
      onRequest: () => {
        bGot++
        setTimeout(() => void b.stop(), 10)
        return new Promise(() => {})
      },
    })
    await waitForMembers(a, 'flaky', 1)
    const err = await a.request('flaky', 'x').catch((e) => e)
    expect(err).toBeInstanceOf(MemberLostError)
    expect(bGot).toBe(1)
    await c.join('flaky2', { key, onRequest: () => 'c' })
    const [d] = await startNodes(1, { network: a.network })
    await d.join('flaky2', {
      key,
      onRequest: () => {
        setTimeout(() => void d.stop(), 10)
        return new Promise(() => {})
      },
    })
    await waitForMembers(a, 'flaky2', 2)
    // With retry the request ends at the surviving member whichever is chosen first.
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => a.request('flaky2', 'x', { retry: true, timeout: 8000 })),
    )
    expect(results.map(dec)).toEqual(['c', 'c', 'c', 'c'])
  })

  it('validates every argument and names it', async () => {
    const [a] = await startNodes(1)
    await expect(a.request('bad name!', 'x')).rejects.toThrow(/cluster/)
    await expect(a.request('ok', 42 as unknown as string)).rejects.toThrow(/data/)
    await expect(a.request('ok', 'x', { timeout: -1 })).rejects.toThrow(/options.timeout/)
    await expect(a.request('ok', 'x', { retry: 'yes' as unknown as boolean })).rejects.toThrow(
      /options.retry/,
    )
    await expect(a.request('ok', new Uint8Array(2 * 1024 * 1024))).rejects.toThrow(/maxMessageSize/)
    await expect(a.join('ok', {} as never)).rejects.toThrow(/options.key/)
    await expect(a.join('ok', { key: 'short' })).rejects.toThrow(/options.key/)
    await expect(a.join('', { key: generateKey() })).rejects.toThrow(/cluster/)
    await expect(a.join('ok', { key: generateKey(), onRequest: 5 as never })).rejects.toThrow(/onRequest/)
    await expect(a.join('ok', { key: generateKey(), limits: { requests: 0 } })).rejects.toThrow(
      /limits.requests/,
    )
    for (const p of [a.request('bad name!', 'x'), a.join('', { key: generateKey() })]) {
      const e = await p.catch((x) => x)
      expect(e).toBeInstanceOf(InvalidArgumentError)
      expect(e.name).toBe('InvalidArgumentError')
    }
  })

  it('a node can be its own member', async () => {
    const [a] = await startNodes(1)
    await a.join('self', { key: generateKey(), onRequest: () => 'me' })
    expect(dec(await a.request('self', 'x'))).toBe('me')
  })
})
