/**
 * CPU accounting and pinning for the benchmarks (Linux): the CPU time of whole processes read
 * from /proc (so that nats-server's own work counts like a Node process's), and `--cpus N`,
 * which pins the bench process to N cores with taskset before it spawns anything: every child
 * (members, clients, nats-servers) inherits that affinity, so both systems run on the same
 * cores.
 *
 * /proc/<pid>/stat counts utime and stime in clock ticks (`getconf CLK_TCK`, 100 on Linux
 * x86/arm: 10 ms). A window therefore carries up to one tick of error per process; the
 * bench's windows are seconds long, so this stays around 1 % of the figures it prints.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { findExecutable } from './util.js'

let ticks: number | undefined

/** Clock ticks per second of the /proc times (`getconf CLK_TCK`; 100 if getconf fails). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
      ticks = Number.isInteger(n) && n > 0 ? n : 100
    } catch {
      ticks = 100
    }
  }
  return ticks
}

/**
 * utime + stime (clock ticks) from the text of /proc/<pid>/stat; undefined when the text is
 * not a stat line. The command name (field 2) may hold spaces and parentheses: fields are
 * counted from the last `)`.
 */
export function parseStatTicks(text: string): number | undefined {
  const close = text.lastIndexOf(')')
  if (close < 0) return undefined
  // After ") ": state (field 3) ... utime is field 14, stime field 15.
  const f = text
    .slice(close + 1)
    .trim()
    .split(/\s+/)
  const utime = Number(f[11])
  const stime = Number(f[12])
  if (f.length < 13 || !Number.isSafeInteger(utime) || !Number.isSafeInteger(stime)) return undefined
  return utime + stime
}

/** CPU time (user + system, all threads) used so far by `pid`, in µs; undefined once it is gone. */
export function processCpuUs(pid: number): number | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  const t = parseStatTicks(text)
  return t === undefined ? undefined : (t * 1e6) / clockTicks()
}

/** CPU times of a set of processes at one instant (see `cpuSince`). */
export type CpuSnapshot = ReadonlyMap<number, number>

/** Reads the CPU time of every pid now (pids already gone are left out). */
export function cpuSnapshot(pids: Iterable<number | undefined>): CpuSnapshot {
  const m = new Map<number, number>()
  for (const pid of pids) {
    if (pid === undefined || m.has(pid)) continue
    const us = processCpuUs(pid)
    if (us !== undefined) m.set(pid, us)
  }
  return m
}

/**
 * CPU µs the processes of `start` used since it was taken, summed; NaN when one of them is
 * gone (its share would be unknown) or `start` is empty.
 */
export function cpuSince(start: CpuSnapshot): number {
  if (start.size === 0) return Number.NaN
  let sum = 0
  for (const [pid, us0] of start) {
    const us = processCpuUs(pid)
    if (us === undefined) return Number.NaN
    sum += us - us0
  }
  return sum
}

/**
 * Measures the CPU of a fixed set of processes over a window: `start()` when the window
 * opens, `stop()` when it closes (µs summed over the processes; NaN if not started).
 */
export class CpuWindow {
  private snap: CpuSnapshot | undefined
  private used = Number.NaN
  constructor(private readonly pids: Array<number | undefined>) {}
  start(): void {
    this.snap = cpuSnapshot(this.pids)
  }
  stop(): number {
    if (this.snap) this.used = cpuSince(this.snap)
    this.snap = undefined
    return this.used
  }
  /** µs measured by the last stop(). */
  get us(): number {
    return this.used
  }
}

/**
 * CPU the processes use while the system carries no messages: ms of CPU per second of wall
 * time, summed, over `ms` (timers, heartbeats, polling: what every message of a slow,
 * one-at-a-time phase also carries). One clock tick per process at each end bounds the error:
 * with 4 processes and 10 ms ticks, ±13 ms/s over a 3 s window.
 */
export async function idleCpu(pids: Array<number | undefined>, ms: number): Promise<number> {
  const w = new CpuWindow(pids)
  w.start()
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, ms))
  const used = w.stop()
  return used / (performance.now() - t0)
}

// ---- pinning ----------------------------------------------------------------------------

/** Parses a Linux CPU list ("0-3,6,8-9") into ascending core numbers; throws on bad text. */
export function parseCpuList(text: string): number[] {
  const cores = new Set<number>()
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    if (!m) throw new Error(`not a CPU list: ${JSON.stringify(text)}`)
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    if (b < a) throw new Error(`not a CPU list: ${JSON.stringify(text)}`)
    for (let c = a; c <= b; c++) cores.add(c)
  }
  return [...cores].sort((x, y) => x - y)
}

/** The cores a process may run on (Cpus_allowed_list of /proc/<pid>/status). */
export function allowedCores(pid: number | 'self' = 'self'): number[] {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no Cpus_allowed_list in /proc/${pid}/status`)
  return parseCpuList(m[1]!)
}

/**
 * The `--cpus` value checked: an integer from 1 to the number of cores this process may use.
 * Returns the cores to pin to (the first `n` allowed ones) or throws a one-line reason.
 */
export function chooseCores(value: string, allowed: number[]): number[] {
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new Error(`--cpus must be a whole number of cores >= 1, got ${JSON.stringify(value)}`)
  if (n > allowed.length)
    throw new Error(`--cpus ${n}: this process may only use ${allowed.length} cores (${allowed.join(',')})`)
  return allowed.slice(0, n)
}

/** taskset arguments that pin every thread of `pid` to `cores`: `-a -p -c LIST PID`. */
export function tasksetArgs(cores: number[], pid: number): string[] {
  if (cores.length === 0 || !cores.every((c) => Number.isInteger(c) && c >= 0))
    throw new Error(`cores must be non-negative integers, got ${JSON.stringify(cores)}`)
  return ['-a', '-p', '-c', cores.join(','), String(pid)]
}

/** Why `--cpus` cannot work without taskset. */
export const TASKSET_MISSING =
  '--cpus needs taskset (util-linux: apt-get install util-linux): Node cannot set CPU affinity itself'

/**
 * Pins this process (every thread) to `cores` with taskset, so that every child spawned from
 * now on inherits them; checks the result in /proc. Throws when taskset is missing or failed.
 */
export function pinSelf(cores: number[], findTaskset = () => findExecutable('taskset')): void {
  const taskset = findTaskset()
  if (!taskset) throw new Error(TASKSET_MISSING)
  execFileSync(taskset, tasksetArgs(cores, process.pid), { stdio: ['ignore', 'ignore', 'pipe'] })
  const now = allowedCores()
  if (now.join(',') !== cores.join(','))
    throw new Error(`taskset left this process on cores ${now.join(',')}, not ${cores.join(',')}`)
}

/** How the tables name the CPU rows: µs of CPU per message, every process of the system summed. */
export const CPU_PER_MSG = 'CPU per message, all processes'
