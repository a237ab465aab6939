/**
 * Per-peer bounds (issue 18, docs/security.md "Per-peer bounds"). A keyless hostile peer
 * (a plain libp2p node speaking our link protocol by hand) floods a node; a well-behaved
 * peer keeps working at the same time, and what the hostile peer held is released the
 * moment it disconnects (status counters polled with a deadline, no sleeping).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { RPC } from '../src/constants.js'
import type { PlexusNode } from '../src/index.js'
import { encodeFetchCall } from '../src/streams/wire.js'
import { HostilePeer } from './helpers/hostile-peer.js'
import { startStreamCluster, waitFor } from './helpers/nodes.js'

const roots: string[] = []
const hostiles: HostilePeer[] = []
afterEach(async () => {
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
function hostedRef(member: PlexusNode, stream: string) {
  const hosted = (
    member as unknown as {
      streamService: {
        hosted: Map<string, { meta: { name: string; createdIndex: number }; partition: number }>
      }
    }
  ).streamService.hosted
  const h = [...hosted.values()].find((x) => x.meta.name === stream)!
  return { stream, createdIndex: h.meta.createdIndex, partition: h.partition }
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
      ...hostedRef(member, 'orders'),
      offset: 1e9,
      maxBytes: 1024,
      waitMs: 0x7fffffff,
    })
    const flood = RPC.maxConcurrent + 808
    for (let i = 0; i < flood; i++) evil.call('s.fetch', body, 0x7fffffff)
    // Every call beyond what the node holds is refused at once.
    await waitFor(() => evil.replies.size >= flood - RPC.maxConcurrent, 20_000, 'refusals of the flood')
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
