/**
 * Simulated power loss of one member: the LD_PRELOAD journal of faults/powerloss.c says,
 * per file, how much of it was durable (fsync/fdatasync returned, or written through an
 * O_DSYNC/O_SYNC descriptor); a power loss kills the process with SIGKILL and then cuts every
 * file back to that size and deletes files created but never synced. See docs/faults.md
 * ("Power loss") for what this does and does not model.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, truncate, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The C source, next to this file in the repository (faults/powerloss.c). */
export function shimSource(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  // Compiled: dist/faults/powerloss.js; from source (vitest): faults/powerloss.ts.
  const root = here.endsWith(join('dist', 'faults')) ? join(here, '..', '..') : join(here, '..')
  return join(root, 'faults', 'powerloss.c')
}

/**
 * Compiles the shim with gcc into node_modules/.cache/plexus-faults (once per source
 * version) and returns the shared object's path; rejects when gcc is missing or fails.
 */
export async function buildShim(): Promise<string> {
  const src = shimSource()
  const code = await readFile(src)
  const hash = createHash('sha1').update(code).digest('hex').slice(0, 12)
  const dir = join(dirname(src), '..', 'node_modules', '.cache', 'plexus-faults')
  const out = join(dir, `powerloss-${hash}.so`)
  if (await exists(out)) return out
  await mkdir(dir, { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  await run('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', tmp, src, '-ldl'])
  await rename(tmp, out)
  return out
}

/** Environment for a member process that journals its durable writes to `journal`. */
export function shimEnv(shim: string, journal: string): Record<string, string> {
  // libuv must use plain system calls (io_uring submissions would bypass the shim).
  return { LD_PRELOAD: shim, PLEXUS_POWERLOSS_JOURNAL: journal, UV_USE_IO_URING: '0' }
}

/** What one file's journal says: durable size (Infinity: untouched, keep) and origin. */
interface FileState {
  durable: number | undefined
  created: boolean
}

/** Files a power loss cut back: truncated (bytes dropped) and removed. */
export interface PowerLossReport {
  truncated: number
  droppedBytes: number
  removed: number
  journalLines: number
  /** Journal lines by kind (O, C, S, W, T, R, U). */
  kinds: Record<string, number>
  /** The first 12 files changed: path, size before, size after (-1: removed). */
  files: Array<[string, number, number]>
}

/** Parses a journal into the durable state of every file it names (pure). */
export function durableState(journal: string): Map<string, FileState> {
  const files = new Map<string, FileState>()
  for (const line of journal.split('\n')) {
    if (line.length < 3) continue
    const kind = line[0]
    const rest = line.slice(2)
    const sp = rest.indexOf(' ')
    const num = Number(rest.slice(0, sp))
    const path = rest.slice(sp + 1)
    switch (kind) {
      case 'O':
        if (!files.has(path)) files.set(path, { durable: num, created: false })
        break
      case 'C':
        files.set(rest, { durable: undefined, created: true })
        break
      case 'S': {
        const f = files.get(path) ?? { durable: undefined, created: false }
        f.durable = num
        files.set(path, f)
        break
      }
      case 'W': {
        const f = files.get(path) ?? { durable: undefined, created: false }
        f.durable = Math.max(f.durable ?? 0, num)
        files.set(path, f)
        break
      }
      case 'T': {
        const f = files.get(path)
        if (f === undefined) files.set(path, { durable: num, created: false })
        else if (f.durable !== undefined) f.durable = Math.min(f.durable, num)
        break
      }
      case 'R': {
        // Paths hold no spaces here (data directories the runner chose).
        const [from, to] = rest.split(' ') as [string, string]
        const f = files.get(from) ?? { durable: Number.POSITIVE_INFINITY, created: false }
        files.delete(from)
        files.set(to, f)
        break
      }
      case 'U':
        files.delete(rest)
        break
    }
  }
  return files
}

/**
 * Applies a power loss to the files a (dead) process journalled in `journalPath`: each is
 * cut back to its durable size, files created and never synced are removed; the journal is
 * then deleted (everything left on disk is durable from now on). Only files under `under`
 * (the member's data directory) are touched: other files it wrote (its same-host discovery
 * record) are shared with the other processes of this host.
 */
export async function applyPowerLoss(journalPath: string, under: string): Promise<PowerLossReport> {
  const text = await readFile(journalPath, 'utf8').catch(() => '')
  const report: PowerLossReport = {
    truncated: 0,
    droppedBytes: 0,
    removed: 0,
    journalLines: 0,
    kinds: {},
    files: [],
  }
  for (const line of text.split('\n')) {
    if (line === '') continue
    report.journalLines++
    report.kinds[line[0]!] = (report.kinds[line[0]!] ?? 0) + 1
  }
  for (const [path, f] of durableState(text)) {
    if (!path.startsWith(`${under}/`)) continue // only the member's own data directory
    const st = await stat(path).catch(() => undefined)
    if (st === undefined || !st.isFile()) continue
    if (f.durable === undefined) {
      if (f.created) {
        await unlink(path)
        if (report.files.length < 12) report.files.push([path, st.size, -1])
        report.removed++
        report.droppedBytes += st.size
      }
    } else if (st.size > f.durable) {
      await truncate(path, f.durable)
      if (report.files.length < 12) report.files.push([path, st.size, f.durable])
      report.truncated++
      report.droppedBytes += st.size - f.durable
    }
  }
  await rm(journalPath, { force: true })
  return report
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  )
}
