/**
 * Request headers (both ways) and `requestMany` on real nodes over loopback.
 */
import { describe, expect, it } from 'vitest'
import {
  AbortedError,
  generateKey,
  InvalidArgumentError,
  type ManyReply,
  NoMembersError,
  RemoteError,
  type RequestContext,
} from '../src/index.js'
import { startNodes, waitForMembers } from './helpers/nodes.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })

async function collect(it: AsyncIterable<ManyReply>): Promise<ManyReply[]> {
  const out: ManyReply[] = []
  for await (const r of it) out.push(r)
  return out
}

describe('request headers', () => {
  it('the handler sees ctx.headers and its { data, headers } reach the caller (remote and local)', async () => {
    const [a, b] = await startNodes(2)
    const key = generateKey()
    const seen: Array<Record<string, string> | undefined> = []
    const onRequest = (d: Uint8Array, ctx: RequestContext) => {
      seen.push(ctx.headers)
      if (dec(d) === 'plain') return 'no headers'
      return { data: `re:${dec(d)}`, headers: { 'x-echo': ctx.headers?.['x-in'] ?? '', from: 'member' } }
    }
    await b.join('h', { key, onRequest })
    await waitForMembers(a, 'h', 1)

    const r = await a.request('h', 'hi', { headers: { 'x-in': 'v1', ünï: 'çödé' } })
    expect(dec(r)).toBe('re:hi')
    expect(r.headers).toEqual({ 'x-echo': 'v1', from: 'member' })
    expect(seen.at(-1)).toEqual({ 'x-in': 'v1', ünï: 'çödé' })

    // Without headers: ctx.headers absent; a bytes reply has no headers property.
    const plain = await a.request('h', 'plain')
    expect(dec(plain)).toBe('no headers')
    expect(plain.headers).toBeUndefined()
    expect(seen.at(-1)).toBeUndefined()

    // This node as its own member (no network).
    const c = (await startNodes(1))[0]!
    await c.join('self', { key: generateKey(), onRequest })
    const local = await c.request('self', 'me', { headers: { 'x-in': 'local' } })
    expect(dec(local)).toBe('re:me')
    expect(local.headers).toEqual({ 'x-echo': 'local', from: 'member' })
  })

  it('refuses headers over the limits, naming the field; a handler with bad reply headers → RemoteError', async () => {
    const [a, b] = await startNodes(2)
    await b.join('h', {
      key: generateKey(),
      onRequest: (d) => ({ data: d, headers: { '': 'empty name' } }),
    })
    await waitForMembers(a, 'h', 1)
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v']))
    await expect(a.request('h', 'x', { headers: many })).rejects.toThrow(/options\.headers.*at most 64/)
    await expect(a.request('h', 'x', { headers: { ['n'.repeat(257)]: 'v' } })).rejects.toThrow(
      InvalidArgumentError,
    )
    await expect(a.request('h', 'x', { headers: { big: 'v'.repeat(16 * 1024) } })).rejects.toThrow(
      /options\.headers hold \d+ bytes/,
    )
    await expect(a.request('h', 'x', { headers: { n: 1 as unknown as string } })).rejects.toThrow(
      /options\.headers\.n must be a string/,
    )
    expect(() => a.requestMany('h', 'x', { headers: many })).toThrow(/options\.headers/)
    expect(() => a.requestMany('h', 'x', { maxReplies: 0 })).toThrow(/options\.maxReplies/)
    const err = await a.request('h', 'x').catch((e: Error) => e)
    expect(err).toBeInstanceOf(RemoteError)
    expect((err as Error).message).toMatch(/reply\.headers/)
  })
})

describe('requestMany', () => {
  /** A caller and three members m0..m2 of `many`; `handlers[i]` serves member i. */
  async function threeMembers(
    handlers: Array<(d: Uint8Array, ctx: RequestContext) => unknown>,
  ): Promise<{ caller: Awaited<ReturnType<typeof startNodes>>[number]; ids: string[] }> {
    const [caller, ...members] = await startNodes(4)
    const key = generateKey()
    await Promise.all(
      members.map((m, i) =>
        m!.join('many', {
          key,
          onRequest: handlers[i] as (d: Uint8Array, ctx: RequestContext) => Uint8Array,
        }),
      ),
    )
    await waitForMembers(caller!, 'many', 3)
    return { caller: caller!, ids: members.map((m) => m!.id) }
  }

  it('every member answers once, with headers both ways', async () => {
    const h = (i: number) => (d: Uint8Array, ctx: RequestContext) => ({
      data: `m${i}:${dec(d)}`,
      headers: { member: `m${i}`, got: ctx.headers?.q ?? '' },
    })
    const { caller, ids } = await threeMembers([h(0), h(1), h(2)])
    const replies = await collect(caller.requestMany('many', 'x', { headers: { q: 'yes' } }))
    expect(replies.map((r) => r.string()).sort()).toEqual(['m0:x', 'm1:x', 'm2:x'])
    expect(replies.map((r) => r.from).sort()).toEqual([...ids].sort())
    for (const r of replies) {
      expect(r.error).toBeUndefined()
      expect(r.headers).toEqual({ member: r.string().slice(0, 2), got: 'yes' })
    }
  })

  it('maxReplies 2 ends after two replies and cancels the third', async () => {
    const cancelled: string[] = []
    const slow = (name: string) => async (_d: Uint8Array, ctx: RequestContext) => {
      await aborted(ctx.signal)
      cancelled.push(name)
      return 'late'
    }
    const { caller } = await threeMembers([() => 'fast0', () => 'fast1', slow('m2')])
    const t0 = Date.now()
    const replies = await collect(caller.requestMany('many', 'x', { maxReplies: 2, timeout: 5000 }))
    expect(replies.map((r) => r.string()).sort()).toEqual(['fast0', 'fast1'])
    expect(Date.now() - t0).toBeLessThan(2000)
    await expect.poll(() => cancelled, { timeout: 2000 }).toEqual(['m2'])
  })

  it('a slow member: the timeout ends the iteration with what came, no error', async () => {
    const { caller } = await threeMembers([
      () => 'a',
      () => 'b',
      async (_d, ctx) => {
        await aborted(ctx.signal)
        return 'too late'
      },
    ])
    const t0 = Date.now()
    const replies = await collect(caller.requestMany('many', 'x', { timeout: 600 }))
    const took = Date.now() - t0
    expect(replies.map((r) => r.string()).sort()).toEqual(['a', 'b'])
    expect(took).toBeGreaterThanOrEqual(550)
    expect(took).toBeLessThan(3000)
  })

  it('a member that throws yields an item with RemoteError, which does not count towards maxReplies', async () => {
    // The good members answer 200 ms late, so the error is in first: if both good replies came
    // before it, maxReplies would end the loop and cancel the broken member's request.
    const late = (s: string) => () => new Promise<string>((r) => setTimeout(() => r(s), 200))
    const { caller, ids } = await threeMembers([
      late('ok0'),
      () => {
        throw new Error('broken member')
      },
      late('ok2'),
    ])
    const replies = await collect(caller.requestMany('many', 'x', { maxReplies: 2 }))
    expect(replies).toHaveLength(3)
    const bad = replies.find((r) => r.error)!
    expect(bad.error).toBeInstanceOf(RemoteError)
    expect(bad.error!.message).toMatch(/broken member/)
    expect(bad.from).toBe(ids[1])
    expect(bad.data.length).toBe(0)
    expect(
      replies
        .filter((r) => !r.error)
        .map((r) => r.string())
        .sort(),
    ).toEqual(['ok0', 'ok2'])
  })

  it('breaking out of the loop cancels the requests still running', async () => {
    const cancelled: string[] = []
    const slow = (name: string) => async (_d: Uint8Array, ctx: RequestContext) => {
      await aborted(ctx.signal)
      cancelled.push(name)
      return 'late'
    }
    const { caller } = await threeMembers([() => 'first', slow('m1'), slow('m2')])
    for await (const r of caller.requestMany('many', 'x', { timeout: 10_000 })) {
      expect(r.string()).toBe('first')
      break
    }
    await expect.poll(() => [...cancelled].sort(), { timeout: 2000 }).toEqual(['m1', 'm2'])
  })

  it('aborting the signal ends it with AbortedError; no member serving requests: NoMembersError', async () => {
    const { caller } = await threeMembers([
      () => 'now',
      async (_d, ctx) => aborted(ctx.signal).then(() => 'x'),
      async (_d, ctx) => aborted(ctx.signal).then(() => 'x'),
    ])
    const ac = new AbortController()
    const got: string[] = []
    const run = (async () => {
      for await (const r of caller.requestMany('many', 'x', { signal: ac.signal })) {
        got.push(r.string())
        ac.abort()
      }
    })()
    await expect(run).rejects.toBeInstanceOf(AbortedError)
    expect(got).toEqual(['now'])
    const [lone] = await startNodes(1)
    await lone!.join('nobody', { key: generateKey() })
    await expect(collect(lone!.requestMany('nobody', 'x', { timeout: 8000 }))).rejects.toBeInstanceOf(
      NoMembersError,
    )
  })
})
