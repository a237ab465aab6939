/**
 * How the CLI shows durable streams: `stream info`/`stream create` (one stream with every
 * partition), `stream list`, and the streams section of `status`.
 */
import type { NodeStatus, StreamInfo, StreamRetention, StreamSummary } from '../types.js'
import { table } from './table.js'

/** A stream as `status` shows it: what the node knows, plus `streams.info` through the relay. */
export interface StatusStream {
  name: string
  cluster: string
  subject: string
  partitions: number
  replicas: number
  hosted: NodeStatus['streams'][number]['hosted']
  /** The stream's partitions, leaders and in-sync replicas; null when `info` failed. */
  info: StreamInfo | null
  /** Why `info` failed (error class name and message); null when it worked. */
  infoError: { name: string; message: string } | null
}

/** Retention for humans: `none`, or the limits that are set. */
export function retentionText(r: StreamRetention | undefined): string {
  const parts: string[] = []
  if (r?.maxAge !== undefined) parts.push(`maxAge ${r.maxAge} ms`)
  if (r?.maxBytes !== undefined) parts.push(`maxBytes ${r.maxBytes}`)
  if (r?.maxMessages !== undefined) parts.push(`maxMessages ${r.maxMessages}`)
  return parts.length === 0 ? 'none' : parts.join(', ')
}

const ids = (list: string[]) => (list.length === 0 ? '-' : list.join(', '))

/** The text of `stream info` and `stream create` (ends with a newline). */
export function formatStreamInfo(s: StreamInfo): string {
  const out: string[] = [
    table(
      [
        ['stream', s.name],
        ['cluster', s.cluster],
        ['subject', s.subject],
        ['replicas', String(s.replicas)],
        ['partitions', String(s.partitions.length)],
        ['retention', retentionText(s.retention)],
        ['compact', s.compact ? 'yes' : 'no'],
        ['access', `publish ${s.access?.publish ?? 'open'}, consume ${s.access?.consume ?? 'open'}`],
      ],
      '',
    ),
  ]
  for (const p of s.partitions) {
    out.push(`partition ${p.partition}`)
    out.push(
      table([
        ['leader', p.leader ?? '(none elected)'],
        ['replicas', ids(p.replicas)],
        ['in-sync', `${ids(p.inSync)} (${p.inSync.length}/${p.replicas.length})`],
        ['offsets', `first ${p.firstOffset}, next ${p.nextOffset}`],
      ]),
    )
  }
  return `${out.join('\n')}\n`
}

/**
 * The text of `stream list` (ends with a newline): one row per stream, the columns of older
 * versions first, then retention (`none`, or `maxAge=MSms,maxBytes=N,maxMessages=N`, `+compact`),
 * access (`open`, or who needs a capability) and each partition's leader as this node knows it
 * (the end of its peer id; `?` unknown), comma-separated in partition order.
 */
export function formatStreamList(list: StreamSummary[]): string {
  if (list.length === 0) return 'no streams\n'
  const retention = (s: StreamSummary) => {
    const r = s.retention
    const parts: string[] = []
    if (r.maxAge !== undefined) parts.push(`maxAge=${r.maxAge}ms`)
    if (r.maxBytes !== undefined) parts.push(`maxBytes=${r.maxBytes}`)
    if (r.maxMessages !== undefined) parts.push(`maxMessages=${r.maxMessages}`)
    return (parts.length === 0 ? 'none' : parts.join(',')) + (s.compact ? '+compact' : '')
  }
  const access = (s: StreamSummary) => {
    const needs = (['publish', 'consume'] as const).filter((k) => s.access[k] === 'capability')
    return needs.length === 0 ? 'open' : `capability:${needs.join('+')}`
  }
  const leaders = (s: StreamSummary) =>
    s.placement.map((p) => (p.leader === null ? '?' : `…${p.leader.slice(-6)}`)).join(',')
  return `${table(
    [
      ['NAME', 'CLUSTER', 'SUBJECT', 'PARTITIONS', 'REPLICAS', 'RETENTION', 'ACCESS', 'LEADERS'],
      ...list.map((s) => [
        s.name,
        s.cluster,
        s.subject,
        String(s.partitions),
        String(s.replicas),
        retention(s),
        access(s),
        leaders(s),
      ]),
    ],
    '',
  )}\n`
}

/** Size of a hosted replica's raft log and its snapshot point, for humans (`-`: not hosted here). */
function raftLog(h: StatusStream['hosted'][number] | undefined): string {
  if (h?.raftLogBytes === undefined) return '-'
  return `${(h.raftLogBytes / 1e6).toFixed(1)} MB, snapshot ${h.snapshotIndex}`
}

/** The streams section of `status` (lines without a trailing newline). */
export function formatStatusStreams(streams: StatusStream[], self: string): string[] {
  const out = [`streams (${streams.length})`]
  for (const s of streams) {
    out.push(
      `  ${s.name}: cluster ${s.cluster}, subject ${s.subject}, ${s.partitions} partition(s), ${s.replicas} replica(s)`,
    )
    if (s.infoError) {
      out.push(`    info failed: ${s.infoError.name}: ${s.infoError.message}`)
      continue
    }
    if (!s.info) continue
    const here = (p: number) => (s.hosted ?? []).find((h) => h.partition === p)
    out.push(
      table(
        [
          ['PARTITION', 'LEADER', 'NEXT', 'HERE', 'IN-SYNC', 'RAFT LOG HERE'],
          ...s.info.partitions.map((p) => [
            String(p.partition),
            p.leader === null ? '(none)' : p.leader === self ? `${p.leader} (self)` : p.leader,
            String(p.nextOffset),
            here(p.partition)?.health === 'failed' ? 'FAILED' : (here(p.partition)?.role ?? '-'),
            `${p.inSync.length}/${p.replicas.length} ${ids(p.inSync)}`,
            raftLog(here(p.partition)),
          ]),
        ],
        '    ',
      ),
    )
    // A replica here that failed or was rebuilt: what happened (it heals itself, see README).
    for (const h of s.hosted ?? []) {
      if (!h.failures && !h.rebuilds) continue
      const state = h.health === 'failed' ? 'failed, restarting' : 'running again'
      out.push(
        `    partition ${h.partition} here: ${state}; ${h.failures} failure(s) in a row, ${h.rebuilds} rebuild(s); last: ${h.lastError}`,
      )
    }
  }
  return out
}
