/**
 * Queue groups through the relay (issue 16): SUBSCRIBE with a queue joins the group like a
 * library subscription, a reconnecting client subscribes again in the same group, and the
 * SUBSCRIBE body without the queue field is the one older clients send. Real nodes.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient } from '../../relay/index.js'
import { decodeSubscribe, encodeSubscribe } from '../../relay/wire/protocol-ext.js'
import { InvalidArgumentError, type Message, type PlexusNode } from '../../src/index.js'
import { BinaryReader, BinaryWriter } from '../../src/util/binary.js'
import { startNode, uniqueNetwork, waitFor } from '../helpers/nodes.js'

const clients: RelayClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
})

/** Records message ids (the payload). */
function recorder(): { ids: number[]; on: (m: Message) => void } {
  const ids: number[] = []
  return { ids, on: (m) => void ids.push(Number(new TextDecoder().decode(m.data))) }
}

function disjoint(a: number[], b: number[]): void {
  const seen = new Set(a)
  expect(seen.size).toBe(a.length)
  for (const x of b) expect(seen.has(x)).toBe(false)
  expect(new Set(b).size).toBe(b.length)
}

describe('relay queue groups', () => {
  it('SUBSCRIBE with a queue shares messages with library members; reconnect restores the group', async () => {
    const network = uniqueNetwork('rq')
    const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
    await waitFor(() => a.status().peers.length >= 1 && b.status().peers.length >= 1, 10_000, 'link')
    const port = Number(a.relayAddress!.split(':')[1])
    const states: string[] = []
    const c = await connectRelay({
      address: a.relayAddress!,
      timeout: 1000,
      reconnect: { minDelay: 50, maxDelay: 200, onState: (s) => void states.push(s) },
    })
    clients.push(c)
    const viaRelay = recorder()
    const onB = recorder()
    const rs = c.subscribe('jobs.*', viaRelay.on, { queue: 'w' })
    expect(rs.queue).toBe('w')
    expect(() => c.subscribe('jobs.*', { queue: 'no way' })).toThrow(InvalidArgumentError)
    const bs = b.subscribe('jobs.*', onB.on, { queue: 'w' })
    await Promise.all([rs.ready, bs.ready])

    let next = 0
    const burst = async (from: PlexusNode, n: number) => {
      for (let i = 0; i < n; i++) await from.publish('jobs.x', String(next++))
    }
    await burst(b, 100)
    await waitFor(() => viaRelay.ids.length + onB.ids.length === 100, 10_000, 'first burst')
    disjoint(viaRelay.ids, onB.ids)
    // b takes the two member nodes in turn.
    expect(viaRelay.ids.length).toBe(50)

    // The relay's node restarts: the client comes back and subscribes again in group w.
    await a.stop()
    await expect.poll(() => states).toEqual(['disconnected'])
    const a2 = await startNode({ network, relay: { port } })
    await expect.poll(() => states, { timeout: 10_000 }).toEqual(['disconnected', 'connected'])
    await waitFor(() => b.status().peers.some((p) => p.id === a2.id), 10_000, 'b linked to the new node')
    // Wait for the restored member (an event: its first message), publishing meanwhile.
    const before = viaRelay.ids.length
    await expect
      .poll(
        async () => {
          await burst(b, 1)
          return viaRelay.ids.length > before
        },
        { timeout: 10_000, interval: 100 },
      )
      .toBe(true)
    const start = next
    await burst(b, 100)
    await waitFor(
      () => viaRelay.ids.filter((x) => x >= start).length + onB.ids.filter((x) => x >= start).length === 100,
      10_000,
      'second burst',
    )
    disjoint(viaRelay.ids, onB.ids)
    // Still one group, not a plain subscription: the split stays even.
    expect(viaRelay.ids.filter((x) => x >= start).length).toBe(50)
  }, 30_000)

  it('SUBSCRIBE without a queue keeps the old layout; with one it decodes', () => {
    const w = new BinaryWriter(64)
    encodeSubscribe(w, { subId: 7, pattern: 'a.*', maxPending: 0 })
    const old = w.finish().slice()
    expect([...old]).toEqual([0, 0, 0, 7, 0, 3, 97, 46, 42, 0, 0, 0, 0])
    expect(decodeSubscribe(new BinaryReader(old))).toEqual({ subId: 7, pattern: 'a.*', maxPending: 0 })
    w.reset()
    encodeSubscribe(w, { subId: 7, pattern: 'a.*', maxPending: 0, queue: 'w' })
    expect(decodeSubscribe(new BinaryReader(w.finish().slice())).queue).toBe('w')
  })
})
