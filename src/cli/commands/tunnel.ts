/**
 * `plexus tunnel CLUSTER [--timeout MS]`: opens a tunnel to one member of CLUSTER through
 * the local node's relay and connects it to stdin and stdout, byte-exact
 * (`plexus tunnel files < big.bin > out.bin`). Stdin is read only as fast as the tunnel
 * grants credit; stdout is written only as fast as it drains. On stdin EOF our side is
 * half-closed and whatever still arrives is written until the member closes its side; then
 * the command exits 0. A tunnel that fails (member or node gone) exits 1 with
 * `TunnelClosedError`; a member that does not accept in time exits 4 (`TimeoutError`).
 * On a terminal, output that does not end with a newline gets one at the end.
 */
import type { Command } from 'commander'
import { checkCluster, parseMs } from '../args.js'
import { withRelay } from '../client.js'
import { pumpFromTunnel, pumpIntoTunnel } from '../io.js'

/** Registers the `tunnel` command on `program`. */
export function registerTunnel(program: Command): void {
  program
    .command('tunnel')
    .description('connect stdin and stdout to a tunnel to one member of CLUSTER (byte-exact)')
    .argument('<cluster>', 'cluster name')
    .option('--timeout <ms>', 'time for a member to accept the tunnel (default 10000)', parseMs('--timeout'))
    .action(async (cluster: string, flags: { timeout?: number }) => {
      checkCluster(cluster, 'CLUSTER')
      await withRelay(async (client, signal) => {
        const tunnel = await client.tunnel(cluster, { timeout: flags.timeout, signal })
        const out = pumpFromTunnel(tunnel, process.stdout)
        const into = pumpIntoTunnel(process.stdin, tunnel, client.maxMessageSize)
        // Either failing ends the command at once (the other may be waiting on stdin forever).
        const [, last] = await Promise.all([into, out])
        if (process.stdout.isTTY && last !== undefined && last !== 0x0a) process.stdout.write('\n')
        await flushStdout()
      })
    })
}

/** Resolves once everything written to stdout so far has been handed to the OS. */
function flushStdout(): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.destroyed) return resolve()
    process.stdout.write('', () => resolve())
  })
}
