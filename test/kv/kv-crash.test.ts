/**
 * A key-value bucket across a leader crash: three member processes
 * (test/fixtures/stream-member.mjs) store bucket `cfg` (replicas 3); writers in the test
 * process run compare-and-set chains on a few keys and plain puts. The member leading the
 * bucket's partition is killed with SIGKILL mid-stream. Writes whose outcome is unknown at
 * the crash are resolved by reading the key again. Checked: no acknowledged write is lost
 * (each is in the key's history with its value, in revision order), revisions only grow,
 * every key's current value is its last acknowledged write, and the bucket keeps working
 * under the new leader. Randomness from TEST_SEED (printed).
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { localDirectory } from '../../src/discovery/local.js'
import { generateKey, type KvBucket, type PlexusNode } from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { exited, spawnNode, waitForLine } from '../helpers/procs.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const MEMBER = 'test/fixtures/stream-member.mjs'
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A write acknowledged by the bucket. */
interface Acked {
  key: string
  value: string
  revision: number
}

it('loses no acknowledged write when the leader is killed during compare-and-set updates', async () => {
  const seed = testSeed()
  console.log(`kv-crash TEST_SEED=${seed}`)
  const rand = mulberry32(seed)
  const root = await mkdtemp(join(tmpdir(), 'plexus-kvcrash-'))
  const network = uniqueNetwork('kvc')
  const key = generateKey()
  const procs = new Map<string, ChildProcess>()
  cleanups.push(async () => {
    await rm(root, { recursive: true, force: true })
    await rm(localDirectory(network), { recursive: true, force: true })
  })
  cleanups.push(async () => {
    for (const c of procs.values())
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await exited(c)
      }
  })
  for (let i = 0; i < 3; i++) {
    const child = spawnNode([MEMBER, network, 'db', key, join(root, `m${i}`)])
    procs.set((await waitForLine(child, /^ready (\S+)/, 20_000))[1]!, child)
  }
  const client: PlexusNode = await startNode({ network, credentials: { clusterKeys: { db: key } } })
  cleanups.push(() => client.stop())
  await waitForMembers(client, 'db', 3, 15_000)
  const kv: KvBucket = await client.kv('cfg', { cluster: 'db', replicas: 3, timeout: 4000 })

  const acked: Acked[] = []
  let unknown = 0
  let stop = false
  const keys = ['a', 'b', 'c', 'd']
  // One compare-and-set chain per key: read, update at the revision read, repeat.
  const chain = async (k: string) => {
    let rev = await kv.create(k, `${k}-0`)
    acked.push({ key: k, value: `${k}-0`, revision: rev })
    for (let n = 1; !stop; n++) {
      const value = `${k}-${n}`
      try {
        rev = await kv.update(k, value, rev)
        acked.push({ key: k, value, revision: rev })
      } catch (err) {
        const name = (err as Error).name
        if (name === 'WrongRevisionError') throw err // no other writer of this key: never refused
        unknown++ // outcome unknown (leader lost): read the key to learn where it stands
        for (;;) {
          try {
            const e = await kv.get(k)
            rev = e!.revision
            if (e!.string() === value) acked.push({ key: k, value, revision: rev })
            break
          } catch {
            if (stop) return
          }
        }
      }
    }
  }
  const writers = keys.map(chain)
  await waitFor(() => acked.length >= 40, 15_000, 'writes before the crash')
  const info = await client.streams.info('KV_cfg', { timeout: 10_000 })
  const leader = info.partitions[0]!.leader!
  const victim = procs.get(leader)!
  await new Promise((r) => setTimeout(r, Math.floor(rand() * 200)))
  const before = acked.length
  victim.kill('SIGKILL')
  await exited(victim)
  // The bucket keeps taking writes under a new leader.
  await waitFor(() => acked.length >= before + 40, 20_000, 'writes after the crash')
  stop = true
  await Promise.all(writers)

  const byKey = new Map<string, Acked[]>()
  for (const a of acked) byKey.set(a.key, [...(byKey.get(a.key) ?? []), a])
  for (const k of keys) {
    const mine = byKey.get(k)!
    for (let i = 1; i < mine.length; i++) expect(mine[i]!.revision).toBeGreaterThan(mine[i - 1]!.revision)
    const hist = await kv.history(k)
    const stored = new Map(hist.map((e) => [e.revision, e.string()]))
    for (const a of mine) expect(stored.get(a.revision), `${k} revision ${a.revision}`).toBe(a.value)
    const current = await kv.get(k)
    expect(current!.revision).toBe(mine[mine.length - 1]!.revision)
  }
  console.log(
    `kv-crash: ${acked.length} acknowledged writes (${acked.length - before} after the kill), ${unknown} unknown outcomes`,
  )
}, 60_000)
