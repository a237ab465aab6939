import { describe, expect, it } from 'vitest'
import type { RelayClient } from '../../relay/index.js'
import { Op, opcodeName } from '../../relay/wire/protocol.js'
import {
  decodeConsumeFetch,
  decodeConsumeSettle,
  encodeConsumeFetch,
  encodeConsumeSettle,
} from '../../relay/wire/protocol-consume.js'
import { decodeConsume, encodeConsume } from '../../relay/wire/protocol-streams.js'
import { InvalidArgumentError, type PlexusNode, type StreamMessage } from '../../src/index.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { cleanedAfterEach } from '../helpers/cleanup.js'
import { waitFor } from '../helpers/nodes.js'

const { storageRelay } = cleanedAfterEach()

async function setup(): Promise<{ a: PlexusNode; client: RelayClient }> {
  const { members, client } = await storageRelay('rcons')
  await members[0]!.streams.create('jobs', { cluster: 'db', subject: 'jobs.>', replicas: 3, partitions: 1 })
  return { a: members[0]!, client }
}

async function next(it: AsyncIterator<StreamMessage>, ms = 10_000): Promise<StreamMessage | undefined> {
  const r = await Promise.race([
    it.next(),
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms)),
  ])
  return r === 'timeout' || r.done ? undefined : r.value
}

describe('relay consumer frames', () => {
  it('codecs round-trip and refuse malformed bodies', () => {
    const body = {
      consumerId: 7,
      stream: 'jobs',
      from: 'earliest' as const,
      durable: 'd',
      options: {
        ackNone: false,
        deferred: true,
        maxAckPending: 5,
        maxDeliver: 3,
        backoff: [10, 20],
        filter: 'jobs.a',
      },
      window: 1 << 20,
    }
    const w = new BinaryWriter(64)
    encodeConsume(w, body)
    expect(decodeConsume(new BinaryReader(w.finish()))).toEqual(body)
    const s = new BinaryWriter(32)
    encodeConsumeSettle(s, { consumerId: 1, partition: 2, offset: 3, delayMs: 400 }, true)
    expect(decodeConsumeSettle(new BinaryReader(s.finish()), true, 'CONSUME_NAK')).toEqual({
      consumerId: 1,
      partition: 2,
      offset: 3,
      delayMs: 400,
    })
    const f = new BinaryWriter(16)
    encodeConsumeFetch(f, { consumerId: 1, max: 10, expires: 500 })
    const bytes = f.finish()
    expect(decodeConsumeFetch(new BinaryReader(bytes))).toEqual({ consumerId: 1, max: 10, expires: 500 })
    expect(() => decodeConsumeFetch(new BinaryReader(bytes.subarray(0, 10)))).toThrow(DecodeError)
    const bad = new BinaryWriter(64)
    encodeConsume(bad, { ...body, options: { ...body.options, backoff: new Array(65).fill(1) } })
    expect(() => decodeConsume(new BinaryReader(bad.finish()))).toThrow(/backoff/)
    expect(opcodeName(Op.ConsumeFetch)).toBe('CONSUME_FETCH (0x71)')
    expect(opcodeName(0x77)).toMatch(/^0x77 \(reserved for durable streams, continued/)
  })

  it('bad options are refused by the client, naming the field', async () => {
    const { client } = await setup()
    expect(() => client.consume('jobs', { durable: 'd', maxDeliver: 0 })).toThrow(/options\.maxDeliver/)
    expect(() => client.consume('jobs', { filter: 'a..b' })).toThrow(InvalidArgumentError)
    expect(() => client.consume('jobs', { backoff: [1] })).toThrow(/need options\.durable/)
    const c = client.consume('jobs', { durable: 'd' })
    await expect(c.fetch({ max: 0 })).rejects.toThrow(/options\.max/)
    c.close()
  }, 60_000)

  it('nak, term and working through the relay; options reach the node; counts in consumerInfo', async () => {
    const { a, client } = await setup()
    for (let i = 0; i < 4; i++) await a.publish(i === 1 ? 'jobs.skip' : 'jobs.x', `j${i}`, { ack: 'all' })
    const c = client.consume('jobs', {
      durable: 'k',
      filter: 'jobs.x',
      ackWait: 800,
      maxDeliver: 2,
      maxAckPending: 1, // one at a time: deliveries come in a fixed order
    })
    await c.ready
    const it = c[Symbol.asyncIterator]()
    await expect(c.fetch({ max: 1 })).rejects.toThrow(/iterated/)
    const m0 = (await next(it))!
    expect([m0.offset, m0.deliveryCount]).toEqual([0, 1])
    await m0.nak()
    const m0b = (await next(it))!
    expect([m0b.offset, m0b.deliveryCount]).toEqual([0, 2])
    await m0b.nak() // maxDeliver 2: dropped, not delivered a third time
    const m2 = (await next(it))!
    expect(m2.offset).toBe(2) // offset 1 (jobs.skip) filtered out
    await m2.term()
    const m3 = (await next(it))!
    expect(m3.offset).toBe(3)
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 300))
      await m3.working() // keeps it past ackWait (800 ms) for 1.2 s
    }
    await m3.ack()
    expect(await next(it, 1200)).toBeUndefined()
    c.close()
    await waitFor(
      async () => {
        const info = await client.streams.consumerInfo('jobs', 'k')
        return (
          info.partitions[0]!.position === 4 &&
          info.terminated === 1 &&
          info.maxDeliverDropped === 1 &&
          info.redelivered === 1
        )
      },
      5000,
      'consumerInfo counts',
    )
  }, 60_000)

  it('pull through the relay: batches beyond the window, expiry, ackPolicy none', async () => {
    const { a, client } = await setup()
    const payload = 'x'.repeat(200 * 1024)
    for (let i = 0; i < 12; i++) await a.publish('jobs.x', payload, { ack: 'all' })
    // A 1 MiB window and a 12-message batch of 200 KiB each (2.4 MiB): credit returns as they come.
    const c = client.consume('jobs', { durable: 'pull', maxBytesInFlight: 1024 * 1024 })
    const batch = await c.fetch({ max: 12, expires: 10_000 })
    expect(batch.map((m) => m.offset)).toEqual([...Array(12).keys()])
    expect(batch.every((m) => m.data.length === payload.length)).toBe(true)
    for (const m of batch) await m.ack()
    const t = Date.now()
    expect(await c.fetch({ max: 2, expires: 600 })).toEqual([])
    expect(Date.now() - t).toBeGreaterThanOrEqual(595)
    expect(() => c[Symbol.asyncIterator]()).toThrow(/fetch/)
    c.close()
    const n = client.consume('jobs', { durable: 'none', ackPolicy: 'none' })
    const got = await n.fetch({ max: 12, expires: 10_000 })
    expect(got).toHaveLength(12)
    await got[0]!.nak() // a no-op: nothing is sent for a consumer without acks
    expect(await n.fetch({ max: 1, expires: 500 })).toEqual([])
    n.close()
  }, 60_000)
})
