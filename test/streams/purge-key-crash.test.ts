/**
 * A purge by key holds through kill -9 of the partition leader right after it resolved
 * (acknowledged = durable). Three member processes (test/fixtures/stream-member.mjs) host a
 * one-partition stream with three replicas; the test process publishes keyed messages, purges
 * key `a`, and kills the leader (SIGKILL) at once or a few ms later. Checked through the new
 * leader: a consumer from the earliest offset gets none of `a`'s messages (the next one after
 * them is a sentinel published after the kill), `streams.last` finds no `a`; then the killed
 * member restarts on its data directory and every replica's own reads leave `a` out.
 * Randomness (message count, kill delay) comes from TEST_SEED; a failure prints it.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { localDirectory } from '../../src/discovery/local.js'
import { generateKey, type StreamMessage } from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { exited, killChildren, spawnNode, waitForLine } from '../helpers/procs.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const MEMBER = 'test/fixtures/stream-member.mjs'
const text = (b: Uint8Array | undefined) => (b === undefined ? '' : new TextDecoder().decode(b))

const dirs: string[] = []
const networks: string[] = []
afterEach(async () => {
  await killChildren() // before their directories go
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
  for (const n of networks.splice(0)) await rm(localDirectory(n), { recursive: true, force: true })
})

/** Asks a member process for the keys its own replica returns to readers. */
async function visibleKeys(child: ChildProcess): Promise<string[] | null> {
  const line = waitForLine(child, /^visible (.*)$/, 5000)
  child.stdin!.write('visible kc 0\n')
  return JSON.parse((await line)[1]!)
}

it('a purge by key holds when the partition leader is killed right after it resolved', async () => {
  const seed = testSeed()
  const rand = mulberry32(seed)
  const events: string[] = []
  const t0 = Date.now()
  const log = (s: string) => void events.push(`+${Date.now() - t0}ms ${s}`)
  try {
    const network = uniqueNetwork('purgecrash')
    networks.push(network)
    const key = generateKey()
    const root = await mkdtemp(join(tmpdir(), 'plexus-purge-crash-'))
    dirs.push(root)
    const spawn = async (i: number) => {
      const child = spawnNode([MEMBER, network, 'db', key, join(root, `m${i}`)])
      const id = (await waitForLine(child, /^ready (\S+)/, 20_000))[1]!
      return { child, id }
    }
    const members = await Promise.all([0, 1, 2].map(spawn))
    const node = await startNode({ network, credentials: { clusterKeys: { db: key } } })
    await waitForMembers(node, 'db', 3, 20_000)
    await node.streams.create('kc', { cluster: 'db', subject: 'kc.>', replicas: 3, partitions: 1 })
    const n = 20 + Math.floor(rand() * 40)
    const killDelay = Math.floor(rand() * 20)
    log(`seed ${seed}: ${n} messages, kill ${killDelay} ms after the purge`)
    const bValues: string[] = []
    for (let i = 0; i < n; i++) {
      const k = i % 2 === 0 ? 'a' : 'b'
      await node.publish('kc.x', `${k}${i}`, { ack: 'all', key: k })
      if (k === 'b') bValues.push(`${k}${i}`)
    }
    const leader = (await node.streams.info('kc')).partitions[0]!.leader
    const victimAt = members.findIndex((m) => m.id === leader)
    expect(victimAt, `leader ${leader} is a member process`).toBeGreaterThanOrEqual(0)
    expect(await node.streams.purge('kc', { key: 'a' })).toEqual([{ partition: 0, firstOffset: 0 }])
    if (killDelay > 0) await new Promise((r) => setTimeout(r, killDelay))
    members[victimAt]!.child.kill('SIGKILL')
    await exited(members[victimAt]!.child)
    log(`killed the partition leader ${leader}`)

    // Through the new leader: no `a`, then the sentinel published after the kill.
    await node.publish('kc.x', 'sentinel', { ack: 'all', key: 'b', timeout: 20_000 })
    log('sentinel published')
    const c = node.consume('kc', { from: 'earliest' })
    const got: StreamMessage[] = []
    for await (const m of c) {
      got.push(m)
      if (text(m.data) === 'sentinel') break
    }
    expect(got.map((m) => text(m.data))).toEqual([...bValues, 'sentinel'])
    await expect(node.streams.last('kc', { key: 'a' }, { timeout: 10_000 })).rejects.toMatchObject({
      name: 'MessageNotFoundError',
    })

    // The killed member restarts on its data directory: every replica leaves `a` out.
    members[victimAt] = await spawn(victimAt)
    log('killed member restarted')
    const want = [...bValues.map(() => 'b'), 'b']
    for (const m of members)
      await waitFor(
        async () => JSON.stringify(await visibleKeys(m.child)) === JSON.stringify(want),
        15_000,
        `replica ${m.id} reads without a`,
      )
    await node.stop()
  } catch (err) {
    console.error(`[purge crash] failed, TEST_SEED=${seed}\n${events.join('\n')}`)
    throw err
  }
}, 90_000)
