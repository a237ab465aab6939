/**
 * `npm run faults -- --schedules N --seed S [--size 1k|16k|mixed] [--no-netns]`: runs N seeded
 * fault schedules against durable streams (docs/faults.md). Schedule k has seed S + k; one
 * schedule is replayed with `--seed <its seed> --schedules 1` and the same other options.
 * Prints one line per schedule and a summary; exits 1 when any acknowledged write was lost
 * or unreadable, or any schedule failed otherwise (stalled, never settled, timed out).
 */
import { Netns, netnsUnavailable, removeStale } from './netns.js'
import { buildShim } from './powerloss.js'
import { runSchedule, type ScheduleResult } from './runner.js'
import {
  describeSchedule,
  FAULT_KINDS,
  type FaultKind,
  generateSchedule,
  type SizeChoice,
} from './schedule.js'

/** Parsed command line. */
export interface RunArgs {
  schedules: number
  seed: number
  size: SizeChoice
  netns: boolean
  timeoutMs: number
  defaultsShare: number
  maxMiB: number
  kinds: FaultKind[]
  verbose: boolean
  /** `maxMessageSize` of the members (undefined: library default). */
  maxMessageSize: number | undefined
}

/** Parses the command line (throws on a bad argument). */
export function parseArgs(argv: string[]): RunArgs {
  const a: RunArgs = {
    schedules: 10,
    seed: Date.now() % 2 ** 31,
    size: 'mixed',
    netns: true,
    timeoutMs: 60_000,
    defaultsShare: 0.15,
    maxMiB: 16,
    kinds: [...FAULT_KINDS],
    verbose: false,
    maxMessageSize: undefined,
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = () => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    const num = () => {
      const n = Number(value())
      if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a non-negative number`)
      return n
    }
    if (flag === '--schedules') a.schedules = Math.floor(num())
    else if (flag === '--seed') a.seed = Math.floor(num())
    else if (flag === '--size') {
      const v = value()
      if (v !== '1k' && v !== '16k' && v !== 'mixed') throw new Error('--size is 1k, 16k or mixed')
      a.size = v
    } else if (flag === '--no-netns') a.netns = false
    else if (flag === '--timeout') a.timeoutMs = num() * 1000
    else if (flag === '--defaults-share') a.defaultsShare = num()
    else if (flag === '--max-mib') a.maxMiB = Math.max(2, num())
    else if (flag === '--kinds') {
      const ks = value().split(',') as FaultKind[]
      for (const k of ks) if (!FAULT_KINDS.includes(k)) throw new Error(`unknown fault kind ${k}`)
      a.kinds = ks
    } else if (flag === '--verbose') a.verbose = true
    else if (flag === '--member-max-message-size') a.maxMessageSize = Math.max(1, Math.floor(num()))
    else throw new Error(`unknown argument ${flag}`)
  }
  return a
}

/** One line per schedule. */
function resultLine(r: ScheduleResult): string {
  const c = r.check
  const counts = c
    ? `acked=${c.acked} lost=${c.lost} unreadable=${c.unreadable} dup=${c.duplicates} gaps=${c.gaps} diverged=${c.divergent} strangers=${c.strangers} unknown=${r.unknown} (stored ${c.unknownStored})`
    : `acked-bytes=${r.ackedBytes} unknown=${r.unknown}`
  const status = r.ok ? 'ok' : c && !r.error ? 'FAIL' : 'ERROR'
  return `  -> ${status} ${counts} ${(r.durationMs / 1000).toFixed(1)}s${r.error ? ` error: ${r.error}` : ''}`
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  let kinds = args.kinds
  let netns: Netns | undefined
  let shim: string | undefined
  const why = args.netns ? netnsUnavailable() : 'disabled by --no-netns'
  if (why !== undefined && kinds.includes('partition')) {
    console.log(`partitions skipped: ${why}`)
    kinds = kinds.filter((k) => k !== 'partition')
  }
  if (kinds.includes('powerloss'))
    shim = await buildShim().catch((err: Error) => {
      console.log(`power loss skipped: the shim did not compile (${err.message.split('\n')[0]})`)
      kinds = kinds.filter((k) => k !== 'powerloss')
      return undefined
    })
  if (kinds.length === 0) throw new Error('no fault kind left to run')
  if (kinds.includes('partition')) {
    const stale = await removeStale()
    if (stale.length > 0) console.log(`removed stale namespaces: ${stale.join(' ')}`)
    netns = await Netns.create(3)
  }
  const cleanup = () => netns?.destroySync()
  process.on('exit', cleanup)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(sig, () => {
      cleanup()
      process.exit(130)
    })
  console.log(
    `faults: ${args.schedules} schedules from seed ${args.seed}, size ${args.size}, kinds ${kinds.join(',')}${netns ? `, namespaces ${netns.prefix}-*` : ''}`,
  )
  const totals = { ok: 0, failed: 0, errors: 0, acked: 0, lost: 0, unreadable: 0, other: 0, ms: 0 }
  const failures: string[] = []
  const runEnd = Date.now() + args.schedules * (args.timeoutMs + 60_000)
  try {
    for (let k = 0; k < args.schedules; k++) {
      if (Date.now() > runEnd) {
        console.log(`run time bound reached after ${k} schedules`)
        break
      }
      const seed = args.seed + k
      const s = generateSchedule(seed, {
        size: args.size,
        kinds,
        defaultsShare: args.defaultsShare,
        smallBytes: [Math.min(6, args.maxMiB) * 2 ** 20, args.maxMiB * 2 ** 20],
      })
      console.log(`[${k + 1}/${args.schedules}] seed ${seed}: ${describeSchedule(s)}`)
      const r = await runSchedule(s, {
        netns,
        shim,
        maxMessageSize: args.maxMessageSize,
        timeoutMs: args.timeoutMs,
        onLine: args.verbose ? (l) => console.log(`     ${l}`) : undefined,
      })
      console.log(resultLine(r))
      totals.ms += r.durationMs
      if (r.check) {
        totals.acked += r.check.acked
        totals.lost += r.check.lost
        totals.unreadable += r.check.unreadable
        const c = r.check
        totals.other += c.duplicates + c.gaps + c.divergent + c.strangers
      }
      if (r.ok) totals.ok++
      else {
        if (r.error) totals.errors++
        else totals.failed++
        failures.push(`seed ${seed}: ${r.error ?? r.check?.problems.join('; ')}`)
        if (!args.verbose)
          console.error(
            `--- timeline of seed ${seed} (last 80 lines) ---\n${r.timeline.slice(-80).join('\n')}`,
          )
      }
    }
  } finally {
    await netns?.destroy()
  }
  console.log(
    `summary: ${totals.ok} ok, ${totals.failed} failed checks, ${totals.errors} errors; ${totals.acked} acked writes, lost ${totals.lost}, unreadable ${totals.unreadable}, other problems ${totals.other}; ${(totals.ms / 1000).toFixed(0)} s`,
  )
  for (const f of failures) console.log(`  ${f}`)
  console.log(
    `replay one schedule: npm run faults -- --seed <seed> --schedules 1 --size ${args.size}${args.netns ? '' : ' --no-netns'}${args.kinds.length < FAULT_KINDS.length ? ` --kinds ${args.kinds.join(',')}` : ''}${args.maxMiB !== 16 ? ` --max-mib ${args.maxMiB}` : ''}${args.defaultsShare !== 0.15 ? ` --defaults-share ${args.defaultsShare}` : ''}${args.maxMessageSize ? ` --member-max-message-size ${args.maxMessageSize}` : ''}`,
  )
  return totals.failed + totals.errors === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`faults: ${(err as Error).stack ?? err}`)
    process.exit(2)
  },
)
