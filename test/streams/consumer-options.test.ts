/**
 * Consumer options and acknowledgement kinds on real nodes over loopback: `filter`,
 * `maxDeliver` with `backoff` (timing measured from delivery events), `ackPolicy: 'none'`,
 * `nak` / `term` / `working`, pull consumers (`fetch`), the counts `consumerInfo` reports,
 * the `maxDeliver` advisory, and bad input.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, type PlexusNode, type StreamMessage } from '../../src/index.js'
import { startNode, startStreamCluster, stopStartedNodes, waitFor } from '../helpers/nodes.js'

const dirs: string[] = []
afterEach(async () => {
  await stopStartedNodes()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** Redeliveries are checked every 100 ms (consumer-durable.ts TICK_MS). */
const TICK_MS = 100
/**
 * Slack on top of a redelivery's due time and the tick: the redelivered message goes through
 * the consumer's buffer and the event loop of a two-core machine shared with other test
 * files (a busy turn of a few hundred ms was seen under load).
 */
const SLACK_MS = 600

async function setup(): Promise<{ a: PlexusNode }> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-consopt-'))
  dirs.push(root)
  const {
    outside: [a],
  } = await startStreamCluster(root, { outside: 1 })
  await a!.streams.create('jobs', { cluster: 'db', subject: 'jobs.>', replicas: 3, partitions: 1 })
  return { a: a! }
}

/** Next message of `it` with the time it came, or undefined after `ms`. */
async function next(
  it: AsyncIterator<StreamMessage>,
  ms = 10_000,
): Promise<{ m: StreamMessage; at: number } | undefined> {
  const r = await Promise.race([
    it.next(),
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms)),
  ])
  if (r === 'timeout' || r.done) return undefined
  return { m: r.value, at: Date.now() }
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

  it('maxDeliver with backoff: redeliveries at the backoff delays, then dropped, counted and advised', async () => {
    const { a } = await setup()
    const advisories = a.subscribe('$plexus.advisory.max_deliveries.jobs.md')
    await advisories.ready
    await a.publish('jobs.x', 'poison', { ack: 'all' })
    const backoff = [300, 600]
    const c = a.consume('jobs', { durable: 'md', maxDeliver: 3, backoff })
    const it = c[Symbol.asyncIterator]()
    const seen: Array<{ m: StreamMessage; at: number }> = []
    for (let i = 0; i < 3; i++) seen.push((await next(it))!)
    expect(seen.map((s) => s.m.deliveryCount)).toEqual([1, 2, 3])
    expect(seen.every((s) => s.m.offset === 0 && s.m.string() === 'poison')).toBe(true)
    // Delivery k waits backoff[k-1] (the last value repeats) for its ack, checked every tick.
    const gaps = [seen[1]!.at - seen[0]!.at, seen[2]!.at - seen[1]!.at]
    expect(gaps[0]).toBeGreaterThanOrEqual(backoff[0]! - 5)
    expect(gaps[0]).toBeLessThan(backoff[0]! + TICK_MS + SLACK_MS)
    expect(gaps[1]).toBeGreaterThanOrEqual(backoff[1]! - 5)
    expect(gaps[1]).toBeLessThan(backoff[1]! + TICK_MS + SLACK_MS)
    // After the third delivery's wait (600 ms again) it is dropped: an advisory, no 4th delivery.
    const adv = await next(advisories[Symbol.asyncIterator]() as never, 5000)
    const droppedAt = Date.now()
    expect(droppedAt - seen[2]!.at).toBeGreaterThanOrEqual(backoff[1]! - 5)
    expect((adv!.m as unknown as { json(): unknown }).json()).toEqual({
      stream: 'jobs',
      durable: 'md',
      partition: 0,
      offset: 0,
      deliveries: 3,
    })
    expect(await next(it, 800)).toBeUndefined()
    await waitFor(
      async () => {
        const info = await a.streams.consumerInfo('jobs', 'md')
        return info.maxDeliverDropped === 1 && info.redelivered === 2 && info.partitions[0]!.position === 1
      },
      5000,
      'dropped counted and position past it',
    )
    c.close()
    advisories.unsubscribe()
  }, 60_000)

  it('nak redelivers (at once or after a delay), term never again, working restarts ackWait', async () => {
    const { a } = await setup()
    for (let i = 0; i < 3; i++) await a.publish('jobs.x', `j${i}`, { ack: 'all' })
    const ackWait = 700
    const c = a.consume('jobs', { durable: 'k', ackWait, maxAckPending: 1 })
    const it = c[Symbol.asyncIterator]()
    // nak() at once: same offset, next delivery; a nak of the stale copy is ignored.
    const m0 = (await next(it))!
    await m0.m.nak()
    const m0b = (await next(it, 2000))!
    expect([m0b.m.offset, m0b.m.deliveryCount]).toEqual([0, 2])
    await m0.m.nak() // stale: ignored (no third delivery)
    // nak(delay): not before the delay.
    const t = Date.now()
    await m0b.m.nak(400)
    const m0c = (await next(it, 3000))!
    expect([m0c.m.offset, m0c.m.deliveryCount]).toEqual([0, 3])
    expect(m0c.at - t).toBeGreaterThanOrEqual(395)
    expect(m0c.at - t).toBeLessThan(400 + TICK_MS + SLACK_MS)
    // term: offset 0 done (maxAckPending 1 lets offset 1 come), never delivered again.
    await m0c.m.term()
    const m1 = (await next(it))!
    expect(m1.m.offset).toBe(1)
    // working() every 300 ms keeps it from coming back for three ackWaits.
    const start = Date.now()
    while (Date.now() - start < 3 * ackWait) {
      await new Promise((r) => setTimeout(r, 300))
      await m1.m.working()
    }
    await m1.m.ack()
    const m2 = (await next(it))!
    expect([m2.m.offset, m2.m.deliveryCount]).toEqual([2, 1]) // offset 1 was never redelivered
    await m2.m.ack()
    expect(await next(it, ackWait + 400)).toBeUndefined()
    c.close()
    await waitFor(
      async () => {
        const info = await a.streams.consumerInfo('jobs', 'k')
        return info.terminated === 1 && info.redelivered === 2 && info.partitions[0]!.position === 3
      },
      5000,
      'counts reported on close',
    )
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
