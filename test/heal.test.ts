/**
 * Links heal (issue 15), real nodes over loopback with same-host discovery off, so only
 * redialling brings a lost link back: a closed connection is redialled; a member killed and
 * restarted on the same port and identity is linked again and takes its share of requests
 * within 2 s; a silent (stopped) member gets no new requests once suspect; requests to
 * members that are all unreachable fail at once instead of at their deadline.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey, NoMembersError, type PlexusNode } from '../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from './helpers/nodes.js'
import { spawnNode, waitForLine } from './helpers/procs.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** The node's libp2p (internal; tests only). */
function libp2pOf(node: PlexusNode): Libp2p {
  return (node as unknown as { libp2p: Libp2p }).libp2p
}

function tcpAddr(node: PlexusNode): string {
  const a = node.addresses.find((x) => x.includes('/tcp/'))
  if (!a) throw new Error('node has no tcp address')
  return a
}

/** Resolves when `node` opens a connection to `peer` (an event, not a poll). */
function connected(node: PlexusNode, peer: string, ms = 10_000): Promise<void> {
  const l = libp2pOf(node)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      l.removeEventListener('connection:open', on)
      reject(new Error(`no connection to ${peer} within ${ms} ms`))
    }, ms)
    const on = (evt: CustomEvent<{ remotePeer: { toString(): string } }>) => {
      if (evt.detail.remotePeer.toString() !== peer) return
      clearTimeout(timer)
      l.removeEventListener('connection:open', on)
      resolve()
    }
    l.addEventListener('connection:open', on)
  })
}

const noLocal = { discovery: { local: false } }

/** Spawns a member process (test/fixtures/heal-member.mjs). */
async function spawnMember(
  network: string,
  key: string,
  name: string,
  listen: string,
  dataDir: string,
  boot: string,
): Promise<{ proc: ReturnType<typeof spawnNode>; id: string; addr: string }> {
  const proc = spawnNode(['test/fixtures/heal-member.mjs', network, 'db', key, name, listen, dataDir, boot])
  const m = await waitForLine(proc, /^ready (\S+) (\S+)$/, 20_000)
  return { proc, id: m[1]!, addr: m[2]! }
}

describe('links heal', () => {
  it('a closed connection to a member learned from announcements is redialled; requests flow', async () => {
    const network = uniqueNetwork('heal')
    const key = generateKey()
    const hub = await startNode({ network, ...noLocal })
    const boot = [`${tcpAddr(hub)}/p2p/${hub.id}`]
    const member = await startNode({ network, bootstrap: boot, ...noLocal })
    await member.join('db', { key, onRequest: () => 'm' })
    const client = await startNode({ network, bootstrap: boot, ...noLocal })
    await waitForMembers(client, 'db', 1, 10_000)
    expect(new TextDecoder().decode(await client.request('db', 'x', { timeout: 5000 }))).toBe('m')

    for (let round = 0; round < 3; round++) {
      const back = connected(client, member.id)
      const t0 = performance.now()
      await libp2pOf(client).hangUp(libp2pOf(member).peerId)
      await back
      await waitForMembers(client, 'db', 1, 5000)
      const reply = await client.request('db', 'x', { timeout: 5000 })
      expect(new TextDecoder().decode(reply)).toBe('m')
      console.log(
        `round ${round}: relinked and answered ${(performance.now() - t0).toFixed(0)} ms after hang-up`,
      )
    }
  }, 40_000)

  it('a member killed and restarted on the same port and identity takes its share within 2 s', async () => {
    const network = uniqueNetwork('heal')
    const key = generateKey()
    const hub = await startNode({ network, ...noLocal })
    const boot = `${tcpAddr(hub)}/p2p/${hub.id}`
    const dir = mkdtempSync(join(tmpdir(), 'plexus-heal-'))
    const dirB = mkdtempSync(join(tmpdir(), 'plexus-heal-'))
    dirs.push(dir, dirB)
    // Two member processes alike, so each one's share is about half (a member in this
    // process would be faster to reach and rightly take most sequential requests).
    const [a0] = await Promise.all([
      spawnMember(network, key, 'a', '/ip4/127.0.0.1/tcp/0', dir, boot),
      spawnMember(network, key, 'b', '/ip4/127.0.0.1/tcp/0', dirB, boot),
    ])
    let a = a0
    const port = a.addr.match(/\/tcp\/(\d+)/)![1]!
    const client = await startNode({ network, bootstrap: [boot], ...noLocal })
    await waitForMembers(client, 'db', 2, 15_000)

    a.proc.kill('SIGKILL')
    await waitFor(() => client.status().clusters[0]!.members.some((m) => m.id === a.id && !m.connected), 5000)
    const back = connected(client, a.id, 20_000)
    const restarted = performance.now()
    a = await spawnMember(network, key, 'a', `/ip4/127.0.0.1/tcp/${port}`, dir, boot)
    const ready = performance.now()
    await back
    const linked = performance.now()
    // Sequential requests (the case latency decides): the restarted member answers soon.
    const served: Array<{ by: string; at: number }> = []
    while (performance.now() - linked < 4000) {
      const by = new TextDecoder().decode(await client.request('db', 'x', { timeout: 5000 }))
      served.push({ by, at: performance.now() - linked })
    }
    const first = served.find((s) => s.by === 'a')
    console.log(
      `restart: linked ${(linked - restarted).toFixed(0)} ms after the process started ` +
        `(${(linked - ready).toFixed(0)} ms after it printed ready); first request served by a ` +
        `${first?.at.toFixed(0)} ms after the link; share of a: ${served.filter((s) => s.by === 'a').length}/${served.length}`,
    )
    expect(first).toBeDefined()
    expect(first!.at).toBeLessThan(2000)
    const late = served.filter((s) => s.at >= 1000)
    expect(late.filter((s) => s.by === 'a').length).toBeGreaterThan(late.length / 4)
  }, 60_000)

  it('a member silent for 2 s gets no new requests; when all are unreachable requests fail at once', async () => {
    const network = uniqueNetwork('heal')
    const key = generateKey()
    const hub = await startNode({ network, ...noLocal })
    const boot = `${tcpAddr(hub)}/p2p/${hub.id}`
    const dirA = mkdtempSync(join(tmpdir(), 'plexus-heal-'))
    const dirB = mkdtempSync(join(tmpdir(), 'plexus-heal-'))
    dirs.push(dirA, dirB)
    const a = await spawnMember(network, key, 'a', '/ip4/127.0.0.1/tcp/0', dirA, boot)
    const b = await spawnMember(network, key, 'b', '/ip4/127.0.0.1/tcp/0', dirB, boot)
    const client = await startNode({ network, bootstrap: [boot], ...noLocal })
    await waitForMembers(client, 'db', 2, 15_000)

    // `a` stopped: its link stays open but silent. Requests already sent to it wait, and new
    // ones go to b by the outstanding count; once a has been silent for suspectAfter (2 s),
    // even an idle `a` gets no new request, which round-robin would otherwise give it.
    a.proc.kill('SIGSTOP')
    const stopped = performance.now()
    // A scenario duration (the silence), not a wait for an event.
    await new Promise((r) => setTimeout(r, 2500))
    const served: Array<{ by: string; took: number }> = []
    for (let i = 0; i < 6; i++) {
      const t = performance.now()
      const by = await client.request('db', 'x', { timeout: 8000 }).then(
        (r) => new TextDecoder().decode(r),
        (e: Error) => e.name,
      )
      served.push({ by, took: performance.now() - t })
    }
    a.proc.kill('SIGCONT')
    console.log(
      `silent member: 6 sequential requests ${((performance.now() - stopped) / 1000).toFixed(1)} s after the stop: ` +
        served.map((s) => `${s.by} ${s.took.toFixed(0)} ms`).join(', '),
    )
    expect(served.map((s) => s.by)).toEqual(Array(6).fill('b'))
    expect(Math.max(...served.map((s) => s.took))).toBeLessThan(1000)

    // Every member gone: a request fails with NoMembersError well before its deadline.
    a.proc.kill('SIGKILL')
    b.proc.kill('SIGKILL')
    await waitFor(() => client.status().clusters[0]!.members.every((m) => !m.connected), 10_000)
    const t0 = performance.now()
    await expect(client.request('db', 'x', { timeout: 10_000 })).rejects.toBeInstanceOf(NoMembersError)
    const took = performance.now() - t0
    console.log(`all members unreachable: NoMembersError after ${took.toFixed(0)} ms (timeout 10000)`)
    expect(took).toBeLessThan(3000)
  }, 60_000)
})
