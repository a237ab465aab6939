/**
 * A member killed with SIGKILL stops getting requests within 5 s while requests keep
 * succeeding through the other member; and `npm run demo` (dist/examples/demo.js) shows the
 * same from the outside: both members answer, then the survivor, and it exits 0.
 */
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient } from '../../relay/client/client.js'
import { exited, runCli, startNode, statusOf, tempFile, uniqueNetwork, waitMembers } from './helpers.js'

async function ask(client: RelayClient, text: string): Promise<string> {
  return new TextDecoder().decode(await client.request('dbs', text, { timeout: 3000 }))
}

describe('member death and the demo', () => {
  it('a member killed with SIGKILL stops getting requests within 5 s; the other keeps answering', async () => {
    const network = uniqueNetwork()
    const key = tempFile('dbs.key', (await runCli(['keygen'])).stdout)
    const member = (name: string) =>
      startNode(network, ['--join', 'dbs', '--cluster-key-file', key, '--exec', `printf '${name}:'; cat`])
    const [gateway, a, b] = await Promise.all([startNode(network), member('a'), member('b')])
    await waitMembers(gateway.relay, 'dbs', 2)
    const client = await connectRelay({ address: gateway.relay })
    try {
      // Requests in flight together are spread over both members.
      const first = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(client, `r${i}`)))
      expect(new Set(first.map((r) => r.split(':')[0]))).toEqual(new Set(['a', 'b']))

      a.child.kill('SIGKILL')
      await exited(a.child)
      const killedAt = Date.now()
      // Within 5 s the gateway has dropped the dead member...
      await waitMembers(gateway.relay, 'dbs', 1, 5000)
      expect(Date.now() - killedAt).toBeLessThan(5000)
      const s = await statusOf(gateway.relay)
      const members = s.clusters.find((c) => c.name === 'dbs')?.members ?? []
      expect(members.filter((m) => m.connected).map((m) => m.id)).toEqual([b.id])
      // ...and every request goes to the survivor and succeeds.
      const after = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(client, `s${i}`)))
      expect(after).toEqual(Array.from({ length: 10 }, (_, i) => `b:s${i}`))
    } finally {
      await client.close()
    }
  })

  it('npm run demo: exits 0 and shows both members answering, then the survivor', async () => {
    const child = spawn(process.execPath, [resolve('dist/examples/demo.js')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 55_000)
    await exited(child)
    clearTimeout(timer)
    expect(child.exitCode, `${out}\n${err}`).toBe(0)
    expect(out).toMatch(/-> db-1 got: request \d+/)
    expect(out).toMatch(/-> db-2 got: request \d+/)
    expect(out).toMatch(/answered by: db-1 [1-9]\d*, db-2 [1-9]\d*/)
    expect(out).toMatch(/after the kill: db-2 [1-9]/)
    expect(out).toContain('all nodes stopped')
  }, 60_000)
})
