/**
 * Crash test: a real child process appends under fsync 'always' and is killed with SIGKILL
 * mid-loop, several rounds over the same directory. After each kill every append the child
 * saw resolve must be present with the right content, and the log must be a clean prefix
 * (offsets dense from 0, every value intact). The child imports the compiled log from dist/
 * (`npm test` builds first; when running vitest directly run `npx tsc -p .` before).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLog } from '../../src/log/index.js'
import { tempDir } from './helpers.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..', '..')
const child = join(here, 'fixtures', 'crash-child.mjs')
const distEntry = join(root, 'dist', 'src', 'log', 'index.js')
const value = (o: number) => Buffer.from(`record-${o}-`.padEnd(100 + (o % 7) * 150, 'x'))

function distProblem(): string | undefined {
  if (!existsSync(distEntry)) return `${distEntry} is missing: run \`npx tsc -p .\` (npm test builds it)`
  const built = statSync(distEntry).mtimeMs
  const srcDir = join(root, 'src', 'log')
  for (const f of readdirSync(srcDir)) {
    const dist = join(root, 'dist', 'src', 'log', f.replace(/\.ts$/, '.js'))
    if (!existsSync(dist) || statSync(join(srcDir, f)).mtimeMs > Math.max(statSync(dist).mtimeMs, built)) {
      return `dist/src/log is older than src/log/${f}: run \`npx tsc -p .\` (npm test builds it)`
    }
  }
  return undefined
}

let tmp: { dir: string; cleanup: () => Promise<void> }
beforeAll(async () => {
  tmp = await tempDir('plexus-log-crash-')
})
afterAll(async () => tmp.cleanup())

/** Runs the child until it acknowledged at least `acks` appends, then SIGKILLs it. */
function runAndKill(
  dir: string,
  acks: number,
  mode = 'plain',
): Promise<{ start: number; acked: Array<[number, number]> }> {
  return new Promise((resolve, reject) => {
    const proc: ChildProcess = spawn(process.execPath, [child, dir, '8', mode], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const acked: Array<[number, number]> = []
    let start = -1
    let buf = ''
    let err = ''
    let killed = false
    proc.stderr!.on('data', (d) => (err += d))
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl = buf.indexOf('\n')
      while (nl >= 0) {
        const [kind, a, b] = buf.slice(0, nl).split(' ')
        buf = buf.slice(nl + 1)
        nl = buf.indexOf('\n')
        if (kind === 'ready') start = Number(a)
        else if (kind === 'ack' && !killed) acked.push([Number(a), Number(b)])
        else if (kind === 'bad') reject(new Error(`child saw offset ${b} for its append at ${a}`))
        if (!killed && acked.length >= acks) {
          killed = true
          proc.kill('SIGKILL')
        }
      }
    })
    proc.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ start, acked })
      else reject(new Error(`child exited with ${code}: ${err}`))
    })
  })
}

describe('crash safety (SIGKILL mid append loop)', () => {
  for (const mode of ['always', 'never'] as const) {
    it(`keeps every acknowledged append across SIGKILLs and recovers a clean prefix (fsync ${mode})`, async () => {
      const problem = distProblem()
      if (problem) throw new Error(problem)
      const dir = join(tmp.dir, `log-${mode}`)
      let expectedStart = 0
      for (let round = 0; round < 4; round++) {
        const { start, acked } = await runAndKill(dir, (mode === 'never' ? 600 : 150) + round * 97, mode)
        expect(start).toBe(expectedStart)
        const log = await openLog({ dir, fsync: 'never' })
        try {
          const latest = log.latestOffset()
          const maxAcked = Math.max(...acked.map(([, b]) => b))
          expect(latest).toBeGreaterThanOrEqual(maxAcked)
          let next = 0
          for (;;) {
            const rs = await log.read(next, { maxBytes: 256 * 1024 })
            if (rs.length === 0) break
            for (const r of rs) {
              expect(r.offset).toBe(next) // dense: a clean prefix
              expect(Buffer.from(r.value).equals(value(r.offset))).toBe(true)
              next++
            }
          }
          expect(next - 1).toBe(latest)
          for (const [, b] of acked) expect(b).toBeLessThanOrEqual(latest)
          for (const t of log.recovery.truncated) expect(t.lastValidOffset).toBeGreaterThanOrEqual(maxAcked)
          expectedStart = latest + 1
        } finally {
          await log.close()
        }
      }
    }, 60_000)
  }

  it('compaction running beside the appends: a crash leaves every acknowledged value or a newer one for its key', async () => {
    const problem = distProblem()
    if (problem) throw new Error(problem)
    const dir = join(tmp.dir, 'compacting')
    for (let round = 0; round < 3; round++) {
      const { acked } = await runAndKill(dir, 400 + round * 150, 'compact')
      const log = await openLog({ dir, fsync: 'never' })
      try {
        // leftovers of a swap, or indexes orphaned by a deleted (emptied) segment; never a .log
        for (const f of log.recovery.removedFiles) expect(f).toMatch(/\.(cleaned|tmp|index|timeindex)$/)
        const latestByKey = new Map<number, number>()
        let prev = -1
        let next = 0
        for (;;) {
          const rs = await log.read(next, { maxBytes: 256 * 1024 })
          if (rs.length === 0) break
          for (const r of rs) {
            expect(r.offset).toBeGreaterThan(prev)
            expect(Buffer.from(r.value).equals(value(r.offset))).toBe(true)
            expect(Buffer.from(r.key!).toString()).toBe(`k${r.offset % 20}`)
            latestByKey.set(r.offset % 20, r.offset)
            prev = r.offset
          }
          next = prev + 1
        }
        for (const [a, b] of acked) {
          for (let o = a; o <= b; o++) expect(latestByKey.get(o % 20) ?? -1).toBeGreaterThanOrEqual(o)
        }
        expect(log.segments().length).toBeGreaterThan(1)
      } finally {
        await log.close()
      }
    }
  }, 60_000)
})
