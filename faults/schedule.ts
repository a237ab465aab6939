/**
 * Seeded fault schedules (pure): the same seed and options always give the same schedule.
 * A schedule fixes the workload (message size, bytes to acknowledge, raft log window) and a
 * sequence of faults, each started once a number of bytes were acknowledged; one fault at a
 * time, so at most one of the three members is down, paused or cut off at any moment.
 */

import { mulberry32 } from './prng.js'

/** What a fault does to its victim. */
export type FaultKind = 'kill' | 'pause' | 'partition' | 'powerloss'

/** Every fault kind. */
export const FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition', 'powerloss']

/** Message size choice of a run. */
export type SizeChoice = '1k' | '16k' | 'mixed'

/** One fault of a schedule. */
export interface FaultStep {
  /** Starts once this many payload bytes were acknowledged. */
  atBytes: number
  kind: FaultKind
  /** The partition leader or a follower (as `streams.info` names them at that time). */
  target: 'leader' | 'follower'
  /** In [0, 1): which follower, when there are two. */
  pick: number
  /** How long the victim stays dead, paused or cut off (ms). */
  downMs: number
}

/** One seeded schedule. */
export interface Schedule {
  seed: number
  /** 'small': a small raft log window (compactions all the time); 'defaults': library defaults. */
  profile: 'small' | 'defaults'
  messageBytes: number
  /** `streams.raftLogBytes` of the members; undefined: the library default (32 MiB). */
  raftLogBytes: number | undefined
  /** Payload bytes to have acknowledged before the end. */
  totalBytes: number
  /** Publishes kept in flight. */
  inflight: number
  faults: FaultStep[]
}

/** Options of `generateSchedule`. */
export interface ScheduleOptions {
  size?: SizeChoice
  /** Fault kinds to draw from (default: all; 'partition' needs network namespaces). */
  kinds?: readonly FaultKind[]
  /** Force a profile; otherwise 'defaults' with probability `defaultsShare`. */
  profile?: Schedule['profile']
  /** Share of schedules with the library defaults and > 56 MiB before the first fault (0.15). */
  defaultsShare?: number
  /** Payload bytes of a 'small' schedule: drawn in [min, max] (default 6–16 MiB). */
  smallBytes?: [number, number]
  /** Number of faults: drawn in [min, max] (default 2–4 small, 1–2 defaults). */
  faults?: [number, number]
}

const KiB = 1024
const MiB = 1024 * KiB

/** Bytes written since the last election before the first fault of a 'defaults' schedule. */
export const DEFAULTS_FIRST_FAULT_BYTES = 57 * MiB

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
export const prng: (seed: number) => () => number = mulberry32

/** The schedule of `seed` (pure). */
export function generateSchedule(seed: number, opts: ScheduleOptions = {}): Schedule {
  const rand = prng(seed)
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const pickOf = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const size = opts.size ?? 'mixed'
  const messageBytes = size === '1k' ? KiB : size === '16k' ? 16 * KiB : rand() < 0.5 ? KiB : 16 * KiB
  const profile = opts.profile ?? (rand() < (opts.defaultsShare ?? 0.15) ? 'defaults' : 'small')
  const kinds = opts.kinds ?? FAULT_KINDS
  if (kinds.length === 0) throw new Error('no fault kinds to draw from')
  const inflight = messageBytes === KiB ? 256 : 32
  const faults: FaultStep[] = []
  const step = (atBytes: number, kind: FaultKind, target?: FaultStep['target']): FaultStep => ({
    atBytes,
    kind,
    target: target ?? (rand() < 0.5 ? 'leader' : 'follower'),
    pick: rand(),
    downMs: kind === 'partition' ? int(1500, 6000) : kind === 'pause' ? int(300, 4000) : int(200, 3000),
  })
  if (profile === 'defaults') {
    // The reported failure: a follower killed after ~56 MiB of acked writes, restarted on its
    // data directory. The first fault comes past 56 MiB written since the stream's first
    // election, and is mostly a kill -9 or power loss of a follower.
    const first = DEFAULTS_FIRST_FAULT_BYTES + int(0, 4) * MiB
    const firstKinds = kinds.filter((k) => k === 'kill' || k === 'powerloss')
    const kind = rand() < 0.8 && firstKinds.length > 0 ? pickOf(firstKinds) : pickOf(kinds)
    faults.push(step(first, kind, rand() < 0.8 ? 'follower' : 'leader'))
    const [lo, hi] = opts.faults ?? [1, 2]
    const n = int(lo, hi)
    let at = first
    for (let k = 1; k < n; k++) faults.push(step((at += int(2, 6) * MiB), pickOf(kinds)))
    return {
      seed,
      profile,
      messageBytes,
      raftLogBytes: undefined,
      totalBytes: at + int(2, 6) * MiB,
      inflight,
      faults,
    }
  }
  const [minBytes, maxBytes] = opts.smallBytes ?? [6 * MiB, 16 * MiB]
  const totalBytes = int(Math.ceil(minBytes / MiB), Math.floor(maxBytes / MiB)) * MiB
  const raftLogBytes = pickOf([64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB])
  const [lo, hi] = opts.faults ?? [2, 4]
  const n = int(lo, hi)
  // Fault points spread over 10%–85% of the bytes, in order, not closer than 1/(2n) apart.
  const span = 0.75 / n
  for (let k = 0; k < n; k++) {
    const at = Math.floor((0.1 + span * k + rand() * span * 0.5) * totalBytes)
    faults.push(step(at, pickOf(kinds)))
  }
  return { seed, profile, messageBytes, raftLogBytes, totalBytes, inflight, faults }
}

/** One line describing a schedule (for the run's output). */
export function describeSchedule(s: Schedule): string {
  const mib = (b: number) => `${(b / MiB).toFixed(b % MiB === 0 ? 0 : 1)}MiB`
  const window = s.raftLogBytes === undefined ? 'raftLog=default' : `raftLog=${s.raftLogBytes / KiB}KiB`
  const faults = s.faults.map((f) => `${f.kind}:${f.target}@${mib(f.atBytes)}/${f.downMs}ms`).join(',')
  return `${s.profile} msg=${s.messageBytes / KiB}KiB ${window} total=${mib(s.totalBytes)} faults=[${faults}]`
}
