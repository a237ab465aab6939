import { describe, expect, it } from 'vitest'
import { AbortedError, OverloadedError, TimeoutError } from '../../src/errors.js'
import { FrameType } from '../../src/link/frames.js'
import { PeerRpc, type RpcHost, type RpcLimits } from '../../src/rpc/rpc.js'
import { BinaryReader, BinaryWriter } from '../../src/util/binary.js'

/** Two PeerRpc instances wired to each other through encoded frames, delivered asynchronously. */
function pair(limits: RpcLimits = {}) {
  const counts: Record<string, number> = {}
  const nodes = new Map<string, PeerRpc>()
  const host = (self: string): RpcHost => ({
    self,
    count: (n) => {
      counts[n] = (counts[n] ?? 0) + 1
    },
    sendTo: (peer, encode) => {
      const w = new BinaryWriter(256)
      encode(w)
      const frame = w.finish().slice()
      setImmediate(() => {
        const r = new BinaryReader(frame)
        r.u32('length')
        const type = r.u8('type')
        const target = nodes.get(peer)!
        if (type === FrameType.RpcCall) target.onCall(self, r)
        else if (type === FrameType.RpcReply) target.onReply(self, r)
      })
    },
  })
  const a = new PeerRpc(host('a'), limits)
  const b = new PeerRpc(host('b'), limits)
  const c = new PeerRpc(host('c'), limits)
  nodes.set('a', a)
  nodes.set('b', b)
  nodes.set('c', c)
  return { a, b, c, counts }
}

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (u: Uint8Array) => new TextDecoder().decode(u)

describe('PeerRpc', () => {
  it('answers synchronous and asynchronous handlers, and carries errors by name', async () => {
    const { a, b } = pair()
    b.handle('echo', (body) => body)
    b.handle('later', async (body) => bytes(`${text(body)}!`))
    b.handle('fail', () => {
      throw new TimeoutError('nope')
    })
    expect(text(await a.call('b', 'echo', bytes('x'), { timeout: 1000 }))).toBe('x')
    expect(text(await a.call('b', 'later', bytes('y'), { timeout: 1000 }))).toBe('y!')
    await expect(a.call('b', 'fail', bytes(''), { timeout: 1000 })).rejects.toBeInstanceOf(TimeoutError)
  })

  it('many calls share one abort listener per signal; aborting rejects those still pending', async () => {
    const { a, b } = pair()
    const waiting: Array<() => void> = []
    b.handle('quick', (body) => body)
    b.handle('hang', () => new Promise<Uint8Array>((r) => waiting.push(() => r(bytes('late')))))
    const ac = new AbortController()
    const added: string[] = []
    const addEventListener = ac.signal.addEventListener.bind(ac.signal)
    ac.signal.addEventListener = ((
      type: string,
      listener: Parameters<AbortSignal['addEventListener']>[1],
      options?: Parameters<AbortSignal['addEventListener']>[2],
    ) => {
      added.push(type)
      return addEventListener(type, listener, options)
    }) as typeof ac.signal.addEventListener
    const quick = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        a.call('b', 'quick', bytes(`${i}`), { timeout: 1000, signal: ac.signal }),
      ),
    )
    expect(quick.map(text)).toEqual(Array.from({ length: 50 }, (_, i) => `${i}`))
    const hanging = Array.from({ length: 5 }, () =>
      a.call('b', 'hang', bytes(''), { timeout: 5000, signal: ac.signal }).catch((e) => e),
    )
    await new Promise((r) => setTimeout(r, 10))
    ac.abort()
    for (const e of await Promise.all(hanging)) expect(e).toBeInstanceOf(AbortedError)
    expect(added).toEqual(['abort']) // one listener for all 55 calls
    for (const w of waiting) w() // replies after the abort are dropped
    await expect(
      a.call('b', 'quick', bytes(''), { timeout: 1000, signal: ac.signal }),
    ).rejects.toBeInstanceOf(AbortedError)
  })

  it("a handler's signal aborts at the call's deadline, and only handlers that ask get one", async () => {
    const { a, b } = pair()
    let aborted: Promise<void> | undefined
    b.handle('watch', (_body, ctx) => {
      aborted = new Promise((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }))
      return new Promise<Uint8Array>(() => {}) // never answers
    })
    b.handle('plain', (body) => body)
    const err = await a.call('b', 'watch', bytes(''), { timeout: 50 }).catch((e) => e)
    expect(err).toBeInstanceOf(TimeoutError)
    await aborted // the handler was told its caller gave up
    expect(text(await a.call('b', 'plain', bytes('ok'), { timeout: 1000 }))).toBe('ok')
  })

  it('close aborts running handlers that hold a signal and rejects pending calls', async () => {
    const { a, b } = pair()
    let signal: AbortSignal | undefined
    b.handle('hold', (_body, ctx) => {
      signal = ctx.signal
      return new Promise<Uint8Array>(() => {})
    })
    const p = a.call('b', 'hold', bytes(''), { timeout: 5000 }).catch((e) => e)
    await new Promise((r) => setTimeout(r, 10))
    b.close()
    expect(signal?.aborted).toBe(true)
    a.close()
    expect(await p).toBeInstanceOf(AbortedError)
  })

  it('calls to itself run in process', async () => {
    const { a } = pair()
    a.handle('self', (body) => bytes(`${text(body)}:self`))
    expect(text(await a.call('a', 'self', bytes('me'), { timeout: 1000 }))).toBe('me:self')
  })

  it('one caller fills only its share; its handlers are told the moment it goes', async () => {
    const { a, b, c, counts } = pair({ maxConcurrent: 6, maxPerPeer: 4 })
    const signals: AbortSignal[] = []
    b.handle('poll', (_body, ctx) => {
      signals.push(ctx.signal)
      return new Promise<Uint8Array>((resolve) =>
        ctx.signal.addEventListener('abort', () => resolve(bytes('ended')), { once: true }),
      )
    })
    b.handle('echo', (body) => body)
    const polls = Array.from({ length: 6 }, () =>
      a.call('b', 'poll', bytes(''), { timeout: 5000 }).catch((e) => e),
    )
    const refused = await Promise.all(polls.slice(4))
    for (const e of refused) expect(e).toBeInstanceOf(OverloadedError)
    expect(counts['rpc.refused.peerLimit']).toBe(2)
    expect(b.stats()).toEqual({ serving: 4, servingPeers: 1 })
    // Another caller is served meanwhile, up to the total.
    expect(text(await c.call('b', 'echo', bytes('c'), { timeout: 1000 }))).toBe('c')
    const cPolls = Array.from({ length: 3 }, () =>
      c.call('b', 'poll', bytes(''), { timeout: 5000 }).catch((e) => e),
    )
    expect(await cPolls[2]).toBeInstanceOf(OverloadedError)
    expect(counts['rpc.refused.total']).toBe(1)
    // a goes away: its handlers' signals abort at once and its slots are free.
    b.onPeerGone('a')
    expect(signals.slice(0, 4).every((s) => s.aborted)).toBe(true)
    for (const r of await Promise.all(polls.slice(0, 4))) expect(text(r)).toBe('ended')
    expect(b.stats()).toEqual({ serving: 2, servingPeers: 1 })
    b.onPeerGone('c')
    await Promise.all(cPolls.slice(0, 2))
    expect(b.stats()).toEqual({ serving: 0, servingPeers: 0 })
  })

  it("a handler's signal aborts by maxServeMs whatever deadline the caller sent", async () => {
    const { a, b } = pair({ maxServeMs: 50 })
    b.handle('poll', (_body, ctx) => {
      const started = Date.now()
      return new Promise<Uint8Array>((resolve) =>
        ctx.signal.addEventListener('abort', () => resolve(bytes(`${Date.now() - started}`)), { once: true }),
      )
    })
    const waited = Number(text(await a.call('b', 'poll', bytes(''), { timeout: 60_000 })))
    expect(waited).toBeGreaterThanOrEqual(40)
    expect(waited).toBeLessThan(1000)
  })
})
