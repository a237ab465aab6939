import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { NOISE_AES_GCM_PROTOCOL, NOISE_PROTOCOL } from '../src/constants.js'
import { createNode, generateKey, InvalidArgumentError, NoMembersError, TimeoutError } from '../src/index.js'
import { hasAesInstructions } from '../src/transport/encrypters.js'
import { startNode, startNodes, uniqueNetwork, waitFor, waitForMembers } from './helpers/nodes.js'
import { exited, spawnNode, waitForLine } from './helpers/procs.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

describe('createNode', () => {
  it('keeps its identity in dataDir across restarts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plexus-id-'))
    try {
      const a = await createNode({
        dataDir: dir,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        discovery: { local: false },
      })
      const id = a.id
      await a.stop()
      const b = await createNode({
        dataDir: dir,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        discovery: { local: false },
      })
      expect(b.id).toBe(id)
      await b.stop()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('nodes of two networks on one machine never mix, even when dialled directly', async () => {
    const key = generateKey()
    const [a] = await startNodes(1, { network: uniqueNetwork('x') })
    const [b] = await startNodes(1, { network: uniqueNetwork('y') })
    await b.join('db', { key, onRequest: () => 'b' })
    // Point a at b explicitly: the link protocol differs, so b's announcements never arrive.
    const c = await startNode({ network: a.network, bootstrap: [b.addresses[0]!] })
    await new Promise((r) => setTimeout(r, 3100))
    expect(a.status().clusters).toEqual([])
    expect(c.status().clusters).toEqual([])
    expect(c.status().peers.map((p) => p.id)).not.toContain(b.id)
    // Never b's reply: NoMembersError, or a timeout while this young node (it has a bootstrap
    // address, so a DHT) waits up to DHT.firstPeerWait for a first DHT peer to look db up.
    const err = await c.request('db', 'x', { timeout: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err instanceof NoMembersError || err instanceof TimeoutError, String(err)).toBe(true)
  })

  it('with a network key, nodes with the same key talk and a node without it cannot connect', async () => {
    const network = uniqueNetwork('k')
    const networkKey = generateKey()
    const [a, b] = await startNodes(2, { network, networkKey })
    await b.join('db', { key: generateKey(), onRequest: () => 'secret' })
    await waitForMembers(a, 'db', 1)
    expect(dec(await a.request('db', 'x'))).toBe('secret')
    // Large messages too: many full noise messages through pnet, both ways, byte-exact.
    await b.join('echo', { key: generateKey(), onRequest: (d) => d })
    await waitForMembers(a, 'echo', 1)
    const big = new Uint8Array(1024 * 1024 - 17)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >>> 11)) & 0xff
    const echoed = await a.request('echo', big, { timeout: 20_000 })
    expect(Buffer.compare(echoed, big)).toBe(0)
    const outsider = await startNode({ network, bootstrap: [b.addresses[0]!], discovery: { local: false } })
    const wrongKey = await startNode({ network, networkKey: generateKey(), bootstrap: [b.addresses[0]!] })
    await new Promise((r) => setTimeout(r, 3000))
    for (const n of [outsider, wrongKey]) {
      expect(n.status().peers).toEqual([])
      expect(n.status().clusters).toEqual([])
    }
  })

  it.each([false, true])(
    'bootstrap addresses connect nodes with local discovery off (DHT on: %s)',
    async (dht) => {
      const network = uniqueNetwork('b')
      const a = await startNode({ network, discovery: { local: false, dht } })
      const b = await startNode({ network, discovery: { local: false, dht }, bootstrap: [a.addresses[0]!] })
      await a.join('db', { key: generateKey(), onRequest: () => 'a' })
      await waitForMembers(b, 'db', 1)
      expect(dec(await b.request('db', 'x'))).toBe('a')
      expect(b.status().peers.find((p) => p.id === a.id)?.encryption).toBe(
        hasAesInstructions() ? NOISE_AES_GCM_PROTOCOL : NOISE_PROTOCOL,
      )
    },
  )

  it('several processes on one machine find each other with no flags within 2 s', async () => {
    const network = uniqueNetwork('p')
    const key = generateKey()
    const procs = [spawnNode(['test/fixtures/member.mjs', network, 'svc', key, 'p1'])]
    procs.push(spawnNode(['test/fixtures/member.mjs', network, 'svc', key, 'p2']))
    await Promise.all(procs.map((p) => waitForLine(p, /^ready /)))
    const client = await startNode({ network })
    const start = Date.now()
    await waitForMembers(client, 'svc', 2, 2000)
    expect(Date.now() - start).toBeLessThan(2000)
  })

  it('stop() leaves no open handles: the process exits by itself', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plexus-life-'))
    try {
      const child = spawnNode(['test/fixtures/lifecycle.mjs', dir])
      await waitForLine(child, /^stopped \S+ ping$/)
      const code = await Promise.race([
        exited(child),
        new Promise((r) => setTimeout(() => r('still running'), 5000)),
      ])
      expect(code).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('validates its options and names the field', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ network: 'has space' }, /network/],
      [{ network: 5 }, /network/],
      [{ networkKey: 'short' }, /networkKey/],
      [{ listen: 'x' }, /listen/],
      [{ listen: ['not-a-multiaddr'] }, /listen/],
      [{ bootstrap: ['garbage'] }, /bootstrap/],
      [{ dataDir: 7 }, /dataDir/],
      [{ relay: { port: 70000 } }, /relay.port/],
      [{ maxMessageSize: -1 }, /maxMessageSize/],
      [{ discovery: 'all' }, /discovery/],
      [{ cipher: 'aes' }, /cipher must be one of auto, aes-256-gcm, chacha20-poly1305/],
      [{ gcTuning: 'yes' }, /gcTuning must be a boolean/],
      [{ streams: { replaceReplicaAfter: 0 } }, /streams\.replaceReplicaAfter/],
      [{ streams: { raftLogBytes: -5 } }, /streams\.raftLogBytes/],
      [{ streams: { raftLogBytes: 1.5 } }, /streams\.raftLogBytes/],
      [{ streams: 'big' }, /streams/],
      ['opts', /options/],
    ]
    for (const [opts, re] of bad) {
      const err = await createNode(opts as never).catch((e) => e)
      expect(err, JSON.stringify(opts)).toBeInstanceOf(InvalidArgumentError)
      expect(err.message).toMatch(re)
    }
  })

  it('stop() is idempotent and calls after it fail clearly', async () => {
    const a = await startNode({ network: uniqueNetwork() })
    await Promise.all([a.stop(), a.stop()])
    await expect(a.request('db', 'x')).rejects.toThrow(/stopped/)
  })
})

describe('cluster security', () => {
  it('a node joining with the wrong key never receives the cluster traffic', async () => {
    const [client, good, evil] = await startNodes(3)
    await good.join('db', { key: generateKey(), onRequest: () => 'good' })
    await waitForMembers(client, 'db', 1)
    let evilGot = 0
    await evil.join('db', {
      key: generateKey(),
      onRequest: () => {
        evilGot++
        return 'evil'
      },
    })
    await waitFor(
      () => (client.status().counters['announcements.refused.wrong-key'] ?? 0) >= 1,
      3000,
      'refusal',
    )
    for (let i = 0; i < 20; i++) expect(dec(await client.request('db', 'x'))).toBe('good')
    expect(evilGot).toBe(0)
    expect(good.status().clusters[0]!.members.map((m) => m.id)).toEqual([good.id])
  })
})
