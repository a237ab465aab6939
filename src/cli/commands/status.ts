/**
 * `plexus status [--json]`: what the local node sees — its id, network, addresses, peers
 * with latency, clusters with their members (connected, outstanding requests, latency, and
 * roles: which of request, broadcast and tunnel they serve, and storage for a data directory),
 * durable streams and counters. For each stream the node knows, `streams.info` is asked
 * through the relay for its partitions, leaders and in-sync replicas; when that fails the
 * error is shown for that stream and the command still succeeds. `--json` prints the
 * `NodeStatus` object as JSON instead of tables, each stream with `info` (a `StreamInfo`,
 * or null) and `infoError` (`{ name, message }`, or null).
 */
import type { Command } from 'commander'
import type { RelayClient } from '../../../relay/client/client.js'
import { NOISE_AES_GCM_PROTOCOL, NOISE_PROTOCOL } from '../../constants.js'
import type { MemberRoles, NodeStatus } from '../../types.js'
import { withRelay } from '../client.js'
import { errorNameOf, oneLine, writeOut } from '../output.js'
import { formatStatusStreams, type StatusStream } from '../stream-format.js'
import { table } from '../table.js'

export { table } from '../table.js'

/** Deadline of each stream's `info` call (ms). */
const INFO_TIMEOUT = 5000
/** `info` calls in flight at once. */
const INFO_CONCURRENCY = 8

/** A status snapshot whose streams carry their `info` (or why it failed). */
export type StatusWithStreams = Omit<NodeStatus, 'streams'> & { streams: StatusStream[] }

/** Registers the `status` command on `program`. */
export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("show the local node's peers, clusters and members, streams, and counters")
    .option('--json', 'print machine-readable JSON')
    .action(async (flags: { json?: boolean }) => {
      const status = await withRelay(async (client) => withStreamInfo(client, await client.status()))
      await writeOut(
        process.stdout,
        flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status),
      )
    })
}

/** Adds `streams.info` of every stream in `status` (a few at a time; failures recorded per stream). */
export async function withStreamInfo(client: RelayClient, status: NodeStatus): Promise<StatusWithStreams> {
  const known = status.streams ?? []
  const streams: StatusStream[] = known.map((s) => ({ ...s, info: null, infoError: null }))
  let next = 0
  const worker = async () => {
    while (next < streams.length) {
      const s = streams[next++]!
      try {
        s.info = await client.streams.info(s.name, { timeout: INFO_TIMEOUT })
      } catch (err) {
        s.infoError = {
          name: errorNameOf(err),
          message: oneLine(err instanceof Error ? err.message : String(err)),
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(INFO_CONCURRENCY, streams.length) }, worker))
  return { ...status, streams }
}

/** Latency for humans: `0.42 ms`, or `-` when not measured yet. */
function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return '-'
  return `${v < 10 ? v.toFixed(2) : v.toFixed(0)} ms`
}

/** A member's roles for humans: `request,tunnel,storage`, or `-` for none (unknown: `?`). */
export function roleNames(roles: MemberRoles | undefined): string {
  if (roles === undefined) return '?'
  const names = (['request', 'broadcast', 'tunnel', 'storage'] as const).filter((r) => roles[r])
  return names.length > 0 ? names.join(',') : '-'
}

/** The human-readable rendering of a status snapshot (ends with a newline). */
export function formatStatus(s: StatusWithStreams | NodeStatus): string {
  const out: string[] = []
  out.push(
    table(
      [
        ['node', s.id],
        ['network', s.network],
      ],
      '',
    ),
  )
  out.push(`addresses (${s.addresses.length})`)
  for (const a of s.addresses) out.push(`  ${a}`)
  if (s.nat) {
    out.push(`reachability ${s.nat.reachability}: ${s.nat.reason}`)
    if (s.nat.reservations.length > 0) out.push(`  circuit relay slots on: ${s.nat.reservations.join(' ')}`)
    if (s.nat.serving) out.push(`  circuit relay server: ${s.nat.serving.length} slot(s) taken`)
  }
  const neighbours = s.peers.filter((p) => p.link !== 'on-demand').length
  out.push(`peers (${s.peers.length}: ${neighbours} neighbours, ${s.peers.length - neighbours} on demand)`)
  if (s.peers.length > 0) {
    out.push(
      table([
        ['ID', 'LINK', 'LATENCY', 'CIPHER', 'ADDRESS'],
        ...s.peers.map((p) => [
          p.id,
          p.link ?? '-',
          ms(p.latencyMs),
          cipherName(p.encryption),
          p.addresses.join(' ') || '-',
        ]),
      ]),
    )
    for (const p of s.peers)
      if (p.relayed) out.push(`  ${p.id} is relayed (circuit relay limits apply): ${p.relayedReason ?? ''}`)
  }
  out.push(`clusters (${s.clusters.length})`)
  for (const c of s.clusters) {
    out.push(`  ${c.name}${c.joined ? ' (joined by this node)' : ''}: ${c.members.length} member(s)`)
    if (c.members.length > 0) {
      out.push(
        table(
          [
            ['MEMBER', 'CONNECTED', 'OUTSTANDING', 'LATENCY', 'ROLES'],
            ...c.members.map((m) => [
              m.id === s.id ? `${m.id} (self)` : m.id,
              m.connected ? 'yes' : 'no',
              String(m.outstanding),
              ms(m.latencyMs),
              roleNames(m.roles),
            ]),
          ],
          '    ',
        ),
      )
    }
  }
  const streams: StatusStream[] = (s.streams ?? []).map((x) => ({
    info: null,
    infoError: null,
    ...x,
  }))
  out.push(...formatStatusStreams(streams, s.id))
  const counters = Object.entries(s.counters).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  out.push(`counters (${counters.length})`)
  if (counters.length > 0) out.push(table(counters.map(([k, v]) => [k, String(v)])))
  return `${out.join('\n')}\n`
}

/** Short name of a negotiated connection encrypter (older nodes' status has none). */
function cipherName(protocol: string | null | undefined): string {
  if (protocol === NOISE_AES_GCM_PROTOCOL) return 'aes-256-gcm'
  if (protocol === NOISE_PROTOCOL) return 'chacha20-poly1305'
  return protocol ?? '-'
}
