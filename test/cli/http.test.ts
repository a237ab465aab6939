/**
 * `plexus node --http-port`: the node prints its HTTP address and serves /metrics, /healthz
 * and /readyz there; bad HTTP flags are refused with one line and exit 2.
 */
import { describe, expect, it } from 'vitest'
import { runCli, startNode, uniqueNetwork } from './helpers.js'

describe('plexus node --http-port', () => {
  it('prints the address and serves metrics and health', async () => {
    const node = await startNode(uniqueNetwork(), ['--http-port', '0', '--http-host', '127.0.0.1'])
    const line = await node.waitLine(/^http http:\/\/\S+\/$/)
    const base = line.slice('http '.length)
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
    expect((await fetch(`${base}healthz`)).status).toBe(200)
    expect((await fetch(`${base}readyz`)).status).toBe(200)
    const text = await (await fetch(`${base}metrics`)).text()
    expect(text).toContain(`plexus_node_info{id="${node.id}"`)
    node.child.kill('SIGTERM')
  }, 30_000)

  it('refuses bad HTTP flags', async () => {
    const port = await runCli(['node', '--http-port', '70000'])
    expect(port.code).toBe(2)
    expect(port.stderr).toMatch(/--http-port must be an integer port 0-65535/)
    const host = await runCli(['node', '--http-host', '127.0.0.1', '--no-mdns', '--relay-port', '0'])
    expect(host.code).toBe(2)
    expect(host.stderr).toMatch(/--http-host needs --http-port/)
  }, 30_000)
})
