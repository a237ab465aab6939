/**
 * Credentials of the administering CLI commands (`stream create`, `stream delete`):
 * `--cluster-key-file F` (the cluster key, as `plexus node --join` takes it) or
 * `--capability CAP|FILE` (a capability from `plexus keygen --capability`, or a file holding
 * one). They travel to the local node in the relay frame (docs/relay-protocol.md) and the
 * node proves the call with them; without either, the node proves it with its own key when
 * it joined the cluster, else the cluster's members refuse it (`UnauthorizedError`, exit 1).
 * `publish` and `consume` take `--capability` too, for streams whose access asks for one.
 */
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { parseCapability } from '../cluster/capability.js'
import type { StreamCallOptions } from '../types.js'
import { readKeyFile } from './args.js'
import { UsageError } from './output.js'

/** The credential flags as commander parsed them. */
export interface AuthFlags {
  clusterKeyFile?: string
  capability?: string
}

/** Adds `--cluster-key-file` and `--capability` to `cmd`. */
export function addAuthFlags(cmd: Command): Command {
  return cmd
    .option('--cluster-key-file <file>', "prove the call with the cluster's key (from plexus keygen)")
    .option('--capability <cap|file>', 'prove the call with a capability (from plexus keygen --capability)')
}

/** The call options the flags describe; throws `UsageError` naming a bad flag. */
export async function authOptions(
  flags: AuthFlags,
): Promise<Pick<StreamCallOptions, 'clusterKey' | 'capability'>> {
  if (flags.capability !== undefined && flags.clusterKeyFile !== undefined)
    throw new UsageError('give --cluster-key-file or --capability, not both')
  if (flags.clusterKeyFile !== undefined)
    return { clusterKey: await readKeyFile(flags.clusterKeyFile, '--cluster-key-file') }
  if (flags.capability === undefined) return {}
  return { capability: await readCapability(flags.capability) }
}

/** Adds `--capability` to `publish` or `consume` (streams whose access asks for one). */
export function addCapabilityFlag(cmd: Command, op: 'publish' | 'consume'): Command {
  return cmd.option(
    '--capability <cap|file>',
    `${op} with a capability (from plexus keygen --capability ${op}), for a stream whose ${op} access is capability`,
  )
}

/**
 * The capability text `--capability` names: the text itself (`pxc1.…`) or a file holding
 * it; throws `UsageError` when it is neither or does not parse.
 */
export async function readCapability(flag: string): Promise<string> {
  let text = flag.trim()
  if (!text.startsWith('pxc1.')) {
    try {
      text = (await readFile(text, 'utf8')).trim()
    } catch (err) {
      throw new UsageError(
        `--capability ${flag}: neither a capability (pxc1.…) nor a readable file (${(err as Error).message})`,
      )
    }
  }
  try {
    parseCapability(text, '--capability')
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  return text
}
