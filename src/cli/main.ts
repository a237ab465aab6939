#!/usr/bin/env node
/**
 * The `plexus` command line (SPEC "CLI"): `keygen`, `node`, `request`, `broadcast`,
 * `publish`, `subscribe`, `tunnel`, `stream create|info|delete|list|get|last`, `consume`,
 * `kv get|put|del|keys|history|watch`, `status`,
 * `bench`, and `--version`.
 * Client commands attach to the local node's relay (`--relay HOST:PORT`, else
 * `PLEXUS_RELAY=host:port`, else 127.0.0.1:55555). Every failure prints one line on stderr, `plexus: <ErrorName>: message`,
 * and exits non-zero; the codes are listed at `EXIT` in output.ts
 * (2 bad usage, 3 no node to attach to, 4 timeout, 5 no members, 1 anything else).
 */
// First: on a Node.js too old for libp2p, print one line and exit 1 before anything loads.
import './runtime-guard.js'
import { Command, CommanderError } from 'commander'
import { addRelayFlag } from './client.js'
import { registerBench } from './commands/bench.js'
import { registerKeygen } from './commands/keygen.js'
import { registerKv } from './commands/kv.js'
import { registerNode } from './commands/node.js'
import { registerPubSub } from './commands/pubsub.js'
import { registerRequest } from './commands/request.js'
import { registerStatus } from './commands/status.js'
import { registerStreams } from './commands/streams.js'
import { registerTunnel } from './commands/tunnel.js'
import { EXIT, fail, oneLine, UsageError } from './output.js'
import { packageVersion } from './version.js'

/** Builds the `plexus` program with every command registered. */
export function buildProgram(): Command {
  const program = new Command()
  program
    .name('plexus')
    .description('Plexus: a decentralized, service-addressed messaging overlay')
    .version(packageVersion(), '-V, --version', 'print the version of plexus')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // Commander's own errors are turned into our one-line form in main(); help goes to stdout.
      outputError: () => {},
    })
  registerKeygen(program)
  registerNode(program)
  registerRequest(program)
  registerPubSub(program)
  registerTunnel(program)
  registerStreams(program)
  registerKv(program)
  registerStatus(program)
  registerBench(program)
  addRelayFlag(program)
  const quiet = (cmds: readonly Command[]) => {
    for (const cmd of cmds) {
      cmd.exitOverride().configureOutput({ outputError: () => {} })
      quiet(cmd.commands)
    }
  }
  quiet(program.commands)
  return program
}

/** Runs the CLI with `argv` (as `process.argv`); exits the process on failure. */
export async function main(argv: string[] = process.argv): Promise<void> {
  // A reader that goes away (`plexus request db x | head -c1`) must not cause a stack trace.
  process.stdout.on('error', () => {})
  try {
    await buildProgram().parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; help shown for a missing command exits non-zero.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') process.exit(EXIT.ok)
      if (err.code === 'commander.help' || err.code === 'commander.executeSubCommandAsync')
        process.exit(EXIT.usage)
      await fail(new UsageError(oneLine(err.message.replace(/^error:\s*/i, ''))), EXIT.usage)
    }
    await fail(err)
  }
}

await main()
