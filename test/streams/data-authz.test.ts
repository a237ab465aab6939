/**
 * Publishing to and reading from a stream whose `access` asks for a capability
 * (docs/security.md, "Who may do what"; src/streams/access/grants.ts). Real nodes over loopback:
 * - open streams work for a keyless node as before;
 * - a capability stream refuses a keyless node's publish and read (plain and durable) with
 *   `UnauthorizedError`, and nothing is appended;
 * - members, a node with the cluster key as a credential, and holders of a capability
 *   (call option or node credential) may, within its operation, stream, subject and expiry;
 * - expired, other-stream, other-op, other-subject, other-cluster, other-network and altered
 *   capabilities are refused; so are raw internal calls naming a hash presented by another
 *   peer, and a presentation signed by a peer that does not hold the capability's secret.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parseCapability, signPresentation } from '../../src/cluster/capability.js'
import { generateKey, issueCapability, type PlexusNode } from '../../src/index.js'
import type { PeerRpc } from '../../src/rpc/rpc.js'
import { dataAuth } from '../../src/streams/access/grants.js'
import { writePubHead, writePubMessage } from '../../src/streams/wire.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { startNode, startStreamCluster } from '../helpers/nodes.js'

const roots: string[] = []
afterAll(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

async function tempRoot(): Promise<string> {
  const r = await mkdtemp(join(tmpdir(), 'plexus-data-authz-'))
  roots.push(r)
  return r
}

const T = { timeout: 4000 }
const LOCKED = { publish: 'capability', consume: 'capability' } as const
const inAnHour = () => Date.now() + 3_600_000

/** The first message `node` reads from `stream` (or the error the read ends with). */
async function firstRead(node: PlexusNode, stream: string, opts: Record<string, unknown> = {}) {
  const c = node.consume(stream, opts)
  try {
    const r = await c[Symbol.asyncIterator]().next()
    return r.value
  } finally {
    c.close()
  }
}

const nextOffset = async (node: PlexusNode, stream: string) =>
  (await node.streams.info(stream, T)).partitions[0]!.nextOffset

const refused = (p: Promise<unknown>, why?: RegExp) =>
  expect(p).rejects.toMatchObject({
    name: 'UnauthorizedError',
    ...(why ? { message: expect.stringMatching(why) } : {}),
  })

describe('publish and consume access', () => {
  it('open streams stay open; a capability stream refuses a keyless node and stores nothing', async () => {
    const root = await tempRoot()
    const { members, outside } = await startStreamCluster(root, { keyless: true })
    const [m] = members
    const keyless = outside[0]!
    await m!.streams.create('open', { cluster: 'db', subject: 'open.>', replicas: 3 })
    const info = await m!.streams.create('locked', {
      cluster: 'db',
      subject: 'locked.>',
      replicas: 3,
      access: LOCKED,
    })
    expect(info.access).toEqual(LOCKED)
    expect((await keyless.streams.info('open', T)).access).toEqual({ publish: 'open', consume: 'open' })

    expect(await keyless.publish('open.a', 'x', { ack: 'all' })).toMatchObject({ offset: 0 })
    expect((await firstRead(keyless, 'open'))?.data).toBeDefined()

    await refused(
      keyless.publish('locked.a', 'x', { ack: 'all', ...T }),
      /needs a capability granting publish/,
    )
    await refused(firstRead(keyless, 'locked'), /needs a capability granting consume/)
    await refused(firstRead(keyless, 'locked', { durable: 'd1' }), /needs a capability granting consume/)
    expect(await nextOffset(m!, 'locked')).toBe(0)
    // Listing durables stays open, like streams.info.
    await expect(keyless.streams.consumers('locked', T)).resolves.toBeDefined()

    // Members always may (here a member that is not the leader, and the leader itself).
    for (const node of members) await node.publish('locked.a', 'from a member', { ack: 'all' })
    expect(await nextOffset(m!, 'locked')).toBe(3)
    expect(new TextDecoder().decode((await firstRead(members[2]!, 'locked'))!.data)).toBe('from a member')

    // A raw publish call from the keyless node: refused by the leader, nothing appended.
    const rpc = (keyless as unknown as { rpc: PeerRpc }).rpc
    const meta = (await keyless.streams.info('locked', T)).partitions[0]!
    const leader = meta.leader!
    const ref = (
      keyless as unknown as {
        streamService: { directory: { get(n: string): { meta: { createdIndex: number } } } }
      }
    ).streamService.directory.get('locked')!.meta
    const raw = writePubHead(
      new BinaryWriter(256),
      { stream: 'locked', createdIndex: ref.createdIndex, partition: 0 },
      'all',
      1,
    )
    writePubMessage(raw, {
      topic: 'locked.raw',
      msgId: undefined,
      key: undefined,
      headers: undefined,
      data: new Uint8Array(3),
    })
    await refused(rpc.call(leader, 's.pub', raw.finish().slice(), T), /needs a capability/)
    expect(await nextOffset(m!, 'locked')).toBe(3)
  })

  it('a capability allows its operation, stream and subject until it expires, and nothing else', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true, outside: 2 })
    const [m] = members
    const [keyless, thief] = outside as [PlexusNode, PlexusNode]
    const network = m!.status().network
    await m!.streams.create('locked', { cluster: 'db', subject: 'locked.>', replicas: 3, access: LOCKED })
    const cap = (grant: Record<string, unknown>, k = key, net = network) =>
      issueCapability(
        k,
        { cluster: 'db', stream: 'locked', expires: inAnHour(), ops: ['publish'], ...grant } as never,
        net,
      )

    const pub = cap({ ops: ['publish'] })
    const sub = cap({ ops: ['consume'] })
    expect(await keyless.publish('locked.a', 'one', { ack: 'all', capability: pub })).toMatchObject({
      offset: 0,
    })
    expect(new TextDecoder().decode((await firstRead(keyless, 'locked', { capability: sub }))!.data)).toBe(
      'one',
    )
    const d = await firstRead(keyless, 'locked', { capability: sub, durable: 'keyless' })
    expect(d?.offset).toBe(0)

    // Another operation, stream, subject, cluster, network, key; an altered token.
    await refused(
      keyless.publish('locked.a', 'x', { ack: 'all', ...T, capability: sub }),
      /does not grant publish/,
    )
    await refused(firstRead(keyless, 'locked', { capability: pub }), /does not grant consume/)
    await refused(
      keyless.publish('locked.a', 'x', { ack: 'all', ...T, capability: cap({ stream: 'other' }) }),
      /does not cover stream "locked"/,
    )
    const eu = cap({ ops: ['publish', 'consume'], subject: 'locked.eu.>' })
    expect(await keyless.publish('locked.eu.1', 'eu', { ack: 'all', capability: eu })).toMatchObject({
      offset: 1,
    })
    await refused(
      keyless.publish('locked.us.1', 'us', { ack: 'all', ...T, capability: eu }),
      /outside the capability's subject/,
    )
    await refused(firstRead(keyless, 'locked', { capability: eu }), /does not cover the stream's subject/)
    await refused(
      keyless.publish('locked.a', 'x', { ack: 'all', ...T, capability: cap({ cluster: 'web' }) }),
      /not a member of cluster web|for cluster web/,
    )
    await refused(
      keyless.publish('locked.a', 'x', { ack: 'all', ...T, capability: cap({}, key, 'elsewhere') }),
      /not signed with the key of cluster db/,
    )
    await refused(
      keyless.publish('locked.a', 'x', { ack: 'all', ...T, capability: cap({}, generateKey()) }),
      /not signed with the key of cluster db/,
    )
    // Altered: the same token with the stream scope widened to '*' (the signature breaks).
    const [, tok, secret] = cap({ stream: 'lockex' }).split('.')
    const bytes = Buffer.from(tok!, 'base64url')
    const at = bytes.indexOf(Buffer.from('lockex'))
    bytes.write('locked', at)
    await refused(
      keyless.publish('locked.a', 'x', {
        ack: 'all',
        ...T,
        capability: `pxc1.${bytes.toString('base64url')}.${secret}`,
      }),
      /not signed with the key of cluster db/,
    )
    expect(await nextOffset(m!, 'locked')).toBe(2)

    // Expiry: allowed until then, refused after (the member forgets the grant and the new
    // presentation is refused).
    const short = cap({ expires: Date.now() + 1500 })
    await keyless.publish('locked.a', 'before', { ack: 'all', capability: short })
    await new Promise((r) => setTimeout(r, 1600))
    await refused(keyless.publish('locked.a', 'after', { ack: 'all', ...T, capability: short }), /expired/)
    expect(await nextOffset(m!, 'locked')).toBe(3)

    // Another peer naming the hash `keyless` presented gets nothing from it; presenting the
    // token with a signature of its own (it lacks the secret) is refused.
    const rpc = (thief as unknown as { rpc: PeerRpc }).rpc
    const leader = (await thief.streams.info('locked', T)).partitions[0]!.leader!
    const known = (
      thief as unknown as {
        streamService: { directory: { get(n: string): { meta: { createdIndex: number } } } }
      }
    ).streamService.directory.get('locked')!.meta
    const raw = writePubHead(
      new BinaryWriter(256),
      { stream: 'locked', createdIndex: known.createdIndex, partition: 0 },
      'all',
      1,
    )
    writePubMessage(raw, {
      topic: 'locked.t',
      msgId: undefined,
      key: undefined,
      headers: undefined,
      data: new Uint8Array(1),
    })
    raw.bytes(dataAuth(parseCapability(pub, 'pub')).hash)
    await refused(rpc.call(leader, 's.pub', raw.finish().slice(), T), /was not presented to this member/)
    const stolen = parseCapability(pub, 'pub')
    const own = parseCapability(cap({}), 'own')
    const forgedPresentation = signPresentation(
      { token: stolen.token, holder: own.holder },
      thief.id,
      leader,
      Date.now(),
    )
    await refused(rpc.call(leader, 's.grant', forgedPresentation, T), /holder did not sign/)
    // A presentation made by `keyless` for the leader, replayed by `thief`: bound to keyless.
    const replay = signPresentation(stolen, keyless.id, leader, Date.now())
    await refused(rpc.call(leader, 's.grant', replay, T), /holder did not sign/)
    expect(await nextOffset(m!, 'locked')).toBe(3)
  })

  it('node credentials: the cluster key or a capability is used automatically', async () => {
    const root = await tempRoot()
    const { members, key } = await startStreamCluster(root, { keyless: true, outside: 0 })
    const [m] = members
    const network = m!.status().network
    await m!.streams.create('locked', { cluster: 'db', subject: 'locked.>', replicas: 3, access: LOCKED })
    const withKey = await startNode({ network, credentials: { clusterKeys: { db: key } } })
    const both = issueCapability(
      key,
      { cluster: 'db', stream: 'lock*', ops: ['publish', 'consume'], expires: inAnHour() },
      network,
    )
    const withCap = await startNode({ network, credentials: { capabilities: [both] } })
    for (const n of [withKey, withCap]) {
      await expect(n.streams.info('locked', T)).resolves.toBeDefined()
      await n.publish('locked.a', n.id, { ack: 'all' })
      expect((await firstRead(n, 'locked'))?.offset).toBe(0)
      expect((await firstRead(n, 'locked', { durable: `d${n.id.slice(-4)}` }))?.offset).toBe(0)
    }
    expect(await nextOffset(m!, 'locked')).toBe(2)
  })
})
