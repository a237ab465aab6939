/**
 * Same-host discovery is a choice (issue 13): `discovery: { local: false }` and
 * `plexus node --no-local` keep a node out of the same-host registry (it neither writes a
 * record nor dials the records of others); a node removes its record on stop and the last
 * one out removes its network's directory; records of dead processes, stale temp files and
 * empty network directories are cleaned when a node starts. Before: `--no-local` did not
 * exist, and every network name kept its directory forever.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { localDirectory, localRoot } from '../src/discovery/local.js'
import { uniqueNetwork as cliNetwork, startNode as startCliNode, statusOf } from './cli/helpers.js'
import { startNode, uniqueNetwork, waitFor } from './helpers/nodes.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const records = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [])

describe('same-host discovery', () => {
  it('a node with local: false writes no record and links with no one; the others still find each other', async () => {
    const network = uniqueNetwork('local')
    const opts = { network, relay: false as const, discovery: { mdns: false } }
    const a = await startNode(opts)
    const off = await startNode({ ...opts, discovery: { mdns: false, local: false } })
    const c = await startNode(opts)
    await waitFor(() => a.status().peers.some((p) => p.id === c.id), 5000, 'a and c linked')
    expect(records(localDirectory(network)).sort()).toEqual([`${a.id}.json`, `${c.id}.json`].sort())
    await sleep(2500)
    expect(off.status().peers).toEqual([])
    expect(a.status().peers.map((p) => p.id)).toEqual([c.id])
  })

  it('a node removes its record on stop, and the last one its network directory', async () => {
    const network = uniqueNetwork('local')
    const dir = localDirectory(network)
    const opts = { network, relay: false as const, discovery: { mdns: false } }
    const a = await startNode(opts)
    const b = await startNode(opts)
    expect(records(dir)).toHaveLength(2)
    await a.stop()
    expect(records(dir)).toEqual([`${b.id}.json`])
    await b.stop()
    expect(existsSync(dir)).toBe(false)
  })

  it('a running node writes its record again when it (or its directory) was removed', async () => {
    const network = uniqueNetwork('local')
    const dir = localDirectory(network)
    const node = await startNode({ network, relay: false, discovery: { mdns: false } })
    rmSync(dir, { recursive: true, force: true })
    await waitFor(() => records(dir).includes(`${node.id}.json`), 3000, 'the record written again')
  })

  it('a starting node cleans dead records, stale temp files and empty directories of every network', async () => {
    const deadNet = localDirectory(uniqueNetwork('dead'))
    const emptyNet = localDirectory(uniqueNetwork('empty'))
    mkdirSync(deadNet, { recursive: true })
    mkdirSync(emptyNet, { recursive: true })
    const fake = '12D3KooWFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake'
    writeFileSync(join(deadNet, `${fake}.json`), JSON.stringify({ id: fake, pid: 2 ** 22 + 4321, addrs: [] }))
    writeFileSync(join(deadNet, `${fake}.json.tmp`), '{')
    const old = new Date(Date.now() - 60_000)
    utimesSync(join(deadNet, `${fake}.json.tmp`), old, old)
    const node = await startNode({
      network: uniqueNetwork('local'),
      relay: false,
      discovery: { mdns: false },
    })
    expect(existsSync(deadNet)).toBe(false)
    expect(existsSync(emptyNet)).toBe(false)
    expect(existsSync(localRoot())).toBe(true)
    await node.stop()
  })

  it('plexus node --no-local: two nodes of one network on one host stay apart', async () => {
    const network = cliNetwork()
    const a = await startCliNode(network, ['--no-local'])
    const b = await startCliNode(network, ['--no-local'])
    expect(records(localDirectory(network))).toEqual([])
    await sleep(2500)
    expect((await statusOf(a.relay)) as unknown as { peers: unknown[] }).toMatchObject({ peers: [] })
    expect((await statusOf(b.relay)) as unknown as { peers: unknown[] }).toMatchObject({ peers: [] })
    // Without the flag they find each other.
    const c = await startCliNode(network)
    const d = await startCliNode(network)
    await waitFor(
      async () =>
        ((await statusOf(c.relay)) as unknown as { peers: Array<{ id: string }> }).peers.some(
          (p) => p.id === d.id,
        ),
      8000,
      'c and d linked',
    )
  })
})
