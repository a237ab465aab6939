/**
 * Real child processes for crash and CLI tests: spawn, wait for a line on stdout, and kill
 * everything in afterEach.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { afterEach } from 'vitest'

const children: ChildProcess[] = []

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

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
