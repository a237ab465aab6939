import { describe, expect, it } from 'vitest'
import { CONSUMER_LIMITS, connectRelay, type RelayConsumer } from '../../relay/index.js'
import { decodeError, Op } from '../../relay/wire/protocol.js'
import { encodeConsume } from '../../relay/wire/protocol-streams.js'
import type { StreamMessage } from '../../src/index.js'
import { cleanedAfterEach } from '../helpers/cleanup.js'
import { waitFor } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const { storageRelay } = cleanedAfterEach()

const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** Three members of `db` with data directories, a relay on the first, a thin client on it. */
const setup = () => storageRelay('rstream')

/** Reads `n` messages from `c`, then closes it. */
async function take(c: RelayConsumer, n: number): Promise<StreamMessage[]> {
  const got: StreamMessage[] = []
  if (n === 0) return got
  for await (const m of c) {
    got.push(m)
    if (got.length === n) break
  }
  return got
}

describe('durable streams through the relay', () => {
  it('a durable consumer through the relay resumes after its acks, with delivery counts', async () => {
    const { client } = await setup()
    await client.streams.create('dur', { cluster: 'db', subject: 'dur.>', replicas: 3 })
    for (let i = 0; i < 12; i++) await client.publish('dur.x', `d${i}`, { ack: 'all' })
    const once = await client.publish('dur.x', 'only once', { ack: 'all', msgId: 'm-1' })
    const twice = await client.publish('dur.x', 'only once', { ack: 'all', msgId: 'm-1' })
    expect(once).toMatchObject({ offset: 12 })
    expect(twice).toEqual({ ...once, duplicate: true })
    const c1 = client.consume('dur', { durable: 'relayed', ackWait: 60_000 })
    const first: StreamMessage[] = []
    for await (const m of c1) {
      first.push(m)
      expect(m.deliveryCount).toBe(1)
      if (first.length <= 5) await m.ack()
      if (first.length === 7) break // 5 acked, 2 delivered but not acked
    }
    const rest = await take(client.consume('dur', { durable: 'relayed' }), 8)
    expect(rest.map((m) => m.offset)).toEqual([5, 6, 7, 8, 9, 10, 11, 12])
    expect(text(rest[0]!.data)).toBe('d5')
  }, 60_000)

  it('create, info, list, publish with acks, consume, delete', async () => {
    const { members, relay, client } = await setup()
    const info = await client.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 3 })
    expect(info).toMatchObject({
      name: 'orders',
      cluster: 'db',
      subject: 'orders.>',
      replicas: 3,
      compact: false,
    })
    expect(info.partitions).toHaveLength(1)
    expect(new Set(info.partitions[0]!.replicas)).toEqual(new Set(members.map((m) => m.id)))
    // The same configuration again resolves to the same stream.
    expect(
      (await client.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 3 })).name,
    ).toBe('orders')
    const listed = await client.streams.list()
    expect(listed).toMatchObject([
      {
        name: 'orders',
        cluster: 'db',
        subject: 'orders.>',
        partitions: 1,
        replicas: 3,
        retention: {},
        compact: false,
        duplicateWindow: 120_000,
        access: { publish: 'open', consume: 'open' },
      },
    ])
    expect(listed[0]!.placement.map((p) => [p.partition, p.replicas])).toEqual([
      [0, info.partitions[0]!.replicas],
    ])
    expect(members.map((m) => m.id)).toContain(listed[0]!.metadataLeader)

    const acks = []
    for (let i = 0; i < 20; i++) {
      acks.push(
        await client.publish(`orders.eu.${i % 3}`, `m${i}`, {
          ack: 'all',
          key: `k${i % 4}`,
          headers: { n: String(i) },
          msgId: `id-${i}`,
          timeout: 10_000,
        }),
      )
    }
    expect(acks.map((a) => a!.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(acks[0]).toEqual({ stream: 'orders', partition: 0, offset: 0 })
    // The relay node routed those publishes: list() now names the partition leader it reached.
    const leader = (await client.streams.info('orders')).partitions[0]!.leader
    expect((await client.streams.list())[0]!.placement[0]!.leader).toBe(leader)
    expect(await client.publish('orders.us', 'last', { ack: 'leader' })).toEqual({
      stream: 'orders',
      partition: 0,
      offset: 20,
    })

    const all = await take(client.consume('orders', { from: 'earliest' }), 21)
    expect(all.map((m) => m.offset)).toEqual(Array.from({ length: 21 }, (_, i) => i))
    expect(all.map((m) => text(m.data))).toEqual([...Array.from({ length: 20 }, (_, i) => `m${i}`), 'last'])
    expect(all[4]).toMatchObject({
      stream: 'orders',
      topic: 'orders.eu.1',
      partition: 0,
      headers: { n: '4' },
    })
    expect(text(all[4]!.key!)).toBe('k0')
    expect(all[20]!.key).toBeUndefined()
    expect(all[20]!.timestamp).toBeGreaterThan(Date.now() - 60_000)
    await all[0]!.ack() // not durable: a no-op

    const fromOffset = await take(client.consume('orders', { from: { offset: 15 }, partition: 0 }), 6)
    expect(fromOffset.map((m) => m.offset)).toEqual([15, 16, 17, 18, 19, 20])
    const latest = await take(client.consume('orders', { from: 'latest' }), 1)
    expect(latest.map((m) => [m.offset, text(m.data)])).toEqual([[20, 'last']])

    const i2 = await client.streams.info('orders')
    expect(i2.partitions[0]!.leader).not.toBeNull()
    expect(i2.partitions[0]!.nextOffset).toBe(21)
    await waitFor(
      async () => (await client.streams.info('orders')).partitions[0]!.inSync.length === 3,
      10_000,
      'all replicas in sync',
    )
    // Every consumer closed above (breaking out of for await) is gone from the relay.
    await waitFor(() => relay.stats().consumers.length === 0, 5000, 'consumers closed on the relay')

    // Purge by key through the relay, the key as bytes (sent as keyBase64): k1's messages go.
    expect(await client.streams.purge('orders', { key: new TextEncoder().encode('k1') })).toEqual([
      { partition: 0, firstOffset: 0 },
    ])
    expect(text((await client.streams.last('orders', { key: 'k2' })).data)).toBe('m18')
    await expect(client.streams.last('orders', { key: 'k1' })).rejects.toMatchObject({
      name: 'MessageNotFoundError',
    })
    await expect(client.streams.purge('orders', { key: '' })).rejects.toMatchObject({
      name: 'InvalidArgumentError',
    })

    await client.streams.delete('orders')
    await expect(client.streams.info('orders', { timeout: 3000 })).rejects.toMatchObject({
      name: 'StreamNotFoundError',
    })
    await expect(client.streams.delete('orders', { timeout: 3000 })).rejects.toMatchObject({
      name: 'StreamNotFoundError',
    })
    expect(await client.streams.list()).toEqual([])
  }, 90_000)

  it('consumers tail live, over partitions, and close by close(), signal and disconnect', async () => {
    const { relay, client } = await setup()
    await client.streams.create('ev', { cluster: 'db', subject: 'ev.*', replicas: 3, partitions: 2 })
    for (let i = 0; i < 4; i++) await client.publish('ev.old', `old${i}`, { ack: 'all', key: `o${i}` })

    // 'new': nothing published before it started. Publish until it sees one (no sleeping).
    const fresh = client.consume('ev', { from: 'new' })
    await fresh.ready
    const it = fresh[Symbol.asyncIterator]()
    const first = it.next()
    let sent = 0
    let seen: IteratorResult<StreamMessage> | undefined
    first.then((r) => {
      seen = r
    })
    await waitFor(
      async () => {
        if (seen) return true
        await client.publish('ev.new', `new${sent++}`, { ack: 'all', key: `n${sent}` })
        return seen !== undefined
      },
      20_000,
      'a new message',
    )
    expect(text(seen!.value.data)).toMatch(/^new\d+$/)

    // Every partition is read; keys spread messages over both.
    const everything = await take(client.consume('ev'), 4 + sent)
    expect(new Set(everything.map((m) => m.partition))).toEqual(new Set([0, 1]))
    expect(everything.filter((m) => text(m.data).startsWith('old'))).toHaveLength(4)

    // close() ends a pending read at once and frees the relay side.
    const tail = client.consume('ev', { from: 'new' })
    await tail.ready
    const pending = tail[Symbol.asyncIterator]().next()
    await waitFor(
      () => relay.stats().consumers.some((c) => c.stream === 'ev' && c.sent === 0),
      5000,
      'tail open',
    )
    tail.close()
    expect(await pending).toEqual({ value: undefined, done: true })
    await it.return!()

    // An aborted signal ends the iteration too.
    const ac = new AbortController()
    const bySignal = client.consume('ev', { from: 'new', signal: ac.signal })
    await bySignal.ready
    const waiting = bySignal[Symbol.asyncIterator]().next()
    ac.abort()
    expect((await waiting).done).toBe(true)
    await waitFor(() => relay.stats().consumers.length === 0, 5000, 'consumers closed on the relay')

    // A client that goes away takes its consumers with it.
    const other = await connectRelay({ address: relay.address })
    const gone = other.consume('ev', { from: 'earliest' })
    await gone.ready
    await waitFor(() => relay.stats().consumers.length === 1, 5000, 'consumer open')
    await other.close()
    await expect(gone[Symbol.asyncIterator]().next()).rejects.toMatchObject({ name: 'AbortedError' })
    await waitFor(() => relay.stats().consumers.length === 0, 5000, 'consumer closed after disconnect')
  }, 90_000)

  it('credit bounds what the relay sends to a client that does not read', async () => {
    const { relay, client } = await setup()
    await client.streams.create('big', { cluster: 'db', subject: 'big', replicas: 3 })
    const payload = new Uint8Array(200 * 1024).fill(7)
    const total = 30 // 6 MB: three times the client's window
    await Promise.all(
      Array.from({ length: total }, (_, i) => client.publish('big', payload, { ack: 'all', key: `${i}` })),
    )
    const c = client.consume('big', { from: 'earliest' })
    await c.ready
    // The iterator is taken (CONSUME_START: the relay pushes) but nobody reads: the relay
    // sends until the window is used up, then holds one message.
    const it = c[Symbol.asyncIterator]()
    await waitFor(
      () => relay.stats().consumers.some((s) => s.held > 0),
      20_000,
      'the relay holding a message it has no credit for',
    )
    const s = relay.stats().consumers[0]!
    const cost = payload.length + 64
    expect(s.sent * payload.length).toBeLessThanOrEqual(s.window)
    expect(s.sent).toBeLessThan(total)
    expect(s.clientCredit).toBeLessThan(cost)
    expect(s.held).toBeGreaterThan(payload.length)
    // Reading returns credit: everything arrives, in order.
    const got: StreamMessage[] = []
    while (got.length < total) got.push((await it.next()).value as StreamMessage)
    c.close()
    expect(got.map((m) => m.offset)).toEqual(Array.from({ length: total }, (_, i) => i))
    expect(got.every((m) => m.data.length === payload.length)).toBe(true)
  }, 90_000)

  it('errors cross the relay by class name', async () => {
    const { client } = await setup()
    await expect(client.publish('nothing.here', 'x', { ack: 'all' })).rejects.toMatchObject({
      name: 'StreamNotFoundError',
    })
    await expect(client.streams.info('nope', { timeout: 3000 })).rejects.toMatchObject({
      name: 'StreamNotFoundError',
    })
    await expect(client.streams.delete('nope', { timeout: 3000 })).rejects.toMatchObject({
      name: 'StreamNotFoundError',
    })
    await expect(
      client.streams.create('many', { cluster: 'db', subject: 'many.>', replicas: 5 }),
    ).rejects.toMatchObject({ name: 'NotEnoughReplicasError' })
    await client.streams.create('a', { cluster: 'db', subject: 'a.>', replicas: 1 })
    await expect(
      client.streams.create('b', { cluster: 'db', subject: 'a.x', replicas: 1 }),
    ).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/overlap/),
    })
    // The name taken with a different configuration.
    await expect(
      client.streams.create('a', { cluster: 'db', subject: 'a.>', replicas: 3 }),
    ).rejects.toMatchObject({ name: 'InvalidArgumentError' })
    // A consumer of a missing stream fails its iteration with the node's error class.
    const missing = client.consume('nope')
    await expect(missing[Symbol.asyncIterator]().next()).rejects.toMatchObject({
      name: 'StreamNotFoundError',
    })
    // Beyond the per-connection bound a consumer is refused: `ready` and the iteration reject.
    const open: RelayConsumer[] = []
    for (let i = 0; i < CONSUMER_LIMITS.maxConsumers; i++) open.push(client.consume('a', { from: 'new' }))
    await Promise.all(open.map((c) => c.ready))
    const extra = client.consume('a')
    await expect(extra.ready).rejects.toMatchObject({ name: 'OverloadedError' })
    await expect(extra[Symbol.asyncIterator]().next()).rejects.toMatchObject({ name: 'OverloadedError' })
    for (const c of open) c.close()
    // The connection is still fine afterwards.
    expect((await client.streams.info('a')).name).toBe('a')
  }, 90_000)

  it('bad input is refused by the client, and by the relay from a raw peer', async () => {
    const { relay, client } = await setup()
    const bad: Array<[() => unknown, RegExp]> = [
      [() => client.streams.create('bad name', { cluster: 'db', subject: 'x' }), /name/],
      [() => client.streams.create('x', undefined as never), /config/],
      [() => client.streams.create('x', { cluster: 'bad cluster', subject: 'x' }), /config.cluster/],
      [() => client.streams.create('x', { cluster: 'db', subject: 'a..b' }), /config.subject/],
      [() => client.streams.create('x', { cluster: 'db', subject: 'x', replicas: 0 }), /config.replicas/],
      [
        () => client.streams.create('x', { cluster: 'db', subject: 'x', partitions: 1.5 }),
        /config.partitions/,
      ],
      [
        () => client.streams.create('x', { cluster: 'db', subject: 'x', retention: { maxAge: -1 } }),
        /maxAge/,
      ],
      [
        () => client.streams.create('x', { cluster: 'db', subject: 'x', colour: 'red' } as never),
        /config.colour/,
      ],
      [() => client.streams.info('x', { timeout: -5 }), /options.timeout/],
      [() => client.streams.delete(42 as never), /name/],
    ]
    for (const [call, re] of bad) {
      await expect(Promise.resolve().then(call)).rejects.toMatchObject({
        name: 'InvalidArgumentError',
        message: expect.stringMatching(re),
      })
    }
    expect(() => client.consume('bad name')).toThrow(/stream/)
    expect(() => client.consume('x', { from: 'yesterday' as never })).toThrow(/options.from/)
    expect(() => client.consume('x', { from: { offset: -1 } })).toThrow(/options.from.offset/)
    expect(() => client.consume('x', { partition: -1 })).toThrow(/options.partition/)
    expect(() => client.consume('x', { ackWait: 0 })).toThrow(/options.ackWait/)
    await expect(client.publish('x.y', 'z', { ack: 'most' as never })).rejects.toThrow(/options.ack/)

    // A raw peer: a window below the frame limit, consumer id 0 and a reused id are errors
    // for that call only; unknown CONSUME flag bits are a malformed frame.
    await client.streams.create('quiet', { cluster: 'db', subject: 'quiet', replicas: 1 })
    const raw = await RawPeer.open(relay.address)
    raw.hello()
    expect((await raw.next()).opcode).toBe(Op.Welcome)
    const consume = (id: number, consumerId: number, window: number) =>
      raw.send(Op.Consume, id, (w) =>
        encodeConsume(w, { consumerId, stream: 'quiet', from: 'earliest', window }),
      )
    consume(1, 1, 1000)
    let f = await raw.next()
    expect(f).toMatchObject({ opcode: Op.Error, id: 1 })
    expect(decodeError(f.body).message).toMatch(/window/)
    consume(2, 0, 4 * 1024 * 1024)
    f = await raw.next()
    expect(f).toMatchObject({ opcode: Op.Error, id: 2 })
    expect(decodeError(f.body).message).toMatch(/consumer id/)
    consume(3, 7, 4 * 1024 * 1024)
    expect(await raw.next()).toMatchObject({ opcode: Op.Ok, id: 3 })
    consume(4, 7, 4 * 1024 * 1024)
    f = await raw.next()
    expect(f).toMatchObject({ opcode: Op.Error, id: 4 })
    expect(decodeError(f.body).message).toMatch(/already in use/)
    raw.send(Op.Consume, 8, (w) =>
      encodeConsume(w, { consumerId: 8, stream: '', from: 'earliest', window: 4 * 1024 * 1024 }),
    )
    f = await raw.next()
    expect(f).toMatchObject({ opcode: Op.Error, id: 8 })
    expect(decodeError(f.body)).toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/stream/),
    })
    raw.send(Op.StreamList, 5)
    expect(await raw.next()).toMatchObject({ opcode: Op.StreamListReply, id: 5 })
    raw.send(Op.Consume, 6, (w) => {
      w.u32(9)
        .str('nope')
        .u8(0)
        .u8(0x80)
        .u32(4 * 1024 * 1024)
    })
    f = await raw.next()
    expect(f.id).toBe(0)
    expect(decodeError(f.body).message).toMatch(/malformed frame: unknown CONSUME flags/)
    await raw.waitClosed()
  }, 90_000)
})
