/**
 * Honest outcomes of a publish whose partition leader lost leadership while the message was
 * in flight (issue 19). Real nodes over loopback: three members, an outside publisher (library
 * and relay client). The leader is cut off from its raft group with publishes pending, so it
 * steps down (check quorum) and rejects them with `LeadershipLostError`, outcome unknown.
 *
 * - Without a msgId the caller gets `LeadershipLostError` (its own class, also through the
 *   relay), not `RemoteError` (which means a handler threw).
 * - With a msgId the publisher retries on the new leader within the caller's timeout; the
 *   caller sees the final ack (`duplicate: true` when the first attempt was stored after
 *   all), and reading the stream back finds the message exactly once.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { connectRelay, startRelay } from '../../relay/index.js'
import type { PlexusNode } from '../../src/index.js'
import { cleanedAfterEach } from '../helpers/cleanup.js'
import { startStreamCluster, waitFor } from '../helpers/nodes.js'

const { dirs, mine, relays, clients } = cleanedAfterEach()

type Receive = (from: string, bytes: Uint8Array) => void
type Publish = (...args: unknown[]) => Promise<unknown>
/** The partition replicas a node hosts (test access to internals). */
interface Internals {
  streamService: {
    hosted: Map<string, { replica: { receive: Receive; publish: Publish; role: string } }>
  }
}
const hosted = (n: PlexusNode) => [...(n as unknown as Internals).streamService.hosted.values()]
const leads = (n: PlexusNode) => hosted(n).some((h) => h.replica.role === 'leader')

/**
 * Drops the raft messages `n`'s replicas receive (from `from` only, when given); returns the
 * function that undoes it.
 */
function deafen(n: PlexusNode, from?: string): () => void {
  const undo: Array<() => void> = []
  for (const h of hosted(n)) {
    const r = h.replica
    const receive = r.receive
    r.receive = (peer, bytes) => {
      if (from !== undefined && peer !== from) receive.call(r, peer, bytes)
    }
    undo.push(() => {
      r.receive = receive
    })
  }
  return () => {
    for (const u of undo) u()
  }
}

/** The stream's messages from the start up to and including the first `last`. */
/**
 * Holds the publishes reaching `n`'s replicas until `count` arrived, then runs `cut` and lets
 * them through together: they are appended after the cut, while the leader still leads (it
 * steps down only after an election timeout without hearing a quorum).
 */
function cutWhenPending(n: PlexusNode, count: number, cut: () => void): void {
  for (const h of hosted(n)) {
    const r = h.replica
    const publish = r.publish
    const held: Array<() => void> = []
    r.publish = (...args) =>
      new Promise((resolve, reject) => {
        held.push(() => publish.apply(r, args).then(resolve, reject))
        if (held.length < count) return
        r.publish = publish
        cut()
        for (const go of held) go()
      })
  }
}

async function readUpTo(node: PlexusNode, stream: string, last: string): Promise<string[]> {
  const got: string[] = []
  for await (const m of node.consume(stream, { from: 'earliest' })) {
    got.push(new TextDecoder().decode(m.data))
    if (got.at(-1) === last) break
  }
  return got
}

/**
 * Three members, one outside node with a relay client; a stream with one partition whose
 * three replicas are in sync and whose leader L the outside node knows.
 */
async function setup() {
  const root = await mkdtemp(join(tmpdir(), 'plexus-leadlost-'))
  dirs.push(root)
  const { members, outside } = await startStreamCluster(root, { outside: 1 })
  mine.push(...members, ...outside)
  const out = outside[0]!
  await out.streams.create('ll', { cluster: 'db', subject: 'll.>', replicas: 3 })
  // in sync, and led by the preferred replica (the leader balancer then leaves it alone)
  await waitFor(
    async () => {
      const p = (await out.streams.info('ll')).partitions[0]!
      return p.inSync.length === 3 && p.leader === p.replicas[0]
    },
    15_000,
    'three replicas in sync under the preferred leader',
  )
  await out.publish('ll.x', 'warm', { ack: 'all' })
  const leaderId = (await out.streams.info('ll')).partitions[0]!.leader
  const L = members.find((m) => m.id === leaderId)!
  const relay = await startRelay(out, { host: '127.0.0.1', port: 0 })
  relays.push(relay)
  const client = await connectRelay({ address: relay.address })
  clients.push(client)
  expect(leads(L)).toBe(true)
  return { members, out, L, others: members.filter((m) => m !== L), client }
}

const settled = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value, error: undefined }),
    (error: Error) => ({ value: undefined, error }),
  )

it('the leader hears nothing back: the message reached the others; the msgId publish acks as a duplicate, the plain one fails with LeadershipLostError', async () => {
  const { out, L, others, client } = await setup()
  let restore = () => {}
  // L still sends: followers store the entries, L never hears them
  cutWhenPending(L, 2, () => {
    restore = deafen(L)
  })
  const withId = settled(out.publish('ll.x', 'with-id', { ack: 'all', msgId: 'm-1', timeout: 20_000 }))
  const plain = settled(client.publish('ll.x', 'plain', { ack: 'all', timeout: 20_000 }))
  const a = await withId
  const b = await plain
  expect(b.error?.name).toBe('LeadershipLostError')
  expect(b.error?.constructor.name).toBe('LeadershipLostError')
  expect(a.error).toBeUndefined()
  // stored by L's term after all: the retry on the new leader was a duplicate
  expect(a.value).toMatchObject({ stream: 'll', partition: 0, duplicate: true })
  expect(others.some(leads)).toBe(true)
  restore()
  // exactly once (a new message after them shows the end of what was stored)
  await out.publish('ll.x', 'end', { ack: 'all', timeout: 20_000 })
  const got = await readUpTo(out, 'll', 'end')
  expect(got.filter((m) => m === 'with-id')).toHaveLength(1)
  expect(got.indexOf('with-id')).toBe(a.value!.offset)
  expect(got.filter((m) => m === 'plain').length).toBeLessThanOrEqual(1) // outcome unknown
}, 60_000)

it('the leader is cut off both ways: the message was lost; the msgId publish is stored once on the new leader', async () => {
  const { out, L, others, client } = await setup()
  let undo: Array<() => void> = []
  cutWhenPending(L, 2, () => {
    undo = [deafen(L), ...others.map((o) => deafen(o, L.id))]
  })
  const withId = settled(out.publish('ll.x', 'with-id', { ack: 'all', msgId: 'm-2', timeout: 20_000 }))
  const plain = settled(client.publish('ll.x', 'plain', { ack: 'all', timeout: 20_000 }))
  const a = await withId
  const b = await plain
  expect(b.error?.name).toBe('LeadershipLostError')
  expect(a.error).toBeUndefined()
  expect(a.value).toMatchObject({ stream: 'll', partition: 0 })
  expect(a.value!.duplicate).toBeUndefined()
  for (const u of undo) u()
  await out.publish('ll.x', 'end', { ack: 'all', timeout: 20_000 })
  const got = await readUpTo(out, 'll', 'end')
  expect(got).toEqual(['warm', 'with-id', 'end'])
  expect(a.value!.offset).toBe(1)
}, 60_000)
