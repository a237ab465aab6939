/**
 * One V8 setting for busy Plexus processes (`NodeOptions.gcTuning`, on by default).
 *
 * V8 starts marking the old generation as soon as the room left below its old-generation
 * limit is not larger than the young generation's target capacity (32 MB once the young
 * generation has grown to its default maximum, which start-up alone does). When V8 then
 * judges marking fast against a low promotion rate, it sets the limit only ~24 MB above the
 * live heap, so marking restarts right after it ends, every ~200 ms, for as long as the
 * process is busy: measured on the reference machine, a pub/sub subscriber caught in that
 * loop spends 12 ms of main thread and ~39 ms of helper threads per cycle, and about half
 * the subscriber processes of a run fall into it (docs/benchmarks.md).
 *
 * `--incremental-marking-soft-trigger=80` makes V8 start marking when 80% of the room it
 * allotted since the last full collection is used instead: collections happen when the old
 * generation grows, as V8's limits intend. Nothing else changes (the limits, the young
 * generation, the hard trigger at the limit, memory-pressure handling all stay V8's).
 *
 * It is a process-wide setting, applied once, at the first node's start, and only when the
 * process does not set the trigger itself (command line or `NODE_OPTIONS`) and runs a V8
 * checked to take the flag at run time (Node 22 and 24: V8 12 and 13). `gcTuning: false`
 * leaves V8 alone.
 */
import v8 from 'node:v8'

/** The V8 flag set, and the share of the allotted room (percent) at which marking starts. */
export const GC_SOFT_TRIGGER_FLAG = '--incremental-marking-soft-trigger'
export const GC_SOFT_TRIGGER_PERCENT = 80
/** V8 major versions checked to take the flag at run time (Node 22: 12.4, Node 24: 13.6). */
const KNOWN_V8_MAJORS = [12, 13]

/** What `tuneGc` looks at and changes (the real process by default; tests pass their own). */
export interface GcTuningHost {
  v8Version: string
  execArgv: readonly string[]
  nodeOptions: string | undefined
  setFlags(flags: string): void
}

const processHost: GcTuningHost = {
  v8Version: process.versions.v8,
  execArgv: process.execArgv,
  nodeOptions: process.env.NODE_OPTIONS,
  setFlags: (flags) => v8.setFlagsFromString(flags),
}
let decided = false

/**
 * Sets the soft trigger unless the process sets a marking trigger itself or V8 is not one
 * known to take it; for this process, decided once (later calls answer `'already'`).
 * Returns what it did.
 */
export function tuneGc(host?: GcTuningHost): 'applied' | 'already' | 'user-set' | 'unknown-v8' {
  if (host === undefined) {
    if (decided) return 'already'
    decided = true
  }
  const h = host ?? processHost
  const decision = decideGcTuning(h)
  if (decision === 'applied') h.setFlags(`${GC_SOFT_TRIGGER_FLAG}=${GC_SOFT_TRIGGER_PERCENT}`)
  return decision
}

/** The decision alone (pure; exported for tests). */
export function decideGcTuning(host: Omit<GcTuningHost, 'setFlags'>): 'applied' | 'user-set' | 'unknown-v8' {
  const major = Number.parseInt(host.v8Version, 10)
  if (!KNOWN_V8_MAJORS.includes(major)) return 'unknown-v8'
  // V8 accepts dashes or underscores in flag names; any marking trigger the user chose wins.
  const mentions = (arg: string) => /incremental[-_]marking[-_](soft|hard)[-_]trigger/.test(arg)
  if (host.execArgv.some(mentions) || mentions(host.nodeOptions ?? '')) return 'user-set'
  return 'applied'
}
