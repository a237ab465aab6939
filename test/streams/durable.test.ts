/**
 * Durable consumers on real nodes over loopback: positions survive the consumer, unacked
 * messages come back after ackWait, maxAckPending pauses delivery, and consumers sharing a
 * durable name never read one partition at the same time.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Consumer, PlexusNode, StreamMessage } from '../../src/index.js'
import { startStreamCluster } from '../helpers/nodes.js'
import { take } from '../helpers/take.js'

const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  await Promise.all(mine.splice(0).map((n) => n.stop()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function setup(partitions = 1): Promise<{ members: PlexusNode[]; a: PlexusNode; b: PlexusNode }> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-durable-'))
  dirs.push(root)
  const {
    members,
    outside: [a, b],
  } = await startStreamCluster(root, { outside: 2 })
  mine.push(...members, a!, b!)
  await a.streams.create('jobs', { cluster: 'db', subject: 'jobs.>', replicas: 3, partitions })
  return { members, a, b }
}

const text = (m: StreamMessage) => new TextDecoder().decode(m.data)

/** Resolves to the next message, or undefined if none comes within `ms`. */
async function none(it: AsyncIterator<StreamMessage>, ms: number): Promise<StreamMessage | undefined> {
  const next = await Promise.race([
    it.next(),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms)),
  ])
  return next === 'timeout' || next.done ? undefined : next.value
}

describe('durable consumers', () => {
  it('resume after their last ack, on another node, with no gap', async () => {
    const { a, b } = await setup()
    for (let i = 0; i < 30; i++) await a.publish('jobs.x', `j${i}`, { ack: 'all' })
    const c1 = a.consume('jobs', { durable: 'billing' })
    const it1 = c1[Symbol.asyncIterator]()
    const first = await take(it1, 12)
    for (const m of first.slice(0, 10)) await m.ack() // 10 and 11 stay unacked
    c1.close() // commits the acked prefix and releases the lease
    const c2 = b.consume('jobs', { durable: 'billing' })
    const rest = await take(c2[Symbol.asyncIterator](), 20)
    expect(rest.map((m) => m.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i + 10))
    expect(text(rest[0]!)).toBe('j10')
    c2.close()
  }, 60_000)

  it('a consumer whose node dies: the next one resumes after the last committed ack', async () => {
    const { a, b } = await setup()
    for (let i = 0; i < 20; i++) await a.publish('jobs.x', `j${i}`, { ack: 'all' })
    const c1 = a.consume('jobs', { durable: 'w' })
    const got = await take(c1[Symbol.asyncIterator](), 8)
    for (const m of got) await m.ack()
    await new Promise((r) => setTimeout(r, 400)) // acks are committed every 100 ms
    await a.stop() // no close(): the lease is left to expire
    const c2 = b.consume('jobs', { durable: 'w' })
    const rest = await take(c2[Symbol.asyncIterator](), 12, 20_000)
    expect(rest[0]!.offset).toBe(8)
    expect(rest.map((m) => m.offset)).toEqual(Array.from({ length: 12 }, (_, i) => i + 8))
    c2.close()
  }, 60_000)

  it('redelivers an unacked message after ackWait with a delivery count', async () => {
    const { a } = await setup()
    await a.publish('jobs.x', 'once', { ack: 'all' })
    const c = a.consume('jobs', { durable: 'r', ackWait: 300 })
    const it = c[Symbol.asyncIterator]()
    const [m1] = await take(it, 1)
    expect(m1!.deliveryCount).toBe(1)
    const [m2] = await take(it, 1, 5000)
    expect(m2!.offset).toBe(m1!.offset)
    expect(m2!.deliveryCount).toBe(2)
    await m2!.ack()
    expect(await none(it, 700)).toBeUndefined() // acked: not delivered again
    c.close()
  }, 60_000)

  it('maxAckPending pauses delivery until acks come back', async () => {
    const { a } = await setup()
    for (let i = 0; i < 10; i++) await a.publish('jobs.x', `j${i}`, { ack: 'all' })
    const c = a.consume('jobs', { durable: 'p', maxAckPending: 4 })
    const it = c[Symbol.asyncIterator]()
    const got = await take(it, 4)
    expect(await none(it, 500)).toBeUndefined()
    await got[0]!.ack()
    const [next] = await take(it, 1)
    expect(next!.offset).toBe(4)
    c.close()
  }, 60_000)

  it('two consumers on one durable name share the partitions, never holding one at once', async () => {
    const { a, b } = await setup(2)
    const seen = new Map<string, string>() // partition/offset → consumer
    const consumers: Consumer[] = [a.consume('jobs', { durable: 'g' }), b.consume('jobs', { durable: 'g' })]
    const done = consumers.map(async (c, ci) => {
      for await (const m of c) {
        const k = `${m.partition}/${m.offset}`
        expect(seen.get(k)).toBeUndefined() // never handed to both
        seen.set(k, `c${ci}`)
        await m.ack()
        if (seen.size === 60) for (const x of consumers) x.close()
      }
    })
    // keep publishing while the consumers settle on one partition each
    for (let i = 0; i < 60; i++) {
      await a.publish('jobs.x', `j${i}`, { ack: 'all', key: `k${i}` })
      await new Promise((r) => setTimeout(r, 80))
    }
    await Promise.race([Promise.all(done), new Promise((r) => setTimeout(r, 20_000))])
    for (const c of consumers) c.close()
    expect(seen.size).toBe(60)
    expect(new Set(seen.values())).toEqual(new Set(['c0', 'c1'])) // both did some of the work
  }, 60_000)

  it('rejects bad durable options', async () => {
    const { a } = await setup()
    expect(() => a.consume('jobs', { durable: 'bad name' })).toThrow(/options.durable/)
    expect(() => a.consume('jobs', { ackWait: 100 })).toThrow(/need options.durable/)
    expect(() => a.consume('jobs', { durable: 'x', maxAckPending: 0 })).toThrow(/maxAckPending/)
    expect(() => a.consume('jobs', { durable: 'x', ackWait: -1 })).toThrow(/ackWait/)
  }, 60_000)
})
