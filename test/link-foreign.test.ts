/**
 * A peer that once refused our link protocol (another network on the same peer id) is tried
 * again later instead of being ignored until restart (issue 19): the wait doubles up to a
 * bound, a sign that it speaks the protocol now ends it, and the set is bounded. Unit tests
 * against a scripted libp2p, and real nodes over loopback.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import type { PlexusNode } from '../src/index.js'
import { FOREIGN_MAX, FOREIGN_RETRY_MAX, FOREIGN_RETRY_MIN, LinkManager } from '../src/link/manager.js'
import type { PlexusLibp2p } from '../src/transport/libp2p.js'
import { startNode, uniqueNetwork, waitFor } from './helpers/nodes.js'

const PROTOCOL = '/plexus/y/link/1.0.0'
const peer = (id: string) => ({ toString: () => id }) as unknown as PeerId

/** A LinkManager on a libp2p where every peer refuses the link protocol; `dials` lists the attempts. */
async function refusing() {
  let t = 1_000_000
  const dials: Array<{ peer: string; at: number }> = []
  const events = new EventTarget()
  const libp2p = {
    handle: async () => {},
    unhandle: async () => {},
    addEventListener: events.addEventListener.bind(events),
    removeEventListener: events.removeEventListener.bind(events),
    getConnections: () => [],
    hangUp: async () => {},
    dialProtocol: async (p: PeerId) => {
      dials.push({ peer: p.toString(), at: t })
      throw Object.assign(new Error('protocol selection failed'), { name: 'UnsupportedProtocolError' })
    },
  } as unknown as PlexusLibp2p
  const links = new LinkManager(
    libp2p,
    { protocol: PROTOCOL, now: () => t },
    { onUp() {}, onDown() {}, onPeerGone() {}, onFrame() {} },
  )
  await links.start()
  cleanups.push(() => links.stop())
  return {
    links,
    dials,
    advance: (ms: number) => {
      t += ms
    },
    identify: (id: string, protocols: string[]) =>
      events.dispatchEvent(new CustomEvent('peer:identify', { detail: { peerId: peer(id), protocols } })),
  }
}

const cleanups: Array<() => Promise<void>> = []
const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
  await Promise.all(mine.splice(0).map((n) => n.stop())) // before their directories go
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

describe('LinkManager: peers that refused the link protocol', () => {
  it('are tried again after a wait that doubles up to FOREIGN_RETRY_MAX', async () => {
    const { links, dials, advance } = await refusing()
    const p = peer('P')
    await links.ensure(p)
    expect(dials).toHaveLength(1)
    advance(FOREIGN_RETRY_MIN - 1)
    await links.ensure(p)
    expect(dials).toHaveLength(1) // still waiting
    advance(1)
    await links.ensure(p)
    expect(dials).toHaveLength(2)
    // every refusal doubles the wait, up to the bound
    let wait = FOREIGN_RETRY_MIN
    for (let i = 0; i < 8; i++) {
      wait = Math.min(wait * 2, FOREIGN_RETRY_MAX)
      advance(wait - 1)
      await links.ensure(p)
      expect(dials).toHaveLength(2 + i)
      advance(1)
      await links.ensure(p)
      expect(dials).toHaveLength(3 + i)
    }
    expect(wait).toBe(FOREIGN_RETRY_MAX)
  })

  it('are tried at once when identify says they speak the protocol now', async () => {
    const { links, dials, identify } = await refusing()
    await links.ensure(peer('P'))
    expect(dials).toHaveLength(1)
    identify('P', ['/ipfs/id/1.0.0', '/plexus/x/link/1.0.0']) // still another network
    await new Promise((r) => setTimeout(r, 10))
    expect(dials).toHaveLength(1)
    identify('P', ['/ipfs/id/1.0.0', PROTOCOL])
    await new Promise((r) => setTimeout(r, 10))
    expect(dials).toHaveLength(2)
  })

  it(`remember at most FOREIGN_MAX (${FOREIGN_MAX}) peers, forgetting the oldest`, async () => {
    const { links, dials } = await refusing()
    for (let i = 0; i <= FOREIGN_MAX; i++) await links.ensure(peer(`P${i}`))
    expect(dials).toHaveLength(FOREIGN_MAX + 1)
    await links.ensure(peer(`P${FOREIGN_MAX}`)) // remembered
    expect(dials).toHaveLength(FOREIGN_MAX + 1)
    await links.ensure(peer('P0')) // forgotten: tried again
    expect(dials).toHaveLength(FOREIGN_MAX + 2)
  })
})

describe('a node restarted on our network with the same peer id', () => {
  // With same-host discovery B dials A and opens its link to A; without it A's bootstrap dial
  // reconnects (then B opens its link, and identify lists our protocol). Either way A links
  // well before the wait (FOREIGN_RETRY_MIN) is over.
  it.each([
    ['B finds A on this host', true],
    ['A re-dials its bootstrap address', false],
  ])(
    'is linked again without restarting the node that found it on another network (%s)',
    async (_, local) => {
      const root = await mkdtemp(join(tmpdir(), 'plexus-foreign-'))
      dirs.push(root)
      const ours = uniqueNetwork()
      // B starts on another network; A (ours) dials it and finds it does not speak our protocol
      let b = await startNode({ network: uniqueNetwork(), dataDir: join(root, 'b') })
      mine.push(b)
      const port = b.addresses.map((a) => /\/tcp\/(\d+)/.exec(a)?.[1]).find((x) => x !== undefined)!
      const bAddr = `/ip4/127.0.0.1/tcp/${port}/p2p/${b.id}`
      const a = await startNode({ network: ours, bootstrap: [bAddr] })
      mine.push(a)
      const foreign = (a as unknown as { links: { foreign: Map<string, unknown> } }).links.foreign
      await waitFor(() => foreign.has(b.id), 5000, 'A to find B foreign')
      const id = b.id
      await b.stop()
      // B again, on our network, same data dir (same peer id) and address
      b = await startNode({
        network: ours,
        dataDir: join(root, 'b'),
        listen: [`/ip4/127.0.0.1/tcp/${port}`],
        discovery: { local },
      })
      mine.push(b)
      expect(b.id).toBe(id)
      const t0 = Date.now()
      await waitFor(() => a.status().peers.some((p) => p.id === id), FOREIGN_RETRY_MIN - 1000, 'A to link B')
      expect(Date.now() - t0).toBeLessThan(FOREIGN_RETRY_MIN)
      expect(foreign.has(id)).toBe(false)
      expect(b.status().peers.some((p) => p.id === a.id)).toBe(true)
    },
    30_000,
  )
})
