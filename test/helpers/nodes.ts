/**
 * Test helpers: real libp2p nodes over TCP loopback, each test on its own network name so
 * parallel test files never see each other, and every node stopped after the test.
 */
import { randomBytes } from 'node:crypto'
import { afterEach } from 'vitest'
import { createNode, type NodeOptions, type PlexusNode } from '../../src/index.js'

const started: PlexusNode[] = []

afterEach(async () => {
  const nodes = started.splice(0)
  await Promise.all(nodes.map((n) => n.stop()))
})

/** A network name no other test uses. */
export function uniqueNetwork(prefix = 't'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`
}

/** Starts a node on loopback (stopped after the test). */
export async function startNode(opts: NodeOptions = {}): Promise<PlexusNode> {
  const node = await createNode({ listen: ['/ip4/127.0.0.1/tcp/0'], ...opts })
  started.push(node)
  return node
}

/** Starts `n` nodes on one fresh network. */
export async function startNodes(n: number, opts: NodeOptions = {}): Promise<PlexusNode[]> {
  const network = opts.network ?? uniqueNetwork()
  return Promise.all(Array.from({ length: n }, () => startNode({ ...opts, network })))
}

/** Polls `cond` on every event-loop turn until true or `ms` passes. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  ms = 5000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Waits until `node` sees `count` connected members of `cluster`. */
export function waitForMembers(node: PlexusNode, cluster: string, count: number, ms = 5000): Promise<void> {
  return waitFor(
    () =>
      (node
        .status()
        .clusters.find((c) => c.name === cluster)
        ?.members.filter((m) => m.connected).length ?? 0) >= count,
    ms,
    `${count} members of ${cluster} seen by ${node.id}`,
  )
}
