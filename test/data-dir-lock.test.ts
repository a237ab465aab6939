/**
 * One process per data directory (issue 13): a second node on a `dataDir` in use fails at
 * once with `DataDirInUseError` naming the directory and the holder's pid, in this process
 * and across processes (`plexus node --data-dir`); a lock left by a process killed with
 * SIGKILL, or whose pid now belongs to another process, is taken over; two processes taking
 * over one stale lock at once never both win. Before the lock, both nodes ran with the same
 * peer id and the same files.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { DataDirInUseError } from '../src/index.js'
import { LOCK_FILE, lockDataDir, startTimeOf } from '../src/util/data-dir-lock.js'
import { uniqueNetwork as cliNetwork, exited, runCli, startNode as startCliNode } from './cli/helpers.js'
import { startNode } from './helpers/nodes.js'

const root = mkdtempSync(join(tmpdir(), 'plexus-lock-'))
let n = 0
const fresh = () => join(root, `d${n++}`)
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('data directory lock, library', () => {
  it('a second node on the same dataDir fails at once naming the directory and pid; free again after stop', async () => {
    const dir = fresh()
    const a = await startNode({ dataDir: dir, relay: false, discovery: { local: false, mdns: false } })
    const t0 = Date.now()
    const err = await startNode({
      dataDir: dir,
      relay: false,
      discovery: { local: false, mdns: false },
    }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(err).toBeInstanceOf(DataDirInUseError)
    expect((err as Error).name).toBe('DataDirInUseError')
    expect((err as Error).message).toContain(resolve(dir))
    expect((err as Error).message).toContain(`process ${process.pid}`)
    const id = a.id
    await a.stop()
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false)
    const b = await startNode({ dataDir: dir, relay: false, discovery: { local: false, mdns: false } })
    expect(b.id).toBe(id)
  })

  it('takes over a lock whose pid is gone, reused by another process, or ours with a token we do not hold', () => {
    const dir = fresh()
    const file = join(dir, LOCK_FILE)
    const write = (rec: object) => {
      rmSync(dir, { recursive: true, force: true })
      lockDataDir(dir).release()
      writeFileSync(file, JSON.stringify(rec))
    }
    const host = hostname()
    // A pid that is not running.
    write({ pid: 2 ** 22 + 12345, started: null, host, token: 'x' })
    lockDataDir(dir).release()
    // A running pid (pid 1) whose start time is not the one recorded: the pid was reused.
    write({ pid: 1, started: 'another-start', host, token: 'x' })
    if (startTimeOf(1) !== null) lockDataDir(dir).release()
    // This process's pid but a token this process does not hold (a previous life of the pid).
    write({ pid: process.pid, started: startTimeOf(process.pid), host, token: 'not-ours' })
    lockDataDir(dir).release()
    // A running pid with the recorded start time holds it.
    write({ pid: 1, started: startTimeOf(1), host, token: 'x' })
    expect(() => lockDataDir(dir)).toThrow(/in use by process 1 /)
    // A lock file left empty by a crash while being written, long ago.
    writeFileSync(file, '')
    const old = new Date(Date.now() - 60_000)
    utimesSync(file, old, old)
    lockDataDir(dir).release()
    expect(existsSync(file)).toBe(false)
  })
})

describe('data directory lock, zombie holder', () => {
  it.skipIf(process.platform !== 'linux')(
    'takes over the lock of a process that exited but was not reaped',
    async () => {
      // sh starts sleep 0.2 in the background, then becomes `sleep 5`, which never reaps it.
      const sh = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 5'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      })
      try {
        const pid = Number(
          await new Promise<string>((res) => sh.stdout.once('data', (d: Buffer) => res(d.toString()))),
        )
        const dir = fresh()
        lockDataDir(dir).release()
        const rec = { pid, started: startTimeOf(pid), host: hostname(), token: 'x' }
        writeFileSync(join(dir, LOCK_FILE), JSON.stringify(rec))
        expect(() => lockDataDir(dir)).toThrow(DataDirInUseError)
        await new Promise((r) => setTimeout(r, 600))
        expect(readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(/\) Z /)
        lockDataDir(dir).release()
      } finally {
        sh.kill('SIGKILL')
      }
    },
  )
})

describe('data directory lock, processes', () => {
  it('plexus node on a directory in use exits 1 naming it and the pid; after kill -9 a new node takes over', async () => {
    const dir = fresh()
    const network = cliNetwork()
    const first = await startCliNode(network, ['--data-dir', dir])
    const second = await runCli(
      ['node', '--network', network, '--no-mdns', '--relay-port', '0', '--data-dir', dir],
      { timeout: 10_000 },
    )
    expect(second.code).toBe(1)
    expect(second.stderr).toBe(
      `plexus: DataDirInUseError: dataDir ${resolve(dir)} is in use by process ${first.child.pid} (lock file ${join(resolve(dir), LOCK_FILE)}); stop that process or give another directory\n`,
    )
    expect(second.stdout).toBe('')
    first.child.kill('SIGKILL')
    await exited(first.child)
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(first.child.pid)
    const third = await startCliNode(network, ['--data-dir', dir])
    expect(third.id).toBe(first.id)
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(third.child.pid)
    // A clean stop removes the lock.
    third.child.kill('SIGTERM')
    await exited(third.child)
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false)
  })

  it('processes racing to take over one stale lock: exactly one wins', async () => {
    const dir = fresh()
    lockDataDir(dir).release()
    const host = hostname()
    writeFileSync(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid: 2 ** 22 + 54321, started: null, host, token: 'x' }),
    )
    const lib = pathToFileURL(resolve('dist/src/util/data-dir-lock.js')).href
    const script =
      `const { lockDataDir } = await import(${JSON.stringify(lib)});\n` +
      `await new Promise((r) => setTimeout(r, Number(process.argv[2]) - Date.now()));\n` +
      `try { lockDataDir(process.argv[1]); console.log('won'); await new Promise((r) => setTimeout(r, 1500)) }\n` +
      `catch (e) { console.log(e.name) }\n`
    const start = Date.now() + 1500
    const outs = await Promise.all(
      Array.from(
        { length: 6 },
        () =>
          new Promise<string>((res) => {
            const c = spawn(process.execPath, ['--input-type=module', '-e', script, dir, String(start)])
            let out = ''
            c.stdout.on('data', (d: Buffer) => (out += d.toString()))
            c.on('close', () => res(out.trim()))
          }),
      ),
    )
    expect(outs.filter((o) => o === 'won')).toHaveLength(1)
    expect(outs.filter((o) => o === 'DataDirInUseError')).toHaveLength(5)
  })
})
