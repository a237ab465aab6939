/**
 * `plexus broadcast`, `plexus publish` and `plexus subscribe`, attached to the local node's
 * relay.
 *
 * - `broadcast CLUSTER DATA|-` hands DATA to every reachable member of CLUSTER and prints
 *   nothing (exit 0, also when no member was reachable).
 * - `publish TOPIC DATA|- [--ack leader|all] [--msg-id ID] [--timeout MS] [--key K]
 *   [--header name=value]... [--json]` publishes once; with `--ack` it prints where the
 *   capturing durable stream stored the message (`formatAck`): on a terminal
 *   `stream S partition P offset O` (plus `duplicate` when the msg-id was already stored),
 *   to a pipe or file the offset alone, for scripts (a duplicate is then noted on stderr);
 *   with `--json` the whole ack `{"stream","partition","offset"[,"duplicate"]}`
 *   (`StreamNotFoundError`, exit 1, when no stream captures the topic).
 * - `subscribe PATTERN [--queue GROUP] [--count N] [--json]` prints each message as it arrives: its data as
 *   is followed by a newline, or with `--json` one object per line
 *   `{"topic","key","headers","data","from"}` (key and data decoded as UTF-8, key null and
 *   headers {} when absent). It exits 0 after N messages with `--count`, else runs until
 *   Ctrl-C (exit 130, connection closed so the node drops the subscription). With
 *   `--queue GROUP` it joins that queue group: each message goes to one subscriber of the
 *   group (`SubscribeOptions.queue`), so several `subscribe --queue` share the work.
 */

import type { Command } from 'commander'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../../constants.js'
import { checkPattern, checkTopic } from '../../pubsub/subject.js'
import type { Message, PublishAck, PublishOptions } from '../../types.js'
import {
  checkCluster,
  collectHeader,
  parseAck,
  parseMs,
  parsePositiveInt,
  parseQueue,
  parseText,
} from '../args.js'
import { addCapabilityFlag, readCapability } from '../auth.js'
import { withRelay } from '../client.js'
import { lineOf, readStdin, writeChunk } from '../io.js'
import { UsageError, writeOut } from '../output.js'

/** Registers `broadcast`, `publish` and `subscribe` on `program`. */
export function registerPubSub(program: Command): void {
  program
    .command('broadcast')
    .description('hand DATA (- reads stdin) to every reachable member of CLUSTER; prints nothing')
    .argument('<cluster>', 'cluster name')
    .argument('<data>', 'payload as text, or - for stdin')
    .action(async (cluster: string, data: string) => {
      checkCluster(cluster, 'CLUSTER')
      const payload = data === '-' ? await readStdin(DEFAULT_MAX_MESSAGE_SIZE, 'broadcast data') : data
      await withRelay((client) => client.broadcast(cluster, payload))
    })

  addCapabilityFlag(program.command('publish'), 'publish')
    .description(
      'publish DATA (- reads stdin) to TOPIC; with --ack prints where it was stored (partition, offset; the offset alone when piped)',
    )
    .argument('<topic>', 'topic (dot-separated tokens, no wildcards)')
    .argument('<data>', 'payload as text, or - for stdin')
    .option('--ack <level>', 'wait until a durable stream stored it: leader or all', parseAck)
    .option('--msg-id <id>', 'id for de-duplication by a durable stream', parseText('--msg-id'))
    .option('--timeout <ms>', 'deadline for --ack in milliseconds', parseMs('--timeout'))
    .option('--key <key>', 'message key (text)', parseText('--key'))
    .option('--header <name=value>', 'message header, repeatable', collectHeader)
    .option('--json', 'with --ack: print {"stream","partition","offset","duplicate"?} as JSON')
    .action(async (topic: string, data: string, flags: PublishFlags) => {
      checkTopic(topic, 'TOPIC')
      if (flags.json && flags.ack === undefined) {
        throw new UsageError(
          '--json needs --ack leader|all (without an ack nothing is stored, so there is nothing to print)',
        )
      }
      const payload = data === '-' ? await readStdin(DEFAULT_MAX_MESSAGE_SIZE, 'publish data') : data
      const opts: PublishOptions = {}
      if (flags.ack !== undefined) opts.ack = flags.ack
      if (flags.msgId !== undefined) opts.msgId = flags.msgId
      if (flags.timeout !== undefined) opts.timeout = flags.timeout
      if (flags.key !== undefined) opts.key = flags.key
      if (flags.header !== undefined) opts.headers = { ...flags.header }
      if (flags.capability !== undefined) opts.capability = await readCapability(flags.capability)
      const ack = await withRelay((client) => client.publish(topic, payload, opts))
      if (!ack) return
      const tty = process.stdout.isTTY === true
      await writeOut(process.stdout, formatAck(ack, { json: flags.json === true, tty }))
      if (ack.duplicate && !tty && !flags.json) {
        await writeOut(
          process.stderr,
          `plexus: duplicate: msg-id already stored at partition ${ack.partition} offset ${ack.offset}\n`,
        )
      }
    })

  program
    .command('subscribe')
    .description('print messages of topics matching PATTERN (* one token, > the rest), one per line')
    .argument('<pattern>', 'topic pattern, e.g. orders.* or orders.>')
    .option(
      '--queue <group>',
      'join queue group GROUP: each message goes to one of its subscribers',
      parseQueue,
    )
    .option('--count <n>', 'exit after N messages', parsePositiveInt('--count'))
    .option('--json', 'one JSON object per line: topic, key, headers, data, from')
    .action(async (pattern: string, flags: { queue?: string; count?: number; json?: boolean }) => {
      checkPattern(pattern, 'PATTERN')
      await withRelay(async (client) => {
        const sub = client.subscribe(pattern, { queue: flags.queue })
        await sub.ready
        let n = 0
        for await (const m of sub) {
          await writeChunk(
            process.stdout,
            flags.json ? `${JSON.stringify(messageJson(m))}\n` : lineOf(m.data),
          )
          if (flags.count !== undefined && ++n >= flags.count) break
        }
      })
    })
}

/**
 * What `publish --ack` prints for `ack` (ending with a newline): with `json` the ack as
 * JSON; on a terminal `stream S partition P offset O`, plus ` duplicate` when the message
 * was already stored under its msg-id; otherwise the offset alone (what scripts read).
 */
export function formatAck(ack: PublishAck, how: { json: boolean; tty: boolean }): string {
  if (how.json) return `${JSON.stringify(ack)}\n`
  if (!how.tty) return `${ack.offset}\n`
  return `stream ${ack.stream} partition ${ack.partition} offset ${ack.offset}${ack.duplicate ? ' duplicate' : ''}\n`
}

/** Flags of `publish` as commander parsed them. */
interface PublishFlags {
  ack?: 'leader' | 'all'
  msgId?: string
  timeout?: number
  key?: string
  header?: Record<string, string>
  json?: boolean
  capability?: string
}

const utf8 = new TextDecoder()

/** The `--json` shape of a message (one line of `subscribe --json`). */
export function messageJson(m: Message): {
  topic: string
  key: string | null
  headers: Record<string, string>
  data: string
  from: string
} {
  return {
    topic: m.topic,
    key: m.key ? utf8.decode(m.key) : null,
    headers: { ...m.headers },
    data: utf8.decode(m.data),
    from: m.from,
  }
}
