/**
 * The overlay part of the benchmark (`npm run bench -- --only overlay`): N node processes on
 * this machine (30, `--quick` 12), each with `--max-links 6`, all joined to one cluster and
 * found through the same-host registry. Reports how long until every node knows every member
 * (from the first spawn), links per node (neighbours, on-demand) once settled, idle CPU per
 * node and RSS per node, and how long a new member takes to be known by every node.
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { generateKey } from '../src/index.js'
import { idleCpu } from './cpu.js'
import { type Row, sleep, spawnTracked, waitForLine } from './util.js'

/** Neighbour links per node in the bench (small, so 30 nodes are far from a full mesh). */
const MAX_LINKS = 6

/** Options of the overlay part. */
export interface OverlayOptions {
  quick: boolean
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
  const answers = children.map((c) => waitForLine(c, re, 15_000))
  for (const c of children) c.stdin?.write(`${cmd}\n`)
  return Promise.all(answers)
}

/** Runs the overlay part; returns its rows and notes. */
export async function runOverlayPart(opts: OverlayOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const n = opts.quick ? 12 : 30
  const network = `bench-overlay-${randomBytes(4).toString('hex')}`
  const key = generateKey()
  const script = new URL('./overlay-node.js', import.meta.url).pathname
  const spawnNode = (expect: number) =>
    spawnTracked(process.execPath, [
      script,
      '--network',
      network,
      '--key',
      key,
      '--max-links',
      String(MAX_LINKS),
      '--expect',
      String(expect),
    ])
  const t0 = performance.now()
  const nodes = Array.from({ length: n }, () => spawnNode(n))
  const allKnown = nodes.map((c) => waitForLine(c, /^ALL /, 180_000))
  await Promise.all(nodes.map((c) => waitForLine(c, /^READY /, 120_000)))
  const started = performance.now() - t0
  opts.log?.(`overlay: ${n} nodes started in ${(started / 1000).toFixed(1)} s`)
  await Promise.all(allKnown)
  const converged = performance.now() - t0
  // Settle: links opened before the network's size was known close (5 s unused).
  await sleep(opts.quick ? 8000 : 12_000)
  const links = (await ask(nodes, 's', /^LINKS (\d+) (\d+)/)).map((m) => [Number(m[1]), Number(m[2])])
  const neighbours = links.map((l) => l[0]!)
  const onDemand = links.map((l) => l[1]!)
  const cpuMsPerS = await idleCpu(
    nodes.map((c) => c.pid),
    opts.quick ? 5000 : 10_000,
  )
  const rss = nodes.map((c) => rssMb(c.pid))
  // A new member: time until every node knows it.
  const joinedAt = performance.now()
  const extra = spawnNode(n + 1)
  await waitForLine(extra, /^READY /, 60_000)
  const ready = performance.now()
  let seenAll = Number.NaN
  for (let i = 0; i < 200; i++) {
    const counts = (await ask(nodes, 'm', /^MEMBERS (\d+)/)).map((m) => Number(m[1]))
    if (counts.every((c) => c >= n + 1)) {
      seenAll = performance.now() - ready
      break
    }
    await sleep(100)
  }
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
  const rows: Row[] = [
    { name: `  ${n} nodes started (last READY, from the first spawn)`, value: started / 1000, unit: 's' },
    { name: '  every node knows every member (from the first spawn)', value: converged / 1000, unit: 's' },
    {
      name: `  neighbour links per node, max (bound ${MAX_LINKS})`,
      value: Math.max(...neighbours),
      unit: '',
    },
    { name: '  neighbour links per node, mean', value: avg(neighbours), unit: '' },
    { name: '  on-demand links per node, max (settled, idle)', value: Math.max(...onDemand), unit: '' },
    { name: '  idle CPU per node', value: cpuMsPerS / n / 10, unit: '% core' },
    { name: '  RSS per node, mean', value: avg(rss), unit: 'MB' },
    { name: '  RSS per node, max', value: Math.max(...rss), unit: 'MB' },
    {
      name: '  a new member known by every node (after its READY)',
      value: seenAll,
      unit: 'ms',
    },
  ]
  const notes = [
    `${n} processes of one node each on this machine, --max-links ${MAX_LINKS}, same-host discovery, ` +
      `all members of one cluster; new member started ${((ready - joinedAt) / 1000).toFixed(1)} s before it was ready.`,
  ]
  return { rows, notes }
}
