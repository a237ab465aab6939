/**
 * Test helpers: real libp2p nodes over TCP loopback, each test on its own network name so
 * parallel test files never see each other, and every node stopped after the test.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import { createNode, generateKey, type NodeOptions, type PlexusNode } from '../../src/index.js'

const started: PlexusNode[] = []

/**
 * Stops every node started by these helpers and not stopped yet. Runs after each test; a file
 * that removes data directories in its own `afterEach` calls it first (vitest runs a file's
 * hooks before the ones registered here), so no node writes into a removed directory.
 */
export async function stopStartedNodes(): Promise<void> {
  const nodes = started.splice(0)
  await Promise.all(nodes.map((n) => n.stop()))
}

afterEach(stopStartedNodes)

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

/** `n` nodes that all joined `cluster` (one new key) and each see all `n` members. */
export async function startJoinedNodes(n: number, cluster = 'db'): Promise<PlexusNode[]> {
  const nodes = await startNodes(n)
  const key = generateKey()
  for (const node of nodes) await node.join(cluster, { key })
  for (const node of nodes) await waitForMembers(node, cluster, n)
  return nodes
}

/**
 * A cluster hosting durable streams, on a fresh network: `members` nodes with data
 * directories under `root` (`m0`, `m1`, ...; with `options` added) joined to `cluster`, and
 * `outside` nodes that are not members. The outside nodes hold the cluster key as a
 * credential (`createNode({ credentials })`: they may create and delete streams) unless
 * `keyless` is set. Resolves once every node sees all the members. The nodes are stopped
 * after the test (the directories are the caller's).
 */
export async function startStreamCluster(
  root: string,
  opts: {
    members?: number
    outside?: number
    cluster?: string
    options?: NodeOptions
    keyless?: boolean
  } = {},
): Promise<{ members: PlexusNode[]; outside: PlexusNode[]; key: string }> {
  const { cluster = 'db', options = {} } = opts
  const network = options.network ?? uniqueNetwork()
  const key = generateKey()
  const members = await Promise.all(
    Array.from({ length: opts.members ?? 3 }, (_, i) =>
      startNode({ ...options, network, dataDir: join(root, `m${i}`) }),
    ),
  )
  const credentials = opts.keyless ? undefined : { clusterKeys: { [cluster]: key } }
  const outside = await Promise.all(
    Array.from({ length: opts.outside ?? 1 }, () => startNode({ network, credentials })),
  )
  for (const m of members) await m.join(cluster, { key })
  for (const n of [...members, ...outside]) await waitForMembers(n, cluster, members.length, 10_000)
  return { members, outside, key }
}
