/**
 * Stream administration needs the cluster key or a capability (docs/security.md, "Who may
 * do what"), checked by the metadata leader before it acts. Real nodes over loopback:
 * - a node without the key cannot create or delete a stream, and the stream's data
 *   directories on the members stay (before: its delete removed them);
 * - a joined member can; a node with the key as a call option or a node credential can;
 * - a capability holder can within the capability's operations, stream scope and expiry, and
 *   not beyond it, nor with a capability of another cluster, key or network;
 * - forged, altered, replayed-for-another-call and stale proofs sent as raw internal calls
 *   are refused;
 * - raft messages from a keyless node to the metadata group and its control group are dropped.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parseCapability, signAdminProof } from '../../src/cluster/capability.js'
import { ClusterSigner } from '../../src/cluster/proof.js'
import { generateKey, issueCapability } from '../../src/index.js'
import type { RaftTransport } from '../../src/replication/index.js'
import type { PeerRpc } from '../../src/rpc/rpc.js'
import { newRequestId } from '../../src/streams/meta/metadata.js'
import { decodeMetaReply, encodeMetaCall, type MetaCall, type MetaReply } from '../../src/streams/wire.js'
import { startNode, startStreamCluster, waitFor } from '../helpers/nodes.js'

const roots: string[] = []
// After every test's nodes have stopped (the helpers stop them after each test).
afterAll(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

async function tempRoot(): Promise<string> {
  const r = await mkdtemp(join(tmpdir(), 'plexus-authz-'))
  roots.push(r)
  return r
}

/** Stream directories (`<name>-<createdIndex>`) of `name` on each member. */
async function streamDirs(root: string, members: number, name: string): Promise<number[]> {
  return Promise.all(
    Array.from({ length: members }, async (_, i) => {
      try {
        const all = await readdir(join(root, `m${i}`, 'streams', 'db', 's'))
        return all.filter((d) => d.startsWith(`${name}-`)).length
      } catch {
        return 0
      }
    }),
  )
}

const cfg = (subject: string) => ({ cluster: 'db', subject, replicas: 3 })
const T = { timeout: 5000 }

describe('stream administration is authorized by the cluster key', () => {
  it('a keyless node can neither create nor delete a stream; the data stays on the members', async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { keyless: true })
    const keyless = outside[0]!
    await members[0]!.streams.create('orders', cfg('orders.>'))
    await members[0]!.publish('orders.eu', 'order 1', { ack: 'all' })
    await waitFor(async () => (await streamDirs(root, 3, 'orders')).every((n) => n === 1), 5000, 'dirs')

    await expect(keyless.streams.delete('orders', T)).rejects.toMatchObject({
      name: 'UnauthorizedError',
      message: expect.stringMatching(/delete of stream "orders" in cluster db needs the cluster key/),
    })
    await expect(keyless.streams.create('evil', cfg('evil.>'), T)).rejects.toMatchObject({
      name: 'UnauthorizedError',
    })
    await new Promise((r) => setTimeout(r, 300))
    expect(await streamDirs(root, 3, 'orders')).toEqual([1, 1, 1])
    expect(await streamDirs(root, 3, 'evil')).toEqual([0, 0, 0])
    const info = await keyless.streams.info('orders', T)
    expect(info.partitions[0]!.nextOffset).toBe(1)
    expect(members[0]!.streams.list().map((s) => s.name)).toEqual(['orders'])
  })

  it('a member, the key as a call option and the key as a node credential all may', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true, outside: 1 })
    const keyless = outside[0]!
    await members[1]!.streams.create('a', cfg('a.>'))
    await keyless.streams.create('b', cfg('b.>'), { clusterKey: key })
    const network = members[0]!.status().network
    const withCreds = await startNode({ network, credentials: { clusterKeys: { db: key } } })
    await waitFor(() => withCreds.streams.list().length === 2, 5000, 'tables')
    await withCreds.streams.create('c', cfg('c.>'))
    await waitFor(async () => (await streamDirs(root, 3, 'c')).every((n) => n === 1), 5000, 'dirs of c')

    await keyless.streams.delete('a', { clusterKey: key })
    await withCreds.streams.delete('b')
    await members[2]!.streams.delete('c')
    await waitFor(
      async () =>
        [...(await streamDirs(root, 3, 'a')), ...(await streamDirs(root, 3, 'c'))].every((n) => n === 0),
      5000,
      'deleted dirs',
    )
    // A wrong key is no key.
    await members[0]!.streams.create('d', cfg('d.>'))
    await expect(keyless.streams.delete('d', { ...T, clusterKey: generateKey() })).rejects.toMatchObject({
      name: 'UnauthorizedError',
      message: expect.stringMatching(/not signed with the cluster key/),
    })
    await expect(keyless.streams.delete('d', { clusterKey: 'short' })).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/options\.clusterKey/),
    })
  })

  it('a capability allows its operations on its streams until it expires, and nothing else', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true })
    const keyless = outside[0]!
    const network = members[0]!.status().network
    const hour = Date.now() + 3_600_000
    const createOrders = issueCapability(
      key,
      { cluster: 'db', ops: ['create'], stream: 'orders', expires: hour },
      network,
    )
    const adminAll = issueCapability(
      key,
      { cluster: 'db', ops: ['create', 'delete'], stream: 'tmp-*', expires: hour },
      network,
    )

    await keyless.streams.create('orders', cfg('orders.>'), { capability: createOrders })
    const refuse = (p: Promise<unknown>, why: RegExp) =>
      expect(p).rejects.toMatchObject({ name: 'UnauthorizedError', message: expect.stringMatching(why) })
    await refuse(
      keyless.streams.create('other', cfg('other.>'), { ...T, capability: createOrders }),
      /does not cover stream "other"/,
    )
    await refuse(
      keyless.streams.delete('orders', { ...T, capability: createOrders }),
      /does not grant delete/,
    )
    await refuse(
      keyless.streams.delete('orders', { ...T, capability: adminAll }),
      /does not cover stream "orders"/,
    )

    const expired = issueCapability(
      key,
      { cluster: 'db', ops: ['delete'], stream: '*', expires: Date.now() - 1 },
      network,
    )
    await refuse(keyless.streams.delete('orders', { ...T, capability: expired }), /expired/)
    const otherKey = issueCapability(
      generateKey(),
      { cluster: 'db', ops: ['delete'], stream: '*', expires: hour },
      network,
    )
    await refuse(
      keyless.streams.delete('orders', { ...T, capability: otherKey }),
      /not signed with the key of cluster db/,
    )
    const otherNet = issueCapability(
      key,
      { cluster: 'db', ops: ['delete'], stream: '*', expires: hour },
      'elsewhere',
    )
    await refuse(keyless.streams.delete('orders', { ...T, capability: otherNet }), /not signed with the key/)
    const otherCluster = issueCapability(
      key,
      { cluster: 'web', ops: ['delete'], stream: '*', expires: hour },
      network,
    )
    await refuse(keyless.streams.delete('orders', { ...T, capability: otherCluster }), /for cluster web/)
    expect(await streamDirs(root, 3, 'orders')).toEqual([1, 1, 1])

    // As a node credential: the first capability covering the call is used.
    const holder = await startNode({ network, credentials: { capabilities: [createOrders, adminAll] } })
    await waitFor(() => holder.streams.list().length === 1, 5000, 'table')
    await holder.streams.create('tmp-1', cfg('tmp.>'))
    await holder.streams.delete('tmp-1')
    await refuse(holder.streams.delete('orders', T), /needs the cluster key or a capability/)
    await expect(
      startNode({ network, credentials: { capabilities: ['pxc1.nope.nope'] } }),
    ).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/credentials\.capabilities\[0\]/),
    })
  })

  it("drops a keyless node's raft messages to the metadata group and its control group", async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { keyless: true })
    await members[0]!.streams.create('orders', cfg('orders.>'))
    const raft = (outside[0] as unknown as { raft: RaftTransport }).raft
    const refused = () => members.reduce((n, m) => n + (m.status().counters['raft.refused'] ?? 0), 0)
    const before = refused()
    for (const m of members)
      for (const group of ['meta/db', 'meta-ctl/db']) raft.send(group, m.id, new Uint8Array([1, 2, 3]))
    await waitFor(() => refused() - before >= 6, 5000, 'refused raft messages')
    expect((await members[1]!.streams.info('orders', T)).name).toBe('orders')
  })

  it('refuses forged, altered, replayed and stale proofs sent as raw internal calls', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true })
    const keyless = outside[0]!
    await members[0]!.streams.create('orders', cfg('orders.>'))
    const network = members[0]!.status().network
    const rpc = (keyless as unknown as { rpc: PeerRpc }).rpc
    const ids = members.map((m) => m.id)
    /** Sends `bytes` to the metadata leader (every member refuses a bad proof; it tries all). */
    const send = async (bytes: Uint8Array): Promise<MetaReply> => {
      for (let round = 0; round < 20; round++) {
        for (const id of ids) {
          const r = decodeMetaReply(await rpc.call(id, 's.meta', bytes, { timeout: 3000 }))
          if (r.status !== 'notLeader') return r
        }
        await new Promise((r) => setTimeout(r, 100))
      }
      throw new Error('no metadata leader')
    }
    const del = (name: string, requestId = newRequestId()): Extract<MetaCall, { op: 'delete' }> => ({
      op: 'delete',
      cluster: 'db',
      requestId,
      name,
    })
    const prove = (call: Extract<MetaCall, { op: 'delete' }>, signer: ClusterSigner, at = Date.now()) =>
      encodeMetaCall({ ...call, proof: signAdminProof({ signer }, encodeMetaCall(call), at) })
    const good = new ClusterSigner(new Uint8Array(Buffer.from(key, 'hex')), 'db', network)
    const unauthorized = (r: MetaReply, why: RegExp) => {
      expect(r).toMatchObject({ status: 'error', name: 'UnauthorizedError' })
      expect((r as { message: string }).message).toMatch(why)
    }

    unauthorized(await send(encodeMetaCall(del('orders'))), /needs the cluster key/)
    const forged = new ClusterSigner(new Uint8Array(Buffer.from(generateKey(), 'hex')), 'db', network)
    unauthorized(await send(prove(del('orders'), forged)), /not signed with the cluster key/)
    // A valid proof of another call (another stream, same request id) moved onto this one.
    const requestId = newRequestId()
    const other = prove(del('gone', requestId), good)
    const mine = encodeMetaCall(del('orders', requestId))
    const moved = new Uint8Array(mine.length + (other.length - encodeMetaCall(del('gone', requestId)).length))
    moved.set(mine)
    moved.set(other.subarray(encodeMetaCall(del('gone', requestId)).length), mine.length)
    unauthorized(await send(moved), /not signed with the cluster key/)
    // Replayed later: the time is outside the window.
    unauthorized(
      await send(prove(del('orders'), good, Date.now() - 120_000)),
      /more than 60 s from this member's clock/,
    )
    // A capability's token with a proof signed by someone other than its holder.
    const cap = parseCapability(
      issueCapability(
        key,
        { cluster: 'db', ops: ['delete'], stream: '*', expires: Date.now() + 60_000 },
        network,
      ),
      'cap',
    )
    const thief = parseCapability(
      issueCapability(
        generateKey(),
        { cluster: 'db', ops: ['delete'], stream: '*', expires: Date.now() + 60_000 },
        network,
      ),
      'thief',
    )
    const call = del('orders')
    const stolen = encodeMetaCall({
      ...call,
      proof: signAdminProof(
        { capability: { token: cap.token, holder: thief.holder } },
        encodeMetaCall(call),
        Date.now(),
      ),
    })
    unauthorized(await send(stolen), /not signed by the capability's holder/)
    // Garbage proof bytes.
    unauthorized(
      await send(encodeMetaCall({ ...del('orders'), proof: new Uint8Array([7, 1, 2]) })),
      /malformed proof/,
    )
    expect(await streamDirs(root, 3, 'orders')).toEqual([1, 1, 1])

    // The same raw path with a fresh, valid proof does delete (so the refusals above are the check).
    expect((await send(prove(del('orders'), good))).status).toBe('ok')
    await waitFor(async () => (await streamDirs(root, 3, 'orders')).every((n) => n === 0), 5000, 'deleted')
  })
})
