/**
 * A pull worker (durable consumer read with `fetch`, in the test process, which is not a
 * member) while the partition leader's process is killed with SIGKILL. Three member
 * processes (test/fixtures/stream-member.mjs) host a one-partition stream with three
 * replicas; the test publishes with `ack: 'all'` before and after the kill and fetches and
 * acknowledges in batches of random size.
 *
 * Checked: nothing is lost (every message whose publish was acknowledged is delivered and
 * acknowledged), and no message acknowledged more than `COMMIT_WINDOW_MS` before the kill is
 * delivered again (the consumer itself survives, so even later acks are normally not
 * repeated; the documented at-least-once only allows a repeat of acks not yet committed when
 * its session restarts). Reads waiting on the killed leader move to another replica
 * (`MemberLostError` on a read is retried). The time from the kill to the first message
 * published after it being fetched (a leader election included) is printed. Randomness (batch sizes, kill point) comes from TEST_SEED; a failure prints it.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { localDirectory } from '../../src/discovery/local.js'
import { generateKey } from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { killChildren, spawnNode, waitForLine } from '../helpers/procs.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const MEMBER = 'test/fixtures/stream-member.mjs'
/**
 * Acks older than this before the kill were committed while the metadata leader still ran:
 * commits leave every 100 ms, each a replicated write (up to ~300 ms each on a loaded
 * two-core machine; the same bound as consumer-crash.test.ts's redelivery window).
 */
const COMMIT_WINDOW_MS = 1000
const BEFORE = 150
const AFTER = 50

const dirs: string[] = []
const networks: string[] = []
afterEach(async () => {
  await killChildren() // before their directories go
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
  for (const n of networks.splice(0)) await rm(localDirectory(n), { recursive: true, force: true })
})

it('a pull worker loses nothing and repeats no committed ack when the partition leader is killed', async () => {
  const seed = testSeed()
  const rand = mulberry32(seed)
  const events: string[] = []
  const t0 = Date.now()
  const log = (s: string) => void events.push(`+${Date.now() - t0}ms ${s}`)
  try {
    const network = uniqueNetwork('pullcrash')
    networks.push(network)
    const key = generateKey()
    const root = await mkdtemp(join(tmpdir(), 'plexus-pull-crash-'))
    dirs.push(root)
    const members = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const child = spawnNode([MEMBER, network, 'db', key, join(root, `m${i}`)])
        const id = (await waitForLine(child, /^ready (\S+)/, 20_000))[1]!
        return { child, id }
      }),
    )
    const node = await startNode({ network, credentials: { clusterKeys: { db: key } } })
    await waitForMembers(node, 'db', 3, 20_000)
    await node.streams.create('work', { cluster: 'db', subject: 'work.>', replicas: 3, partitions: 1 })
    const published = new Set<number>()
    for (let i = 0; i < BEFORE; i++) {
      const ack = await node.publish('work.x', `m${i}`, { ack: 'all' })
      published.add(ack!.offset)
    }
    const killAfter = 30 + Math.floor(rand() * 80)
    log(`seed ${seed}, kill after ${killAfter} acks`)

    const c = node.consume('work', { durable: 'w', ackWait: 3000 })
    const ackedAt = new Map<number, number>()
    const repeats: Array<{ offset: number; ackedAgo: number }> = []
    let killedAt = 0
    let firstAfterKill = 0
    let publishing: Promise<void> | undefined
    let publishedAll = false
    const deadline = Date.now() + 40_000
    while (!(publishedAll && [...published].every((o) => ackedAt.has(o)))) {
      if (Date.now() > deadline) throw new Error(`only ${ackedAt.size} of ${published.size} acked in time`)
      const batch = await c.fetch({ max: 1 + Math.floor(rand() * 20), expires: 1000 })
      for (const m of batch) {
        if (m.offset >= BEFORE && firstAfterKill === 0) firstAfterKill = Date.now() // published after the kill
        const at = ackedAt.get(m.offset)
        if (at !== undefined) repeats.push({ offset: m.offset, ackedAgo: (killedAt || Date.now()) - at })
        await m.ack()
        if (at === undefined) ackedAt.set(m.offset, Date.now())
      }
      if (killedAt === 0 && ackedAt.size >= killAfter) {
        const info = await node.streams.info('work')
        const leader = info.partitions[0]!.leader
        const victim = members.find((x) => x.id === leader)
        expect(victim, `leader ${leader} is one of the member processes`).toBeDefined()
        victim!.child.kill('SIGKILL')
        killedAt = Date.now()
        log(`killed the partition leader ${leader} after ${ackedAt.size} acks`)
        // More messages while the partition elects a new leader: each acknowledged one must arrive.
        publishing = (async () => {
          for (let i = 0; i < AFTER; i++) {
            // With a msgId a publish in flight when the leader dies is sent again (deduplicated).
            const ack = await node.publish('work.x', `late${i}`, {
              ack: 'all',
              timeout: 20_000,
              msgId: `late${i}`,
            })
            published.add(ack!.offset)
          }
          log(`published ${AFTER} more after the kill`)
          publishedAll = true
        })()
        publishing.catch((err) => {
          log(`publishing after the kill failed: ${err}`)
          publishedAll = true // the loop ends; \`await publishing\` reports it
        })
      }
    }
    await publishing
    c.close()
    log(
      `first message published after the kill fetched ${firstAfterKill - killedAt} ms after it; ${repeats.length} repeats`,
    )
    console.log(`[pull crash] ${events.slice(-3).join(' | ')}`)
    expect([...published].filter((o) => !ackedAt.has(o))).toEqual([])
    // A repeat of an ack committed before the kill would break the durable position's promise.
    expect(repeats.filter((r) => r.ackedAgo > COMMIT_WINDOW_MS)).toEqual([])
    await waitFor(
      async () => (await node.streams.consumerInfo('work', 'w')).partitions[0]!.position === BEFORE + AFTER,
      10_000,
      'the committed position at the end',
    )
  } catch (err) {
    console.error(`[pull crash] failed, TEST_SEED=${seed}\n${events.join('\n')}`)
    throw err
  }
}, 90_000)
