/**
 * Clusters found through the DHT (issue 15): the key derivation and the lookup bookkeeping of
 * `ClusterDht` against a scripted host (one lookup per cluster in flight, the cache, abort,
 * advertising and its retry), then three real nodes on loopback where the client can learn
 * the member only through the DHT: the bootstrap node passes on no announcements.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DHT } from '../src/constants.js'
import { ClusterDht, clusterKey, type DhtHost, type FoundProvider } from '../src/discovery/dht.js'
import { generateKey } from '../src/index.js'
import { nodeInternals } from '../src/node.js'
import { startNode, uniqueNetwork, waitFor } from './helpers/nodes.js'

describe('clusterKey', () => {
  it('is a stable CIDv1 (raw, sha2-256) per (network, cluster), distinct across either name', () => {
    const a = clusterKey('net', 'svc')
    expect(a.version).toBe(1)
    expect(a.code).toBe(0x55)
    expect(a.multihash.code).toBe(0x12)
    expect(a.multihash.digest.length).toBe(32)
    expect(clusterKey('net', 'svc').equals(a)).toBe(true)
    expect(clusterKey('net2', 'svc').equals(a)).toBe(false)
    expect(clusterKey('net', 'svc2').equals(a)).toBe(false)
    // The separator keeps ("ne", "tsvc") apart from ("net", "svc").
    expect(clusterKey('ne', 'tsvc').equals(a)).toBe(false)
    expect(a.toString()).toBe(clusterKey('net', 'svc').toString())
  })
})

/** A scripted DHT: each findProviders call waits until the test releases it. */
class FakeHost implements DhtHost {
  network = 'n'
  self = 'me'
  clock = 1_000_000
  finds: Array<{ key: string; signal: AbortSignal; release(p: FoundProvider[]): void }> = []
  provides: Array<{ key: string; resolve(n: number): void; signal: AbortSignal }> = []
  withdrawn: string[] = []
  dialled: string[] = []
  changes = 0
  linkedPeers = new Set<string>()

  now = () => this.clock
  random = () => 0.5
  peers = 1
  ready = () => this.peers > 0
  linked = (p: string) => this.linkedPeers.has(p)
  members = new Set<string>()
  known = (_c: string, p: string) => this.members.has(p)
  dial = (p: string) => {
    this.dialled.push(p)
  }
  changed = () => {
    this.changes++
  }
  provide = (key: { toString(): string }, signal: AbortSignal) =>
    new Promise<number>((resolve) => this.provides.push({ key: key.toString(), resolve, signal }))
  withdraw = async (key: { toString(): string }) => {
    this.withdrawn.push(key.toString())
  }
  findProviders = (key: { toString(): string }, signal: AbortSignal): AsyncIterable<FoundProvider> => {
    const finds = this.finds
    return {
      async *[Symbol.asyncIterator]() {
        const list = await new Promise<FoundProvider[]>((release, reject) => {
          finds.push({ key: key.toString(), signal, release })
          signal.addEventListener('abort', () => reject(signal.reason), { once: true })
        })
        yield* list
      },
    }
  }
}

const settle = () => new Promise((r) => setImmediate(r))

describe('ClusterDht lookups', () => {
  it('runs one lookup per cluster at a time and dials the providers it finds', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    expect(d.lookup('svc')).toBe(true)
    expect(d.lookup('svc')).toBe(true)
    expect(d.lookup('svc')).toBe(true)
    expect(h.finds).toHaveLength(1)
    expect(h.finds[0]!.key).toBe(clusterKey('n', 'svc').toString())
    expect(d.counters.lookups).toBe(1)
    expect(d.inFlight).toBe(1)
    // Another cluster gets its own lookup.
    expect(d.lookup('other')).toBe(true)
    expect(h.finds).toHaveLength(2)

    h.linkedPeers.add('p2')
    h.finds[0]!.release([
      { id: 'me', addrs: [] },
      { id: 'p1', addrs: ['/ip4/10.0.0.1/tcp/1'] },
      { id: 'p1', addrs: [] },
      { id: 'p2', addrs: [] },
    ])
    await settle()
    expect(d.counters.providersFound).toBe(2) // not ourselves, p1 once
    expect(h.dialled).toEqual(['p1']) // p2 is linked already
    expect(h.changes).toBe(1)
    expect(d.inFlight).toBe(1)

    // Cached: worth waiting during reachWait, no new lookup.
    expect(d.lookup('svc')).toBe(true)
    h.clock += DHT.reachWait
    expect(d.lookup('svc')).toBe(false)
    expect(h.finds).toHaveLength(2)
    d.memberAdded('svc', 'p1')
    d.memberAdded('svc', 'p1')
    d.memberAdded('svc', 'p2') // found linked, not dialled by the lookup
    expect(d.counters.membersReached).toBe(1)
    // After the cache a new lookup starts.
    h.clock += DHT.cacheMs
    expect(d.lookup('svc')).toBe(true)
    expect(h.finds).toHaveLength(3)
    d.stop()
  })

  it('a lookup that finds nothing makes callers give up until the cache expires', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    expect(d.lookup('svc')).toBe(true)
    h.finds[0]!.release([])
    await settle()
    expect(d.lookup('svc')).toBe(false)
    expect(d.counters.lookups).toBe(1)
    h.clock += DHT.cacheMs
    expect(d.lookup('svc')).toBe(true)
    expect(d.counters.lookups).toBe(2)
    d.stop()
  })

  it('stops reading after maxProviders, and bounds the lookups running at once', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    for (let i = 0; i < DHT.maxLookups; i++) expect(d.lookup(`c${i}`)).toBe(true)
    expect(d.lookup('one-too-many')).toBe(false)
    expect(h.finds).toHaveLength(DHT.maxLookups)
    h.finds[0]!.release(Array.from({ length: DHT.maxProviders + 3 }, (_, i) => ({ id: `p${i}`, addrs: [] })))
    await settle()
    expect(h.dialled).toHaveLength(DHT.maxProviders)
    expect(h.finds[0]!.signal.aborted).toBe(true) // the query is ended once enough were read
    expect(d.lookup('one-too-many')).toBe(true) // a slot is free again
    d.stop()
  })

  it('stop aborts lookups in flight; the query signal carries the timeout too', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    d.lookup('svc')
    const { signal } = h.finds[0]!
    expect(signal.aborted).toBe(false)
    d.stop()
    expect(signal.aborted).toBe(true)
    await settle()
    expect(d.inFlight).toBe(0)
    expect(d.lookup('svc')).toBe(false) // stopped
  })

  it('with members known but unreachable the call does not wait; new providers are waited for', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    h.members.add('old')
    expect(d.lookup('svc', false)).toBe(false) // started, but not waited for
    expect(h.finds).toHaveLength(1)
    expect(d.lookup('svc', false)).toBe(false)
    h.finds[0]!.release([{ id: 'old', addrs: [] }])
    await settle()
    expect(d.counters.providersFound).toBe(1)
    expect(d.lookup('svc', false)).toBe(false) // found only what was known
    h.clock += DHT.cacheMs
    expect(d.lookup('svc', false)).toBe(false)
    h.finds[1]!.release([
      { id: 'old', addrs: [] },
      { id: 'new', addrs: [] },
    ])
    await settle()
    expect(d.lookup('svc', false)).toBe(true) // a new provider is being reached
    expect(h.dialled).toEqual(['new']) // known members are the redialler's business
    d.stop()
  })

  it('starts no lookup while the DHT has no peer to ask; a young node waits for its first peer', () => {
    const h = new FakeHost()
    h.peers = 0
    const d = new ClusterDht(h)
    expect(d.lookup('svc')).toBe(true) // young: its first DHT peer may still come
    expect(d.lookup('svc', false)).toBe(false) // members known: no waiting
    expect(h.finds).toHaveLength(0)
    h.clock += DHT.firstPeerWait
    expect(d.lookup('svc')).toBe(false)
    expect(h.finds).toHaveLength(0)
    h.peers = 1
    expect(d.lookup('svc')).toBe(true)
    expect(h.finds).toHaveLength(1)
    d.stop()
  })
})

describe('ClusterDht advertising', () => {
  it('provides at join, retries with backoff while no peer took it, withdraws on leave', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    d.advertise('svc')
    d.advertise('svc') // once per cluster
    expect(h.provides).toHaveLength(1)
    h.provides[0]!.resolve(0)
    await settle()
    expect(d.counters.provideMisses).toBe(1)
    // A link coming up retries a missed advertisement at once.
    d.linkUp()
    expect(h.provides).toHaveLength(2)
    h.provides[1]!.resolve(2)
    await settle()
    expect(d.counters.provides).toBe(1)
    d.linkUp() // reached peers already: nothing to do
    expect(h.provides).toHaveLength(2)
    d.withdraw('svc')
    expect(h.withdrawn).toEqual([clusterKey('n', 'svc').toString()])
    d.stop()
  })

  it('withdraw aborts an advertisement in flight', async () => {
    const h = new FakeHost()
    const d = new ClusterDht(h)
    d.advertise('svc')
    d.withdraw('svc')
    expect(h.provides[0]!.signal.aborted).toBe(true)
    h.provides[0]!.resolve(3)
    await settle()
    expect(d.counters.provides).toBe(0) // a withdrawn advertisement is not counted or rescheduled
    d.stop()
  })
})

describe('a member found only through the DHT (loopback)', () => {
  it('a client linked only to a bootstrap node that passes on no announcements reaches the member', async () => {
    const network = uniqueNetwork('dht')
    // maxLinks 2 (the least allowed): six nodes, more than a full mesh allows, so providers
    // found are mostly reached over on-demand links; the client still learns the member only
    // through the lookup (the bootstrap node passes on no announcements).
    const opts = { network, maxLinks: 2, discovery: { local: false, dht: true } }
    const b = await startNode(opts)
    nodeInternals(b).relayAnnouncements(false)
    const boot = [b.addresses[0]!]
    const m = await startNode({ ...opts, bootstrap: boot })
    const got: string[] = []
    await m.join('svc', {
      key: generateKey(),
      onRequest: (d) => d,
      onBroadcast: (d) => {
        got.push(new TextDecoder().decode(d))
      },
      onTunnel: async (t) => {
        for await (const chunk of t) await t.send(chunk)
        await t.close()
      },
    })
    // The member's record reached the bootstrap node.
    await waitFor(() => (m.status().counters['dht.provides'] ?? 0) >= 1, 15_000, 'provider record stored')
    // A broadcast from a fresh node, sent at once, finds the member the same way (first: a
    // broadcast goes only to linked members, and later nodes may learn the member from others).
    const cb = await startNode({ ...opts, bootstrap: boot })
    expect(await cb.broadcast('svc', 'to all')).toBe(1)
    await waitFor(() => got.includes('to all'), 5000, 'the broadcast delivered')
    expect(cb.status().counters['dht.lookups']).toBeGreaterThanOrEqual(1)
    // The request leaves at once, before the client has any link: it waits out the discovery
    // grace, and the lookup starts as soon as the DHT holds its first peer (the bootstrap node).
    const c = await startNode({ ...opts, bootstrap: boot })
    const t0 = performance.now()
    const reply = await c.request('svc', 'hello', { timeout: 10_000 })
    console.log(`request through a DHT lookup answered ${(performance.now() - t0).toFixed(0)} ms after start`)
    expect(new TextDecoder().decode(reply)).toBe('hello')
    // The lookup finds the member's record at the bootstrap node. In a network this small the
    // DHT's own first query (which every lookup waits for) may link the member first; then the
    // member was not reached *through* the lookup and is not counted as such.
    await waitFor(() => (c.status().counters['dht.providersFound'] ?? 0) >= 1, 10_000, 'the lookup to end')
    const k = c.status().counters
    console.log(
      `client counters: lookups ${k['dht.lookups']}, providers found ${k['dht.providersFound']}, members reached through a lookup ${k['dht.membersReached']}`,
    )
    expect(k['dht.lookups']).toBe(1)
    expect(k['dht.membersReached']).toBeLessThanOrEqual(1)
    // A cluster nobody serves: NoMembersError as soon as its lookup found nothing.
    const t1 = performance.now()
    await expect(c.request('nobody', 'x', { timeout: 10_000 })).rejects.toThrow(/no members of nobody/)
    console.log(`unknown cluster refused ${(performance.now() - t1).toFixed(0)} ms after the call`)
    expect(c.status().counters['dht.lookups']).toBe(2)

    // So does a tunnel.
    const ct = await startNode({ ...opts, bootstrap: boot })
    const tunnel = await ct.tunnel('svc', { timeout: 10_000 })
    await tunnel.send('through')
    await tunnel.close()
    const echoed: string[] = []
    for await (const chunk of tunnel) echoed.push(new TextDecoder().decode(chunk))
    expect(echoed.join('')).toBe('through')
    expect(ct.status().counters['dht.lookups']).toBeGreaterThanOrEqual(1)
    // And requestMany.
    const cm = await startNode({ ...opts, bootstrap: boot })
    const replies: string[] = []
    for await (const r of cm.requestMany('svc', 'all of you', { timeout: 10_000 }))
      replies.push(r.error ? r.error.name : r.string())
    expect(replies).toEqual(['all of you'])
    expect(cm.status().counters['dht.lookups']).toBeGreaterThanOrEqual(1)
  }, 45_000)

  it('a stream call from a node that knows no member of the cluster finds it the same way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plexus-dht-'))
    try {
      const network = uniqueNetwork('dhts')
      const opts = { network, discovery: { local: false, dht: true } }
      const b = await startNode(opts)
      nodeInternals(b).relayAnnouncements(false)
      const boot = [b.addresses[0]!]
      const key = generateKey()
      const m = await startNode({ ...opts, bootstrap: boot, dataDir: join(dir, 'm') })
      await m.join('st', { key })
      await waitFor(() => (m.status().counters['dht.provides'] ?? 0) >= 1, 15_000, 'provider record stored')
      const c = await startNode({ ...opts, bootstrap: boot, credentials: { clusterKeys: { st: key } } })
      const info = await c.streams.create('orders', { cluster: 'st', subject: 'orders.>', replicas: 1 })
      expect(info.name).toBe('orders')
      expect(c.status().counters['dht.lookups']).toBeGreaterThanOrEqual(1)
      await m.stop() // before its directory goes
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 30_000)
})
