/**
 * The runtime guard (issue 13): on a Node.js older than 22, running the built CLI prints one
 * line and exits 1, and importing `plexus` fails with one clear error, before libp2p loads
 * (before the guard: the CLI ran and the library died later in libp2p with
 * `TypeError: Promise.withResolvers is not a function` and a stack trace). Uses an old
 * `node` from the machine's PATH (the project's npm scripts run on the bundled Node 22);
 * skipped, saying so, when there is none.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { MIN_NODE_MAJOR, runtimeProblem } from '../src/runtime.js'

/** The first `node` on PATH (outside node_modules) whose major version is below 22. */
function findOldNode(): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').filter((d) => d !== '' && !d.includes('node_modules'))
  for (const d of [...dirs, '/usr/bin', '/usr/local/bin']) {
    const bin = join(d, 'node')
    try {
      const v = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 }).trim()
      if (Number(/^v(\d+)\./.exec(v)?.[1]) < MIN_NODE_MAJOR) return bin
    } catch {
      // not there or not runnable
    }
  }
  return undefined
}

const oldNode = findOldNode()
if (!oldNode)
  console.warn('runtime-guard.test: no Node.js older than 22 on PATH; the process tests are skipped')
const CLI = resolve('dist/src/cli/main.js')
const LIB = resolve('dist/src/index.js')
const dir = mkdtempSync(join(tmpdir(), 'plexus-guard-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('runtimeProblem', () => {
  it('accepts 22 and newer and names the version otherwise', () => {
    expect(runtimeProblem('22.0.0')).toBeUndefined()
    expect(runtimeProblem('v24.1.0')).toBeUndefined()
    expect(runtimeProblem('20.20.2')).toBe('plexus needs Node.js 22 or newer; this is v20.20.2')
    expect(runtimeProblem('v18.0.0')).toBe('plexus needs Node.js 22 or newer; this is v18.0.0')
    expect(runtimeProblem(process.versions.node)).toBeUndefined()
  })
})

describe.skipIf(!oldNode)('on an old Node.js', () => {
  const version = oldNode ? execFileSync(oldNode, ['--version'], { encoding: 'utf8' }).trim() : ''
  const line = `plexus needs Node.js 22 or newer; this is ${version}`

  it('the CLI prints one line and exits 1, for every command', () => {
    for (const args of [['--help'], ['keygen'], ['node', '--no-mdns', '--relay-port', '0']]) {
      const r = spawnSync(oldNode!, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 })
      expect(r.status, `plexus ${args.join(' ')}`).toBe(1)
      expect(r.stderr).toBe(`${line}\n`)
      expect(r.stdout).toBe('')
    }
  })

  it('a script importing plexus prints one line and exits 1, without a stack trace', () => {
    const script = join(dir, 'import.mjs')
    writeFileSync(
      script,
      `import { createNode } from ${JSON.stringify(pathToFileURL(LIB).href)}\n` +
        `const n = await createNode({ relay: false, discovery: { local: false, mdns: false } })\n` +
        `console.log('started')\nawait n.stop()\n`,
    )
    const r = spawnSync(oldNode!, [script], { encoding: 'utf8', timeout: 10_000 })
    expect(r.stderr).toBe(`${line}\n`)
    expect(r.stdout).toBe('')
    expect(r.status).toBe(1)
  })

  it('a caught import rejects with one clear Error whose stack is that line', () => {
    const script = join(dir, 'catch.mjs')
    writeFileSync(
      script,
      `try { await import(${JSON.stringify(pathToFileURL(LIB).href)}) } catch (e) {\n` +
        `  console.log(JSON.stringify({ name: e.name, message: e.message, stack: e.stack }))\n}\n`,
    )
    const r = spawnSync(oldNode!, [script], { encoding: 'utf8', timeout: 10_000 })
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ name: 'Error', message: line, stack: `Error: ${line}` })
  })
})
