import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { connectRelay, startRelay } from '../../relay/index.js'
import { generateKey, type KvEntry } from '../../src/index.js'
import { cleanedAfterEach } from '../helpers/cleanup.js'
import { startNode, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'

const { clients, storageRelay, relays, dirs, mine } = cleanedAfterEach()

it('runs key-value operations, watches and stream reads through the relay', async () => {
  const { relay, client } = await storageRelay('rkv')

  const kv = await client.kv('cfg', { cluster: 'db' })
  const r1 = await kv.put('a.x', 'one')
  expect((await kv.get('a.x'))!.string()).toBe('one')
  expect(await kv.get('nope')).toBeNull()
  await expect(kv.create('a.x', 'two')).rejects.toMatchObject({ name: 'KeyExistsError' })
  const r2 = await kv.update('a.x', 'two', r1)
  const stale = await kv.update('a.x', 'three', r1).catch((e) => e)
  expect(stale.name).toBe('WrongRevisionError')
  expect(stale.current).toBe(r2)
  await kv.put('b', 'bee')
  // a second client opens the existing bucket without naming the cluster
  const other = await connectRelay({ address: relay.address })
  clients.push(other)
  const kv2 = await other.kv('cfg')
  expect(await kv2.keys()).toEqual(['a.x', 'b'])

  const w = kv2.watch('a.>')
  const it = w[Symbol.asyncIterator]()
  const first = await it.next()
  expect([first.value.key, first.value.string()]).toEqual(['a.x', 'two'])
  const d = await kv.delete('a.x')
  await kv.put('b', 'not watched')
  const r3 = await kv.put('a.y', 'why')
  const got: KvEntry[] = [(await it.next()).value, (await it.next()).value]
  expect(got.map((e) => [e.key, e.operation, e.revision])).toEqual([
    ['a.x', 'delete', d],
    ['a.y', 'put', r3],
  ])
  w.stop()
  expect((await it.next()).done).toBe(true)
  expect((await kv.history('a.x')).map((e) => e.operation)).toEqual(['put', 'put', 'delete'])
  await expect(kv.put('bad key', 'v')).rejects.toMatchObject({ name: 'InvalidArgumentError' })
  await expect(client.kv('missing')).rejects.toMatchObject({ name: 'StreamNotFoundError' })

  const m = await client.streams.get('KV_cfg', { offset: r1 })
  expect(m.string()).toBe('one')
  const last = await client.streams.last('KV_cfg', { key: 'a.y' })
  expect([last.offset, last.string(), last.topic]).toEqual([r3, 'why', '$kv.cfg.a.y'])
  await expect(client.streams.last('KV_cfg', { key: 'a.x' })).rejects.toMatchObject({
    name: 'MessageNotFoundError',
  })
  await expect(client.streams.get('KV_cfg', { offset: 9999 })).rejects.toMatchObject({
    name: 'MessageNotFoundError',
  })
}, 30_000)

it('a reconnecting client keeps using a bucket across a relay restart', async () => {
  const network = uniqueNetwork('rkvr')
  const root = await mkdtemp(join(tmpdir(), 'plexus-relay-kvr-'))
  dirs.push(root)
  const member = await startNode({ network, dataDir: join(root, 'm0') })
  mine.push(member)
  await member.join('db', { key: generateKey() })
  await waitForMembers(member, 'db', 1, 10_000)
  const first = await startRelay(member, { host: '127.0.0.1', port: 0 })
  const port = Number(first.address.split(':').at(-1))
  const client = await connectRelay({
    address: first.address,
    timeout: 2000,
    reconnect: { minDelay: 50, maxDelay: 200 },
  })
  clients.push(client)
  const kv = await client.kv('r', { cluster: 'db', replicas: 1 })
  const rev = await kv.put('k', 'before')
  await first.close()
  const second = await startRelay(member, { host: '127.0.0.1', port })
  relays.push(second)
  await expect
    .poll(async () => (await kv.update('k', 'after', rev).catch((e) => e.name)) === rev + 1, {
      timeout: 10_000,
    })
    .toBe(true)
  expect((await kv.get('k'))!.string()).toBe('after')
}, 30_000)
