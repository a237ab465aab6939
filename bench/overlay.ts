/**
 * The overlay part of the benchmark (`npm run bench -- --only overlay`): N node processes on
 * this machine (30, `--quick` 12), each with `--max-links 6`, all joined to one cluster and
 * found through the same-host registry. Reports how long until every node knows every member
 * (after the last one is ready), links per node (neighbours, on-demand) once settled, idle CPU per
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
/** Processes started at once. */
const WAVE = 6

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
  // Started in waves of WAVE (each wave once the previous one is ready): a 2-core machine
  // starting 30 processes at once spends minutes loading modules before any node runs.
  const t0 = performance.now()
  const nodes: ChildProcess[] = []
  const allKnown: Array<Promise<unknown>> = []
  for (let i = 0; i < n; i += WAVE) {
    const wave = Array.from({ length: Math.min(WAVE, n - i) }, () => spawnNode(n))
    for (const c of wave) {
      const all = waitForLine(c, /^ALL /, 600_000)
      all.catch(() => {}) // awaited below; no unhandled rejection if a READY fails first
      allKnown.push(all)
    }
    nodes.push(...wave)
    await Promise.all(wave.map((c) => waitForLine(c, /^READY /, 180_000)))
    opts.log?.(`overlay: ${nodes.length}/${n} nodes ready`)
  }
  const started = performance.now() - t0
  const lastReady = performance.now()
  await Promise.all(allKnown)
  const converged = performance.now() - lastReady
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
    { name: `  ${n} nodes started, waves of ${WAVE} (last READY)`, value: started / 1000, unit: 's' },
    { name: '  then every node knows every member', value: converged, unit: 'ms' },
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
