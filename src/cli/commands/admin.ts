/**
 * Stream administration from the command line, through the local node's relay (like `plexus
 * stream create`; credentials from auth.ts):
 *
 * - `stream purge NAME [--before OFFSET] [--partition P] [--key K] [--json]`: removes the
 *   messages below OFFSET (every message without it) in every partition or in P; with `--key`
 *   only the messages of key K (UTF-8), in its partition; prints each partition's first offset.
 * - `stream update NAME [--max-age MS] [--max-bytes N] [--max-messages N] [--replicas N] [--json]`:
 *   replaces the retention limits (no flag at all: every limit removed; `--replicas` alone
 *   leaves them) and/or sets the replicas, and prints the stream info.
 * - `consumer ls STREAM [--json]`: the durable consumers with their positions and last activity.
 * - `consumer info STREAM NAME [--json]`: per partition its position, end, pending messages
 *   and lease holder.
 * - `consumer rm STREAM NAME`: deletes a durable consumer (prints nothing).
 *
 * Purge, update and `consumer rm` take `--cluster-key-file F` or `--capability CAP|FILE`. An
 * unknown consumer is `ConsumerNotFoundError` (exit 1); a refused credential
 * `UnauthorizedError` (exit 1); bad flags exit 2 naming the flag.
 */
import type { Command } from 'commander'
import type { ConsumerInfo, ConsumerSummary, StreamRetention, StreamUpdate } from '../../types.js'
import { checkStreamName, parseMs, parseNonNegativeInt, parsePositiveInt, timeoutOption } from '../args.js'
import { type AuthFlags, addAuthFlags, authOptions } from '../auth.js'
import { withRelay } from '../client.js'
import { UsageError, writeOut } from '../output.js'
import { formatStreamInfo } from '../stream-format.js'
import { table } from '../table.js'

interface Common {
  timeout?: number
  json?: boolean
}

/** Registers `stream purge` and `stream update` on `stream`, and `consumer` on `program`. */
export function registerStreamAdmin(stream: Command, program: Command): void {
  addAuthFlags(stream.command('purge'))
    .addOption(timeoutOption())
    .description('remove messages below an offset (every message without --before)')
    .argument('<name>', 'stream name')
    .option('--before <offset>', 'remove offsets below this one', parseNonNegativeInt('--before'))
    .option('--partition <p>', 'only this partition', parseNonNegativeInt('--partition'))
    .option('--key <key>', "only this key's messages (in the key's partition)")
    .option('--json', 'print a JSON array of { partition, firstOffset }')
    .action(
      async (
        name: string,
        flags: Common & AuthFlags & { before?: number; partition?: number; key?: string },
      ) => {
        checkStreamName(name, 'NAME')
        const auth = await authOptions(flags)
        const target: { before?: number; partition?: number; key?: string } = {}
        if (flags.key !== undefined) {
          if (flags.key === '') throw new UsageError('--key must not be empty')
          target.key = flags.key
        }
        if (flags.before !== undefined) target.before = flags.before
        if (flags.partition !== undefined) target.partition = flags.partition
        const res = await withRelay((client, signal) =>
          client.streams.purge(name, target, { timeout: flags.timeout, signal, ...auth }),
        )
        const text = flags.json
          ? `${JSON.stringify(res)}\n`
          : `${table(
              [
                ['PARTITION', 'FIRST OFFSET'],
                ...res.map((r) => [String(r.partition), String(r.firstOffset)]),
              ],
              '',
            )}\n`
        await writeOut(process.stdout, text)
      },
    )

  addAuthFlags(stream.command('update'))
    .addOption(timeoutOption())
    .description(
      "replace a stream's retention limits (no flag at all removes them) and/or change its replicas",
    )
    .argument('<name>', 'stream name')
    .option('--max-age <ms>', 'retention: drop messages older than this', parseMs('--max-age'))
    .option('--max-bytes <n>', 'retention: keep at most this many bytes', parsePositiveInt('--max-bytes'))
    .option(
      '--max-messages <n>',
      'retention: keep at most this many messages',
      parsePositiveInt('--max-messages'),
    )
    .option(
      '--replicas <n>',
      'replicas per partition (placements follow within seconds)',
      parsePositiveInt('--replicas'),
    )
    .option('--json', 'print the stream info as JSON')
    .action(
      async (
        name: string,
        flags: Common &
          AuthFlags & { maxAge?: number; maxBytes?: number; maxMessages?: number; replicas?: number },
      ) => {
        checkStreamName(name, 'NAME')
        const auth = await authOptions(flags)
        const retention: StreamRetention = {}
        if (flags.maxAge !== undefined) retention.maxAge = flags.maxAge
        if (flags.maxBytes !== undefined) retention.maxBytes = flags.maxBytes
        if (flags.maxMessages !== undefined) retention.maxMessages = flags.maxMessages
        const changes: StreamUpdate = {}
        if (Object.keys(retention).length > 0 || flags.replicas === undefined) changes.retention = retention
        if (flags.replicas !== undefined) changes.replicas = flags.replicas
        const info = await withRelay((client, signal) =>
          client.streams.update(name, changes, { timeout: flags.timeout, signal, ...auth }),
        )
        await writeOut(process.stdout, flags.json ? `${JSON.stringify(info)}\n` : formatStreamInfo(info))
      },
    )

  const consumer = program
    .command('consumer')
    .description('list, inspect and delete durable consumers of a stream')
    .addHelpCommand(false)
  consumer
    .command('ls')
    .addOption(timeoutOption())
    .description('list the durable consumers of a stream')
    .argument('<stream>', 'stream name')
    .option('--json', 'print a JSON array')
    .action(async (stream: string, flags: Common) => {
      checkStreamName(stream, 'STREAM')
      const list = await withRelay((client, signal) =>
        client.streams.consumers(stream, { timeout: flags.timeout, signal }),
      )
      await writeOut(process.stdout, flags.json ? `${JSON.stringify(list)}\n` : formatConsumers(list))
    })
  consumer
    .command('info')
    .addOption(timeoutOption())
    .description('print a durable consumer: per partition its position, end, pending and holder')
    .argument('<stream>', 'stream name')
    .argument('<name>', 'durable consumer name')
    .option('--json', 'print it as JSON')
    .action(async (stream: string, name: string, flags: Common) => {
      checkStreamName(stream, 'STREAM')
      checkStreamName(name, 'NAME')
      const info = await withRelay((client, signal) =>
        client.streams.consumerInfo(stream, name, { timeout: flags.timeout, signal }),
      )
      await writeOut(process.stdout, flags.json ? `${JSON.stringify(info)}\n` : formatConsumerInfo(info))
    })
  addAuthFlags(consumer.command('rm'))
    .addOption(timeoutOption())
    .description('delete a durable consumer: its positions and leases (prints nothing)')
    .argument('<stream>', 'stream name')
    .argument('<name>', 'durable consumer name')
    .action(async (stream: string, name: string, flags: Common & AuthFlags) => {
      checkStreamName(stream, 'STREAM')
      checkStreamName(name, 'NAME')
      const auth = await authOptions(flags)
      await withRelay((client, signal) =>
        client.streams.deleteConsumer(stream, name, { timeout: flags.timeout, signal, ...auth }),
      )
    })
}

const when = (t: number | null) => (t === null ? '-' : new Date(t).toISOString())

/** `consumer ls` for humans. */
export function formatConsumers(list: ConsumerSummary[]): string {
  if (list.length === 0) return 'no durable consumers\n'
  const rows = list.map((c) => [
    c.name,
    c.positions.map((p) => `${p.partition}:${p.position}`).join(' ') || '-',
    when(c.lastActive),
  ])
  return `${table([['NAME', 'POSITIONS (partition:next)', 'LAST ACTIVE'], ...rows], '')}\n`
}

/** `consumer info` for humans. */
export function formatConsumerInfo(c: ConsumerInfo): string {
  const rows = c.partitions.map((p) => [
    String(p.partition),
    p.position === null ? '-' : String(p.position),
    String(p.end),
    String(p.pending),
    p.holder ?? '-',
  ])
  const counts = `redelivered ${c.redelivered}, terminated ${c.terminated}, dropped after maxDeliver ${c.maxDeliverDropped}`
  return `consumer ${c.name} of stream ${c.stream}, last active ${when(c.lastActive)}\n${counts}\n${table([
    ['PARTITION', 'POSITION', 'END', 'PENDING', 'HOLDER'],
    ...rows,
  ])}\n`
}
