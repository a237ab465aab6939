/**
 * `plexus stream …` and `plexus consume`, attached to the local node's relay.
 *
 * - `stream create NAME --cluster C --subject S [--replicas R] [--partitions P]
 *   [--max-age MS] [--max-bytes N] [--max-messages N] [--compact] [--publish-access open|capability]
 *   [--consume-access open|capability] [--timeout MS] [--json]` creates a durable stream (or
 *   finds the same one) and prints its info.
 * - `stream info NAME [--timeout MS] [--json]` prints the configuration and every
 *   partition: leader, replicas, in-sync replicas, offsets.
 * - `stream delete NAME [--timeout MS]` deletes it (prints nothing).
 * - `create` and `delete` take `--cluster-key-file F` or `--capability CAP|FILE` (auth.ts):
 *   without them the local node proves the call with its own key if it joined the cluster.
 * - `stream list [--json]` prints the streams the node knows.
 * - `stream purge`, `stream update` and `consumer ls|info|rm`: admin.ts.
 * - `consume STREAM [--from earliest|latest|new|OFFSET|TIME] [--partition P] [--count N]
 *   [--json] [--durable NAME] [--ack-wait MS] [--capability CAP|FILE]` prints committed messages as they come: the
 *   data followed by a newline, or with `--json` one object per line `{"stream","topic",
 *   "partition","offset","timestamp","key","headers","data"}` (key and data as UTF-8, key
 *   null and headers {} when absent). It exits 0 after N messages with `--count`, or when
 *   the node ends the consumer; Ctrl-C closes the connection (the node drops the
 *   consumer) and exits 130. A durable consumer acknowledges each message once printed.
 *   When nothing arrives for a few seconds and stderr is a terminal, one line on stderr says
 *   what it waits for: a partition leader, or new messages (wait-notice.ts). When stderr is
 *   a terminal and stdout is not, a progress line on stderr counts the messages and their
 *   rate: of N with `--count N`, else of the partition ends when reading from earliest or an
 *   offset (a catch-up read; the line ends once caught up). Nothing when not a terminal.
 *
 * A missing stream is `StreamNotFoundError` (exit 1); too few members for the replicas is
 * `NotEnoughReplicasError` (exit 1); bad flags exit 2 naming the flag.
 */
import type { Command } from 'commander'
import { checkPattern } from '../../pubsub/subject.js'
import type {
  ConsumeFrom,
  ConsumeOptions,
  StreamConfig,
  StreamInfo,
  StreamMessage,
  StreamRetention,
} from '../../types.js'
import {
  checkCluster,
  checkStreamName,
  parseAckPolicy,
  parseBackoff,
  parseFrom,
  parseMs,
  parseNonNegativeInt,
  parsePositiveInt,
  parseText,
  timeoutOption,
} from '../args.js'
import { type AuthFlags, addAuthFlags, addCapabilityFlag, authOptions, readCapability } from '../auth.js'
import { withRelay } from '../client.js'
import { gone, lineOf, writeChunk } from '../io.js'
import { UsageError, writeOut } from '../output.js'
import { createProgress } from '../progress.js'
import { formatStreamInfo, formatStreamList } from '../stream-format.js'
import { watchWaiting } from '../wait-notice.js'
import { registerStreamAdmin } from './admin.js'
import { registerStreamReads } from './kv.js'

/** Flags of `stream create` as commander parsed them. */
interface CreateFlags {
  cluster?: string
  subject?: string
  replicas?: number
  partitions?: number
  maxAge?: number
  maxBytes?: number
  maxMessages?: number
  compact?: boolean
  publishAccess?: 'open' | 'capability'
  consumeAccess?: 'open' | 'capability'
  timeout?: number
  json?: boolean
}

/** Flags of `consume` as commander parsed them. */
interface ConsumeFlags {
  from?: ConsumeFrom
  partition?: number
  count?: number
  json?: boolean
  durable?: string
  ackWait?: number
  capability?: string
  filter?: string
  maxDeliver?: number
  backoff?: number[]
  maxAckPending?: number
  ackPolicy?: 'explicit' | 'none'
  fetch?: number
  expires?: number
}

/** The stream config `stream create`'s flags describe; throws `UsageError` naming a missing flag. */
export function streamConfigOf(flags: CreateFlags): StreamConfig {
  if (flags.cluster === undefined)
    throw new UsageError('--cluster is required: the cluster that owns the stream')
  if (flags.subject === undefined) {
    throw new UsageError('--subject is required: the topic pattern the stream captures, e.g. orders.>')
  }
  const config: StreamConfig = { cluster: flags.cluster, subject: flags.subject }
  if (flags.replicas !== undefined) config.replicas = flags.replicas
  if (flags.partitions !== undefined) config.partitions = flags.partitions
  const retention: StreamRetention = {}
  if (flags.maxAge !== undefined) retention.maxAge = flags.maxAge
  if (flags.maxBytes !== undefined) retention.maxBytes = flags.maxBytes
  if (flags.maxMessages !== undefined) retention.maxMessages = flags.maxMessages
  if (Object.keys(retention).length > 0) config.retention = retention
  if (flags.compact) config.compact = true
  if (flags.publishAccess !== undefined || flags.consumeAccess !== undefined)
    config.access = { publish: flags.publishAccess ?? 'open', consume: flags.consumeAccess ?? 'open' }
  return config
}

/** Parses `--publish-access` / `--consume-access`: `open` or `capability`. */
const parseAccess =
  (flag: string) =>
  (v: string): 'open' | 'capability' => {
    if (v !== 'open' && v !== 'capability')
      throw new UsageError(`${flag} must be open or capability, got ${v}`)
    return v
  }

/** Registers `stream` (create, info, delete, list) and `consume` on `program`. */
export function registerStreams(program: Command): void {
  const stream = program
    .command('stream')
    .description('create, inspect, list and delete durable streams')
    .addHelpCommand(false)
  addAuthFlags(stream.command('create'))
    .description('create a durable stream owned by a cluster and print its info')
    .argument('<name>', 'stream name (1-64 characters [A-Za-z0-9_-])')
    .option('--cluster <cluster>', 'cluster whose members host the replicas (required)', (v) =>
      checkCluster(v, '--cluster'),
    )
    .option('--subject <pattern>', 'topic pattern the stream captures, e.g. orders.> (required)', (v) =>
      checkPattern(v, '--subject'),
    )
    .option('--replicas <n>', 'replicas per partition (default 3)', parsePositiveInt('--replicas'))
    .option('--partitions <n>', 'partitions (default 1)', parsePositiveInt('--partitions'))
    .option('--max-age <ms>', 'retention: drop messages older than this', parseMs('--max-age'))
    .option('--max-bytes <n>', 'retention: keep at most this many bytes', parsePositiveInt('--max-bytes'))
    .option(
      '--max-messages <n>',
      'retention: keep at most this many messages',
      parsePositiveInt('--max-messages'),
    )
    .option('--compact', 'keep only the latest message per key')
    .option(
      '--publish-access <access>',
      'open (default): any node may publish; capability: members and capability holders only',
      parseAccess('--publish-access'),
    )
    .option(
      '--consume-access <access>',
      'open (default): any node may read; capability: members and capability holders only',
      parseAccess('--consume-access'),
    )
    .addOption(timeoutOption())
    .option('--json', 'print the stream info as JSON')
    .action(async (name: string, flags: CreateFlags & AuthFlags) => {
      checkStreamName(name, 'NAME')
      const config = streamConfigOf(flags)
      const auth = await authOptions(flags)
      const info = await withRelay((client, signal) =>
        client.streams.create(name, config, { timeout: flags.timeout, signal, ...auth }),
      )
      await writeOut(process.stdout, flags.json ? `${JSON.stringify(info)}\n` : formatStreamInfo(info))
    })

  stream
    .command('info')
    .description(
      'print a stream: configuration, and per partition its leader, replicas, in-sync set, offsets',
    )
    .argument('<name>', 'stream name')
    .addOption(timeoutOption())
    .option('--json', 'print the stream info as JSON')
    .action(async (name: string, flags: { timeout?: number; json?: boolean }) => {
      checkStreamName(name, 'NAME')
      const info = await withRelay((client, signal) =>
        client.streams.info(name, { timeout: flags.timeout, signal }),
      )
      await writeOut(process.stdout, flags.json ? `${JSON.stringify(info)}\n` : formatStreamInfo(info))
    })

  addAuthFlags(stream.command('delete'))
    .description('delete a stream and its data on every replica (prints nothing)')
    .argument('<name>', 'stream name')
    .addOption(timeoutOption())
    .action(async (name: string, flags: { timeout?: number } & AuthFlags) => {
      checkStreamName(name, 'NAME')
      const auth = await authOptions(flags)
      await withRelay((client, signal) =>
        client.streams.delete(name, { timeout: flags.timeout, signal, ...auth }),
      )
    })

  stream
    .command('list')
    .alias('ls')
    .description(
      'list the streams the node knows: configuration, placement and partition leaders (no call per stream)',
    )
    .option(
      '--json',
      'print a JSON array of stream summaries (retention, access, per partition replicas and leader)',
    )
    .action(async (flags: { json?: boolean }) => {
      const list = await withRelay((client) => client.streams.list())
      await writeOut(process.stdout, flags.json ? `${JSON.stringify(list)}\n` : formatStreamList(list))
    })

  registerStreamAdmin(stream, program)
  registerStreamReads(stream)

  addCapabilityFlag(program.command('consume'), 'consume')
    .description("print a stream's committed messages, one per line, tailing live")
    .argument('<stream>', 'stream name')
    .option(
      '--from <where>',
      'earliest (default), latest, new, an offset, or an ISO 8601 time (per partition)',
      parseFrom,
    )
    .option('--partition <p>', 'read only this partition', parseNonNegativeInt('--partition'))
    .option('--count <n>', 'exit after N messages', parsePositiveInt('--count'))
    .option(
      '--json',
      'one JSON object per line: stream, topic, partition, offset, timestamp, key, headers, data',
    )
    .option(
      '--durable <name>',
      'durable consumer name (resumes after its last acknowledged message)',
      parseText('--durable', 256),
    )
    .option(
      '--ack-wait <ms>',
      'durable consumers: redeliver messages not acknowledged within this',
      parseMs('--ack-wait'),
    )
    .option('--filter <pattern>', 'only messages whose topic matches (within the stream subject)', (v) =>
      checkPattern(v, '--filter'),
    )
    .option(
      '--max-deliver <n>',
      'durable consumers: deliver a message at most N times, then drop it (an advisory is published)',
      parsePositiveInt('--max-deliver'),
    )
    .option('--backoff <ms,...>', 'durable consumers: the wait before each redelivery', parseBackoff)
    .option(
      '--max-ack-pending <n>',
      'durable consumers: at most N delivered and not yet acknowledged',
      parsePositiveInt('--max-ack-pending'),
    )
    .option('--ack-policy <policy>', 'durable consumers: explicit (default) or none', parseAckPolicy)
    .option(
      '--fetch <n>',
      'durable consumers: pull one batch of at most N messages (acknowledging each), then exit',
      parsePositiveInt('--fetch'),
    )
    .option(
      '--expires <ms>',
      'with --fetch: wait at most this long for the batch (default 5000)',
      parseMs('--expires'),
    )
    .action(async (name: string, flags: ConsumeFlags) => {
      checkStreamName(name, 'STREAM')
      for (const [flag, v] of [
        ['--ack-wait', flags.ackWait],
        ['--max-deliver', flags.maxDeliver],
        ['--backoff', flags.backoff],
        ['--max-ack-pending', flags.maxAckPending],
        ['--ack-policy', flags.ackPolicy],
        ['--fetch', flags.fetch],
      ] as const)
        if (v !== undefined && flags.durable === undefined)
          throw new UsageError(`${flag} needs --durable NAME (only durable consumers acknowledge)`)
      if (flags.expires !== undefined && flags.fetch === undefined)
        throw new UsageError('--expires needs --fetch N')
      if (flags.fetch !== undefined && flags.count !== undefined)
        throw new UsageError(
          '--fetch and --count cannot be combined (--fetch N takes one batch of at most N)',
        )
      const opts: ConsumeOptions = {}
      if (flags.filter !== undefined) opts.filter = flags.filter
      if (flags.maxDeliver !== undefined) opts.maxDeliver = flags.maxDeliver
      if (flags.backoff !== undefined) opts.backoff = flags.backoff
      if (flags.maxAckPending !== undefined) opts.maxAckPending = flags.maxAckPending
      if (flags.ackPolicy !== undefined) opts.ackPolicy = flags.ackPolicy
      if (flags.from !== undefined) opts.from = flags.from
      if (flags.partition !== undefined) opts.partition = flags.partition
      if (flags.durable !== undefined) opts.durable = flags.durable
      if (flags.ackWait !== undefined) opts.ackWait = flags.ackWait
      if (flags.capability !== undefined) opts.capability = await readCapability(flags.capability)
      if (flags.fetch !== undefined) {
        const max = flags.fetch
        const expires = flags.expires ?? 5000
        // Pull: one batch, printed and acknowledged in order; an empty batch prints nothing.
        await withRelay(async (client) => {
          const consumer = client.consume(name, opts)
          try {
            for (const m of await consumer.fetch({ max, expires })) {
              await writeChunk(
                process.stdout,
                flags.json ? `${JSON.stringify(streamMessageJson(m))}\n` : lineOf(m.data),
              )
              await m.ack()
            }
          } finally {
            consumer.close()
          }
        })
        return
      }
      const bar = createProgress({
        label: `consume ${name}`,
        unit: 'messages',
        rate: true,
        enabled: process.stderr.isTTY === true && process.stdout.isTTY !== true,
      })
      await withRelay(async (client) => {
        // The catch-up total is asked only when a bar is drawn (one info call).
        let catchUp: number | undefined
        if (bar.shown && flags.count !== undefined) bar.start(flags.count)
        else if (bar.shown && flags.durable === undefined) {
          // Without the info (say, not allowed to read it) there is just no bar.
          const info = await client.streams.info(name).catch(() => undefined)
          catchUp = info && catchUpTotal(info, flags.from, flags.partition)
          if (catchUp !== undefined) bar.start(catchUp, 'catching up')
        }
        const consumer = client.consume(name, opts)
        const waiting = watchWaiting(
          {
            stream: name,
            partition: flags.partition,
            info: (timeout) => client.streams.info(name, { timeout }),
            write: (line) => bar.around(() => process.stderr.write(`${line}\n`)),
          },
          process.stderr.isTTY === true,
        )
        let n = 0
        try {
          for await (const m of consumer) {
            waiting.seen()
            await writeChunk(
              process.stdout,
              flags.json ? `${JSON.stringify(streamMessageJson(m))}\n` : lineOf(m.data),
            )
            // The reader went away (`plexus consume s | head -1`): stop reading.
            if (gone(process.stdout)) break
            if (flags.durable !== undefined) await m.ack()
            bar.increment()
            if (catchUp !== undefined && bar.value >= catchUp) {
              bar.detail('caught up')
              bar.stop()
              catchUp = undefined
            }
            if (flags.count !== undefined && ++n >= flags.count) break
          }
        } finally {
          bar.stop()
          waiting.stop()
          consumer.close()
        }
      })
    })
}

/**
 * Messages a read from `from` has to go through to reach the partition ends `info` shows
 * (of one partition, or all): from earliest (the default) or an offset; undefined for
 * latest, new, a time, or nothing to read.
 */
export function catchUpTotal(
  info: StreamInfo,
  from: ConsumeFrom | undefined,
  partition?: number,
): number | undefined {
  if (from !== undefined && from !== 'earliest' && !(typeof from === 'object' && 'offset' in from))
    return undefined
  let total = 0
  for (const p of info.partitions) {
    if (partition !== undefined && p.partition !== partition) continue
    const start =
      typeof from === 'object' && 'offset' in from ? Math.max(from.offset, p.firstOffset) : p.firstOffset
    total += Math.max(0, p.nextOffset - start)
  }
  return total > 0 ? total : undefined
}

const utf8 = new TextDecoder()

/** The `--json` shape of a stream message (one line of `consume --json`). */
export function streamMessageJson(m: StreamMessage): {
  stream: string
  topic: string
  partition: number
  offset: number
  timestamp: number
  key: string | null
  headers: Record<string, string>
  data: string
} {
  return {
    stream: m.stream,
    topic: m.topic,
    partition: m.partition,
    offset: m.offset,
    timestamp: m.timestamp,
    key: m.key ? utf8.decode(m.key) : null,
    headers: { ...m.headers },
    data: utf8.decode(m.data),
  }
}
