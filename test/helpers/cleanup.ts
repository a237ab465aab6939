/**
 * Per-test cleanup of what a relay-and-streams test starts itself: after each test the relay
 * clients are closed, then the relays, then the nodes (before their data directories go),
 * then the directories are removed.
 */
import { rm } from 'node:fs/promises'
import { afterEach } from 'vitest'
import type { RelayClient, RelayServer } from '../../relay/index.js'
import type { PlexusNode } from '../../src/index.js'

/** Lists to push onto; emptied (and their items closed) after each test of the calling file. */
export function cleanedAfterEach(): {
  dirs: string[]
  mine: PlexusNode[]
  relays: RelayServer[]
  clients: RelayClient[]
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
  return { dirs, mine, relays, clients }
}
