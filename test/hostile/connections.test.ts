/**
 * Hostile peers at the connection level (issue 18): one host opening connections it never
 * upgrades, and one peer opening streams by the hundred on a connection. The victim keeps
 * serving a good peer (a request rate measured against a baseline taken in the same test),
 * other hosts still connect, and everything the attacker held is released once it leaves.
 */
import { connect, type Socket } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { CONNECTIONS } from '../../src/constants.js'
import { protocols } from '../../src/transport/libp2p.js'
import { keylessLibp2p } from '../helpers/keyless-libp2p.js'
import { startNode, waitFor, waitForMembers } from '../helpers/nodes.js'
import { counter, expectServed, requestRate, victimAndGood } from './harness.js'

/** The victim's TCP port on 127.0.0.1. */
function portOf(addrs: string[]): number {
  const a = addrs.find((x) => x.includes('/ip4/127.0.0.1/tcp/'))!
  return Number(a.split('/tcp/')[1]!.split('/')[0])
}

/** Opens `n` raw TCP connections from `from` (a loopback address) that never say a word. */
async function halfOpen(
  port: number,
  from: string,
  n: number,
): Promise<{ sockets: Socket[]; closed: () => number }> {
  let closed = 0
  const sockets = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = connect({ port, host: '127.0.0.1', localAddress: from })
          s.on('connect', () => resolve(s))
          s.on('error', reject)
          s.on('close', () => closed++)
        }),
    ),
  )
  return { sockets, closed: () => closed }
}

describe('hostile connections', () => {
  it('a host leaving connections half-open takes only its share of pending upgrades; others still connect', async () => {
    const { victim, good, key } = await victimAndGood()
    const baseline = await requestRate(good, 'db')
    const port = portOf(victim.addresses)

    // 2 × the per-host bound, more than every host's pending upgrades together.
    const n = CONNECTIONS.maxPendingInbound + 44
    const attack = await halfOpen(port, '127.0.0.2', n)
    await waitFor(
      () => counter(victim, 'connections.refused.pending') >= n - CONNECTIONS.pendingPerHost,
      10_000,
      'pending refusals',
    )
    // The victim closed exactly the connections over the host's share.
    await waitFor(() => attack.closed() >= n - CONNECTIONS.pendingPerHost, 10_000, 'refused sockets closed')
    expect(attack.closed()).toBe(n - CONNECTIONS.pendingPerHost)

    await expectServed('half-open connections', baseline, good)
    // A new node from another host address connects, links and joins meanwhile (without the
    // per-host bound the half-open connections fill every pending slot and it never does).
    // (It only dials: same-host discovery off, so the victim cannot dial it instead.)
    const late = await startNode({
      network: victim.network,
      bootstrap: victim.addresses,
      discovery: { local: false, mdns: false },
    })
    await late.join('db', { key })
    await waitForMembers(victim, 'db', 3, 10_000)

    // Released when the attacker goes: its next connections are admitted again.
    for (const s of attack.sockets) s.destroy()
    const before = counter(victim, 'connections.refused.pending')
    const again = await halfOpen(port, '127.0.0.2', CONNECTIONS.pendingPerHost)
    // Admitted connections stay open; give the victim a moment to refuse any (it would at once).
    await new Promise((r) => setTimeout(r, 300))
    expect(again.closed()).toBe(0)
    expect(counter(victim, 'connections.refused.pending')).toBe(before)
    for (const s of again.sockets) s.destroy()
  }, 30_000)

  it('a peer opening streams by the hundred on one connection is reset beyond the bound and served as before', async () => {
    const { victim, good } = await victimAndGood()
    const baseline = await requestRate(good, 'db')
    const evil = await keylessLibp2p(victim.network)
    try {
      const addr = multiaddr(victim.addresses.find((a) => a.includes('127.0.0.1'))!)
      const conn = await evil.dial(addr)
      const link = protocols(victim.network).link
      // Open many streams at once: link streams (8 per connection allowed), pings, and unknown protocols.
      const opened = await Promise.allSettled(
        Array.from({ length: 400 }, (_, i) =>
          conn.newStream(i % 2 === 0 ? link : `/evil/${i}`, { signal: AbortSignal.timeout(5000) }),
        ),
      )
      const ok = opened.filter((o) => o.status === 'fulfilled').length
      expect(ok).toBeLessThanOrEqual(CONNECTIONS.inboundStreams)
      await expectServed('stream flood', baseline, good)
      await conn.close().catch(() => {})
      await evil.stop()
      // The victim holds no connection to the attacker any more.
      await waitFor(
        () => victim.status().peers.every((p) => p.id !== evil.peerId.toString()),
        10_000,
        'attacker gone',
      )
      await expectServed('after the stream flood', baseline, good)
    } finally {
      await Promise.resolve(evil.stop()).catch(() => {})
    }
  }, 30_000)
})
