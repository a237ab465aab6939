/**
 * Per-test cleanup of what a relay-and-streams test starts itself: after each test the relay
 * clients are closed, then the relays, then the nodes (before their data directories go),
 * then the directories are removed.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import { connectRelay, type RelayClient, type RelayServer, startRelay } from '../../relay/index.js'
import { generateKey, type PlexusNode } from '../../src/index.js'
import { startNode, uniqueNetwork, waitForMembers } from './nodes.js'

/** Lists to push onto; emptied (and their items closed) after each test of the calling file. */
export function cleanedAfterEach(): {
  dirs: string[]
  mine: PlexusNode[]
  relays: RelayServer[]
  clients: RelayClient[]
  /** Three members of `db` with data directories, a relay on the first, a thin client on it. */
  storageRelay(name: string): Promise<{ members: PlexusNode[]; relay: RelayServer; client: RelayClient }>
} {
  const dirs: string[] = []
  const mine: PlexusNode[] = []
  const relays: RelayServer[] = []
  const clients: RelayClient[] = []
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await Promise.all(relays.splice(0).map((r) => r.close()))
    await Promise.all(mine.splice(0).map((n) => n.stop())) // before their directories go
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
  })
  const storageRelay = async (name: string) => {
    const network = uniqueNetwork(name)
    const root = await mkdtemp(join(tmpdir(), `plexus-${name}-`))
    dirs.push(root)
    const members = await Promise.all(
      [0, 1, 2].map((i) => startNode({ network, dataDir: join(root, `m${i}`) })),
    )
    mine.push(...members)
    const key = generateKey()
    for (const m of members) await m.join('db', { key })
    for (const m of members) await waitForMembers(m, 'db', 3, 10_000)
    const relay = await startRelay(members[0]!, { host: '127.0.0.1', port: 0 })
    relays.push(relay)
    const client = await connectRelay({ address: relay.address })
    clients.push(client)
    return { members, relay, client }
  }
  return { dirs, mine, relays, clients, storageRelay }
}
