/**
 * `plexus kv …` (key-value buckets, docs/kv.md) and `plexus stream get|last`, attached to the
 * local node's relay (KV_* and STREAM_READ frames).
 *
 * - `kv put BUCKET KEY [VALUE|-] [--cluster C] [--replicas R] [--create | --revision N]`
 *   writes (stdin with `-` or no VALUE) and prints the new revision; `--create` only if the
 *   key has no value (`KeyExistsError`), `--revision N` only if N is its current revision
 *   (`WrongRevisionError`). `--cluster` creates the bucket when it does not exist.
 * - `kv get BUCKET KEY [--json]` prints the value and a newline (`--json`: one object
 *   `{"key","revision","operation","timestamp","value"}`); a key without a value exits 1.
 * - `kv del BUCKET KEY` deletes (a tombstone) and prints its revision.
 * - `kv keys BUCKET`, `kv history BUCKET KEY [--json]`: one key / one revision per line.
 * - `kv watch BUCKET [PATTERN] [--count N] [--json]`: the current value of each matching
 *   key, then every change, one line each: `KEY REVISION put|delete VALUE` (or JSON).
 * - `stream get NAME --offset N [--partition P] [--json]`, `stream last NAME --key K
 *   [--json]`: one stored message (its data and a newline, or the JSON of `consume`).
 */
import type { Command } from 'commander'
import type { RelayClient } from '../../../relay/client/client.js'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../../constants.js'
import { MessageNotFoundError } from '../../errors.js'
import type { KvBucket, KvEntry } from '../../types.js'
import {
  checkCluster,
  checkStreamName,
  parseNonNegativeInt,
  parsePositiveInt,
  timeoutOption,
} from '../args.js'
import { withRelay } from '../client.js'
import { gone, lineOf, readStdin, writeChunk } from '../io.js'
import { UsageError, writeOut } from '../output.js'

interface KvFlags {
  cluster?: string
  replicas?: number
  timeout?: number
  json?: boolean
}

const text = new TextDecoder()

/** An entry as one JSON object (value as UTF-8). */
const entryJson = (e: KvEntry) => ({
  key: e.key,
  revision: e.revision,
  operation: e.operation,
  timestamp: e.timestamp,
  value: e.string(),
})

function open(client: RelayClient, bucket: string, f: KvFlags): Promise<KvBucket> {
  return client.kv(bucket, {
    ...(f.cluster !== undefined ? { cluster: f.cluster } : {}),
    ...(f.replicas !== undefined ? { replicas: f.replicas } : {}),
    ...(f.timeout !== undefined ? { timeout: f.timeout } : {}),
  })
}

/** Registers `kv` on `program` and `get`/`last` on its `stream` command. */
export function registerKv(program: Command): void {
  const kv = program
    .command('kv')
    .description('key-value buckets: get, put, del, keys, history, watch')
    .addHelpCommand(false)
  const common = (c: Command) =>
    c
      .option('--cluster <cluster>', 'cluster storing the bucket (creates it when absent)', (v) =>
        checkCluster(v, '--cluster'),
      )
      .option(
        '--replicas <n>',
        'replicas of a bucket created now (default 3)',
        parsePositiveInt('--replicas'),
      )
      .addOption(timeoutOption())

  common(kv.command('put'))
    .description('write a value (VALUE, or stdin with - or none) and print the new revision')
    .argument('<bucket>')
    .argument('<key>')
    .argument('[value]')
    .option('--create', 'only if the key has no value (else KeyExistsError)')
    .option(
      '--revision <n>',
      'only if this is the current revision (else WrongRevisionError)',
      parseNonNegativeInt('--revision'),
    )
    .action(
      async (
        bucket: string,
        key: string,
        value: string | undefined,
        f: KvFlags & { create?: boolean; revision?: number },
      ) => {
        if (f.create && f.revision !== undefined)
          throw new UsageError('--create and --revision exclude each other')
        const data =
          value === undefined || value === '-' ? await readStdin(DEFAULT_MAX_MESSAGE_SIZE, 'value') : value
        const rev = await withRelay(async (client) => {
          const b = await open(client, bucket, f)
          if (f.create) return b.create(key, data)
          if (f.revision !== undefined) return b.update(key, data, f.revision)
          return b.put(key, data)
        })
        await writeOut(process.stdout, `${rev}\n`)
      },
    )

  common(kv.command('get'))
    .description('print the current value of a key (exit 1 when it has none)')
    .argument('<bucket>')
    .argument('<key>')
    .option('--json', 'print one JSON object')
    .action(async (bucket: string, key: string, f: KvFlags) => {
      const e = await withRelay(async (client) => (await open(client, bucket, f)).get(key))
      if (e === null) throw new MessageNotFoundError(`key ${key} of bucket ${bucket} has no value`)
      await writeOut(process.stdout, f.json ? `${JSON.stringify(entryJson(e))}\n` : lineOf(e.value))
    })

  common(kv.command('del'))
    .description('delete a key (a tombstone) and print its revision')
    .argument('<bucket>')
    .argument('<key>')
    .action(async (bucket: string, key: string, f: KvFlags) => {
      const rev = await withRelay(async (client) => (await open(client, bucket, f)).delete(key))
      await writeOut(process.stdout, `${rev}\n`)
    })

  common(kv.command('keys'))
    .description('print the keys with a value, one per line')
    .argument('<bucket>')
    .action(async (bucket: string, f: KvFlags) => {
      const keys = await withRelay(async (client) => (await open(client, bucket, f)).keys())
      await writeOut(process.stdout, keys.map((k) => `${k}\n`).join(''))
    })

  common(kv.command('history'))
    .description('print the revisions of a key still stored, oldest first')
    .argument('<bucket>')
    .argument('<key>')
    .option('--json', 'one JSON object per line')
    .action(async (bucket: string, key: string, f: KvFlags) => {
      const h = await withRelay(async (client) => (await open(client, bucket, f)).history(key))
      await writeOut(process.stdout, h.map((e) => changeLine(e, f.json)).join(''))
    })

  common(kv.command('watch'))
    .description('print the current values, then every change (Ctrl-C to stop)')
    .argument('<bucket>')
    .argument('[pattern]', 'keys to watch, with * and > (default: all)')
    .option('--count <n>', 'exit after N lines', parsePositiveInt('--count'))
    .option('--json', 'one JSON object per line')
    .action(async (bucket: string, pattern: string | undefined, f: KvFlags & { count?: number }) => {
      await withRelay(async (client) => {
        const w = (await open(client, bucket, f)).watch(pattern ?? '>')
        let n = 0
        try {
          for await (const e of w) {
            await writeChunk(process.stdout, changeLine(e, f.json))
            if (gone(process.stdout)) break
            if (f.count !== undefined && ++n >= f.count) break
          }
        } finally {
          w.stop()
        }
      })
    })
}

/** One line of `watch` / `history`. */
function changeLine(e: KvEntry, json: boolean | undefined): string {
  if (json) return `${JSON.stringify(entryJson(e))}\n`
  return `${e.key} ${e.revision} ${e.operation}${e.operation === 'put' ? ` ${text.decode(e.value)}` : ''}\n`
}

/** Registers `stream get` and `stream last` on the `stream` command. */
export function registerStreamReads(stream: Command): void {
  const print = async (
    m: {
      stream: string
      topic: string
      partition: number
      offset: number
      timestamp: number
      key: Uint8Array | undefined
      headers: Record<string, string> | undefined
      data: Uint8Array
    },
    json?: boolean,
  ) => {
    const o = {
      stream: m.stream,
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
      timestamp: m.timestamp,
      key: m.key === undefined ? null : text.decode(m.key),
      headers: m.headers ?? {},
      data: text.decode(m.data),
    }
    await writeOut(process.stdout, json ? `${JSON.stringify(o)}\n` : lineOf(m.data))
  }
  stream
    .command('get')
    .description('print the message at an offset (exit 1 when none)')
    .argument('<name>', 'stream name')
    .requiredOption('--offset <n>', 'offset of the message', parseNonNegativeInt('--offset'))
    .option('--partition <p>', 'partition (default 0)', parseNonNegativeInt('--partition'))
    .option('--json', 'print one JSON object')
    .addOption(timeoutOption())
    .action(
      async (name: string, f: { offset: number; partition?: number; json?: boolean; timeout?: number }) => {
        checkStreamName(name, 'NAME')
        const m = await withRelay((client, signal) =>
          client.streams.get(
            name,
            { offset: f.offset, partition: f.partition ?? 0 },
            { timeout: f.timeout, signal },
          ),
        )
        await print(m, f.json)
      },
    )
  stream
    .command('last')
    .description('print the latest message with a key (exit 1 when none)')
    .argument('<name>', 'stream name')
    .requiredOption('--key <key>', 'message key')
    .option('--json', 'print one JSON object')
    .addOption(timeoutOption())
    .action(async (name: string, f: { key: string; json?: boolean; timeout?: number }) => {
      checkStreamName(name, 'NAME')
      const m = await withRelay((client, signal) =>
        client.streams.last(name, { key: f.key }, { timeout: f.timeout, signal }),
      )
      await print(m, f.json)
    })
}
