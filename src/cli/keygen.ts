/**
 * `plexus keygen`: prints a new random key (64 hex characters) for `--network-key-file` or
 * `--cluster-key-file`, e.g. `plexus keygen > databases.key`.
 */
import type { Command } from 'commander'
import { generateKey } from '../util/keys.js'
import { writeOut } from './output.js'

/** Registers the `keygen` command on `program`. */
export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('print a new random key (64 hex characters) for key files')
    .action(async () => {
      await writeOut(process.stdout, `${generateKey()}\n`)
    })
}
