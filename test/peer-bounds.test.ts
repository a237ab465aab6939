/**
 * Per-peer bounds (issue 18, docs/security.md "Per-peer bounds"). A keyless hostile peer
 * (a plain libp2p node speaking our link protocol by hand) floods a node with long polls,
 * requests, tunnel opens, interest patterns, reads it never takes, and every internal
 * method; a member-looking node with a wrong cluster key floods long polls. A well-behaved
 * peer keeps working at the same time, and what the hostile peer held is released the
 * moment it disconnects (status counters polled with a deadline, no sleeping).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS, LINK, RPC } from '../src/constants.js'
import { generateKey, type PlexusNode } from '../src/index.js'
import { FrameType } from '../src/link/frames.js'
import type { PeerRpc } from '../src/rpc/rpc.js'
import { encodeSeek } from '../src/streams/consumer/consumer-wire.js'
import { encodeFetchCall, encodeRef } from '../src/streams/wire.js'
import { peerShare } from '../src/util/peer-share.js'
import { HostilePeer } from './helpers/hostile-peer.js'
import {
  startNode,
  startNodes,
  startStreamCluster,
  stopStartedNodes,
  waitFor,
  waitForMembers,
} from './helpers/nodes.js'

const roots: string[] = []
const hostiles: HostilePeer[] = []
afterEach(async () => {
  await stopStartedNodes() // before their directories go
  for (const h of hostiles.splice(0)) await h.stop().catch(() => {})
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

async function tempRoot(): Promise<string> {
  const r = await mkdtemp(join(tmpdir(), 'plexus-bounds-'))
  roots.push(r)
  return r
}

async function hostile(target: PlexusNode): Promise<HostilePeer> {
  const h = await HostilePeer.attach(target)
  hostiles.push(h)
  return h
}

const counter = (n: PlexusNode, name: string) => n.status().counters[name] ?? 0
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** The partition of `stream` hosted by `member` (its wire reference). */
/** The member's replica of `stream` (partition 0), once it hosts it (create resolves first). */
async function hostedRef(member: PlexusNode, stream: string) {
  const find = () => hostedMap(member).find((x) => x.meta.name === stream)
  await waitFor(() => find() !== undefined, 10_000, `a replica of ${stream} hosted`)
  const h = find()!
  return { stream, createdIndex: h.meta.createdIndex, partition: h.partition }
}

function hostedMap(member: PlexusNode) {
  const hosted = (
    member as unknown as {
      streamService: {
        hosted: Map<string, { meta: { name: string; createdIndex: number }; partition: number }>
      }
    }
  ).streamService.hosted
  return [...hosted.values()]
}

/** Reads `n` messages of `stream` from the start. */
async function readSome(node: PlexusNode, stream: string, n: number): Promise<string[]> {
  const got: string[] = []
  const c = node.consume(stream, { from: 'earliest' })
  try {
    for await (const m of c) {
      got.push(text(m.data))
      if (got.length >= n) break
    }
  } finally {
    await c.close()
  }
  return got
}

describe('per-peer bounds', () => {
  it('long-poll internal calls: one peer fills only its share; the calls end when it disconnects', async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { members: 1, outside: 1 })
    const member = members[0]!
    const good = outside[0]!
    await good.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
    await good.publish('orders.eu', 'before', { ack: 'all', timeout: 5000 })

    // More long polls than the node-wide limit, each asking to wait ~24 days.
    const evil = await hostile(member)
    const body = encodeFetchCall({
      ...(await hostedRef(member, 'orders')),
      offset: 1e9,
      maxBytes: 1024,
      waitMs: 0x7fffffff,
    })
    const flood = RPC.maxConcurrent + 808
    for (let i = 0; i < flood; i++) evil.call('s.fetch', body, 0x7fffffff)
    // Every call beyond what the node holds is refused at once.
    await waitFor(
      () => evil.refusals('OverloadedError') >= flood - RPC.maxPerPeer,
      20_000,
      'refusals of the flood',
    )
    await waitFor(
      () => counter(member, 'rpc.refused.peerLimit') >= flood - RPC.maxPerPeer,
      20_000,
      'refusals',
    )
    expect(evil.refusals('OverloadedError')).toBe(flood - RPC.maxPerPeer)
    expect(counter(member, 'rpc.serving')).toBe(RPC.maxPerPeer)

    // The well-behaved peer still publishes and reads through the member.
    const ack = await good.publish('orders.eu', 'during', { ack: 'all', timeout: 5000 })
    expect(ack?.offset).toBe(1)
    expect(await readSome(good, 'orders', 2)).toEqual(['before', 'during'])

    // The hostile peer goes away: its calls are released at once, not after their wait.
    await evil.disconnect()
    // At most the good peer's own tail poll (its consumer's last fetch waits up to 5 s) stays.
    await waitFor(() => counter(member, 'rpc.serving') <= 1, 3000, 'hostile calls released')
    expect(counter(member, 'rpc.servingPeers')).toBeLessThanOrEqual(1)
    await good.stop()
    await waitFor(() => counter(member, 'rpc.serving') === 0, 3000, 'every call released')
    expect(counter(member, 'rpc.servingPeers')).toBe(0)
  }, 60_000)
})

describe('per-peer bounds on requests, tunnels and interest', () => {
  it('requests: one peer holds at most its share of the handlers; released when it goes', async () => {
    const [member, good] = await startNodes(2)
    await member.join('echo', {
      key: generateKey(),
      onRequest: (data, ctx) => {
        if (text(data) !== 'hang') return data
        // Answers only when told its caller gave up (deadline, cancel or departure).
        return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve('late')))
      },
    })
    await waitForMembers(good, 'echo', 1)
    const evil = await hostile(member)
    const share = peerShare(DEFAULT_LIMITS.requests)
    const flood = share + 300
    const hang = new TextEncoder().encode('hang')
    for (let id = 1; id <= flood; id++)
      evil.frame(FrameType.Request, (w) => w.u32(id).str('echo').u32(0x7fffffff).u8(0).bytes(hang))
    await waitFor(() => counter(member, 'requests.refused.peerLimit') >= flood - share, 10_000, 'refusals')
    expect(counter(member, 'requests.serving')).toBe(share)
    // The good peer is served at the same time.
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => good.request('echo', `r${i}`)))
    expect(replies.map(text)).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`))
    await evil.disconnect()
    await waitFor(() => counter(member, 'requests.serving') === 0, 3000, 'handlers released')
  }, 30_000)

  it('tunnels: one peer opens at most its share; the good peer still gets one', async () => {
    const [member, good] = await startNodes(2)
    await member.join('files', {
      key: generateKey(),
      onTunnel: async (t) => {
        for await (const m of t) await t.send(m)
        await t.close()
      },
    })
    await waitForMembers(good, 'files', 1)
    const evil = await hostile(member)
    const share = peerShare(DEFAULT_LIMITS.tunnels)
    const flood = share + 50
    for (let tid = 1; tid <= flood; tid++)
      evil.frame(FrameType.TunnelOpen, (w) =>
        w
          .u32(tid)
          .u8(0)
          .str('files')
          .u32(10_000)
          .u32(1 << 20),
      )
    await waitFor(() => counter(member, 'tunnels.refused.peerLimit') >= flood - share, 10_000, 'refusals')
    await waitFor(() => (evil.received.get(FrameType.TunnelClose) ?? 0) >= flood - share, 5000, 'closes')
    expect(evil.received.get(FrameType.TunnelAccept)).toBe(share)
    expect(counter(member, 'tunnels.open')).toBe(share)
    const t = await good.tunnel('files')
    await t.send('ping')
    const it = t[Symbol.asyncIterator]()
    expect(text((await it.next()).value)).toBe('ping')
    await t.close()
    expect((await it.next()).done).toBe(true)
    await evil.disconnect()
    await waitFor(() => counter(member, 'tunnels.open') === 0, 3000, 'tunnels closed')
  }, 30_000)

  it('interest patterns: one peer declares at most 10,000; forgotten when it goes', async () => {
    const [member, good] = await startNodes(2)
    await waitFor(() => member.status().peers.length === 1, 5000, 'the good peer linked')
    const got: string[] = []
    const sub = good.subscribe('orders.>', (m) => {
      got.push(text(m.data))
    })
    await sub.ready
    await waitFor(() => counter(member, 'pubsub.peerPatterns') === 1, 5000, "the good peer's interest")
    const before = 1
    const evil = await hostile(member)
    for (let f = 0; f < 11; f++) {
      const patterns = Array.from({ length: 1000 }, (_, i) => `h${f}.${i}.>`)
      evil.frame(FrameType.Interest, (w) => {
        w.u8(1).u16(patterns.length)
        for (const p of patterns) w.str(p)
      })
    }
    await waitFor(() => counter(member, 'pubsub.peerPatterns') >= before + 10_000, 10_000, 'patterns')
    await waitFor(() => counter(member, 'frames.refused.patterns') >= 1, 10_000, 'refusal')
    expect(counter(member, 'pubsub.peerPatterns')).toBe(before + 10_000)
    await member.publish('orders.eu', 'still delivered')
    await waitFor(() => got.includes('still delivered'), 5000, 'delivery')
    await evil.disconnect()
    await waitFor(() => counter(member, 'pubsub.peerPatterns') === before, 3000, 'patterns forgotten')
  }, 30_000)
})

describe('per-peer bounds on unread replies', () => {
  it('a peer that stops reading gets no more than its link bound queued for it', async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { members: 1, outside: 1 })
    const member = members[0]!
    const good = outside[0]!
    await good.streams.create('big', { cluster: 'db', subject: 'big.>', replicas: 1 })
    const chunk = new Uint8Array(512 * 1024).fill(7)
    for (let i = 0; i < 16; i++) await good.publish('big.x', chunk, { ack: 'all', timeout: 10_000 })
    const evil = await hostile(member)
    evil.stopReading()
    // Each call asks for 4 MiB of stored messages; none of the replies is read.
    const body = encodeFetchCall({
      ...(await hostedRef(member, 'big')),
      offset: 0,
      maxBytes: 4 << 20,
      waitMs: 0,
    })
    for (let i = 0; i < 40; i++) evil.call('s.fetch', body, 30_000)
    // Reads beyond the peer's 32 MiB share are refused; replies beyond its link bound too.
    await waitFor(() => counter(member, 'rpc.refused.queue') >= 1, 20_000, 'replies refused')
    await waitFor(() => counter(member, 'rpc.serving') === 0, 20_000, 'calls done')
    const queued = (
      member as unknown as { links: { get(p: string): { queuedBytes: number } | undefined } }
    ).links.get(evil.id)?.queuedBytes
    expect(queued).toBeLessThan(LINK.maxQueuedBytes + 5 * 1024 * 1024)
    // The good peer reads as usual meanwhile.
    expect((await readSome(good, 'big', 16)).length).toBe(16)
  }, 60_000)
})

describe('a keyless peer flooding every internal method', () => {
  it('leaves the node serving others and holding nothing of it once it goes', async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { members: 1, outside: 1 })
    const member = members[0]!
    const good = outside[0]!
    await good.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
    await good.publish('orders.eu', 'first', { ack: 'all', timeout: 5000 })
    const ref = await hostedRef(member, 'orders')
    const valid: Record<string, Uint8Array> = {
      's.fetch': encodeFetchCall({ ...ref, offset: 1e6, maxBytes: 1 << 20, waitMs: 0x7fffffff }),
      's.pstat': encodeRef(ref),
      's.seek': encodeSeek(ref, 'end'),
      's.load': new TextEncoder().encode('db'),
      'pubsub.sync': new Uint8Array(0),
    }
    const methods = [
      's.meta',
      's.pub',
      's.fetch',
      's.cons',
      's.seek',
      's.pstat',
      's.copy',
      's.load',
      'pubsub.sync',
    ]
    const evil = await hostile(member)
    let sent = 0
    let seed = 1
    const random = () => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return seed
    }
    for (const method of methods) {
      for (let i = 0; i < 600; i++) {
        const junk = new Uint8Array(random() % 96).map(() => random() & 0xff)
        const body = valid[method] !== undefined && i % 2 === 0 ? valid[method]! : junk
        evil.call(method, body, 0x7fffffff)
        sent++
      }
      // Meanwhile the good peer publishes, reads and is answered as usual.
      const ack = await good.publish('orders.eu', `during ${method}`, { ack: 'all', timeout: 5000 })
      expect(ack?.stream).toBe('orders')
    }
    expect((await readSome(good, 'orders', 1 + methods.length)).length).toBe(1 + methods.length)
    // Every call was answered except the long polls it may hold (at most its share).
    await waitFor(() => evil.replies.size + counter(member, 'rpc.serving') >= sent, 20_000, 'answers')
    expect(counter(member, 'rpc.serving')).toBeLessThanOrEqual(RPC.maxPerPeer + 1)
    await evil.disconnect()
    await good.stop()
    await waitFor(() => counter(member, 'rpc.serving') === 0, 3000, 'every call released')
    expect(counter(member, 'rpc.servingPeers')).toBe(0)
  }, 60_000)
})

describe('a member-looking node with a wrong cluster key', () => {
  it('is never a member, fills only its share of calls, and holds nothing once it stops', async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { members: 1, outside: 1 })
    const member = members[0]!
    const good = outside[0]!
    await good.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
    const imposter = await startNode({ network: member.network })
    await imposter.join('db', { key: generateKey(), onRequest: (d) => d })
    await waitFor(
      () => counter(member, 'announcements.refused.wrong-key') >= 1,
      5000,
      'its announcement refused',
    )
    const rpc = (imposter as unknown as { rpc: PeerRpc }).rpc
    const body = encodeFetchCall({
      ...(await hostedRef(member, 'orders')),
      offset: 1e6,
      maxBytes: 1024,
      waitMs: 0x7fffffff,
    })
    const calls = Array.from({ length: RPC.maxPerPeer + 200 }, () =>
      rpc.call(member.id, 's.fetch', body, { timeout: 120_000 }).catch((e: Error) => e),
    )
    await waitFor(() => counter(member, 'rpc.refused.peerLimit') >= 200, 10_000, 'refusals')
    const ack = await good.publish('orders.eu', 'fine', { ack: 'all', timeout: 5000 })
    expect(ack?.offset).toBe(0)
    expect(
      member
        .status()
        .clusters.find((c) => c.name === 'db')
        ?.members.map((m) => m.id),
    ).not.toContain(imposter.id)
    await imposter.stop()
    for (const r of await Promise.all(calls)) expect(r).toBeInstanceOf(Error)
    await waitFor(() => counter(member, 'rpc.serving') <= 1, 3000, "the imposter's calls released")
  }, 60_000)
})
