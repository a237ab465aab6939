/**
 * The two 3-replica stream clusters the durable benchmarks run against, started the same
 * way for every durable part (publish, end-to-end, catch-up):
 *
 * - Plexus: three member processes (bench/durable-member.ts), each with a fresh data
 *   directory, joined to cluster `bench`; a non-member node in the bench process creates
 *   the stream (R3, 1 partition) and waits for a leader and 3 in-sync replicas.
 * - JetStream: three `nats-server` processes (the Debian package, 2.9) clustered on
 *   loopback, JetStream on, each with a fresh store directory; a stream with three replicas
 *   on file storage, default settings otherwise.
 *
 * `stop()` stops every process and removes every directory it made, also after errors.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, type JetStreamManager, type NatsConnection, StorageType, type StreamInfo } from 'nats'
import {
  createNode,
  generateKey,
  type PlexusNode,
  type StreamInfo as PlexusStreamInfo,
} from '../src/index.js'
import { findNatsServer, NATS_INSTALL_HINT } from './nats.js'
import { freePort, sleep, spawnTracked, stopChild, waitForLine } from './util.js'

/** Cluster that owns the benchmark stream (Plexus), and the stream's name (both systems). */
export const BENCH_CLUSTER = 'bench'
export const BENCH_STREAM = 'bench'

type Child = ReturnType<typeof spawnTracked>

/** Retries `probe` until it returns a value (errors count as "not yet") or `ms` passes. */
export async function retry<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms
  let lastErr: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}`,
        lastErr ? { cause: lastErr } : undefined,
      )
    await sleep(100)
  }
}

/** Members of `cluster` this node is connected to. */
export function connectedMembers(node: PlexusNode, cluster = BENCH_CLUSTER): number {
  return (
    node
      .status()
      .clusters.find((c) => c.name === cluster)
      ?.members.filter((m) => m.connected).length ?? 0
  )
}

// ---- Plexus --------------------------------------------------------------------------

/** One member process and what it said when ready. */
export interface PlexusMember {
  child: Child
  id: string
  pid: number
}

export interface PlexusStreamCluster {
  network: string
  /** Directory holding the members' data directories. */
  root: string
  /** The non-member node in the bench process that created the stream. */
  node: PlexusNode
  members: PlexusMember[]
  /** The member leading partition 0 when the stream became ready. */
  leader: PlexusMember | undefined
  /** `performance.now()` when the members were spawned (to slice their profiles). */
  spawnedAt: number
  /** Stops the node and the members (SIGTERM, then SIGKILL) and removes the data directories. */
  stop(): Promise<void>
}

/**
 * Starts three members and a non-member node, creates the stream (3 replicas, 1 partition,
 * capturing `subject`) and waits until partition 0 has a leader and 3 in-sync replicas.
 * `profileDir`: every member runs with `--cpu-prof` into that directory.
 */
export async function startPlexusStreamCluster(opts: {
  subject: string
  log?: (s: string) => void
  profileDir?: string
  /** Prefix of the temporary directory (under the OS tmpdir). */
  tmpPrefix?: string
}): Promise<PlexusStreamCluster> {
  const log = opts.log ?? (() => {})
  const network = `bench-${randomBytes(6).toString('hex')}`
  const key = generateKey()
  const root = await mkdtemp(join(tmpdir(), opts.tmpPrefix ?? 'plexus-bench-durable-'))
  const script = new URL('./durable-member.js', import.meta.url).pathname
  const nodeArgs = opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(opts.profileDir)] : []
  const members: PlexusMember[] = []
  let children: Child[] = []
  let node: PlexusNode | undefined
  const stop = async () => {
    await node?.stop().catch(() => {})
    // SIGTERM first so members stop their nodes (and write --cpu-prof output), then SIGKILL.
    await Promise.all(children.map((c) => stopChild(c, 8000)))
    await rm(root, { recursive: true, force: true }).catch(() => {})
    // Same-host discovery leaves this network's (now empty) directory behind: remove it.
    await rmdir(join(tmpdir(), 'plexus-local', `${network}-open`)).catch(() => {})
  }
  try {
    const spawnedAt = performance.now()
    children = [0, 1, 2].map((i) =>
      spawnTracked(process.execPath, [
        ...nodeArgs,
        script,
        '--network',
        network,
        '--key',
        key,
        '--cluster',
        BENCH_CLUSTER,
        '--data-dir',
        join(root, `m${i}`),
      ]),
    )
    for (const child of children) {
      const m = await waitForLine(child, /^READY (\S+) (\d+)/, 30_000)
      members.push({ child, id: m[1], pid: Number(m[2]) })
    }
    node = await createNode({
      // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
      gcTuning: true,
      network,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      discovery: { local: true, mdns: false },
      credentials: { clusterKeys: { [BENCH_CLUSTER]: key } },
    })
    const n = node
    const t0 = Date.now()
    await retry('the bench node to see 3 members of bench', 20_000, async () =>
      connectedMembers(n) >= 3 ? true : undefined,
    )
    log(`Plexus: network ${network}, bench node sees 3 members after ${Date.now() - t0} ms`)
    await retry('the stream to be created', 30_000, () =>
      n.streams.create(BENCH_STREAM, {
        cluster: BENCH_CLUSTER,
        subject: opts.subject,
        replicas: 3,
        partitions: 1,
      }),
    )
    const ready = (i: PlexusStreamInfo) => i.partitions[0]?.leader && i.partitions[0].inSync.length >= 3
    let info = await retry('a partition leader and 3 in-sync replicas', 30_000, async () => {
      const i = await n.streams.info(BENCH_STREAM)
      return ready(i) ? i : undefined
    })
    // Members hand leadership to the preferred replica (placement order) when idle: wait for
    // that, so that no transfer happens during the measurement (bounded; go on without it).
    const settled = (i: PlexusStreamInfo) =>
      ready(i) && i.partitions[0].leader === i.partitions[0].replicas[0]
    if (!settled(info)) {
      log('Plexus: waiting for the preferred replica to take the partition over')
      info = await retry('the preferred replica to lead', 15_000, async () => {
        const i = await n.streams.info(BENCH_STREAM)
        return settled(i) ? i : undefined
      }).catch(() => info)
    }
    const leader = members.find((m) => m.id === info.partitions[0].leader)
    log(
      `Plexus: stream ${BENCH_STREAM} R3, partition 0 led by member pid ${leader?.pid ?? '?'} after ${Date.now() - t0} ms`,
    )
    return { network, root, node: n, members, leader, spawnedAt, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

// ---- JetStream -----------------------------------------------------------------------

/** One nats-server of the cluster. */
export interface NatsServer {
  name: string
  port: number
  clusterPort: number
  httpPort: number
  dir: string
  child?: Child
}

function serverConfig(s: NatsServer, all: NatsServer[]): string {
  const routes = all.filter((o) => o !== s).map((o) => `nats-route://127.0.0.1:${o.clusterPort}`)
  return [
    `server_name: ${s.name}`,
    `listen: 127.0.0.1:${s.port}`,
    `http: 127.0.0.1:${s.httpPort}`,
    `jetstream { store_dir: ${JSON.stringify(join(s.dir, 'store'))} }`,
    'cluster {',
    '  name: bench',
    `  listen: 127.0.0.1:${s.clusterPort}`,
    `  routes: [${routes.join(', ')}]`,
    '}',
    '',
  ].join('\n')
}

/** The JetStream meta group's leader as server `s` sees it (monitoring endpoint), or undefined. */
async function metaLeader(s: NatsServer): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${s.httpPort}/jsz`, { signal: AbortSignal.timeout(2000) })
    const body = (await res.json()) as { meta_cluster?: { leader?: string; cluster_size?: number } }
    const meta = body.meta_cluster
    return meta?.leader && (meta.cluster_size ?? 0) >= 3 ? meta.leader : undefined
  } catch {
    return undefined
  }
}

export interface JetStreamCluster {
  bin: string
  /** Directory holding the servers' configurations and stores. */
  root: string
  servers: NatsServer[]
  /** Connection to server 1, for stream and consumer management. */
  nc: NatsConnection
  jsm: JetStreamManager
  /** The server that led the stream when it became ready. */
  leader: NatsServer
  info: StreamInfo
  /** `nats://127.0.0.1:<port>` of a server by name (or the stream leader's). */
  url(name?: string): string
  /** Closes the connection, stops the servers, removes the store directories. */
  stop(): Promise<void>
}

/**
 * Starts three clustered nats-servers and creates stream `bench` (R3, file storage,
 * capturing `subject`); returns undefined (after printing why) without nats-server.
 */
export async function startJetStreamCluster(opts: {
  subject: string
  log?: (s: string) => void
  tmpPrefix?: string
}): Promise<JetStreamCluster | undefined> {
  const log = opts.log ?? (() => {})
  const bin = findNatsServer()
  if (!bin) {
    console.log(NATS_INSTALL_HINT)
    return undefined
  }
  const root = await mkdtemp(join(tmpdir(), opts.tmpPrefix ?? 'plexus-bench-js-'))
  const servers: NatsServer[] = []
  let nc: NatsConnection | undefined
  const stop = async () => {
    await nc?.close().catch(() => {})
    await Promise.all(servers.map((s) => (s.child ? stopChild(s.child, 5000) : undefined)))
    await rm(root, { recursive: true, force: true }).catch(() => {})
  }
  try {
    for (let i = 1; i <= 3; i++) {
      const [port, clusterPort, httpPort] = [await freePort(), await freePort(), await freePort()]
      servers.push({ name: `n${i}`, port, clusterPort, httpPort, dir: join(root, `n${i}`) })
    }
    for (const s of servers) await writeFile(join(root, `${s.name}.conf`), serverConfig(s, servers))
    // Each waiter is attached in the same turn as its spawn: a server that is ready in a few
    // milliseconds (a quiet machine) prints the line before an awaited write would return, and
    // a line read with no waiter is gone. 45 s: at a load average of 18 on 2 cores one of three
    // servers once took over 15 s to get there.
    const ready = servers.map((s) => {
      s.child = spawnTracked(bin, ['-c', join(root, `${s.name}.conf`)])
      return waitForLine(s.child, /Server is ready/, 45_000, 'stderr')
    })
    await Promise.all(ready)
    const t0 = Date.now()
    const meta = await retry('a JetStream meta leader', 30_000, () => metaLeader(servers[0]))
    log(`JetStream: 3 servers (${bin}), meta leader ${meta} after ${Date.now() - t0} ms`)
    nc = await connect({ servers: `127.0.0.1:${servers[0].port}`, noEcho: true })
    const jsm = await nc.jetstreamManager()
    await retry('the stream to be created', 30_000, () =>
      jsm.streams.add({
        name: BENCH_STREAM,
        subjects: [opts.subject],
        num_replicas: 3,
        storage: StorageType.File,
      }),
    )
    const info = await retry('the stream leader and 2 current replicas', 30_000, async () => {
      const si = await jsm.streams.info(BENCH_STREAM)
      const current = si.cluster?.replicas?.filter((r) => r.current).length ?? 0
      return si.cluster?.leader && current >= 2 ? si : undefined
    })
    const leader = servers.find((s) => s.name === info.cluster?.leader) ?? servers[0]
    log(`JetStream: stream ${BENCH_STREAM} R3 file storage, leader ${leader.name}`)
    const url = (name?: string) =>
      `127.0.0.1:${(servers.find((s) => s.name === (name ?? leader.name)) ?? leader).port}`
    return { bin, root, servers, nc, jsm, leader, info, url, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
