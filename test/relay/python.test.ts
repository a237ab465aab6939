/**
 * The Python example client (stdlib only) against a real relay: proves that
 * docs/relay-protocol.md is enough to implement a client in another language.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey } from '../../src/index.js'
import { startNode, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'

const script = fileURLToPath(new URL('../../examples/python/plexus_relay.py', import.meta.url))
const hasPython = spawnSync('python3', ['--version']).status === 0
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill()
})

function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'python3',
      [script, ...args],
      { env: { ...process.env, ...env }, timeout: 15_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

describe.skipIf(!hasPython)('python relay client (python3 found)', () => {
  it('sends a request through the relay and prints the reply; errors name their class', async () => {
    const network = uniqueNetwork('relaypy')
    const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
    await b.join('echo', { key: generateKey(), onRequest: (d) => `echo:${new TextDecoder().decode(d)}` })
    await waitForMembers(a, 'echo', 1)
    const ok = await run(['request', 'echo', 'hello from python', '--relay', a.relayAddress!])
    expect(ok).toEqual({ code: 0, stdout: 'echo:hello from python', stderr: '' })
    // PLEXUS_RELAY is honoured.
    const env = await run(['request', 'echo', 'env'], { PLEXUS_RELAY: a.relayAddress! })
    expect(env.stdout).toBe('echo:env')
    const bad = await run(['request', 'bad name', 'x', '--relay', a.relayAddress!])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^InvalidArgumentError: .*cluster/)
  })

  it('serves a cluster from python that a node requests', async () => {
    const network = uniqueNetwork('relaypy')
    const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
    const key = generateKey()
    const child = spawn('python3', [script, 'serve', 'py', '--key', key, '--relay', a.relayAddress!], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    children.push(child)
    await waitForMembers(b, 'py', 1, 10_000)
    expect(new TextDecoder().decode(await b.request('py', 'shout'))).toBe('SHOUT')
  })
})

it.runIf(!hasPython)('python relay client: skipped because python3 is not installed', () => {})
