import { describe, expect, it } from 'vitest'
import { runCli } from './helpers.js'

describe('plexus keygen', () => {
  it('prints a new 64-hex key each time', async () => {
    const [a, b] = await Promise.all([runCli(['keygen']), runCli(['keygen'])])
    for (const r of [a, b]) {
      expect(r.code).toBe(0)
      expect(r.stderr).toBe('')
      expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/)
    }
    expect(a.stdout).not.toBe(b.stdout)
  })

  it('--help prints usage and exits 0', async () => {
    const r = await runCli(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('keygen')
    expect(r.stdout).toContain('request')
  })
})
