/**
 * `plexus status [--json]`: what the local node sees — its id, network, addresses, peers
 * with latency, clusters with their members (connected, outstanding requests, latency) and
 * counters. `--json` prints the `NodeStatus` object as JSON instead of tables.
 */
import type { Command } from 'commander'
import type { NodeStatus } from '../types.js'
import { withRelay } from './client.js'
import { writeOut } from './output.js'

/** Registers the `status` command on `program`. */
export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("show the local node's peers, clusters and members, and counters")
    .option('--json', 'print machine-readable JSON')
    .action(async (flags: { json?: boolean }) => {
      const status = await withRelay((client) => client.status())
      await writeOut(
        process.stdout,
        flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status),
      )
    })
}

/** Latency for humans: `0.42 ms`, or `-` when not measured yet. */
function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return '-'
  return `${v < 10 ? v.toFixed(2) : v.toFixed(0)} ms`
}

/** Left-aligned columns with two spaces between them, each line indented by `indent`. */
export function table(rows: string[][], indent = '  '): string {
  const widths: number[] = []
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length)
    })
  }
  return rows
    .map((r) =>
      `${indent}${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd(),
    )
    .join('\n')
}

/** The human-readable rendering of a status snapshot (ends with a newline). */
export function formatStatus(s: NodeStatus): string {
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
  out.push(`peers (${s.peers.length})`)
  if (s.peers.length > 0) {
    out.push(
      table([
        ['ID', 'LATENCY', 'ADDRESS'],
        ...s.peers.map((p) => [p.id, ms(p.latencyMs), p.addresses.join(' ') || '-']),
      ]),
    )
  }
  out.push(`clusters (${s.clusters.length})`)
  for (const c of s.clusters) {
    out.push(`  ${c.name}${c.joined ? ' (joined by this node)' : ''}: ${c.members.length} member(s)`)
    if (c.members.length > 0) {
      out.push(
        table(
          [
            ['MEMBER', 'CONNECTED', 'OUTSTANDING', 'LATENCY'],
            ...c.members.map((m) => [
              m.id === s.id ? `${m.id} (self)` : m.id,
              m.connected ? 'yes' : 'no',
              String(m.outstanding),
              ms(m.latencyMs),
            ]),
          ],
          '    ',
        ),
      )
    }
  }
  const counters = Object.entries(s.counters).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  out.push(`counters (${counters.length})`)
  if (counters.length > 0) out.push(table(counters.map(([k, v]) => [k, String(v)])))
  return `${out.join('\n')}\n`
}
