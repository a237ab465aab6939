/**
 * Consumer options on real nodes over loopback: `filter`, `ackPolicy: 'none'`, pull
 * consumers (`fetch`), and bad input. The acknowledgement kinds and `maxDeliver` / `backoff`
 * are in consumer-acks.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, type PlexusNode } from '../../src/index.js'
import { startNode, startStreamCluster, stopStartedNodes, waitFor } from '../helpers/nodes.js'

const dirs: string[] = []
afterEach(async () => {
  await stopStartedNodes()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function setup(): Promise<{ a: PlexusNode }> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-consopt-'))
  dirs.push(root)
  const {
    outside: [a],
  } = await startStreamCluster(root, { outside: 1 })
  await a!.streams.create('jobs', { cluster: 'db', subject: 'jobs.>', replicas: 3, partitions: 1 })
  return { a: a! }
}

describe('consumer options: bad input', () => {
  it('each option is validated and named', async () => {
    const n = await startNode()
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ filter: 'a..b' }, 'options.filter'],
      [{ filter: 42 }, 'options.filter'],
      [{ durable: 'd', maxDeliver: 0 }, 'options.maxDeliver'],
      [{ durable: 'd', maxDeliver: 1.5 }, 'options.maxDeliver'],
      [{ durable: 'd', backoff: [] }, 'options.backoff'],
      [{ durable: 'd', backoff: 'x' }, 'options.backoff'],
      [{ durable: 'd', backoff: [100, -1] }, 'options.backoff[1]'],
      [{ durable: 'd', backoff: [100, 200, 300], maxDeliver: 2 }, 'options.backoff'],
      [{ durable: 'd', backoff: new Array(65).fill(1) }, 'options.backoff'],
      [{ durable: 'd', ackPolicy: 'all' }, 'options.ackPolicy'],
      [{ durable: 'd', ackPolicy: 'none', ackWait: 100 }, 'options.ackWait'],
      [{ durable: 'd', ackPolicy: 'none', maxDeliver: 2 }, 'options.maxDeliver'],
      [{ maxDeliver: 2 }, 'options.maxDeliver'],
      [{ backoff: [1] }, 'options.backoff'],
      [{ ackPolicy: 'explicit' }, 'options.ackPolicy'],
      [{ durable: 'd', maxAckPending: 0 }, 'options.maxAckPending'],
    ]
    for (const [o, field] of bad) {
      let err: unknown
      try {
        n.consume('jobs', o as never)
      } catch (e) {
        err = e
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(InvalidArgumentError)
      expect((err as Error).message, JSON.stringify(o)).toContain(field)
    }
    const c = n.consume('jobs')
    for (const o of [{ max: 0 }, { max: 4097 }, { max: 1.5 }, { expires: -1 }, { expires: 'soon' }, 'x'])
      await expect(c.fetch(o as never), JSON.stringify(o)).rejects.toThrow(InvalidArgumentError)
    c.close()
  })
})

describe('consumer options', () => {
  it('filter: only matching topics are delivered; skipped ones count as acked', async () => {
    const { a } = await setup()
    for (let i = 0; i < 12; i++)
      await a.publish(i % 3 === 0 ? 'jobs.eu.x' : 'jobs.us.x', `j${i}`, { ack: 'all' })
    const bad = a.consume('jobs', { filter: 'orders.>' })
    await expect(bad[Symbol.asyncIterator]().next()).rejects.toThrow(/options\.filter/)
    const plain = await a.consume('jobs', { filter: 'jobs.eu.*' }).fetch({ max: 4, expires: 5000 })
    expect(plain.map((m) => m.offset)).toEqual([0, 3, 6, 9])
    const c = a.consume('jobs', { durable: 'eu', filter: 'jobs.eu.>' })
    const got = await c.fetch({ max: 4, expires: 5000 })
    expect(got.map((m) => m.topic)).toEqual(['jobs.eu.x', 'jobs.eu.x', 'jobs.eu.x', 'jobs.eu.x'])
    await expect(got[0]!.nak(-1)).rejects.toThrow(InvalidArgumentError)
    await expect(got[0]!.nak(Number.NaN)).rejects.toThrow(/delayMs/)
    for (const m of got) await m.ack()
    // Offsets 10 and 11 (jobs.us) count as acknowledged too: the position is the end.
    await waitFor(
      async () => (await a.streams.consumerInfo('jobs', 'eu')).partitions[0]!.position === 12,
      5000,
      'position 12',
    )
    c.close()
  }, 60_000)

  it("ackPolicy 'none': handed out = acknowledged, never redelivered, position committed", async () => {
    const { a } = await setup()
    for (let i = 0; i < 5; i++) await a.publish('jobs.x', `j${i}`, { ack: 'all' })
    const c = a.consume('jobs', { durable: 'n', ackPolicy: 'none' })
    const got = await c.fetch({ max: 5, expires: 5000 })
    expect(got.map((m) => m.offset)).toEqual([0, 1, 2, 3, 4])
    await got[0]!.nak() // a no-op
    expect(await c.fetch({ max: 1, expires: 600 })).toEqual([])
    await waitFor(
      async () => (await a.streams.consumerInfo('jobs', 'n')).partitions[0]!.position === 5,
      5000,
      'position 5',
    )
    c.close()
  }, 60_000)

  it('pull: fetch returns max at once, or what came by expires; one mode per consumer', async () => {
    const { a } = await setup()
    for (let i = 0; i < 7; i++) await a.publish('jobs.x', `j${i}`, { ack: 'all' })
    const c = a.consume('jobs', { durable: 'pull' })
    const first = await c.fetch({ max: 5, expires: 10_000 })
    expect(first.map((m) => m.offset)).toEqual([0, 1, 2, 3, 4])
    expect(() => c[Symbol.asyncIterator]()).toThrow(/fetch/)
    for (const m of first) await m.ack()
    // Two are left: a fetch of 5 waits for expires, then returns them.
    const t = Date.now()
    const second = await c.fetch({ max: 5, expires: 700 })
    expect(Date.now() - t).toBeGreaterThanOrEqual(695)
    expect(second.map((m) => m.offset)).toEqual([5, 6])
    // A fetch waiting when a message is published: it arrives (max 1 returns at once).
    const third = c.fetch({ max: 1, expires: 10_000 })
    await a.publish('jobs.x', 'late', { ack: 'all' })
    expect((await third).map((m) => m.string())).toEqual(['late'])
    // Unacked fetched messages come back after ackWait like iterated ones (default 30 s: not here).
    const it = a.consume('jobs', { durable: 'push' })
    it[Symbol.asyncIterator]()
    await expect(it.fetch({ max: 1 })).rejects.toThrow(/iterated/)
    it.close()
    c.close()
    expect(await c.fetch({ max: 1, expires: 5000 })).toEqual([]) // closed: at once, empty
  }, 60_000)
})
