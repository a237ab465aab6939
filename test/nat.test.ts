/**
 * Circuit relay on loopback (issue 15, "the unreachable are reachable"): a member that
 * listens on nothing (it can only dial out, like a node behind a NAT) reserves a slot on a
 * relay server and is reached through it; the link runs end-to-end encrypted over the
 * circuit and status says it is relayed and why. A relay serves only nodes of its own
 * network. Namespaces with a real NAT: test/nat-netns.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from './helpers/nodes.js'

const relayedAddr = (n: PlexusNode) => n.status().addresses.find((a) => a.includes('/p2p-circuit'))

describe('circuit relay (loopback)', () => {
  it('a member that cannot be dialled serves requests, broadcasts and a tunnel through a relay (with a network key)', async () => {
    const network = uniqueNetwork('nat')
    const networkKey = generateKey()
    // No DHT: the member must not learn the client's address (it would dial it directly).
    const base = { network, networkKey, discovery: { local: false, dht: false } }
    const relay = await startNode({ ...base, circuitRelay: { server: true } })
    const bootstrap = [relay.addresses[0]!]
    const member = await startNode({ ...base, listen: [], bootstrap, circuitRelay: { reserve: 'always' } })
    const key = generateKey()
    const broadcasts: string[] = []
    await member.join('svc', {
      key,
      onRequest: (data) => `ok ${new TextDecoder().decode(data)}`,
      onBroadcast: (data) => void broadcasts.push(new TextDecoder().decode(data)),
      onTunnel: async (t) => {
        for await (const m of t) await t.send(m)
        await t.close()
      },
    })
    await waitFor(() => relayedAddr(member) !== undefined, 10_000, 'a relayed address on the member')
    expect(member.status().nat?.reservations).toEqual([relay.id])
    expect(relay.status().nat?.serving).toEqual([member.id])

    // The client cannot be dialled either: the two meet only through the relay.
    const client = await startNode({ ...base, listen: [], bootstrap })
    await waitForMembers(client, 'svc', 1, 15_000)
    expect(new TextDecoder().decode(await client.request('svc', 'a', { timeout: 5000 }))).toBe('ok a')
    const link = client.status().peers.find((p) => p.id === member.id)!
    expect(link.relayed).toBe(true)
    expect(link.addresses.every((a) => a.includes(`/p2p/${relay.id}/p2p-circuit`))).toBe(true)
    // Noise runs between client and member over the circuit: the relay sees ciphertext only.
    expect(link.encryption).toMatch(/noise/)
    await waitFor(
      () =>
        client
          .status()
          .peers.find((p) => p.id === member.id)
          ?.relayedReason?.includes('address') ?? false,
      5000,
      'the reason the link stays relayed',
    )
    console.log(
      `relayed link reason: ${client.status().peers.find((p) => p.id === member.id)!.relayedReason}`,
    )
    const { formatStatus } = await import('../src/cli/commands/status.js')
    const printed = formatStatus(client.status())
    expect(printed).toContain(`${member.id} is relayed (circuit relay limits apply): no direct address`)
    expect(formatStatus(member.status())).toContain(`circuit relay slots on: ${relay.id}`)

    expect(await client.broadcast('svc', 'b1')).toBe(1)
    await waitFor(() => broadcasts.length === 1, 5000, 'the broadcast')
    expect(broadcasts).toEqual(['b1'])

    const t = await client.tunnel('svc')
    const sent = Array.from({ length: 20 }, (_, i) => `m${i}`)
    for (const m of sent) await t.send(m)
    const got: string[] = []
    for await (const m of t) {
      got.push(new TextDecoder().decode(m))
      if (got.length === sent.length) break
    }
    expect(got).toEqual(sent)
    await t.close()
  }, 40_000)

  it('a relay serves only peers that speak its network link protocol (the gate)', async () => {
    const { NatService } = await import('../src/transport/nat.js')
    const protocolsOf: Record<string, string[]> = {
      ours: ['/plexus/n1/link/1.0.0', '/ipfs/id/1.0.0'],
      theirs: ['/plexus/n2/link/1.0.0'],
    }
    const peerStore = {
      get: async (p: { toString(): string }) => {
        const protocols = protocolsOf[p.toString()]
        if (!protocols) throw new Error('NotFound')
        return { protocols }
      },
    }
    const nat = new NatService({ peerStore } as never, {
      linkProtocol: '/plexus/n1/link/1.0.0',
      reserve: 'never',
      reservations: 1,
      server: true,
    })
    const id = (s: string) => ({ toString: () => s }) as never
    expect(await nat.foreign(id('ours'))).toBe(false)
    expect(await nat.foreign(id('theirs'))).toBe(true)
    expect(await nat.foreign(id('unknown'))).toBe(true)
  })

  it('validates the option', async () => {
    const { createNode } = await import('../src/index.js')
    await expect(createNode({ circuitRelay: { reserve: 'sometimes' as never } })).rejects.toThrow(
      /circuitRelay.reserve/,
    )
    await expect(createNode({ circuitRelay: { reservations: 0 } })).rejects.toThrow(
      /circuitRelay.reservations/,
    )
    await expect(createNode({ circuitRelay: { bogus: 1 } as never })).rejects.toThrow(/bogus/)
  })
})
