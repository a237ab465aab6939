/**
 * Configuration of one Raft member, with defaults and validation.
 */
import { InvalidArgumentError } from '../errors.js'
import type { Storage } from './log.js'
import type { NodeId } from './types.js'

/** Configuration of one Raft member. Only `id`, `storage` and `rand` are required. */
export interface RaftConfig {
  /** This member's id (its peer id). */
  id: NodeId
  /** Persisted log and state; read at start and whenever entries are needed. */
  storage: Storage
  /** Index the application has already applied (durably); committed entries after it are re-delivered. */
  applied?: number
  /** Ticks without hearing from a leader before campaigning (randomized in [n, 2n)). Default 10. */
  electionTick?: number
  /** Ticks between leader heartbeats. Default 1. Must be < electionTick. */
  heartbeatTick?: number
  /** Byte budget of one MsgApp (at least one entry is always sent). Default 1 MiB. */
  maxSizePerMsg?: number
  /** Max unacknowledged MsgApp per follower in replicate state (pipelining window). Default 256. */
  maxInflightMsgs?: number
  /** Byte budget of committedEntries per Ready (at least one entry is always given). Default 64 MiB. */
  maxCommittedSizePerReady?: number
  /** Run a pre-vote round before raising the term (default true). */
  preVote?: boolean
  /** Leader steps down without quorum contact; followers ignore votes while a leader is live (default true). */
  checkQuorum?: boolean
  /** Uniform random number in [0, 1), seeded by the caller: picks the election timeout. */
  rand: () => number
  /**
   * This member's log was lost and restarted empty (a rebuilt replica): it grants no vote and
   * starts no election until a leader's append shows its log holds everything that leader
   * had committed. Otherwise it could help elect a leader lacking entries that were
   * committed with its own (lost) acknowledgement. Default false.
   */
  recovering?: boolean
}

/** A validated configuration with every default filled in. */
export type ResolvedConfig = Required<RaftConfig>

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1)
    throw new InvalidArgumentError(`raft: ${name} must be a positive integer, got ${v}`)
  return v
}

/** Validates `cfg` (throws `InvalidArgumentError` naming the bad field) and fills in defaults. */
export function resolveConfig(cfg: RaftConfig): ResolvedConfig {
  if (typeof cfg.id !== 'string' || cfg.id.length === 0)
    throw new InvalidArgumentError('raft: id must be a non-empty string')
  if (typeof cfg.rand !== 'function') throw new InvalidArgumentError('raft: rand must be a function')
  const electionTick = positiveInt('electionTick', cfg.electionTick ?? 10)
  const heartbeatTick = positiveInt('heartbeatTick', cfg.heartbeatTick ?? 1)
  if (electionTick <= heartbeatTick)
    throw new InvalidArgumentError('raft: electionTick must be greater than heartbeatTick')
  const applied = cfg.applied ?? 0
  if (!Number.isSafeInteger(applied) || applied < 0)
    throw new InvalidArgumentError('raft: applied must be >= 0')
  return {
    id: cfg.id,
    storage: cfg.storage,
    applied,
    electionTick,
    heartbeatTick,
    maxSizePerMsg: positiveInt('maxSizePerMsg', cfg.maxSizePerMsg ?? 1024 * 1024),
    maxInflightMsgs: positiveInt('maxInflightMsgs', cfg.maxInflightMsgs ?? 256),
    maxCommittedSizePerReady: positiveInt(
      'maxCommittedSizePerReady',
      cfg.maxCommittedSizePerReady ?? 64 * 1024 * 1024,
    ),
    preVote: cfg.preVote ?? true,
    checkQuorum: cfg.checkQuorum ?? true,
    rand: cfg.rand,
    recovering: cfg.recovering === true,
  }
}
