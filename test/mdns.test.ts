/**
 * mDNS discovery, tested only inside a network namespace this test creates (loopback with
 * multicast on), so no multicast ever reaches the machine's real interfaces.
 */
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKey } from '../src/index.js'
import { exited, waitForLine } from './helpers/procs.js'

const isRoot = process.getuid?.() === 0
let hasIp = false
try {
  execFileSync('ip', ['-V'], { stdio: 'ignore' })
  hasIp = true
} catch {
  hasIp = false
}
const skipReason = !isRoot
  ? 'mDNS test skipped: it needs root to create a network namespace (ip netns), and multicast must never be sent on real interfaces'
  : !hasIp
    ? 'mDNS test skipped: the `ip` command (iproute2) is missing'
    : ''
if (skipReason) console.warn(skipReason)

const ns = `plexus-mdns-${randomBytes(4).toString('hex')}`

describe.skipIf(skipReason !== '')('mDNS discovery (inside a network namespace)', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns])
    const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...args])
    inNs('ip', 'link', 'set', 'lo', 'up')
    inNs('ip', 'link', 'set', 'lo', 'multicast', 'on')
    inNs('ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo')
  })

  afterAll(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns])
    } catch {
      // already gone
    }
  })

  it('two nodes with same-host discovery off find each other by mDNS and answer a request', async () => {
    const key = generateKey()
    const network = `mdns-${randomBytes(4).toString('hex')}`
    const run = (...args: string[]) =>
      spawn('ip', ['netns', 'exec', ns, process.execPath, 'test/fixtures/mdns-node.mjs', network, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    const member = run('member', 'db', key)
    try {
      await waitForLine(member, /^ready$/)
      const client = run('client', 'db', key)
      const m = await waitForLine(client, /^reply (.*)$/, 15_000)
      expect(m[1]).toMatch(/^served by 12D3/)
      expect(await exited(client)).toBe(0)
    } finally {
      member.kill('SIGKILL')
    }
  })
})
