/**
 * `plexus request CLUSTER [DATA|-] [--timeout MS]`: sends one request through the local
 * node's relay and prints the reply bytes as they are. DATA absent or `-` reads stdin.
 * On a terminal a reply that does not end with a newline gets one, so the prompt starts on
 * its own line; a pipe or file gets the bytes exactly.
 */
import type { Command } from 'commander'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../../constants.js'
import { checkCluster, timeoutOption } from '../args.js'
import { withRelay } from '../client.js'
import { readStdin } from '../io.js'
import { writeOut } from '../output.js'

/** Registers the `request` command on `program`. */
export function registerRequest(program: Command): void {
  program
    .command('request')
    .description('send a request to one member of CLUSTER and print its reply (DATA absent or - reads stdin)')
    .argument('<cluster>', 'cluster name')
    .argument('[data]', 'request payload as text, or - for stdin')
    .addOption(timeoutOption())
    .action(async (cluster: string, data: string | undefined, flags: { timeout?: number }) => {
      checkCluster(cluster, 'CLUSTER')
      const payload =
        data === undefined || data === '-' ? await readStdin(DEFAULT_MAX_MESSAGE_SIZE, 'request data') : data
      const reply = await withRelay((client, signal) =>
        client.request(cluster, payload, { timeout: flags.timeout, signal }),
      )
      await writeOut(process.stdout, reply)
      if (process.stdout.isTTY && reply.length > 0 && reply[reply.length - 1] !== 0x0a) {
        await writeOut(process.stdout, '\n')
      }
    })
}
