/**
 * Member roles (issue 13, "Members say what they serve"), on real nodes over loopback: a
 * member's signed announcement says which of request, broadcast and tunnel handlers it has
 * and whether it stores streams; requests and tunnels go only to members that serve them,
 * `NoMembersError` says so when none does, status shows the roles (library and relay), and
 * roles cannot be forged (they are signed).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient } from '../relay/client/client.js'
import { formatStatus } from '../src/cli/commands/status.js'
import { MemberDirectory } from '../src/cluster/membership.js'
import { ClusterSigner, decodeAnnouncement } from '../src/cluster/proof.js'
import { LEGACY_ROLES } from '../src/cluster/roles.js'
import { generateKey, type PlexusNode } from '../src/index.js'
import { BinaryWriter } from '../src/util/binary.js'
import { startNode, stopStartedNodes, uniqueNetwork, waitFor, waitForMembers } from './helpers/nodes.js'

const dirs: string[] = []
const clients: RelayClient[] = []
afterEach(async () => {
  await stopStartedNodes() // before their directories go
  await Promise.all(clients.splice(0).map((c) => c.close()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'plexus-roles-'))
  dirs.push(d)
  return d
}

const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** README's durable-streams setup: storage-only members of `databases` and one service member. */
async function readmeCluster(storageOnly = 3): Promise<{
  storage: PlexusNode[]
  service: PlexusNode
  client: PlexusNode
  key: string
}> {
  const network = uniqueNetwork('roles')
  const root = await tmp()
  const key = generateKey()
  const storage = await Promise.all(
    Array.from({ length: storageOnly }, (_, i) => startNode({ network, dataDir: join(root, `s${i}`) })),
  )
  const service = await startNode({ network })
  const client = await startNode({ network })
  for (const s of storage) await s.join('databases', { key })
  await service.join('databases', { key, onRequest: (d) => new TextEncoder().encode(text(d).toUpperCase()) })
  await waitForMembers(client, 'databases', storageOnly + 1, 10_000)
  return { storage, service, client, key }
}

describe('member roles', () => {
  it('requests reach only the member with a request handler, never storage-only members', async () => {
    const { client } = await readmeCluster()
    for (let i = 0; i < 16; i++) {
      expect(text(await client.request('databases', `hello ${i}`, { timeout: 5000 }))).toBe(`HELLO ${i}`)
    }
  })

  it('says no member serves requests when none has a request handler', async () => {
    const network = uniqueNetwork('roles')
    const key = generateKey()
    const members = await Promise.all([0, 1, 2].map(() => startNode({ network })))
    const client = await startNode({ network })
    for (const m of members) await m.join('databases', { key, onBroadcast: () => {} })
    await waitForMembers(client, 'databases', 3)
    const err = await client.request('databases', 'x', { timeout: 5000 }).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.name).toBe('NoMembersError')
    expect(err?.message).toBe(
      'no member of databases serves requests: 3 members, none with a request handler',
    )
    // A member asking its own cluster gets the same answer.
    const own = await members[0]!.request('databases', 'x', { timeout: 5000 }).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(own?.name).toBe('NoMembersError')
  })

  it('tunnels go only to members with a tunnel handler; none is NoMembersError, not Overloaded', async () => {
    const network = uniqueNetwork('roles')
    const key = generateKey()
    const plain = await Promise.all([0, 1, 2].map(() => startNode({ network })))
    const client = await startNode({ network })
    for (const m of plain) await m.join('files', { key, onRequest: (d) => d })
    await waitForMembers(client, 'files', 3)
    const err = await client.tunnel('files', { timeout: 5000 }).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.name).toBe('NoMembersError')
    expect(err?.message).toBe('no member of files accepts tunnels: 3 members, none with a tunnel handler')
    const echo = await startNode({ network })
    await echo.join('files', {
      key,
      onTunnel: async (t) => {
        for await (const m of t) await t.send(m)
        await t.close()
      },
    })
    await waitForMembers(client, 'files', 4)
    for (let i = 0; i < 6; i++) {
      const t = await client.tunnel('files', { timeout: 5000 })
      await t.send(`ping ${i}`)
      const it = t[Symbol.asyncIterator]()
      expect(text((await it.next()).value as Uint8Array)).toBe(`ping ${i}`)
      await t.close()
    }
  })

  it('status shows each member its roles, the same on every node', async () => {
    const { storage, service, client } = await readmeCluster(1)
    const view = (n: PlexusNode) =>
      Object.fromEntries(
        n
          .status()
          .clusters.find((c) => c.name === 'databases')!
          .members.map((m) => [m.id, m.roles]),
      )
    const expected = {
      [storage[0]!.id]: { request: false, broadcast: false, tunnel: false, storage: true },
      [service.id]: { request: true, broadcast: false, tunnel: false, storage: false },
    }
    expect(view(client)).toEqual(expected)
    expect(view(storage[0]!)).toEqual(expected)
    expect(view(service)).toEqual(expected)
    // plexus status: a ROLES column.
    const lines = formatStatus(client.status()).split('\n')
    expect(lines.some((l) => /MEMBER.*ROLES/.test(l))).toBe(true)
    const row = (id: string) => lines.filter((l) => l.includes(id)).map((l) => l.trimEnd().split(' ').pop())
    expect(row(storage[0]!.id)).toContain('storage')
    expect(row(service.id)).toContain('request')
  })

  it('a relay client that joins and serves has the roles of the handlers it registered', async () => {
    const network = uniqueNetwork('roles')
    const key = generateKey()
    const host = await startNode({ network, relay: { port: 0 } })
    const caller = await startNode({ network })
    const relay = await connectRelay({ address: host.relayAddress! })
    clients.push(relay)
    await relay.join('workers', { key, onRequest: (d) => d, onBroadcast: () => {} })
    await waitForMembers(caller, 'workers', 1)
    const st = await relay.status()
    const m = st.clusters.find((c) => c.name === 'workers')!.members
    expect(m.map((x) => x.roles)).toEqual([{ request: true, broadcast: true, tunnel: false, storage: false }])
    expect(text(await caller.request('workers', 'via relay', { timeout: 5000 }))).toBe('via relay')
    const err = await caller.tunnel('workers', { timeout: 5000 }).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.name).toBe('NoMembersError')
  })
})

describe('signed roles', () => {
  it('an announcement whose roles were changed on the way is refused (bad signature)', () => {
    const network = uniqueNetwork('roles')
    const signer = new ClusterSigner(new Uint8Array(32).fill(7), 'databases', network)
    const now = Date.now()
    const bytes = signer.announce(1, 'peer-a', now, ['/ip4/127.0.0.1/tcp/1'], {
      request: false,
      broadcast: false,
      tunnel: false,
      storage: true,
    })
    const a = decodeAnnouncement(bytes)
    expect(a.roles).toEqual({ request: false, broadcast: false, tunnel: false, storage: true })
    const changed: string[] = []
    const dir = new MemberDirectory({
      network,
      self: 'peer-self',
      now: () => now,
      addresses: () => [],
      flood: () => {},
      changed: (_c, peer) => changed.push(peer),
    })
    // Flip every role bit in turn (and all of them): never accepted.
    const rolesAt = bytes.length - 64 - 32 - 1
    for (const flip of [1, 2, 4, 8, 15]) {
      const forged = bytes.slice()
      forged[rolesAt]! ^= flip
      expect(dir.receive(forged, 'peer-x')).toBe(false)
    }
    expect(dir.refused.signature).toBe(5)
    expect(changed).toEqual([])
    expect(dir.receive(bytes, 'peer-x')).toBe(true)
    expect(dir.members('databases').map((m) => m.roles)).toEqual([
      { request: false, broadcast: false, tunnel: false, storage: true },
    ])
  })

  it('a version 1 announcement (before roles) is accepted as serving every role', () => {
    const network = uniqueNetwork('roles')
    const signer = new ClusterSigner(new Uint8Array(32).fill(9), 'databases', network)
    const now = Date.now()
    const w = new BinaryWriter(128).u8(1).u8(1).str('databases').str('old-peer').u64(now).u16(0)
    const signed = w.raw(signer.publicKey).finish().slice()
    const sig = signer.sign('plexus-announce/1', signed)
    const bytes = new Uint8Array([...signed, ...sig])
    const dir = new MemberDirectory({
      network,
      self: 'peer-self',
      now: () => now,
      addresses: () => [],
      flood: () => {},
      changed: () => {},
    })
    expect(dir.receive(bytes, 'old-peer')).toBe(true)
    expect(dir.members('databases')[0]!.roles).toEqual(LEGACY_ROLES)
    expect(dir.servers('databases', 'request')).toEqual(['old-peer'])
  })

  it('members see the new roles of a member that joins again with other handlers', async () => {
    const network = uniqueNetwork('roles')
    const key = generateKey()
    const a = await startNode({ network })
    const b = await startNode({ network })
    const m = await a.join('c1', { key })
    await waitForMembers(b, 'c1', 1)
    const roles = () => b.status().clusters.find((c) => c.name === 'c1')?.members[0]?.roles
    expect(roles()).toEqual({ request: false, broadcast: false, tunnel: false, storage: false })
    await m.leave()
    await waitFor(() => roles() === undefined, 5000, 'leave seen')
    await a.join('c1', { key, onTunnel: () => {} })
    await waitFor(() => roles()?.tunnel === true, 5000, 'new roles seen')
  })
})
