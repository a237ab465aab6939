/**
 * Durable streams with any mix of members and any peer-id order (issue 13): members of a
 * cluster without a data directory neither block the metadata group nor are placed, and
 * `streams.create` with too few storage members fails at once with `NotEnoughReplicasError`
 * naming how many there are. Real nodes over loopback; peer ids of the storage members are
 * generated from a seeded PRNG around the random ids of the members without a data
 * directory, so that in many orders (and in every even-numbered one) a member without a data
 * directory holds the lowest peer id. The seed is printed on failure (TEST_SEED replays it).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPairFromSeed, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../../src/index.js'
import { IDENTITY_FILE } from '../../src/transport/identity.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from '../helpers/rng.js'

const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  await Promise.all(mine.splice(0).map((n) => n.stop())) // before their directories go
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'plexus-mixed-'))
  dirs.push(d)
  return d
}

const SEED = testSeed()
const ORDERS = Number(process.env.MIXED_ORDERS ?? 12)

/**
 * Writes identities into `dirs` (one each) whose peer ids fall into the wanted gaps around
 * the sorted `others`: gap g is below others[0] for g = 0, between others[g-1] and others[g],
 * above the last for g = others.length. Keys come from `rand`. Returns the peer ids.
 */
async function placeIdentities(
  rand: () => number,
  others: string[],
  gaps: number[],
  dataDirs: string[],
): Promise<string[]> {
  const sorted = [...others].sort()
  const gapOf = (id: string) => sorted.filter((o) => o < id).length
  const want = new Map<number, number>()
  for (const g of gaps) want.set(g, (want.get(g) ?? 0) + 1)
  const found = new Map<number, Array<{ id: string; bytes: Uint8Array }>>()
  for (let tries = 0; [...want.values()].some((n) => n > 0); tries++) {
    if (tries > 50_000) throw new Error(`no identities for gaps ${gaps} around ${sorted} (seed ${SEED})`)
    const key = await generateKeyPairFromSeed('Ed25519', randomBytesFrom(rand, 32))
    const id = peerIdFromPrivateKey(key).toString()
    const g = gapOf(id)
    if ((want.get(g) ?? 0) === 0) continue
    want.set(g, want.get(g)! - 1)
    if (!found.has(g)) found.set(g, [])
    found.get(g)!.push({ id, bytes: privateKeyToProtobuf(key) })
  }
  const ids: string[] = []
  for (const [i, g] of gaps.entries()) {
    const { id, bytes } = found.get(g)!.pop()!
    await mkdir(dataDirs[i]!, { recursive: true })
    await writeFile(join(dataDirs[i]!, IDENTITY_FILE), bytes)
    ids.push(id)
  }
  return ids
}

/**
 * One mix: `plain` members without a data directory (each serving requests, like the
 * README's `--exec` member) and `storage` members with one, with storage peer ids in `gaps`
 * around the plain members' ids.
 */
async function startMix(
  rand: () => number,
  plain: number,
  gaps: number[],
): Promise<{ plain: PlexusNode[]; storage: PlexusNode[]; all: PlexusNode[] }> {
  const network = uniqueNetwork('mixed')
  const root = await tmp()
  const key = generateKey()
  const plainNodes = await Promise.all(Array.from({ length: plain }, () => startNode({ network })))
  const dataDirs = gaps.map((_, i) => join(root, `s${i}`))
  const ids = await placeIdentities(
    rand,
    plainNodes.map((n) => n.id),
    gaps,
    dataDirs,
  )
  const storage = await Promise.all(dataDirs.map((dataDir) => startNode({ network, dataDir })))
  expect(storage.map((s) => s.id)).toEqual(ids)
  for (const p of plainNodes) await p.join('db', { key, onRequest: (d) => d })
  for (const s of storage) await s.join('db', { key })
  const all = [...plainNodes, ...storage]
  mine.push(...all)
  for (const n of all) await waitForMembers(n, 'db', all.length, 10_000)
  return { plain: plainNodes, storage, all }
}

async function failure(p: Promise<unknown>): Promise<{ err: Error | undefined; ms: number }> {
  const t0 = Date.now()
  const err = await p.then(
    () => undefined,
    (e: Error) => e,
  )
  return { err, ms: Date.now() - t0 }
}

describe(`streams with mixed members (seed ${SEED})`, () => {
  it(
    `forms the metadata group among storage members in ${ORDERS} random identity orders`,
    async () => {
      let plainLowest = 0
      for (let order = 0; order < ORDERS; order++) {
        const rand = mulberry32(SEED + order)
        const plain = 1 + Math.floor(rand() * 2)
        const storageCount = 1 + Math.floor(rand() * 3)
        // Even orders: every storage id above the lowest plain id; odd ones: anywhere.
        const gaps = Array.from({ length: storageCount }, () =>
          order % 2 === 0 ? 1 + Math.floor(rand() * plain) : Math.floor(rand() * (plain + 1)),
        )
        const where = `order ${order} (seed ${SEED}, ${plain} plain, storage gaps ${gaps})`
        const mix = await startMix(rand, plain, gaps)
        try {
          const minId = (ns: PlexusNode[]) => ns.map((n) => n.id).sort()[0]!
          if (minId(mix.plain) < minId(mix.storage)) plainLowest++
          const lowest = [...mix.all].sort((a, b) => (a.id < b.id ? -1 : 1))[0]!
          const replicas = 1 + Math.floor(rand() * storageCount)
          const partitions = 1 + Math.floor(rand() * 2)
          const creator = order % 3 === 0 ? lowest : mix.plain[order % plain]!
          const info = await creator.streams
            .create(
              `s${order}`,
              { cluster: 'db', subject: `s${order}.>`, replicas, partitions },
              { timeout: 15_000 },
            )
            .catch((err: Error) => {
              throw new Error(`${where}: create failed: ${err.name}: ${err.message}`)
            })
          const storageIds = new Set(mix.storage.map((s) => s.id))
          for (const p of info.partitions) {
            expect(p.replicas, where).toHaveLength(replicas)
            for (const r of p.replicas) expect(storageIds.has(r), `${where}: ${r} placed`).toBe(true)
          }
          const publisher = mix.plain[0]!
          await waitFor(
            () => publisher.streams.list().some((s) => s.name === `s${order}`),
            10_000,
            `${where}: table on the publisher`,
          )
          for (let i = 0; i < 4; i++) {
            const ack = await publisher.publish(`s${order}.x`, `m${i}`, {
              ack: 'all',
              key: `k${i}`,
              timeout: 15_000,
            })
            expect(ack?.stream, where).toBe(`s${order}`)
          }
          // Requests still reach the plain members only.
          expect(new TextDecoder().decode(await mix.storage[0]!.request('db', 'hi', { timeout: 5000 }))).toBe(
            'hi',
          )
        } finally {
          await Promise.all(mix.all.map((n) => n.stop()))
        }
      }
      expect(plainLowest, `seed ${SEED}`).toBeGreaterThanOrEqual(Math.floor(ORDERS / 2))
    },
    60_000 + ORDERS * 20_000,
  )

  it('fails at once with NotEnoughReplicasError naming how many storage members exist', async () => {
    const rand = mulberry32(SEED)
    const mix = await startMix(rand, 1, [1, 1])
    const { err, ms } = await failure(
      mix.plain[0]!.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 3 }),
    )
    expect(err?.name, `seed ${SEED}`).toBe('NotEnoughReplicasError')
    expect(err?.message).toBe(
      'the stream needs 3 replicas but cluster db has only 2 members with a data directory (3 members in all)',
    )
    expect(ms).toBeLessThan(1500)
    // With enough replicas it works, from the same node.
    const info = await mix.plain[0]!.streams.create('orders', {
      cluster: 'db',
      subject: 'orders.>',
      replicas: 2,
    })
    expect(new Set(info.partitions[0]!.replicas)).toEqual(new Set(mix.storage.map((s) => s.id)))
  }, 60_000)

  it('fails at once when no member of the cluster has a data directory', async () => {
    const network = uniqueNetwork('mixed')
    const key = generateKey()
    const nodes = await Promise.all([0, 1, 2].map(() => startNode({ network })))
    for (const n of nodes.slice(0, 2)) await n.join('db', { key, onRequest: (d) => d })
    for (const n of nodes) await waitForMembers(n, 'db', 2)
    for (const from of [nodes[0]!, nodes[2]!]) {
      const { err, ms } = await failure(
        from.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 }),
      )
      expect(err?.name).toBe('NotEnoughReplicasError')
      expect(err?.message).toBe(
        'no member of cluster db has a data directory (2 members): stream replicas live only on members started with a dataDir',
      )
      expect(ms).toBeLessThan(1500)
    }
  }, 30_000)
})
