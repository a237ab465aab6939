/**
 * `plexus keygen`: prints a new random key (64 hex characters) for `--network-key-file` or
 * `--cluster-key-file`, e.g. `plexus keygen > databases.key`.
 *
 * `plexus keygen --capability OPS --cluster C --cluster-key-file F --expires DURATION
 * [--stream NAME|PREFIX*|*] [--subject PATTERN] [--network N]` prints a capability instead
 * (`pxc1.<token>.<secret>`, one line): OPS is a comma-separated list of create, update, purge,
 * delete, consumer-delete, publish, consume; it is signed with the cluster's key for network
 * N (default plexus) and valid until now + DURATION (`90s`, `30m`, `12h`, `7d`, or
 * milliseconds). Its holder passes it to `stream create|delete --capability`, the library's
 * `capability` call option or `createNode({ credentials })`. Bad flags exit 2 naming the flag.
 */
import type { Command } from 'commander'
import { CAPABILITY_OPS, type CapabilityOp, issueCapability } from '../../cluster/capability.js'
import { DEFAULT_NETWORK } from '../../constants.js'
import { generateKey } from '../../util/keys.js'
import { describe } from '../../util/validate.js'
import { checkCluster, parseNetwork, readKeyFile } from '../args.js'
import { UsageError, writeOut } from '../output.js'

/** Flags of `keygen` as commander parsed them. */
interface KeygenFlags {
  capability?: CapabilityOp[]
  cluster?: string
  clusterKeyFile?: string
  expires?: number
  stream?: string
  subject?: string
  network?: string
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Parses `--expires`: a positive duration (`90s`, `30m`, `12h`, `7d`, or ms). */
export function parseDuration(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim())
  const n = m ? Number(m[1]) * UNITS[m[2] ?? 'ms']! : Number.NaN
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`--expires must be a duration such as 90s, 30m, 12h or 7d, got ${describe(value)}`)
  return n
}

/** Parses `--capability`: a comma-separated list of operations. */
export function parseOps(value: string): CapabilityOp[] {
  const ops = value.split(',').map((s) => s.trim())
  for (const op of ops)
    if (!(CAPABILITY_OPS as readonly string[]).includes(op))
      throw new UsageError(
        `--capability takes operations among ${CAPABILITY_OPS.join(', ')}; got ${describe(op)}`,
      )
  return ops as CapabilityOp[]
}

/** Registers the `keygen` command on `program`. */
export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('print a new random key (64 hex characters) for key files, or a capability')
    .option(
      '--capability <ops>',
      `print a capability granting these operations (${CAPABILITY_OPS.join(',')})`,
      parseOps,
    )
    .option('--cluster <cluster>', 'capability: the cluster it is for', (v) => checkCluster(v, '--cluster'))
    .option('--cluster-key-file <file>', "capability: the cluster's key, which signs it")
    .option('--expires <duration>', 'capability: valid for this long (90s, 30m, 12h, 7d)', parseDuration)
    .option('--stream <scope>', "capability: a stream name, a prefix ending in '*', or '*' (default)")
    .option('--subject <pattern>', 'capability: topics publish/consume rights are limited to')
    .option('--network <name>', 'capability: the network it is valid in (default plexus)', parseNetwork)
    .action(async (flags: KeygenFlags) => {
      if (flags.capability === undefined) {
        const extra = (
          ['cluster', 'clusterKeyFile', 'expires', 'stream', 'subject', 'network'] as const
        ).find((k) => flags[k] !== undefined)
        if (extra !== undefined) throw new UsageError(`--${kebab(extra)} is for --capability only`)
        await writeOut(process.stdout, `${generateKey()}\n`)
        return
      }
      if (flags.cluster === undefined) throw new UsageError('--capability needs --cluster C')
      if (flags.clusterKeyFile === undefined) throw new UsageError('--capability needs --cluster-key-file F')
      if (flags.expires === undefined)
        throw new UsageError('--capability needs --expires DURATION (e.g. 30d)')
      const key = await readKeyFile(flags.clusterKeyFile, '--cluster-key-file')
      let cap: string
      try {
        cap = issueCapability(
          key,
          {
            cluster: flags.cluster,
            ops: flags.capability,
            stream: flags.stream ?? '*',
            ...(flags.subject === undefined ? {} : { subject: flags.subject }),
            expires: Date.now() + flags.expires,
          },
          flags.network ?? DEFAULT_NETWORK,
        )
      } catch (err) {
        throw new UsageError(`--capability: ${(err as Error).message}`)
      }
      await writeOut(process.stdout, `${cap}\n`)
    })
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}
