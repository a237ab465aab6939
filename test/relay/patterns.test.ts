/**
 * Broadcast and pub/sub through the relay with real nodes: a thin client broadcasting to
 * library members and receiving broadcasts as a member (under its broadcasts limit),
 * subscribing with wildcards to messages published by a library node and publishing to
 * library subscribers, and the relay's bounded per-subscription queue dropping (and
 * reporting) messages for a client that does not read.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient, type RelayServer, startRelay } from '../../relay/index.js'
import { Op } from '../../relay/wire/protocol.js'
import { decodeMessage, encodeSubscribe } from '../../relay/wire/protocol-ext.js'
import {
  generateKey,
  InvalidArgumentError,
  type Message,
  type PlexusNode,
  StreamNotFoundError,
} from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)
const clients: RelayClient[] = []
const relays: RelayServer[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await Promise.all(relays.splice(0).map((r) => r.close()))
})

async function setup(n = 1): Promise<{ a: PlexusNode; others: PlexusNode[]; client: RelayClient }> {
  const network = uniqueNetwork('relayx')
  const [a, ...others] = await Promise.all(
    Array.from({ length: n + 1 }, (_, i) =>
      startNode(i === 0 ? { network, relay: { port: 0 } } : { network }),
    ),
  )
  const client = await connectRelay({ address: a!.relayAddress! })
  clients.push(client)
  return { a: a!, others, client }
}

/** Publishes until `cond` holds (interest takes a moment to reach the publisher). */
async function publishUntil(pub: () => Promise<unknown>, cond: () => boolean, ms = 4000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('interest never reached the publisher')
    await pub()
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('relay broadcast', () => {
  it('reaches library members and a thin-client member once each, both ways', async () => {
    const { a, others, client } = await setup(2)
    const [b, c] = others as [PlexusNode, PlexusNode]
    const key = generateKey()
    const got = new Map<string, string[]>([
      ['b', []],
      ['c', []],
      ['thin', []],
    ])
    await b.join('room', { key, onBroadcast: (d) => void got.get('b')!.push(dec(d)) })
    await c.join('room', { key, onBroadcast: (d) => void got.get('c')!.push(dec(d)) })
    const froms: string[] = []
    await client.join('room', {
      key,
      onBroadcast: async (d, ctx) => {
        expect(ctx.cluster).toBe('room')
        froms.push(ctx.from)
        got.get('thin')!.push(dec(d))
      },
    })
    await waitForMembers(a, 'room', 3)
    await waitForMembers(b, 'room', 3)
    for (let i = 0; i < 20; i++) expect(await client.broadcast('room', `t${i}`)).toBeGreaterThanOrEqual(2)
    for (let i = 0; i < 20; i++) await b.broadcast('room', `b${i}`)
    const want = [
      ...Array.from({ length: 20 }, (_, i) => `t${i}`),
      ...Array.from({ length: 20 }, (_, i) => `b${i}`),
    ]
    await waitFor(() => [...got.values()].every((g) => g.length === 40), 5000, 'all broadcasts delivered')
    await new Promise((r) => setTimeout(r, 100))
    for (const g of got.values()) expect([...g].sort()).toEqual([...want].sort())
    expect(froms.filter((f) => f === b.id).length).toBe(20)
    // Bad input is named.
    await expect(client.broadcast('bad name', 'x')).rejects.toThrow(InvalidArgumentError)
    await expect(client.broadcast('room', 5 as never)).rejects.toThrow(/data/)
  })

  it("respects the join's broadcasts limit: a busy thin handler makes the node drop and count", async () => {
    const { a, others, client } = await setup(1)
    const b = others[0]!
    const release: Array<() => void> = []
    await client.join('lim', {
      key: generateKey(),
      limits: { broadcasts: 2 },
      onBroadcast: () => new Promise<void>((r) => release.push(r)),
    })
    await waitForMembers(b, 'lim', 1)
    for (let i = 0; i < 5; i++) await b.broadcast('lim', 'x')
    await waitFor(() => (a.status().counters['broadcasts.dropped'] ?? 0) === 3, 3000, '3 drops')
    await waitFor(() => release.length === 2)
    for (const r of release.splice(0)) r()
    // Once the handlers finished (BROADCAST_ACK), deliveries flow again.
    await new Promise((r) => setTimeout(r, 50))
    await b.broadcast('lim', 'again')
    await waitFor(() => release.length === 1, 3000, 'delivery after ack')
    release[0]!()
  })
})

describe('relay pub/sub', () => {
  it('a thin subscriber gets what a library node publishes, wildcards included', async () => {
    const { others, client } = await setup(1)
    const b = others[0]!
    const star: Message[] = []
    client.subscribe('orders.*', (m) => void star.push(m))
    const tail = client.subscribe('orders.>')
    const tailGot: Message[] = []
    const reading = (async () => {
      for await (const m of tail) {
        tailGot.push(m)
        if (m.topic === 'orders.end') break
      }
    })()
    await tail.ready
    await publishUntil(
      () => b.publish('orders.warmup', 'w'),
      () => star.length > 0 && tailGot.length > 0,
    )
    star.length = 0
    tailGot.length = 0
    for (let i = 0; i < 200; i++) await b.publish('orders.eu', `${i}`)
    await b.publish('orders.eu.created', 'deep', { key: 'k1', headers: { h: 'v' } })
    await b.publish('billing.eu', 'never')
    await b.publish('orders', 'never')
    await b.publish('orders.end', 'end')
    await reading
    await waitFor(() => star.length === 201)
    expect(star.slice(0, 200).map((m) => dec(m.data))).toEqual(Array.from({ length: 200 }, (_, i) => `${i}`))
    expect(star[200]!.topic).toBe('orders.end')
    expect(tailGot.map((m) => m.topic).filter((t) => t !== 'orders.eu')).toEqual([
      'orders.eu.created',
      'orders.end',
    ])
    const deep = tailGot.find((m) => m.topic === 'orders.eu.created')!
    expect(dec(deep.key!)).toBe('k1')
    expect(deep.headers).toEqual({ h: 'v' })
    expect(deep.from).toBe(b.id)
    expect(tailGot.length).toBe(202)
    expect(tail.dropped).toBe(0)
    // Breaking out unsubscribed at the relay too.
    await waitFor(async () => (await client.status()).counters['pubsub.subscriptions'] === 1)
  })

  it('a library subscriber gets what a thin client publishes; bad input and ack errors are named', async () => {
    const { others, client } = await setup(1)
    const b = others[0]!
    const star: string[] = []
    const tail: Message[] = []
    b.subscribe('orders.*', (m) => void star.push(m.topic))
    b.subscribe('orders.>', (m) => void tail.push(m))
    await publishUntil(
      () => client.publish('orders.warmup', 'w'),
      () => star.length > 0 && tail.length > 0,
    )
    star.length = 0
    tail.length = 0
    for (let i = 0; i < 100; i++) expect(await client.publish('orders.eu', `${i}`)).toBeUndefined()
    await client.publish('orders.eu.created', 'deep', { key: new Uint8Array([1, 2]), headers: { a: 'b' } })
    await waitFor(() => tail.length === 101)
    expect(star.length).toBe(100)
    expect(tail.slice(0, 100).map((m) => dec(m.data))).toEqual(Array.from({ length: 100 }, (_, i) => `${i}`))
    expect(tail[100]).toMatchObject({ topic: 'orders.eu.created', headers: { a: 'b' }, from: client.id })
    expect([...tail[100]!.key!]).toEqual([1, 2])
    await expect(client.publish('orders.*', 'x')).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(client.publish('a..b', 'x')).rejects.toThrow(/topic/)
    await expect(client.publish('a', 'x', { headers: { a: 1 as never } })).rejects.toThrow(/headers.a/)
    await expect(client.publish('a', 'x', { ack: 'maybe' as never })).rejects.toThrow(/options.ack/)
    await expect(client.publish('a', 'x', { ack: 'all' })).rejects.toBeInstanceOf(StreamNotFoundError)
    expect(() => client.subscribe('a..b')).toThrow(/pattern/)
    expect(() => client.subscribe('a', 'nope' as never)).toThrow(/handler/)
    const withHandler = client.subscribe('a', () => {})
    expect(() => withHandler[Symbol.asyncIterator]()).toThrow(/handler/)
    withHandler.unsubscribe()
  })

  it('drops and counts for a client that does not read, reporting drops in MESSAGE', async () => {
    const network = uniqueNetwork('relayx')
    const a = await startNode({ network })
    const relay = await startRelay(a, { host: '127.0.0.1', port: 0 })
    relays.push(relay)
    const raw = await RawPeer.open(relay.address)
    raw.hello()
    expect((await raw.next()).opcode).toBe(Op.Welcome)
    raw.send(Op.Subscribe, 1, (w) => encodeSubscribe(w, { subId: 9, pattern: 'flood', maxPending: 100 }))
    expect(await raw.next()).toMatchObject({ opcode: Op.Ok, id: 1 })
    raw.socket.pause()
    const data = new Uint8Array(1024)
    const total = 20_000
    for (let i = 0; i < total; i++) await a.publish('flood', data)
    const st = relay.stats()
    expect(st.subscriptions).toBe(1)
    expect(st.subscriptionDrops).toBeGreaterThan(0)
    expect(st.subscriptionQueuedBytes).toBeLessThanOrEqual(100 * (1024 + 64 + 5))
    raw.socket.resume()
    let received = 0
    let dropped = 0
    const drain = async (until: number) => {
      while (received + dropped < until) {
        const f = await raw.next(5000)
        expect(f).toMatchObject({ opcode: Op.Message, id: 9 })
        const m = decodeMessage(f.body, 1 << 20)
        received++
        dropped += m.dropped
      }
    }
    await drain(total - st.subscriptionDrops)
    // The drops after the last queued message are reported with the next one.
    await a.publish('flood', data)
    await drain(total + 1)
    expect(received + dropped).toBe(total + 1)
    expect(dropped).toBe(relay.stats().subscriptionDrops)
    raw.destroy()
    await waitFor(() => relay.stats().subscriptions === 0)
    expect(a.status().counters['pubsub.subscriptions']).toBe(0)
  })
})
