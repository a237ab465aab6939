/**
 * Plexus side of the request benchmark: three member processes (bench/member.ts) serving
 * cluster `bench` with an echo handler (member 0 also serves `bench1`, for the 1-member
 * figures), and the requester node in the bench process. All are real libp2p nodes over
 * TCP loopback on a network name of their own, found by same-host discovery (no mDNS).
 */
import { randomBytes } from 'node:crypto'
import { rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, generateKey, type PlexusNode } from '../src/index.js'
import { phases, type RequestFigures, requestFigures } from './nats.js'
import { concurrent, sequential, spawnTracked, stopChild, waitForLine, waitUntil } from './util.js'

export const CLUSTER_ALL = 'bench'
export const CLUSTER_ONE = 'bench1'

function connectedMembers(node: PlexusNode, cluster: string): number {
  return (
    node
      .status()
      .clusters.find((c) => c.name === cluster)
      ?.members.filter((m) => m.connected).length ?? 0
  )
}

/** Runs the Plexus request benchmark. `memberNodeArgs` go to member 0's node (e.g. --cpu-prof). */
export async function runPlexusRequestBench(opts: {
  payload: Uint8Array
  quick?: boolean
  log?: (s: string) => void
  memberNodeArgs?: string[]
}): Promise<RequestFigures> {
  const log = opts.log ?? (() => {})
  const network = `bench-${randomBytes(6).toString('hex')}`
  const key = generateKey()
  const script = new URL('./member.js', import.meta.url).pathname
  const members: ReturnType<typeof spawnTracked>[] = []
  let requester: PlexusNode | undefined
  try {
    for (let i = 0; i < 3; i++) {
      const clusters = i === 0 ? [CLUSTER_ALL, CLUSTER_ONE] : [CLUSTER_ALL]
      const nodeArgs = i === 0 ? (opts.memberNodeArgs ?? []) : []
      members.push(
        spawnTracked(process.execPath, [
          ...nodeArgs,
          script,
          '--network',
          network,
          '--key',
          key,
          ...clusters.flatMap((c) => ['--cluster', c]),
        ]),
      )
    }
    await Promise.all(members.map((m) => waitForLine(m, /^READY /, 20_000)))
    requester = await createNode({
      // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
      gcTuning: true,
      network,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      discovery: { local: true, mdns: false },
    })
    const node = requester
    const t0 = Date.now()
    await waitUntil(
      () => connectedMembers(node, CLUSTER_ALL) >= 3 && connectedMembers(node, CLUSTER_ONE) >= 1,
      15_000,
      'the requester to see 3 members of bench and 1 of bench1',
    )
    log(`Plexus: network ${network}, requester sees 3 members after ${Date.now() - t0} ms`)
    const one = () => node.request(CLUSTER_ONE, opts.payload, { timeout: 10_000 })
    const all = () => node.request(CLUSTER_ALL, opts.payload, { timeout: 10_000 })
    const reply = await one()
    if (reply.length !== opts.payload.length) throw new Error('Plexus echo returned a wrong payload')
    const p = phases(opts.quick === true)
    // CPU of every process involved: the requester (this process) and the 3 members.
    const pids = [process.pid, ...members.map((m) => m.pid)]
    log('Plexus: sequential latency, 1 member')
    const latency1 = await sequential(one, { ...p.seq, pids })
    log('Plexus: sequential latency, 3 members')
    const latency3 = await sequential(all, { ...p.seq, pids })
    log('Plexus: throughput, 100 in flight, 1 member')
    const t1 = await concurrent(one, { ...p.conc, pids })
    log('Plexus: throughput, 100 in flight, 3 members')
    const t3 = await concurrent(all, { ...p.conc, pids })
    if (t1.errors || t3.errors) log(`Plexus: ${t1.errors + t3.errors} requests failed during throughput runs`)
    return await requestFigures(log, 'Plexus', pids, p.idleMs, [latency1, latency3], [t1, t3])
  } finally {
    await requester?.stop().catch(() => {})
    // SIGTERM first so members stop their nodes (and write --cpu-prof output), then SIGKILL.
    await Promise.all(members.map((m) => stopChild(m, 5000)))
    // Same-host discovery leaves this network's (now empty) directory behind: remove it.
    await rmdir(join(tmpdir(), 'plexus-local', `${network}-open`)).catch(() => {})
  }
}
