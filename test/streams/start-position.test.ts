/**
 * Start positions `new` and `latest` are resolved by the partition leader at the time of the
 * call, not by whichever replica a consumer happens to ask first. Real nodes over loopback:
 * three members, and consumers on outside nodes whose view lags — the replica they would ask
 * first (the leader they last saw) was cut off from its raft group, lost leadership, and
 * still holds only what it had. Plain and durable consumers, library and relay alike: an
 * acknowledged message published before `consume` is never delivered to a `new` consumer,
 * and `latest` starts at the last committed message.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { connectRelay, startRelay } from '../../relay/index.js'
import type { PlexusNode, StreamMessage } from '../../src/index.js'
import { cleanedAfterEach } from '../helpers/cleanup.js'
import { startStreamCluster, waitFor } from '../helpers/nodes.js'

const { dirs, mine, relays, clients } = cleanedAfterEach()

const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** The partition replicas a node hosts (test access to internals). */
interface Internals {
  streamService: {
    hosted: Map<string, { replica: { receive: (from: string, bytes: Uint8Array) => void; role: string } }>
  }
}
const hosted = (n: PlexusNode) => (n as unknown as Internals).streamService.hosted

/** Stops `n`'s replicas from receiving raft messages; returns the function that undoes it. */
function cutOff(n: PlexusNode): () => void {
  const undo: Array<() => void> = []
  for (const h of hosted(n).values()) {
    const r = h.replica
    const receive = r.receive
    r.receive = () => {}
    undo.push(() => {
      r.receive = receive
    })
  }
  return () => {
    for (const u of undo) u()
  }
}

const leads = (n: PlexusNode) => [...hosted(n).values()].some((h) => h.replica.role === 'leader')

it('new and latest start at the committed end the partition leader knows, even when the replica asked first lags', async () => {
  const root = await mkdtemp(join(tmpdir(), 'plexus-startpos-'))
  dirs.push(root)
  // four consumers, each on its own node so that each has its own view of the leader
  const { members, outside: outs } = await startStreamCluster(root, { outside: 4 })
  mine.push(...members, ...outs)
  await outs[0]!.streams.create('sp', { cluster: 'db', subject: 'sp.>', replicas: 3 })
  for (const o of outs) await waitFor(() => o.streams.list().length === 1, 5000, 'table on outside nodes')
  await waitFor(
    async () => (await outs[0]!.streams.info('sp')).partitions[0]!.inSync.length === 3,
    15_000,
    'three replicas in sync',
  )
  // Every outside node sees the current leader L (info and publish remember it).
  const first = await outs[0]!.publish('sp.x', 'a0', { ack: 'all' })
  expect(first!.offset).toBe(0)
  const infos = await Promise.all(outs.map((o) => o.streams.info('sp')))
  const leaderId = infos[0]!.partitions[0]!.leader
  expect(infos.every((i) => i.partitions[0]!.leader === leaderId)).toBe(true)
  const L = members.find((m) => m.id === leaderId)!
  const others = members.filter((m) => m !== L)

  // L is cut off from its raft group: it steps down, another leader is elected, and L's
  // replica keeps only a0 while 'old' is committed by the other two.
  const restore = cutOff(L)
  await waitFor(() => !leads(L) && others.some(leads), 15_000, 'a new leader without L')
  const pub = others.find(leads)!
  const old = await pub.publish('sp.x', 'old', { ack: 'all' })
  expect(old!.offset).toBe(1)

  const relay = await startRelay(outs[3]!, { host: '127.0.0.1', port: 0 })
  relays.push(relay)
  const client = await connectRelay({ address: relay.address })
  clients.push(client)
  const consumers = {
    latest: outs[0]!.consume('sp', { from: 'latest' }),
    new: outs[1]!.consume('sp', { from: 'new' }),
    durableNew: outs[2]!.consume('sp', { from: 'new', durable: 'billing' }),
    relayNew: client.consume('sp', { from: 'new' }),
  }
  const firsts = Object.fromEntries(
    Object.entries(consumers).map(([k, c]) => [k, c[Symbol.asyncIterator]().next()]),
  ) as Record<keyof typeof consumers, Promise<IteratorResult<StreamMessage>>>
  const got: Partial<Record<keyof typeof consumers, StreamMessage>> = {}
  for (const [k, p] of Object.entries(firsts))
    void p.then((r) => (got[k as keyof typeof consumers] = r.value))

  // Publish after the consumers opened until each has a first message; L rejoins its group
  // meanwhile (a consumer that trusted L's stale end would now be handed 'old' or 'a0').
  let n = 0
  await new Promise((r) => setTimeout(r, 200))
  restore()
  const deadline = Date.now() + 20_000
  while (Object.keys(got).length < 4) {
    if (Date.now() > deadline) throw new Error(`consumers without a message: ${Object.keys(got)}`)
    await pub.publish('sp.x', `new${n++}`, { ack: 'all' })
    await new Promise((r) => setTimeout(r, 100))
  }
  expect(text(got.latest!.data)).toBe('old')
  expect(got.latest!.offset).toBe(1)
  for (const k of ['new', 'durableNew', 'relayNew'] as const) {
    expect(text(got[k]!.data), k).toMatch(/^new\d+$/)
    expect(got[k]!.offset, k).toBeGreaterThanOrEqual(2)
  }
  for (const c of Object.values(consumers)) c.close()
}, 90_000)
