/**
 * CLI test helpers: run `plexus` (the built dist/src/cli/main.js) as real child processes,
 * wait for lines on their stdout, and kill every child after each test. Every node gets
 * --no-mdns (nothing is multicast on the machine's interfaces), loopback listening, an
 * ephemeral relay port, and a network name no other test uses.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, afterEach } from 'vitest'

/** The built CLI entry point. */
export const CLI = resolve('dist/src/cli/main.js')

/** Long-running `plexus node` processes: killed after each test. */
const children = new Set<ChildProcess>()
/** Short CLI runs (each has its own kill timer); concurrent tests share the file, so they
 * are killed after the whole file instead of after each test. */
const runs = new Set<ChildProcess>()
const dirs: string[] = []

async function killAll(set: Set<ChildProcess>): Promise<void> {
  const all = [...set]
  set.clear()
  for (const c of all) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await Promise.all(all.map((c) => exited(c)))
}

afterEach(() => killAll(children))

afterAll(async () => {
  await killAll(runs)
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** Resolves when `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((r) => child.once('exit', () => r()))
}

/** A network name no other test uses. */
export function uniqueNetwork(): string {
  return `cli-${randomBytes(6).toString('hex')}`
}

/** A temporary directory removed after the test file. */
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'plexus-cli-test-'))
  dirs.push(d)
  return d
}

/** Writes `content` to a new temporary file and returns its path. */
export function tempFile(name: string, content: string): string {
  const f = join(tempDir(), name)
  writeFileSync(f, content)
  return f
}

/** Outcome of a finished CLI run. */
export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `plexus ...args` to completion (killed after `timeout` ms). */
export function runCli(
  args: string[],
  opts: { input?: string; env?: Record<string, string>; timeout?: number } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    runs.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdin!.on('error', () => {})
    child.stdin!.end(opts.input ?? '')
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 15_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      runs.delete(child)
      resolvePromise({ code, stdout, stderr })
    })
  })
}

/** A running `plexus node` process. */
export interface NodeProc {
  child: ChildProcess
  /** Peer id from the ready line. */
  id: string
  /** `127.0.0.1:<port>` of its relay, from the ready line. */
  relay: string
  /** Every stdout line so far. */
  lines: string[]
  /** Every stderr chunk so far. */
  stderr: string[]
  /** Waits until a stdout line matches `re`. */
  waitLine(re: RegExp, ms?: number): Promise<string>
}

/**
 * Starts `plexus node` with the test-safe flags plus `args`, and waits for its ready line
 * and one `joined` line per `--join` (the ready line within `readyMs`).
 */
export async function startNode(network: string, args: string[] = [], readyMs = 15_000): Promise<NodeProc> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'node',
      '--network',
      network,
      '--no-mdns',
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--relay-port',
      '0',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  children.add(child)
  const lines: string[] = []
  const stderr: string[] = []
  const waiters = new Set<() => void>()
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l)
    for (const w of waiters) w()
  })
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()))
  child.once('exit', () => {
    for (const w of waiters) w()
  })
  const waitLine = (re: RegExp, ms = 15_000) =>
    new Promise<string>((res, rej) => {
      const check = () => {
        const hit = lines.find((l) => re.test(l))
        if (hit !== undefined) return done(() => res(hit))
        if (child.exitCode !== null || child.signalCode !== null) {
          return done(() => rej(new Error(`node exited before printing ${re}; stderr: ${stderr.join('')}`)))
        }
      }
      const timer = setTimeout(
        () => done(() => rej(new Error(`no line ${re} within ${ms} ms; got ${JSON.stringify(lines)}`))),
        ms,
      )
      const done = (fn: () => void) => {
        clearTimeout(timer)
        waiters.delete(check)
        fn()
      }
      waiters.add(check)
      check()
    })
  const ready = await waitLine(/^plexus node \S+ network \S+ relay \S+/, readyMs)
  const m = ready.match(/^plexus node (\S+) network \S+ relay (\S+)/)!
  const proc: NodeProc = { child, id: m[1]!, relay: m[2]!, lines, stderr, waitLine }
  // Joins print `joined <cluster>` in command-line order: the last one means all are done.
  const lastJoin = args.lastIndexOf('--join')
  if (lastJoin >= 0) await waitLine(new RegExp(`^joined ${args[lastJoin + 1]} `))
  return proc
}

/** Runs `plexus status --json` against `relay` and returns the parsed status. */
export async function statusOf(relay: string): Promise<{
  id: string
  network: string
  clusters: Array<{ name: string; members: Array<{ id: string; connected: boolean }> }>
  counters: Record<string, number>
}> {
  const r = await runCli(['status', '--json'], { env: { PLEXUS_RELAY: relay } })
  if (r.code !== 0) throw new Error(`status failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** Polls until the node behind `relay` sees exactly `count` connected members of `cluster`. */
export async function waitMembers(relay: string, cluster: string, count: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const s = await statusOf(relay)
    const n = s.clusters.find((c) => c.name === cluster)?.members.filter((m) => m.connected).length ?? 0
    if (n === count) return
    if (Date.now() > end) throw new Error(`${n} members of ${cluster} seen, expected ${count}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A `plexus` process started by `spawnCli`. */
export interface CliProc {
  child: ChildProcess
  /** Everything it printed on stdout so far (when stdout is a pipe). */
  stdout(): string
  /** Everything it printed on stderr so far. */
  stderr(): string
  /** Resolves with the exit code once it has exited and its output is read. */
  done: Promise<number | null>
}

/**
 * Starts `plexus ...args` and returns at once (killed after the test). `stdio` picks its
 * stdin and stdout: a pipe (default) or a file descriptor, e.g. for `tunnel < big.bin`.
 */
export function spawnCli(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: number | 'pipe'; stdout?: number | 'pipe' } = {},
): CliProc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: [opts.stdin ?? 'pipe', opts.stdout ?? 'pipe', 'pipe'],
  })
  children.add(child)
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  child.stdin?.on('error', () => {})
  const done = new Promise<number | null>((r) => child.once('close', (code) => r(code)))
  return { child, stdout: () => out, stderr: () => err, done }
}
