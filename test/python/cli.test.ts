/**
 * The Python package's command line (`python3 -m plexus_relay`, clients/python, stdlib
 * only) against a real relay: proves that docs/relay-protocol.md is enough to implement a
 * client in another language. The package is imported through PYTHONPATH, not installed.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey } from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { python, pythonEnv, pythonMissing } from '../helpers/python.js'

const missing = pythonMissing()
const quickstart = fileURLToPath(new URL('../../examples/python/quickstart.py', import.meta.url))
const pyEnv = pythonEnv
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
      python,
      ['-m', 'plexus_relay', ...args],
      { env: { ...pyEnv, ...env }, timeout: 15_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

describe.skipIf(missing !== undefined)('python3 -m plexus_relay (python3 >= 3.9 found)', () => {
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
    const child = spawn(
      python,
      ['-m', 'plexus_relay', 'serve', 'py', '--key', key, '--relay', a.relayAddress!],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: pyEnv,
      },
    )
    children.push(child)
    await waitForMembers(b, 'py', 1, 10_000)
    expect(new TextDecoder().decode(await b.request('py', 'shout'))).toBe('SHOUT')
  })

  it('subscribes from python (wildcards) and publishes from python to a library subscriber', async () => {
    const network = uniqueNetwork('relaypy')
    const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
    const child = spawn(
      python,
      ['-m', 'plexus_relay', 'subscribe', 'orders.>', '--count', '3', '--relay', a.relayAddress!],
      { stdio: ['ignore', 'pipe', 'pipe'], env: pyEnv },
    )
    children.push(child)
    let out = ''
    let err = ''
    child.stdout!.on('data', (d) => (out += d))
    child.stderr!.on('data', (d) => (err += d))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await waitFor(() => err.includes('subscribed to orders.>'), 10_000)
    // Publish until the interest reached b; the child exits after three messages.
    let i = 0
    let done = false
    void exited.then(() => (done = true))
    while (!done && i < 500) {
      await b.publish(i % 2 ? 'orders.eu.created' : 'orders.us', `m${i++}`)
      await b.publish('billing.x', 'never')
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(await exited).toBe(0)
    const lines = out.trim().split('\n')
    expect(lines.length).toBe(3)
    const n = Number(lines[0]!.slice(1))
    expect(lines).toEqual([`m${n}`, `m${n + 1}`, `m${n + 2}`])

    // Python publishes; a library subscriber on another node receives.
    const got: string[] = []
    b.subscribe('py.*', (m) => void got.push(new TextDecoder().decode(m.data)))
    for (let k = 0; k < 40 && got.length === 0; k++) {
      const r = await run(['publish', 'py.hello', 'from python', '--relay', a.relayAddress!])
      expect(r).toEqual({ code: 0, stdout: '', stderr: '' })
    }
    expect(got[0]).toBe('from python')
    const bad = await run(['publish', 'py.*', 'x', '--relay', a.relayAddress!])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^InvalidArgumentError: .*topic/)
  })

  it('runs examples/python/quickstart.py against two relays', async () => {
    const network = uniqueNetwork('relaypy')
    const [a, b] = await Promise.all([
      startNode({ network, relay: { port: 0 } }),
      startNode({ network, relay: { port: 0 } }),
    ])
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        python,
        [quickstart],
        {
          env: { ...pyEnv, PLEXUS_RELAY: a.relayAddress!, PLEXUS_RELAY_2: b.relayAddress! },
          timeout: 20_000,
        },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      )
    })
    expect(out.stderr).toBe('')
    expect(out.stdout).toBe(
      `attached to node ${a.id} on network ${network}\ngreetings.python: hello from python\nSHOUT\n`,
    )
  })
})

it.runIf(missing !== undefined)(`python3 -m plexus_relay: skipped because ${missing ?? ''}`, () => {})
