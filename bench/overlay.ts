/**
 * The overlay part of the benchmark (`npm run bench -- --only overlay [--nodes N]`, issue 15):
 * 100 nodes on this machine (`--quick` 16), several per process (members 5 per process,
 * `--quick` 3; clients 10), all
 * with the default `maxLinks` (24; `--quick` 4), found through the same-host registry; 90
 * members of one cluster answer requests with their peer id, 10 client nodes send requests
 * one at a time each. Reports start-up and membership convergence, links per node once
 * settled, idle CPU and RSS per node (per process divided by its nodes: nodes of one process
 * share one Node.js runtime), how long a new member takes to answer requests from every
 * client, and the failed requests and time to recover when 10% of the members are killed
 * (SIGKILL of whole member processes).
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { OVERLAY } from '../src/constants.js'
import { generateKey } from '../src/index.js'
import { idleCpu } from './cpu.js'
import { type Row, sleep, spawnTracked, waitForLine } from './util.js'

/** Processes started at once. */
const WAVE = 3
/** Member nodes per process (10% of the members are killed as whole processes). */
const MEMBERS_PER_PROCESS = 5
/** A new member or a recovery is waited for this long at most (ms). */
const WAIT = 60_000

/** Options of the overlay part. */
export interface OverlayOptions {
  quick: boolean
  /** Nodes in all (default 100, `--quick` 16): a tenth of them clients. */
  nodes?: number
  log?: (line: string) => void
}

/** Resident set of a process (MB), from /proc; NaN when unknown. */
function rssMb(pid: number | undefined): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m)
    return m ? Number(m[1]) / 1024 : Number.NaN
  } catch {
    return Number.NaN
  }
}

/** Sends `cmd` to every child and collects the first line matching `re` from each. */
async function ask(children: ChildProcess[], cmd: string, re: RegExp): Promise<RegExpMatchArray[]> {
  const answers = children.map((c) => waitForLine(c, re, 30_000))
  for (const c of children) c.stdin?.write(`${cmd}\n`)
  return Promise.all(answers)
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)

/** Runs the overlay part; returns its rows and notes. */
export async function runOverlayPart(opts: OverlayOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const total = opts.nodes ?? (opts.quick ? 16 : 100)
  const clients = Math.max(2, Math.round(total / 10))
  const members = total - clients
  const clientsPerProcess = 10
  const membersPerProcess = opts.quick ? 3 : MEMBERS_PER_PROCESS
  const maxLinks = opts.quick ? 4 : OVERLAY.maxLinks
  const n = members + clients
  const network = `bench-overlay-${randomBytes(4).toString('hex')}`
  const key = generateKey()
  const script = new URL('./overlay-node.js', import.meta.url).pathname
  const spawnProcess = (role: 'member' | 'client', nodes: number) =>
    spawnTracked(process.execPath, [
      script,
      ...['--network', network, '--key', key, '--max-links', String(maxLinks)],
      ...['--nodes', String(nodes), '--role', role, '--expect', String(members)],
    ])
  const plan: Array<['member' | 'client', number]> = []
  for (let i = 0; i < members; i += membersPerProcess)
    plan.push(['member', Math.min(membersPerProcess, members - i)])
  for (let i = 0; i < clients; i += clientsPerProcess)
    plan.push(['client', Math.min(clientsPerProcess, clients - i)])
  // Started in waves (each once the previous one is ready): a 2-core machine starting dozens
  // of processes at once spends minutes loading modules before any node runs.
  const t0 = performance.now()
  const procs: Array<{ child: ChildProcess; role: string; nodes: number; ids: string[] }> = []
  const allKnown: Array<Promise<unknown>> = []
  for (let i = 0; i < plan.length; i += WAVE) {
    const wave = plan
      .slice(i, i + WAVE)
      .map(([role, nodes]) => ({ child: spawnProcess(role, nodes), role, nodes }))
    for (const p of wave) {
      const all = waitForLine(p.child, /^ALL /, 900_000)
      all.catch(() => {}) // awaited below; no unhandled rejection if a READY fails first
      allKnown.push(all)
    }
    const ready = await Promise.all(wave.map((p) => waitForLine(p.child, /^READY (\S+)/, 900_000)))
    for (const [j, p] of wave.entries()) procs.push({ ...p, ids: ready[j]![1]!.split(',') })
    opts.log?.(`overlay: ${sum(procs.map((p) => p.nodes))}/${n} nodes ready`)
  }
  const started = performance.now() - t0
  const lastReady = performance.now()
  await Promise.all(allKnown)
  const converged = performance.now() - lastReady
  const children = procs.map((p) => p.child)
  const clientProcs = procs.filter((p) => p.role === 'client').map((p) => p.child)
  // Settle: links opened before the network's size was known close (5 s unused).
  await sleep(opts.quick ? 8000 : 15_000)
  const lists = (await ask(children, 's', /^LINKS (\S+) (\S+)/)).map((m) => [m[1]!, m[2]!])
  const neighbours = lists.flatMap((l) => l[0]!.split(',').map(Number))
  const onDemand = lists.flatMap((l) => l[1]!.split(',').map(Number))
  const cpuMsPerS = await idleCpu(
    children.map((c) => c.pid),
    opts.quick ? 5000 : 20_000,
  )
  const rss = procs.map((p) => rssMb(p.child.pid) / p.nodes)
  const rssTotal = sum(procs.map((p) => rssMb(p.child.pid)))

  // Requests: every client node sends one at a time.
  await ask(clientProcs, 'r', /^RUNNING/)
  await sleep(3000)
  const seenBy = async (id: string) =>
    sum((await ask(clientProcs, `q ${id}`, /^SEEN (\d+)/)).map((m) => Number(m[1])))
  // A new member: time until every client got a reply from it.
  const extra = spawnProcess('member', 1)
  const newId = (await waitForLine(extra, /^READY (\S+)/, WAIT))[1]!
  const joined = performance.now()
  let takenBy = 0
  let takenAll = Number.NaN
  while (performance.now() - joined < WAIT) {
    takenBy = await seenBy(newId)
    if (takenBy >= clients) {
      takenAll = performance.now() - joined
      break
    }
    await sleep(200)
  }
  opts.log?.(`overlay: new member answered ${takenBy}/${clients} clients`)

  // 10% of the members killed (whole member processes).
  const errors = async () => {
    const e = (await ask(clientProcs, 'e', /^ERRORS (\d+) (\d+) (\d+)/)).map((m) => m.slice(1).map(Number))
    return {
      failed: sum(e.map((x) => x[0]!)),
      answered: sum(e.map((x) => x[1]!)),
      last: Math.max(...e.map((x) => x[2]!)),
    }
  }
  const victims: ChildProcess[] = []
  let killedNodes = 0
  for (const p of procs) {
    if (p.role !== 'member' || killedNodes >= Math.round(members * 0.1)) continue
    victims.push(p.child)
    killedNodes += p.nodes
  }
  const before = await errors()
  const killedAt = Date.now()
  for (const v of victims) v.kill('SIGKILL')
  // Recovered once no request failed for 5 s (or after WAIT).
  let after = before
  while (Date.now() - killedAt < WAIT) {
    await sleep(500)
    after = await errors()
    if (Date.now() - Math.max(after.last, killedAt) >= 5000) break
  }
  const failed = after.failed - before.failed
  const recoveredMs = after.last > killedAt ? after.last - killedAt : 0
  const avg = (xs: number[]) => sum(xs) / xs.length
  const rows: Row[] = [
    {
      name: `  ${n} nodes started in ${procs.length} processes (last READY)`,
      value: started / 1000,
      unit: 's',
    },
    { name: '  then every node knows every member', value: converged, unit: 'ms' },
    { name: `  neighbour links per node, max (bound ${maxLinks})`, value: Math.max(...neighbours), unit: '' },
    { name: '  neighbour links per node, mean', value: avg(neighbours), unit: '' },
    { name: '  on-demand links per node, max (settled, idle)', value: Math.max(...onDemand), unit: '' },
    { name: '  idle CPU per node', value: cpuMsPerS / n / 10, unit: '% core' },
    { name: '  RSS per node, mean (process RSS / its nodes)', value: avg(rss), unit: 'MB' },
    { name: '  RSS of all processes', value: rssTotal / 1024, unit: 'GB' },
    {
      name: `  a new member answers every client (${takenBy}/${clients} in ${WAIT / 1000} s)`,
      value: takenAll,
      unit: 'ms',
    },
    { name: `  ${killedNodes} of ${members} members killed: failed requests`, value: failed, unit: '' },
    { name: '  ... requests answered meanwhile', value: after.answered - before.answered, unit: '' },
    { name: '  ... last failure after the kill', value: recoveredMs, unit: 'ms' },
  ]
  const notes = [
    `${members} members (${membersPerProcess} per process) and ${clients} clients (${clientsPerProcess} per process) ` +
      `on this machine, maxLinks ${maxLinks}, same-host discovery; each client node sends one request at a time ` +
      '(2 s timeout, 50 ms apart). Idle CPU and RSS are per process divided by its nodes.',
  ]
  return { rows, notes }
}
