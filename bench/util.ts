/**
 * Benchmark helpers: percentiles, timed load loops, the results table, free ports, and
 * child processes that are always killed (normal end, error, Ctrl-C, parent death).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { accessSync, createWriteStream, constants as fsConstants } from 'node:fs'
import { createServer } from 'node:net'
import { delimiter, join } from 'node:path'
import { CpuWindow } from './cpu.js'

/** One measured figure. `nats` is the same measure against NATS in the same run. */
export interface Row {
  name: string
  value: number
  unit: string
  nats?: number
  /** 'lower' when smaller is better (latency), 'higher' when larger is better (throughput). */
  better?: 'lower' | 'higher'
  note?: string
}

/** Percentile (nearest rank) of an ascending array; NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/** Latency summary (microseconds) of samples in nanoseconds. */
export interface LatencySummary {
  count: number
  p50: number
  p99: number
  mean: number
}

export function summarize(samplesNs: number[]): LatencySummary {
  const us = samplesNs.map((n) => n / 1000).sort((a, b) => a - b)
  const mean = us.reduce((a, b) => a + b, 0) / (us.length || 1)
  return { count: us.length, p50: percentile(us, 50), p99: percentile(us, 99), mean }
}

/**
 * Runs `call` one at a time: `warmup` calls, then until `count` calls or `ms` elapse.
 * With `pids`, also the CPU time those processes used per measured call (`cpuUs`, µs).
 */
export async function sequential(
  call: () => Promise<unknown>,
  opts: { warmup: number; count: number; ms: number; pids?: Array<number | undefined> },
): Promise<LatencySummary & { cpuUs: number }> {
  for (let i = 0; i < opts.warmup; i++) await call()
  const samples: number[] = []
  const cpu = new CpuWindow(opts.pids ?? [])
  cpu.start()
  const end = performance.now() + opts.ms
  while (samples.length < opts.count && performance.now() < end) {
    const t0 = process.hrtime.bigint()
    await call()
    samples.push(Number(process.hrtime.bigint() - t0))
  }
  const cpuUs = cpu.stop() / samples.length
  return { ...summarize(samples), cpuUs }
}

/**
 * Keeps `inFlight` calls outstanding for `warmupMs` then `ms`; returns completed calls/s.
 * With `pids`, also the CPU time those processes used over the measured window per call
 * completed in it (`cpuUs`, µs; NaN without pids).
 */
export async function concurrent(
  call: () => Promise<unknown>,
  opts: { inFlight: number; warmupMs: number; ms: number; pids?: Array<number | undefined> },
): Promise<{ rate: number; count: number; errors: number; latency: LatencySummary; cpuUs: number }> {
  let measuring = false
  let stopAt = performance.now() + opts.warmupMs
  let count = 0
  let errors = 0
  let firstError: unknown
  const samples: number[] = []
  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const t0 = process.hrtime.bigint()
      const counting = measuring
      try {
        await call()
        if (counting && measuring) {
          count++
          if (samples.length < 200_000) samples.push(Number(process.hrtime.bigint() - t0))
        }
      } catch (err) {
        errors++
        firstError ??= err
        if (errors > 1000) throw firstError
      }
    }
  }
  // Warm-up phase.
  await Promise.all(Array.from({ length: opts.inFlight }, worker))
  // Measured phase: counts only calls both started and finished inside the window.
  stopAt = performance.now() + opts.ms
  measuring = true
  const cpu = new CpuWindow(opts.pids ?? [])
  cpu.start()
  const t0 = performance.now()
  const run = Promise.all(Array.from({ length: opts.inFlight }, worker))
  await new Promise((r) => setTimeout(r, opts.ms))
  const elapsed = performance.now() - t0
  measuring = false
  const cpuUs = cpu.stop() / count
  await run
  if (count === 0 && firstError) throw firstError
  return { rate: (count / elapsed) * 1000, count, errors, latency: summarize(samples), cpuUs }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

/** Full path of an executable: given candidates first, then PATH; undefined if none. */
export function findExecutable(name: string, candidates: string[] = []): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean)
  for (const p of [...candidates, ...dirs.map((d) => join(d, name))]) {
    try {
      accessSync(p, fsConstants.X_OK)
      return p
    } catch {}
  }
  return undefined
}

// ---- child processes ------------------------------------------------------------------

const children = new Set<ChildProcess>()
let hooked = false

function killAllNow(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
}

function hookExit(): void {
  if (hooked) return
  hooked = true
  process.on('exit', killAllNow)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAllNow()
      process.exit(130)
    })
  }
}

/** Environment variable naming a directory that receives a copy of every child's output. */
const CHILD_LOG_ENV = 'PLEXUS_BENCH_CHILD_LOGS'
let childSeq = 0

/**
 * Spawns a tracked child (stdin piped: children exit when it closes, i.e. when we die).
 * With `PLEXUS_BENCH_CHILD_LOGS=DIR` each child's stdout and stderr are also copied to
 * `DIR/<n>-<first argument>.log` (for `--node-flags="--trace-gc ..."` and the like).
 */
export function spawnTracked(command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  hookExit()
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  const logDir = process.env[CHILD_LOG_ENV]
  if (logDir) {
    const name = (args.find((a) => !a.startsWith('-') && !a.includes('/')) ?? 'child').replace(
      /[^\w.-]/g,
      '_',
    )
    const log = createWriteStream(join(logDir, `${++childSeq}-${name}.log`))
    child.stdout?.on('data', (d: Buffer) => log.write(d))
    child.stderr?.on('data', (d: Buffer) => log.write(d))
    child.on('exit', () => log.end())
  }
  children.add(child)
  child.on('exit', () => children.delete(child))
  child.on('error', () => children.delete(child))
  // Keep the last stderr lines for error messages.
  const tail: string[] = []
  child.stderr?.on('data', (d: Buffer) => {
    tail.push(d.toString())
    if (tail.length > 20) tail.shift()
  })
  ;(child as ChildProcess & { stderrTail: string[] }).stderrTail = tail
  return child
}

export function stderrTail(child: ChildProcess): string {
  return ((child as ChildProcess & { stderrTail?: string[] }).stderrTail ?? []).join('').slice(-2000)
}

/** Resolves with the first line on stdout (or stderr) matching `re`; rejects on exit/timeout. */
export function waitForLine(
  child: ChildProcess,
  re: RegExp,
  ms = 15_000,
  stream: 'stdout' | 'stderr' = 'stdout',
): Promise<RegExpMatchArray> {
  const src = stream === 'stdout' ? child.stdout : child.stderr
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => done(new Error(`no line matching ${re} within ${ms} ms`)), ms)
    const onData = (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop() ?? ''
      for (const line of lines) {
        const m = line.match(re)
        if (m) return done(undefined, m)
      }
    }
    const onExit = (code: number | null, sig: string | null) =>
      done(new Error(`process exited (${code ?? sig}) before ${re}; stderr: ${stderrTail(child)}`))
    function done(e?: Error, m?: RegExpMatchArray) {
      clearTimeout(timer)
      src?.off('data', onData)
      child.off('exit', onExit)
      if (e) reject(e)
      else resolve(m!)
    }
    src?.on('data', onData)
    child.on('exit', onExit)
  })
}

/** Asks a child to stop (SIGTERM), then SIGKILLs it after `graceMs`. Resolves on exit. */
export function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** Stops every tracked child still running. */
export async function stopAllChildren(graceMs = 3000): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, graceMs)))
}

// ---- output ---------------------------------------------------------------------------

function fmt(v: number | undefined, unit: string): string {
  if (v === undefined || Number.isNaN(v)) return '-'
  if (Number.isInteger(v) && v < 100) return `${v} ${unit}`
  const n = v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(v >= 10 ? 1 : 2)
  return `${n} ${unit}`
}

/** The results table: metric | Plexus | NATS | ratio | target (`other` renames the NATS column). */
export function formatTable(rows: Row[], other = 'NATS'): string {
  const header = ['metric', 'Plexus', other, 'ratio', 'target']
  const body = rows.map((r) => {
    const hasNats = r.nats !== undefined && !Number.isNaN(r.nats)
    const hasValue = !Number.isNaN(r.value)
    const ratio = hasNats && hasValue && r.nats! > 0 ? `${(r.value / r.nats!).toFixed(2)}x` : '-'
    let target = '-'
    if (r.better && hasNats && hasValue) {
      const met = r.better === 'lower' ? r.value <= r.nats! : r.value >= r.nats!
      target = `${r.better === 'lower' ? '<=' : '>='} ${other} ${met ? 'met' : 'MISSED'}`
    } else if (r.better) {
      target = `${r.better === 'lower' ? '<=' : '>='} ${other}`
    }
    const name = r.note ? `${r.name} (${r.note})` : r.name
    return [name, fmt(r.value, r.unit), hasNats ? fmt(r.nats, r.unit) : '-', ratio, target]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)))
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`
  const sep = `|${widths.map((w, i) => (i === 0 ? `-${'-'.repeat(w)}-` : `-${'-'.repeat(w)}:`)).join('|')}|`
  return [line(header), sep, ...body.map(line)].join('\n')
}

/** Wait helper. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `cond` until true or `ms` passes. */
export async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(25)
  }
}
