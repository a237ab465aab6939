/**
 * The hostile-peer fuzz run (`npm run fuzz`, fuzz/run.ts) for a short, seeded run: 5,000
 * frames of every link frame type at a real node in a child process (built by `pretest`).
 * It must finish with no crash and no invalid value delivered, and the good peer served.
 */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { testSeed } from '../helpers/rng.js'

describe('fuzz run (short)', () => {
  it('5,000 fuzzed frames at a real node: 0 crashes, no invalid value, still serving', async () => {
    const seed = testSeed()
    const child = spawn(
      process.execPath,
      ['--expose-gc', 'dist/fuzz/run.js', '--frames', '5000', '--seed', String(seed)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    child.stderr.on('data', (d) => {
      out += d
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code, `seed ${seed}:\n${out}`).toBe(0)
    expect(out).toMatch(
      /result: 5000 frames .* crashes 0; invalid values delivered 0; good peer served after: true/,
    )
    for (const type of ['Announce', 'Request', 'RpcCall', 'Raft', 'StreamTable', 'TunnelOpen', 'Broadcast'])
      expect(out).toMatch(new RegExp(`${type} [1-9]`))
  }, 60_000)
})
