/**
 * `plexus request CLUSTER [DATA|-] [--timeout MS]`: sends one request through the local
 * node's relay and prints the reply bytes as they are. DATA absent or `-` reads stdin.
 */
import type { Command } from 'commander'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../constants.js'
import { checkCluster, parseMs } from './args.js'
import { withRelay } from './client.js'
import { UsageError, writeOut } from './output.js'

/** Registers the `request` command on `program`. */
export function registerRequest(program: Command): void {
  program
    .command('request')
    .description('send a request to one member of CLUSTER and print its reply (DATA absent or - reads stdin)')
    .argument('<cluster>', 'cluster name')
    .argument('[data]', 'request payload as text, or - for stdin')
    .option('--timeout <ms>', 'deadline in milliseconds (default 10000)', parseMs('--timeout'))
    .action(async (cluster: string, data: string | undefined, flags: { timeout?: number }) => {
      checkCluster(cluster, 'CLUSTER')
      const payload = data === undefined || data === '-' ? await readStdin(DEFAULT_MAX_MESSAGE_SIZE) : data
      const reply = await withRelay((client, signal) =>
        client.request(cluster, payload, { timeout: flags.timeout, signal }),
      )
      await writeOut(process.stdout, reply)
    })
}

/** Reads all of stdin, refusing more than `max` bytes. */
async function readStdin(max: number): Promise<Uint8Array> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer
    size += b.length
    if (size > max) throw new UsageError(`request data on stdin is over ${max} bytes (maxMessageSize)`)
    chunks.push(b)
  }
  return new Uint8Array(Buffer.concat(chunks))
}
