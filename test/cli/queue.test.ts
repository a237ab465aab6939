/**
 * `plexus subscribe --queue GROUP` (issue 16): two subscribers of one group share the
 * messages (none gets one twice, none gets one the other got); a bad group name is a usage
 * error (exit 2). Real processes.
 */
import { describe, expect, it } from 'vitest'
import { connectRelay } from '../../relay/client/client.js'
import { runCli, spawnCli, startNode, uniqueNetwork } from './helpers.js'

describe('plexus subscribe --queue', () => {
  it('two subscribers of one group split the messages; a bad name exits 2', async () => {
    const a = await startNode(uniqueNetwork())
    const env = { PLEXUS_RELAY: a.relay }
    const subs = [0, 1].map(() =>
      spawnCli(['subscribe', 'jobs.*', '--queue', 'workers', '--count', '3'], { env }),
    )
    const exited = () => subs.every((s) => s.child.exitCode !== null)
    // The subscribers take a moment to start (process start, SUBSCRIBE): publish until both
    // are done, through one in-process client (a process per publish is slow on a loaded host).
    const client = await connectRelay({ address: a.relay })
    try {
      const end = Date.now() + 30_000
      for (let i = 0; !exited() && Date.now() < end; i++) {
        await client.publish('jobs.x', `m${i}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    } finally {
      await client.close()
    }
    const codes = await Promise.all(subs.map((s) => s.done))
    expect(codes, subs.map((s) => s.stderr()).join('')).toEqual([0, 0])
    const lines = subs.map((s) => s.stdout().trim().split('\n'))
    for (const l of lines) expect(l).toHaveLength(3)
    expect(new Set([...lines[0]!, ...lines[1]!]).size).toBe(6)

    const bad = await runCli(['subscribe', 'jobs.*', '--queue', 'a b'], { env })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--queue must be a group name/)
  }, 40_000)
})
