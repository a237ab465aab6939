/**
 * Acknowledgement kinds on real nodes over loopback: `maxDeliver` with `backoff` (timing
 * measured from delivery events; then the drop, its count in `consumerInfo` and the advisory),
 * and `nak` (at once, after a delay, a stale one ignored), `term` and `working`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { PlexusNode, StreamMessage } from '../../src/index.js'
import { startStreamCluster, stopStartedNodes, waitFor } from '../helpers/nodes.js'

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
  const root = await mkdtemp(join(tmpdir(), 'plexus-consacks-'))
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

describe('acknowledgement kinds', () => {
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
})
