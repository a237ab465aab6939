/**
 * The Python package (clients/python, plexus_relay) against real nodes: node A has a relay
 * and a data directory and is the one storage member of a cluster; node B (a relay too)
 * serves an echo cluster (requests, broadcasts, tunnels) from TypeScript. The Python
 * unittest suite (clients/python/tests; test_fake_relay.py needs no node) runs against A's
 * relay, imported through PYTHONPATH (not installed), and must pass. Skipped, saying why,
 * without python3 >= 3.9.
 */
import { spawn } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateKey } from '../../src/index.js'
import { cleanedAfterEach } from '../helpers/cleanup.js'
import { startNode, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'
import { python, pythonEnv, pythonMissing, pythonPackageDir } from '../helpers/python.js'

const missing = pythonMissing()
const { dirs, mine } = cleanedAfterEach()

describe.skipIf(missing !== undefined)('python package plexus_relay (python3 >= 3.9 found)', () => {
  it('passes its unittest suite against a real relay', async () => {
    const network = uniqueNetwork('py')
    const root = await mkdtemp(join(tmpdir(), 'plexus-python-'))
    dirs.push(root)
    const [a, b] = await Promise.all([
      startNode({ network, relay: { port: 0 }, dataDir: join(root, 'a') }),
      startNode({ network, relay: { port: 0 } }),
    ])
    mine.push(a, b)
    const store = 'pystore'
    const storeKey = generateKey()
    const echo = 'pyecho'
    await a.join(store, { key: storeKey })
    await b.join(echo, {
      key: generateKey(),
      // With request headers: the reply carries them back, plus `echoed` (test_parity.py).
      onRequest: (d, ctx) => {
        const data = `echo:${new TextDecoder().decode(d)}`
        return ctx.headers ? { data, headers: { ...ctx.headers, echoed: 'yes' } } : data
      },
      onBroadcast: () => {},
      onTunnel: async (t) => {
        for await (const m of t) await t.send(m)
        await t.close()
      },
    })
    await waitForMembers(a, echo, 1, 10_000)
    await waitForMembers(a, store, 1, 10_000)
    const seed = String(Math.floor(Math.random() * 2 ** 30))
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(python, ['-m', 'unittest', 'discover', '-s', 'tests', '-v'], {
        cwd: pythonPackageDir,
        env: {
          ...pythonEnv,
          PLEXUS_RELAY: a.relayAddress!,
          PLEXUS_TEST_RELAY_B: b.relayAddress!,
          PLEXUS_TEST_STORE: store,
          PLEXUS_TEST_STORE_KEY: storeKey,
          PLEXUS_TEST_ECHO: echo,
          PLEXUS_TEST_SEED: seed,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        // A stalled suite is killed and fails below; 75 s since test_parity.py (about 10 s more
        // on a quiet machine) joined the suite, leaving room for a loaded one.
        timeout: 75_000,
      })
      let text = ''
      child.stdout!.on('data', (d) => (text += d))
      child.stderr!.on('data', (d) => (text += d))
      child.once('exit', (code) => resolve({ code, text }))
    })
    if (out.code !== 0) console.log(out.text)
    expect(out.text).toMatch(/\nOK/)
    expect(out.text).not.toMatch(/skipped '/)
    expect(out.code).toBe(0)
  }, 90_000)
})

it.runIf(missing !== undefined)(`python package: skipped because ${missing ?? ''}`, () => {})
