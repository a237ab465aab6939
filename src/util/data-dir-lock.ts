/**
 * One process per data directory: `lockDataDir` creates `<dataDir>/plexus.lock` exclusively
 * (O_CREAT|O_EXCL) holding the owner's pid, its process start time, the host name and a
 * random token, and `release` removes it. A second node on a directory in use, in another
 * process or in this one, fails at once with `DataDirInUseError` naming the directory and
 * the holder's pid. A lock whose process is gone (kill -9, power loss) is stale and is taken
 * over: its pid is not running (or is a zombie not yet reaped), or it runs but started at
 * another time than the holder did (the pid was reused), or it is this process's pid and
 * the token is not one this process holds (the same pid in a new container). Taking over is serialised through
 * `plexus.lock.takeover` (exclusive create) and removes the old file only if it still holds
 * what was judged stale, so two processes starting at once on a stale lock never both win.
 * Locks still held when the process exits are removed on the way out.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { DataDirInUseError } from '../errors.js'

/** File name of the lock inside the data directory. */
export const LOCK_FILE = 'plexus.lock'
/** A lock file without readable content this old (ms) was left by a crash while being written. */
const TORN_AFTER = 2000
/** A takeover marker this old (ms) was left by a process killed while taking over. */
const TAKEOVER_STALE_AFTER = 10_000
/** How long to wait for a lock being written or taken over before giving up (ms). */
const WAIT_LIMIT = 15_000

/** What a lock file holds. */
export interface LockRecord {
  pid: number
  /** The holder's process start time (boot id and start tick on Linux); null when unknown. */
  started: string | null
  host: string
  token: string
}

/** A held data directory lock. */
export interface DataDirLock {
  readonly dir: string
  readonly file: string
  /** Removes the lock if it is still ours (idempotent). */
  release(): void
}

/** Tokens of the locks this process holds, by lock file (removed at exit). */
const held = new Map<string, string>()
let exitHook = false

/**
 * Takes the lock of `dataDir` (created when missing). Throws `DataDirInUseError` when a
 * live process (or another node of this process) holds it.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const dir = resolve(dataDir)
  mkdirSync(dir, { recursive: true })
  const file = join(dir, LOCK_FILE)
  const record: LockRecord = {
    pid: process.pid,
    started: startTimeOf(process.pid),
    host: hostname(),
    token: randomBytes(16).toString('hex'),
  }
  const text = `${JSON.stringify(record)}\n`
  const deadline = Date.now() + WAIT_LIMIT
  for (;;) {
    if (tryCreate(file, text)) break
    let current: string
    try {
      current = readFileSync(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue // released meanwhile
      throw err
    }
    const rec = parseRecord(current)
    if (rec === undefined && ageOf(file) < TORN_AFTER) {
      waitOrGiveUp(deadline, file)
      continue
    }
    if (rec !== undefined && holds(rec)) {
      throw new DataDirInUseError(
        `dataDir ${dir} is in use by process ${rec.pid}${rec.host !== record.host ? ` on host ${rec.host}` : ''}` +
          ` (lock file ${file}); stop that process or give another directory`,
      )
    }
    takeOver(file, current, deadline)
  }
  held.set(file, record.token)
  if (!exitHook) {
    exitHook = true
    process.once('exit', () => {
      for (const [f, token] of held) removeIfOurs(f, token)
    })
  }
  let released = false
  return {
    dir,
    file,
    release() {
      if (released) return
      released = true
      held.delete(file)
      removeIfOurs(file, record.token)
    },
  }
}

/** Creates `file` with `text` unless it exists; true when created. */
function tryCreate(file: string, text: string): boolean {
  let fd: number
  try {
    fd = openSync(file, 'wx', 0o644)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  return true
}

/** Removes the stale lock whose content is `stale`, one taker at a time. */
function takeOver(file: string, stale: string, deadline: number): void {
  const marker = `${file}.takeover`
  if (!tryCreate(marker, `${process.pid}\n`)) {
    if (ageOf(marker) > TAKEOVER_STALE_AFTER) unlinkQuiet(marker)
    else waitOrGiveUp(deadline, file)
    return
  }
  try {
    let now: string | undefined
    try {
      now = readFileSync(file, 'utf8')
    } catch {
      now = undefined
    }
    if (now === stale) unlinkSync(file)
  } finally {
    unlinkQuiet(marker)
  }
}

/** Whether the process that wrote `rec` still runs (so the lock is held). */
function holds(rec: LockRecord): boolean {
  if (rec.host !== hostname()) return true // cannot check another machine's processes
  if (rec.pid === process.pid) return [...held.values()].includes(rec.token)
  if (!pidAlive(rec.pid) || exited(rec.pid)) return false
  if (rec.started === null) return true
  const started = startTimeOf(rec.pid)
  return started === null || started === rec.started
}

function parseRecord(text: string): LockRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<LockRecord>
    if (
      typeof r.pid === 'number' &&
      Number.isSafeInteger(r.pid) &&
      r.pid > 0 &&
      (typeof r.started === 'string' || r.started === null) &&
      typeof r.host === 'string' &&
      typeof r.token === 'string'
    ) {
      return r as LockRecord
    }
  } catch {
    // torn or foreign content
  }
  return undefined
}

function removeIfOurs(file: string, token: string): void {
  try {
    if (parseRecord(readFileSync(file, 'utf8'))?.token === token) unlinkSync(file)
  } catch {
    // already gone
  }
}

function unlinkQuiet(file: string): void {
  try {
    unlinkSync(file)
  } catch {
    // already gone
  }
}

/** Age of `file` in ms (Infinity when it is gone). */
function ageOf(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs
  } catch {
    return Number.POSITIVE_INFINITY
  }
}

/** Sleeps 20 ms, or throws when `deadline` has passed. */
function waitOrGiveUp(deadline: number, file: string): void {
  if (Date.now() > deadline) {
    throw new DataDirInUseError(`${file} is being written or taken over by another process; try again`)
  }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
}

/** True when a process with this pid exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** True when `pid` has exited but was not reaped yet (a zombie; Linux only, else false). */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state === 'Z' || state === 'X'
  } catch {
    return false
  }
}

/**
 * When the process `pid` started, as a string that differs for a later process with the
 * same pid: on Linux the boot id and the start tick from /proc; elsewhere `ps -o lstart`.
 * Null when it cannot be told.
 */
export function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces and parentheses); starttime is field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const tick = fields[19]
    if (tick === undefined) return null
    let boot = ''
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    } catch {
      // no boot id: the tick alone
    }
    return `${boot}:${tick}`
  } catch {
    // not Linux, or no such process
  }
  if (process.platform === 'linux') return null
  try {
    const out = execFileSync('ps', ['-o', 'lstart=', '-p', String(pid)], { encoding: 'utf8', timeout: 2000 })
    return out.trim() || null
  } catch {
    return null
  }
}
