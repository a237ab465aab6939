/**
 * Subscription readiness (issue 13): `await sub.ready` and `await node.flush()` wait until
 * every linked peer acknowledged the subscriber's interest, so a publish any of them makes
 * right after reaches the subscriber. Real nodes over loopback.
 */
import { describe, expect, it } from 'vitest'
import { AbortedError, type PlexusNode, type Subscription, TimeoutError } from '../src/index.js'
import { InterestSync, PUBSUB_SYNC } from '../src/pubsub/ready.js'
import { startNodes, waitFor } from './helpers/nodes.js'
import { readyLosses } from './helpers/ready.js'

/** The node's internal call table (tests simulate a hung or an older peer through it). */
function rpcHandlers(node: PlexusNode): Map<string, unknown> {
  return (node as unknown as { rpc: { handlers: Map<string, unknown> } }).rpc.handlers
}

/** Makes `node` never answer sync calls, as a peer that hangs. */
function hang(node: PlexusNode): void {
  rpcHandlers(node).set(PUBSUB_SYNC, { handler: () => new Promise<Uint8Array>(() => {}) })
}

/** True once `p` settled (checked after a few event-loop turns). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  await new Promise((r) => setTimeout(r, 50))
  return done
}

const waiters = (n: PlexusNode) => n.status().counters['pubsub.readyWaiters']

/** Waits until every node has a link to every other. */
async function linked(nodes: PlexusNode[]): Promise<void> {
  await waitFor(() => nodes.every((n) => n.status().peers.length >= nodes.length - 1), 10_000, 'links')
}

/**
 * `rounds` fresh subscriptions on `sub`, each followed at once by one publish from every
 * publisher; `wait` runs between subscribe and publish. Returns how many messages never came.
 */
async function losses(
  sub: PlexusNode,
  pubs: PlexusNode[],
  rounds: number,
  wait: (s: Subscription) => Promise<unknown> | undefined,
): Promise<number> {
  return readyLosses(sub, pubs, rounds, wait, 'ready')
}

describe('subscription readiness', () => {
  it('after await sub.ready a publish from every linked peer right away always arrives', async () => {
    const nodes = await startNodes(3)
    await linked(nodes)
    const [a, b, c] = nodes as [PlexusNode, PlexusNode, PlexusNode]
    // Without waiting, a publish right after subscribe is lost (what `ready` is for).
    const before = await losses(a, [b, c], 20, () => undefined)
    console.log(`without waiting: ${before} of 40 messages lost`)
    const lost = await losses(a, [b, c], 50, (s) => s.ready)
    expect(lost).toBe(0)
    // Also when the publisher is the one that subscribes' peer and the pattern is a wildcard.
    const lostB = await losses(b, [a, c], 20, (s) => s.ready)
    expect(lostB).toBe(0)
    expect(waiters(a)).toBe(0)
  })

  it('after await node.flush() on the subscriber a publish from every linked peer always arrives', async () => {
    const nodes = await startNodes(3)
    await linked(nodes)
    const [a, b, c] = nodes as [PlexusNode, PlexusNode, PlexusNode]
    expect(await losses(a, [b, c], 50, () => a.flush())).toBe(0)
    // flush covers several subscriptions made before it, and unsubscribes too.
    const got: string[] = []
    const subs = ['x.1', 'x.2', 'x.*'].map((p) => a.subscribe(p, (m) => void got.push(m.topic)))
    await a.flush({ timeout: 5000 })
    await b.publish('x.1', '1')
    await c.publish('x.2', '2')
    await waitFor(() => got.length === 4)
    expect(got.sort()).toEqual(['x.1', 'x.1', 'x.2', 'x.2'])
    for (const s of subs) s.unsubscribe()
    await a.flush()
    await b.publish('x.1', 'after')
    await new Promise((r) => setTimeout(r, 200))
    expect(got.length).toBe(4)
    expect(b.status().counters['pubsub.unwanted'] ?? 0).toBe(0)
    expect(waiters(a)).toBe(0)
  })

  it('ready and flush resolve at once with no peers; ready resolves once unsubscribed', async () => {
    const [a] = await startNodes(1)
    const s = a.subscribe('solo.>')
    await s.ready
    await a.flush()
    expect(s.ready).toBe(s.ready) // one promise
    s.unsubscribe()
    await s.ready
    const t = a.subscribe('solo.x')
    t.unsubscribe()
    await t.ready
  })

  it('ready resolves when a peer that has not answered goes away; flush honours timeout and signal', async () => {
    const nodes = await startNodes(3)
    await linked(nodes)
    const [a, b, c] = nodes as [PlexusNode, PlexusNode, PlexusNode]
    hang(c)
    const got: string[] = []
    const s = a.subscribe('gone.*', (m) => void got.push(m.from))
    const ready = s.ready
    expect(await settled(ready)).toBe(false) // c holds it
    await expect(a.flush({ timeout: 200 })).rejects.toBeInstanceOf(TimeoutError)
    const ac = new AbortController()
    const aborted = a.flush({ signal: ac.signal })
    ac.abort()
    await expect(aborted).rejects.toBeInstanceOf(AbortedError)
    await expect(a.flush({ timeout: -1 })).rejects.toThrow(/options.timeout/)
    await c.stop()
    await ready // c is no longer linked
    await b.publish('gone.x', 'x')
    await waitFor(() => got.length === 1)
    expect(got).toEqual([b.id])
    expect(waiters(a)).toBe(0)
  })

  it('a peer without the sync method (an older node) still counts as having acknowledged', async () => {
    const nodes = await startNodes(2)
    await linked(nodes)
    const [a, b] = nodes as [PlexusNode, PlexusNode]
    rpcHandlers(b).delete(PUBSUB_SYNC)
    expect(await losses(a, [b], 20, (s) => s.ready)).toBe(0)
    expect(b.status().counters['rpc.unknownMethod']).toBeGreaterThan(0)
  })

  it('a flush pending when the node stops rejects with AbortedError', async () => {
    const nodes = await startNodes(2)
    await linked(nodes)
    const [a, b] = nodes as [PlexusNode, PlexusNode]
    hang(b)
    const s = a.subscribe('stop.*')
    // Handled before the stop settles it (else an unhandled rejection while stop runs).
    const flushed = expect(a.flush()).rejects.toBeInstanceOf(AbortedError)
    const ready = s.ready
    await a.stop()
    await flushed
    await ready
  })

  it('many subscribe/unsubscribe cycles leave no waiters or sync state behind', async () => {
    const nodes = await startNodes(3)
    await linked(nodes)
    const [a] = nodes as [PlexusNode, PlexusNode, PlexusNode]
    const internals = a as unknown as { pubsub: { sync: { peers: Map<string, unknown> } } }
    for (let i = 0; i < 300; i++) {
      const s = a.subscribe(`cycle.${i}.*`)
      if (i % 3 === 0) await s.ready
      else if (i % 3 === 1) void s.ready // unsubscribed before it resolves
      s.unsubscribe()
      if (i % 50 === 0) await a.flush()
    }
    await a.flush()
    expect(waiters(a)).toBe(0)
    expect(internals.pubsub.sync.peers.size).toBeLessThanOrEqual(2)
    expect(a.status().counters['pubsub.subscriptions']).toBe(0)
  })
})

describe('InterestSync (unit)', () => {
  /** A scripted host: `calls` holds each sync call in flight, to settle by hand. */
  function scripted(peers: string[]) {
    const calls: Array<{ peer: string; resolve(): void; reject(): void }> = []
    const sync = new InterestSync({
      peers: () => peers,
      sync: (peer) =>
        new Promise<void>((resolve, reject) =>
          calls.push({ peer, resolve, reject: () => reject(new Error('x')) }),
        ),
    })
    return { sync, calls }
  }
  const tick = () => new Promise((r) => setTimeout(r, 0))

  it('coalesces: one call in flight per peer; a later change gets one more call', async () => {
    const { sync, calls } = scripted(['p1', 'p2'])
    const done: string[] = []
    const e1 = sync.changed()
    sync.wait(e1, () => done.push('w1'))
    sync.wait(e1, () => done.push('w1b'))
    expect(calls.map((c) => c.peer)).toEqual(['p1', 'p2'])
    const e2 = sync.changed()
    sync.wait(e2, () => done.push('w2'))
    expect(calls.length).toBe(2) // waits for the calls in flight first
    for (const c of calls.splice(0)) c.resolve()
    await tick()
    expect(done).toEqual(['w1', 'w1b'])
    expect(calls.map((c) => c.peer)).toEqual(['p1', 'p2']) // the next round, for e2
    for (const c of calls.splice(0)) c.resolve()
    await tick()
    expect(done).toEqual(['w1', 'w1b', 'w2'])
    expect(sync.waiting).toBe(0)
    // Acknowledged already: no call, done at once.
    expect(sync.wait(e2, () => done.push('w3'))).toBeUndefined()
    expect(done.at(-1)).toBe('w3')
    expect(calls.length).toBe(0)
  })

  it('a failed call or a forgotten peer stops counting; cancel forgets a waiter', async () => {
    const { sync, calls } = scripted(['p1', 'p2'])
    const done: string[] = []
    const w = sync.wait(sync.changed(), () => done.push('w'))!
    calls.find((c) => c.peer === 'p1')!.reject()
    await tick()
    expect([...w.pending]).toEqual(['p2'])
    sync.forget('p2')
    expect(done).toEqual(['w'])
    const w2 = sync.wait(sync.changed(), () => done.push('w2'))!
    sync.cancel(w2)
    expect(sync.waiting).toBe(0)
    for (const c of calls.splice(0)) c.resolve()
    await tick()
    expect(done).toEqual(['w'])
    expect(calls.length).toBe(0) // nobody waits: no further calls
  })
})
