/**
 * Clusters found across networks through the DHT (issue 15), on three subnets joined by a
 * router namespace (faults/netns.ts `RoutedNetns`; no multicast crosses it, mDNS is off): a
 * bootstrap node in subnet B, two members of `svc` in subnet C bootstrapping to B, clients in
 * subnet A given only B's address.
 *
 * The bootstrap node starts "quiet" (it passes on no other node's announcements), so the first
 * client can learn the members only through the DHT: its request must succeed and its lookup
 * counters show the lookup that found the members' records at B. Then B passes announcements
 * on again and a second client's request succeeds the ordinary way too.
 * Needs root; skipped with the reason printed otherwise. Every namespace is deleted after the
 * test, also when it fails or the process exits early.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { netnsUnavailable, RoutedNetns } from '../faults/netns.js'
import { generateKey } from '../src/index.js'
import { waitForLine } from './helpers/procs.js'

const skipReason = netnsUnavailable()
if (skipReason) console.warn(`DHT namespace test skipped: ${skipReason}`)

const A = 0
const B = 1
const C = 2

describe.skipIf(skipReason !== undefined)('clusters found across subnets through the DHT', () => {
  let ns: RoutedNetns | undefined
  const children: ChildProcess[] = []
  const tmp = mkdtempSync(join(tmpdir(), 'plexus-dht-netns-'))
  const onExit = () => ns?.destroySync()
  process.on('exit', onExit)

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await ns?.destroy()
    process.off('exit', onExit)
    rmSync(tmp, { recursive: true, force: true })
  })

  const network = `dht-${randomBytes(4).toString('hex')}`
  const key = generateKey()

  /** Starts host `i` of subnet `k`; resolves with its peer id and addresses once ready. */
  async function start(
    k: number,
    i: number,
    name: string,
    bootstrap: string,
    role: 'member' | 'client' | 'quiet',
  ): Promise<{ child: ChildProcess; id: string; addrs: string[] }> {
    const child = spawn(
      ns!.exec(k, i)[0]!,
      [
        ...ns!.exec(k, i).slice(1),
        process.execPath,
        'test/fixtures/dht-node.mjs',
        network,
        'svc',
        key,
        name,
        `/ip4/${ns!.addr(k, i)}/tcp/0`,
        bootstrap,
        role,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } },
    )
    children.push(child)
    const m = await waitForLine(child, /^ready (.*)$/, 20_000)
    const info = JSON.parse(m[1]!) as { id: string; addrs: string[] }
    return { child, ...info }
  }

  /** Sends `req n` and resolves with the names that answered and the time taken (ms). */
  async function request(child: ChildProcess, n: number): Promise<{ names: string[]; ms: number }> {
    const served = waitForLine(child, /^served (.*) (\d+)$/, 30_000)
    child.stdin!.write(`req ${n}\n`)
    const m = await served
    return { names: JSON.parse(m[1]!), ms: Number(m[2]) }
  }

  it('a client with only the bootstrap address reaches members two subnets away, first through a DHT lookup', async () => {
    ns = await RoutedNetns.create('pxd', [2, 1, 2])
    const boot = await start(B, 0, 'boot', '-', 'quiet')
    const bootAddr = `${boot.addrs.find((a) => a.includes(ns!.addr(B, 0)))}/p2p/${boot.id}`
    const members = await Promise.all(
      [0, 1].map(async (i) => {
        const m = await start(C, i, `m${i}`, bootAddr, 'member')
        // Its provider record was taken by at least one peer (the bootstrap node).
        await waitForLine(m.child, /^counters .*"dht\.provides":[1-9]/, 20_000)
        return m
      }),
    )
    expect(members).toHaveLength(2)

    const t0 = performance.now()
    const c1 = await start(A, 0, 'c1', bootAddr, 'client')
    const lookedUp = waitForLine(c1.child, /^counters (.*"dht\.providersFound":[1-9].*)$/, 30_000)
    const served = await request(c1.child, 8)
    console.log(
      `client 1 (DHT only): served by ${served.names.join(' ')}; ${served.ms} ms for the 8 requests, ${(performance.now() - t0).toFixed(0)} ms after the process was spawned`,
    )
    expect(served.names.filter((s) => s !== 'm0' && s !== 'm1')).toEqual([])
    expect(served.names).toHaveLength(8)
    const counters = JSON.parse((await lookedUp)[1]!)
    console.log(`client 1 counters: ${JSON.stringify(counters)}`)
    expect(counters['dht.lookups']).toBeGreaterThanOrEqual(1)

    boot.child.stdin!.write('relay on\n')
    const t1 = performance.now()
    const c2 = await start(A, 1, 'c2', bootAddr, 'client')
    const served2 = await request(c2.child, 8)
    console.log(
      `client 2: served by ${served2.names.join(' ')}; ${served2.ms} ms for the 8 requests, ${(performance.now() - t1).toFixed(0)} ms after the process was spawned`,
    )
    expect(served2.names.filter((s) => s !== 'm0' && s !== 'm1')).toEqual([])
    expect(served2.names).toHaveLength(8)
  }, 60_000)
})
