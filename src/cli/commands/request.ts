/**
 * `plexus request CLUSTER [DATA|-] [--timeout MS] [--header name=value]... [--many N] [--json]`:
 * sends a request through the local node's relay. DATA absent or `-` reads stdin.
 *
 * - One request: prints the reply bytes as they are. On a terminal a reply that does not end
 *   with a newline gets one, so the prompt starts on its own line; a pipe or file gets the
 *   bytes exactly. `--json` prints `{"headers","data"}` instead (data as UTF-8).
 * - `--many N`: asks every reachable member (each once) and prints one reply per line as they
 *   come (data as UTF-8; `--json`: `{"from","headers","data"}`), until N replies, the timeout,
 *   or every member answered. A member that failed is one line on stderr
 *   (`plexus: member <id>: <ErrorName>: message`; `--json`: `{"from","error":{name,message}}`
 *   on stdout). Exits 0 when at least one member replied; otherwise with the code of the last
 *   failure, or 4 (`TimeoutError`) when nobody answered.
 */
import type { Command } from 'commander'
import { DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_REQUEST_TIMEOUT } from '../../constants.js'
import { errorFromWire, TimeoutError } from '../../errors.js'
import type { ManyReply } from '../../types.js'
import { checkCluster, collectHeader, parsePositiveInt, timeoutOption } from '../args.js'
import { withRelay } from '../client.js'
import { readStdin } from '../io.js'
import { oneLine, writeOut } from '../output.js'

interface RequestFlags {
  timeout?: number
  header?: Record<string, string>
  many?: number
  json?: boolean
}

const utf8 = new TextDecoder()

/** Registers the `request` command on `program`. */
export function registerRequest(program: Command): void {
  program
    .command('request')
    .description(
      'send a request to one member of CLUSTER (or to several with --many) and print its reply (DATA absent or - reads stdin)',
    )
    .argument('<cluster>', 'cluster name')
    .argument('[data]', 'request payload as text, or - for stdin')
    .addOption(timeoutOption())
    .option('--header <name=value>', 'request header, repeatable', collectHeader)
    .option('--many <n>', 'ask every member, print up to N replies, one per line', parsePositiveInt('--many'))
    .option('--json', 'print {"headers","data"} (with --many {"from","headers","data"} per line)')
    .action(async (cluster: string, data: string | undefined, flags: RequestFlags) => {
      checkCluster(cluster, 'CLUSTER')
      const payload =
        data === undefined || data === '-' ? await readStdin(DEFAULT_MAX_MESSAGE_SIZE, 'request data') : data
      const headers = flags.header && { ...flags.header }
      if (flags.many !== undefined) {
        await requestMany(cluster, payload, flags, headers)
        return
      }
      const reply = await withRelay((client, signal) =>
        client.request(cluster, payload, { timeout: flags.timeout, signal, headers }),
      )
      if (flags.json) {
        await writeOut(
          process.stdout,
          `${JSON.stringify({ headers: reply.headers ?? {}, data: utf8.decode(reply) })}\n`,
        )
        return
      }
      await writeOut(process.stdout, reply)
      if (process.stdout.isTTY && reply.length > 0 && reply[reply.length - 1] !== 0x0a) {
        await writeOut(process.stdout, '\n')
      }
    })
}

/** `--many N`: one line per reply as they come; see the header comment for the exit status. */
async function requestMany(
  cluster: string,
  payload: string | Uint8Array,
  flags: RequestFlags,
  headers: Record<string, string> | undefined,
): Promise<void> {
  let replies = 0
  let lastFailure: Error | undefined
  await withRelay(async (client, signal) => {
    const opts = { maxReplies: flags.many, timeout: flags.timeout, headers, signal }
    for await (const r of client.requestMany(cluster, payload, opts)) {
      if (r.error) lastFailure = r.error
      else replies++
      await printManyReply(r, flags.json === true)
    }
  })
  if (replies > 0) return
  const timeout = flags.timeout ?? DEFAULT_REQUEST_TIMEOUT
  if (!lastFailure) throw new TimeoutError(`no member of ${cluster} replied within ${timeout} ms`)
  // Its line is printed already: exit with its code, saying only that nobody replied.
  throw errorFromWire(lastFailure.name, `no member of ${cluster} replied (the failures are above)`)
}

async function printManyReply(r: ManyReply, json: boolean): Promise<void> {
  if (json) {
    const line = r.error
      ? { from: r.from, error: { name: r.error.name, message: r.error.message } }
      : { from: r.from, headers: r.headers ?? {}, data: r.string() }
    await writeOut(process.stdout, `${JSON.stringify(line)}\n`)
  } else if (r.error) {
    await writeOut(process.stderr, `plexus: member ${r.from}: ${r.error.name}: ${oneLine(r.error.message)}\n`)
  } else {
    const text = r.string()
    await writeOut(process.stdout, text.endsWith('\n') ? text : `${text}\n`)
  }
}
