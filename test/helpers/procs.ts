/**
 * Real child processes for crash and CLI tests: spawn, wait for a line on stdout, and kill
 * everything in afterEach.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { afterEach } from 'vitest'

const children: ChildProcess[] = []

/**
 * Kills (SIGKILL) every child `spawnNode` started that still runs and waits until each has
 * exited. Runs after every test; a test that removes what its children write (data
 * directories) calls it first in its own `afterEach`, which runs before this one.
 */
export async function killChildren(): Promise<void> {
  await Promise.all(
    children.splice(0).map(async (c) => {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await exited(c)
      }
    }),
  )
}

afterEach(killChildren)

/** Spawns `process.execPath args…`, killed after the test. */
export function spawnNode(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.push(child)
  return child
}

/** Resolves with the first stdout line matching `re`; rejects on exit or timeout. */
export function waitForLine(child: ChildProcess, re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = ''
    let err = ''
    const timer = setTimeout(
      () => done(new Error(`no line matching ${re} within ${ms} ms; stderr: ${err}`)),
      ms,
    )
    const onData = (d: Buffer) => {
      buf += d.toString()
      for (const line of buf.split('\n')) {
        const m = line.match(re)
        if (m) return done(undefined, m)
      }
    }
    const onErr = (d: Buffer) => {
      err += d.toString()
    }
    const onExit = (code: number | null) =>
      done(new Error(`process exited (${code}) before ${re}; stderr: ${err}`))
    function done(e?: Error, m?: RegExpMatchArray) {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.stderr?.off('data', onErr)
      child.off('exit', onExit)
      if (e) reject(e)
      else resolve(m!)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onErr)
    child.on('exit', onExit)
  })
}

/** Resolves with the exit code (or signal) when the child exits. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)))
}

/**
 * A child process read line by line: every stdout line goes to `onLine` (subclasses parse
 * what they need), the last 4,000 characters of stderr are kept for error messages, and
 * `until` waits for a condition re-checked after every output.
 */
export class LineProcess {
  /** The last 4,000 characters the child wrote to stderr. */
  err = ''
  private waiters: Array<() => void> = []

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    let buf = ''
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop()!
      for (const line of lines) this.onLine(line)
      for (const w of this.waiters.splice(0)) w()
    })
    child.stderr!.on('data', (d: Buffer) => {
      this.err = (this.err + d.toString()).slice(-4000)
      this.onStderr(d)
    })
    child.on('exit', () => {
      for (const w of this.waiters.splice(0)) w()
    })
  }

  /** One complete stdout line (without its newline). */
  protected onLine(_line: string): void {}

  /** A chunk of stderr (kept in `err` already). */
  protected onStderr(_chunk: Buffer): void {}

  /** What an error message adds about the process's state. */
  protected detail(): string {
    return ''
  }

  /**
   * Resolves with `cond`'s value once truthy (checked at once and after every output);
   * rejects when the child exits first or after `ms`, naming `what`.
   */
  until<T>(cond: () => T | undefined | false, ms: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`${this.name}: no ${what} within ${ms} ms; ${this.detail()}; stderr: ${this.err}`),
          ),
        ms,
      )
      const check = () => {
        const v = cond()
        if (v) {
          clearTimeout(timer)
          resolve(v)
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          clearTimeout(timer)
          reject(new Error(`${this.name} exited; stderr: ${this.err}`))
        } else this.waiters.push(check)
      }
      check()
    })
  }
}
