/**
 * Same-host discovery's rescans reuse the records they read (issue 17: an idle node reread
 * every record of its network every second). What must still hold with the reuse: a record
 * rewritten with new addresses is seen at once (the watcher names the file), and the record
 * of a process that exited is removed by the next rescan (a liveness check of the cached pid).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LocalDiscovery, localDirectory } from '../../src/discovery/local.js'
import { startTimeOf } from '../../src/util/data-dir-lock.js'

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function setup() {
  const root = await mkdtemp(join(tmpdir(), 'plexus-local-unit-'))
  cleanups.push(() => rm(root, { recursive: true, force: true }))
  const found: Array<{ id: string; addrs: string[] }> = []
  const d = new LocalDiscovery({
    network: 'unit',
    self: 'self-id',
    addresses: () => ['/ip4/127.0.0.1/tcp/1'],
    found: (p) => found.push(p),
    root,
  })
  const dir = localDirectory('unit', undefined, root)
  return { d, dir, found }
}

/** Writes a record the way a node does (temp file, then rename). */
async function record(dir: string, id: string, pid: number, addrs: string[]): Promise<void> {
  const file = join(dir, `${id}.json`)
  await writeFile(`${file}.tmp`, JSON.stringify({ id, pid, started: startTimeOf(pid), addrs }))
  await rename(`${file}.tmp`, file)
}

describe('same-host discovery rescans', () => {
  it('sees a rewritten record at once and keeps reporting an unchanged one', async () => {
    const { d, dir, found } = await setup()
    await d.start()
    cleanups.push(() => d.stop())
    await record(dir, 'peer-a', process.pid, ['/ip4/127.0.0.1/tcp/1000'])
    await until(() => found.some((p) => p.id === 'peer-a'), 3000, 'peer-a found')
    await record(dir, 'peer-a', process.pid, ['/ip4/127.0.0.1/tcp/2000'])
    // Well within the 10 s a cached record is otherwise reused for.
    await until(
      () => found.some((p) => p.id === 'peer-a' && p.addrs[0] === '/ip4/127.0.0.1/tcp/2000'),
      3000,
      'the new address',
    )
    const n = found.length
    await until(() => found.length >= n + 2, 3500, 'two more rescans reporting peer-a')
    expect(found.slice(n).every((p) => p.id === 'peer-a' && p.addrs[0] === '/ip4/127.0.0.1/tcp/2000')).toBe(
      true,
    )
  })

  it('removes the record of a process that exited at the next rescan', async () => {
    const { d, dir, found } = await setup()
    const child: ChildProcess = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], {
      stdio: 'ignore',
    })
    cleanups.push(() => {
      child.kill('SIGKILL')
    })
    await d.start()
    cleanups.push(() => d.stop())
    await record(dir, 'peer-b', child.pid!, [])
    await until(() => found.some((p) => p.id === 'peer-b'), 3000, 'peer-b found')
    // Wait until a rescan found it through the cache too (no file event since).
    const n = found.length
    await until(() => found.length > n, 3000, 'a rescan')
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
    await until(() => !existsSync(join(dir, 'peer-b.json')), 3000, 'the dead record removed')
  })
})
