import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, type Message } from '../src/index.js'
import { startNodes, waitFor } from './helpers/nodes.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** Publishes until `cond` holds (interest takes a moment to reach the publisher). */
async function publishUntil(pub: () => Promise<unknown>, cond: () => boolean, ms = 2000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('interest never reached the publisher')
    await pub()
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('pub/sub', () => {
  it('delivers to every matching subscriber across nodes, with wildcards, once each, in order', async () => {
    const [pubNode, a, b] = await startNodes(3)
    const gotStar: Message[] = []
    const gotTail: Message[] = []
    const gotOther: Message[] = []
    a.subscribe('orders.*', (m) => void gotStar.push(m))
    b.subscribe('orders.>', (m) => void gotTail.push(m))
    b.subscribe('billing.*', (m) => void gotOther.push(m))
    await publishUntil(
      () => pubNode.publish('orders.warmup', 'w'),
      () => gotStar.length > 0 && gotTail.length > 0,
    )
    gotStar.length = 0
    gotTail.length = 0
    for (let i = 0; i < 500; i++) await pubNode.publish('orders.eu', String(i))
    await pubNode.publish('orders.eu.created', 'deep', { key: 'k1', headers: { h: 'v' } })
    await waitFor(() => gotTail.length === 501 && gotStar.length === 500)
    expect(gotStar.map((m) => dec(m.data))).toEqual(Array.from({ length: 500 }, (_, i) => String(i)))
    expect(gotTail.map((m) => dec(m.data)).slice(0, 500)).toEqual(
      Array.from({ length: 500 }, (_, i) => String(i)),
    )
    const last = gotTail[500]!
    expect(last.topic).toBe('orders.eu.created')
    expect(dec(last.key!)).toBe('k1')
    expect(last.headers).toEqual({ h: 'v' })
    expect(last.from).toBe(pubNode.id)
    expect(gotOther).toEqual([])
  })

  it('delivers every byte intact and in order under load', async () => {
    const [pubNode, a, b] = await startNodes(3)
    const body = (i: number) => {
      const m = new Uint8Array(200 + ((i * 7919) % 2800))
      new DataView(m.buffer).setUint32(0, i)
      for (let j = 4; j < m.length; j++) m[j] = (i * 31 + j) & 0xff
      return m
    }
    const n = 20_000
    const bad: string[] = []
    const check = (got: number[], who: string) => (m: Message) => {
      const i = new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength).getUint32(0)
      if (i === 0xffffffff) return // warm-up
      const want = body(i)
      if (i !== got.length || m.data.length !== want.length || !want.every((v, j) => m.data[j] === v)) {
        bad.push(`${who}: message ${i} at ${got.length}`)
      }
      got.push(i)
    }
    const gotA: number[] = []
    const gotB: number[] = []
    a.subscribe('load.x', check(gotA, 'a'))
    b.subscribe('load.>', check(gotB, 'b'))
    const warm = new Uint8Array(8).fill(0xff)
    let warmA = false
    let warmB = false
    a.subscribe('load.x', () => void (warmA = true))
    b.subscribe('load.x', () => void (warmB = true))
    await publishUntil(
      () => pubNode.publish('load.x', warm),
      () => warmA && warmB,
    )
    for (let i = 0; i < n; i++) await pubNode.publish('load.x', body(i))
    await waitFor(() => gotA.length === n && gotB.length === n, 20_000, 'all messages')
    expect(bad.slice(0, 5)).toEqual([])
  }, 60_000)

  it('works as an AsyncIterable, and a local subscriber receives local publishes', async () => {
    const [n] = await startNodes(1)
    const sub = n.subscribe('t.>')
    for (let i = 0; i < 3; i++) await n.publish(`t.${i}`, `m${i}`)
    const got: string[] = []
    for await (const m of sub) {
      got.push(`${m.topic}=${dec(m.data)}`)
      if (got.length === 3) break
    }
    expect(got).toEqual(['t.0=m0', 't.1=m1', 't.2=m2'])
    // Breaking out unsubscribed.
    expect(n.status().counters['pubsub.subscriptions']).toBe(0)
  })

  it('withdraws interest on unsubscribe: the publisher stops sending', async () => {
    const [p, s] = await startNodes(2)
    const got: string[] = []
    const sub = s.subscribe('x', (m) => void got.push(dec(m.data)))
    await publishUntil(
      () => p.publish('x', 'hello'),
      () => got.length > 0,
    )
    sub.unsubscribe()
    await new Promise((r) => setTimeout(r, 200))
    const before = got.length
    const unwantedBefore = s.status().counters['pubsub.unwanted'] ?? 0
    for (let i = 0; i < 20; i++) await p.publish('x', 'after')
    await new Promise((r) => setTimeout(r, 200))
    expect(got.length).toBe(before)
    expect(s.status().counters['pubsub.unwanted'] ?? 0).toBe(unwantedBefore)
  })

  it("a subscriber's death withdraws its interest at the publisher", async () => {
    const [p, s] = await startNodes(2)
    s.subscribe('gone.*', () => {})
    await waitFor(() => p.status().counters['pubsub.peerPatterns'] === 1, 2000, 'interest at the publisher')
    await s.stop()
    await waitFor(() => p.status().counters['pubsub.peerPatterns'] === 0, 5000, 'interest withdrawn')
    await p.publish('gone.x', 'nobody')
  })

  it('interest reaches a publisher within 2 s of subscribe', async () => {
    const [p, s] = await startNodes(2)
    await waitFor(() => p.status().peers.length === 1)
    const got: string[] = []
    const start = Date.now()
    s.subscribe('fast', (m) => void got.push(dec(m.data)))
    await publishUntil(
      () => p.publish('fast', 'x'),
      () => got.length > 0,
      2000,
    )
    expect(Date.now() - start).toBeLessThan(2000)
  })

  it('a slow iterator drops new messages beyond its bound and counts them', async () => {
    const [n] = await startNodes(1)
    const sub = n.subscribe('flood')
    const total = 70_000
    for (let i = 0; i < total; i++) await n.publish('flood', 'x')
    expect(sub.received).toBe(65_536)
    expect(sub.dropped).toBe(total - 65_536)
    expect(n.status().counters['pubsub.queueDropped']).toBe(total - 65_536)
    sub.unsubscribe()
  })

  it('bad input: wildcard publish, bad patterns, handler and iteration together', async () => {
    const [n] = await startNodes(1)
    await expect(n.publish('orders.*', 'x')).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(n.publish('orders.>', 'x')).rejects.toThrow(/topic/)
    await expect(n.publish('a..b', 'x')).rejects.toThrow(/topic/)
    await expect(n.publish('a', 5 as never)).rejects.toThrow(/data/)
    await expect(n.publish('a', 'x', { headers: { a: 1 as never } })).rejects.toThrow(/headers.a/)
    await expect(n.publish('a', 'x', { ack: 'maybe' as never })).rejects.toThrow(/options.ack/)
    expect(() => n.subscribe('a..b')).toThrow(/pattern/)
    expect(() => n.subscribe('a', 'nope' as never)).toThrow(/handler/)
    const sub = n.subscribe('a', () => {})
    expect(() => sub[Symbol.asyncIterator]()).toThrow(/handler/)
    const it2 = n.subscribe('b')
    it2[Symbol.asyncIterator]()
    expect(() => it2[Symbol.asyncIterator]()).toThrow(/already/)
  })
})
