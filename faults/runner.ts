/**
 * Runs one schedule: three member processes, a stream with 3 replicas, a publisher with
 * `ack: 'all'` running while the schedule's faults happen, then heal, settle, and read the
 * partition from every member's own replica (checked by check.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { localDirectory } from '../src/discovery/local.js'
import { createNode, generateKey, type PlexusNode, type StreamInfo } from '../src/index.js'
import { type CheckResult, checkDumps, clean } from './check.js'
import { Cluster, type Member } from './cluster.js'
import type { Netns } from './netns.js'
import type { FaultStep, Schedule } from './schedule.js'
import { Workload } from './workload.js'

const CLUSTER = 'db'
const STREAM = 'faults'

/** Where a schedule runs. */
export interface RunEnv {
  /** Network namespaces (needed by 'partition' faults); undefined: loopback. */
  netns?: Netns
  /** The compiled power-loss shim (needed by 'powerloss' faults). */
  shim?: string
  /** `maxMessageSize` of the member processes (undefined: the library default). */
  maxMessageSize?: number
  /** Bound on the whole schedule (ms, default 60 s). */
  timeoutMs?: number
  /** Receives every timeline line as it happens. */
  onLine?: (line: string) => void
}

/** Outcome of one schedule. */
export interface ScheduleResult {
  seed: number
  ok: boolean
  /** The check, when the schedule got that far. */
  check?: CheckResult
  /** Why it did not finish (stall, no settle, timeout, setup failure). */
  error?: string
  durationMs: number
  ackedBytes: number
  unknown: number
  publishErrors: string
  /** The last lines of the timeline (test events and the members' output). */
  timeline: string[]
}

type Partition0 = StreamInfo['partitions'][number]

/** Runs `s` and always cleans up (processes, directories, discovery records). */
export async function runSchedule(s: Schedule, env: RunEnv = {}): Promise<ScheduleResult> {
  const t0 = Date.now()
  const deadline = t0 + (env.timeoutMs ?? 60_000)
  const timeline: string[] = []
  const log = (line: string) => {
    const l = `+${Date.now() - t0}ms ${line}`
    timeline.push(l)
    if (timeline.length > 2000) timeline.splice(0, 500)
    env.onLine?.(l)
  }
  const root = await mkdtemp(join(tmpdir(), 'plexus-faults-'))
  const network = `pxf-${process.pid}-${s.seed}-${Date.now() % 1e6}`
  const usesPowerLoss = s.faults.some((f) => f.kind === 'powerloss')
  if (s.faults.some((f) => f.kind === 'partition') && !env.netns)
    throw new Error('a partition fault needs network namespaces')
  if (usesPowerLoss && !env.shim) throw new Error('a power loss fault needs the shim')
  const key = generateKey()
  const cluster = new Cluster({
    root,
    network,
    cluster: CLUSTER,
    key,
    raftLogBytes: s.raftLogBytes,
    maxMessageSize: env.maxMessageSize,
    netns: env.netns,
    shim: usesPowerLoss ? env.shim : undefined,
    log,
  })
  let pub: PlexusNode | undefined
  let work: Workload | undefined
  const result: ScheduleResult = {
    seed: s.seed,
    ok: false,
    durationMs: 0,
    ackedBytes: 0,
    unknown: 0,
    publishErrors: '',
    timeline,
  }
  try {
    await Promise.all(cluster.members.map((m) => cluster.launch(m)))
    const listen = env.netns ? `/ip4/${env.netns.hostAddr}/tcp/0` : '/ip4/127.0.0.1/tcp/0'
    pub = await createNode({ network, listen: [listen], credentials: { clusterKeys: { [CLUSTER]: key } } })
    const node = pub
    await until(deadline, 'the publisher seeing 3 members', () => {
      const c = node.status().clusters.find((x) => x.name === CLUSTER)
      return (c?.members.filter((m) => m.connected).length ?? 0) >= 3
    })
    await node.streams.create(STREAM, { cluster: CLUSTER, subject: 'f.>', replicas: 3, partitions: 1 })
    const info = () => node.streams.info(STREAM, { timeout: 3000 }).then((i) => i.partitions[0]!)
    const settle = async (what: string) => {
      let last: Partition0 | undefined
      await until(
        Math.min(deadline, Date.now() + 30_000),
        `${what}: a leader and 3 in-sync replicas`,
        async () => {
          last = await info().catch(() => undefined)
          return last !== undefined && last.leader !== null && last.inSync.length === 3
        },
        () => `last info ${JSON.stringify(last)}`,
      ).catch(async (err: Error) => {
        for (const m of cluster.members)
          if (cluster.up(m))
            log(
              `${m.name} (${m.id}) hosts ${JSON.stringify(await cluster.hosted(m, STREAM).catch((e) => e.message))}; raft ${await cluster.raft(m, STREAM).catch((e) => e.message)}`,
            )
        throw err
      })
      return last!
    }
    const first = await settle('after create')
    log(`stream created: leader ${nameOf(cluster, first.leader)}`)

    work = new Workload(node, s.seed, 'f', s.messageBytes, s.inflight, s.totalBytes)
    work.start()
    for (const [k, f] of s.faults.entries()) {
      await work.reach(f.atBytes, deadline)
      await settle(`before fault ${k + 1}`)
      await fault(cluster, f, await info(), log)
    }
    await work.reach(s.totalBytes, deadline)
    await work.stop()
    log(`publishing done: ${work.acked.length} acked, ${work.unknown.size} unknown (${work.errorSummary()})`)

    await cluster.healAll()
    const end = await settle('after the schedule')
    const ackedEnd = Math.max(-1, ...work.acked.map((a) => a.offset)) + 1
    let views: Array<number | undefined> = []
    await until(
      Math.min(deadline, Date.now() + 30_000),
      'every replica reaching the leader’s end',
      async () => {
        const now = await info().catch(() => end)
        views = await Promise.all(
          cluster.members.map((m) =>
            cluster
              .hosted(m, STREAM)
              .then((h) => h?.nextOffset)
              .catch(() => undefined),
          ),
        )
        return views.every((v) => v !== undefined && v === now.nextOffset && v >= ackedEnd)
      },
      () => `replica ends ${JSON.stringify(views)}, acked end ${ackedEnd}`,
    )
    log(`settled: leader ${nameOf(cluster, end.leader)}, replica ends ${JSON.stringify(views)}`)
    // A replica's status counts the messages it applied; its partition log may still be
    // writing the last of them (applies are pipelined), so a member is read once what it
    // can read reaches that end.
    const readableEnd = Math.max(...views.map((v) => v ?? 0))
    const dumps: Awaited<ReturnType<Cluster['dump']>>[] = []
    for (const m of cluster.members) {
      let d = await cluster.dump(m, STREAM)
      const stop = Math.min(deadline, Date.now() + 15_000)
      while (d.nextOffset < readableEnd && Date.now() < stop) {
        await sleep(200)
        d = await cluster.dump(m, STREAM)
      }
      dumps.push(d)
    }
    result.check = checkDumps(work.acked, work.unknown, dumps)
    result.ok = clean(result.check)
    for (const p of result.check.problems) log(`problem: ${p}`)
  } catch (err) {
    result.error = (err as Error).message
    log(`error: ${(err as Error).stack ?? err}`)
  } finally {
    if (work) {
      result.ackedBytes = work.ackedBytes
      result.unknown = work.unknown.size
      result.publishErrors = work.errorSummary()
      const stopping = work.stop()
      await Promise.race([stopping, sleep(12_000)])
    }
    await cluster.stop().catch(() => {})
    await pub?.stop().catch(() => {})
    await rm(root, { recursive: true, force: true }).catch(() => {})
    await rm(localDirectory(network), { recursive: true, force: true }).catch(() => {})
    result.durationMs = Date.now() - t0
  }
  return result
}

/** Applies one fault to its victim and undoes it after `downMs` (publishing goes on). */
async function fault(cluster: Cluster, f: FaultStep, now: Partition0, log: (l: string) => void) {
  const leader = cluster.members.find((m) => m.id === now.leader)
  const followers = cluster.members.filter((m) => m !== leader)
  const victim: Member =
    f.target === 'leader' && leader ? leader : followers[Math.floor(f.pick * followers.length)]!
  const role = victim === leader ? 'leader' : 'follower'
  log(`fault ${f.kind} of ${victim.name} (${role}) for ${f.downMs} ms at nextOffset ${now.nextOffset}`)
  switch (f.kind) {
    case 'kill':
      await cluster.kill9(victim)
      await sleep(f.downMs)
      await cluster.launch(victim)
      break
    case 'powerloss': {
      const r = await cluster.powerLoss(victim)
      log(
        `power loss of ${victim.name}: ${r.truncated} files cut, ${r.removed} removed, ${r.droppedBytes} bytes dropped (journal: ${JSON.stringify(r.kinds)})`,
      )
      for (const [path, before, after] of r.files)
        log(
          `  ${path.slice(path.indexOf(`/m${victim.index}/`))}: ${before} -> ${after < 0 ? 'removed' : after}`,
        )
      await sleep(f.downMs)
      await cluster.launch(victim)
      break
    }
    case 'pause':
      cluster.pause(victim)
      await sleep(f.downMs)
      cluster.resume(victim)
      break
    case 'partition':
      await cluster.cut(victim)
      await sleep(f.downMs)
      await cluster.heal(victim)
      break
  }
  log(`fault ${f.kind} of ${victim.name} undone`)
}

function nameOf(c: Cluster, id: string | null): string {
  return c.members.find((m) => m.id === id)?.name ?? String(id)
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

async function until(
  deadline: number,
  what: string,
  cond: () => boolean | Promise<boolean>,
  detail?: () => string,
): Promise<void> {
  while (!(await cond())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${detail ? `; ${detail()}` : ''}`)
    await sleep(100)
  }
}
