/**
 * Data types of the Raft core: log entries, messages, durable state and the `Ready` batch the
 * core hands to its driver. Everything here is plain data; nothing does I/O.
 */
import { PlexusError } from '../errors.js'

/** A member of a Raft group, named by its peer id. Ids are compared as strings. */
export type NodeId = string

/** `normal` entries carry application data; `confChange` entries carry an encoded `ConfChange`. */
export type EntryType = 'normal' | 'confChange'

/**
 * One log entry. `(index, term)` names an entry uniquely across the group: two logs holding
 * an entry with the same index and term are identical up to and including it (Log Matching).
 * A new leader appends one entry with empty `data` at the start of its term.
 */
export interface Entry {
  index: number
  term: number
  type: EntryType
  data: Uint8Array
}

/**
 * Message kinds exchanged between members. `MsgProp` carries proposals (from the local
 * application, or forwarded by a follower to its leader); the rest follow the Raft paper:
 * append/heartbeat from the leader, their responses, (pre-)vote requests and responses, and
 * `MsgTimeoutNow` which tells a leadership-transfer target to campaign at once.
 */
export type MessageType =
  | 'MsgProp'
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTimeoutNow'
  | 'MsgSnap'

/** All message types, in wire-code order (the codec writes the position). */
export const MESSAGE_TYPES: readonly MessageType[] = [
  'MsgProp',
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgTimeoutNow',
  'MsgSnap',
]

/**
 * A message between members. Unused fields are 0 / false / empty. Field meaning by type:
 * - MsgApp: `index`/`logTerm` = the entry preceding `entries`; `commit` = leader's commit.
 * - MsgAppResp: `index` = last index now matching the leader (or the rejected `index`);
 *   on `reject`, `rejectHint`/`logTerm` point at where the follower's log may match, and
 *   `recovering` says its log was rebuilt empty: it may lack entries it acknowledged before.
 * - MsgVote/MsgPreVote: `index`/`logTerm` = candidate's last entry; `transfer` marks a
 *   campaign caused by leadership transfer (it may disturb a leader lease).
 * - MsgHeartbeat: `commit` = min(leader commit, follower's known match).
 * - MsgSnap: `snapshot` = the leader's snapshot, for a follower whose next entry was compacted.
 * Ordering: none is assumed; the core tolerates loss, duplication and reordering.
 */
export interface Message {
  type: MessageType
  from: NodeId
  to: NodeId
  term: number
  logTerm: number
  index: number
  entries: Entry[]
  commit: number
  reject: boolean
  rejectHint: number
  transfer: boolean
  /** MsgAppResp rejections of a member whose log was rebuilt (`RaftConfig.recovering`). */
  recovering: boolean
  /** MsgSnap only. */
  snapshot?: Snapshot
}

/**
 * A point-in-time image of the applied state: everything up to and including `index`
 * (whose entry had `term`), the configuration as of that index, and the application's
 * serialized state (may be empty when the log itself is the state, as for streams).
 */
export interface Snapshot {
  index: number
  term: number
  confState: ConfState
  data: Uint8Array
}

/**
 * The state that must be durable before any message of the same `Ready` is sent: the
 * current term, the vote cast in it (`null`: none) and the commit index.
 */
export interface HardState {
  term: number
  vote: NodeId | null
  commit: number
}

/** The voting members of the group, as of the last applied configuration change. */
export interface ConfState {
  voters: NodeId[]
}

/** A single-server membership change: add or remove exactly one voter. */
export interface ConfChange {
  type: 'addNode' | 'removeNode'
  nodeId: NodeId
}

/** The role of a member. `preCandidate` is a node running a pre-vote (term not yet raised). */
export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader'

/** Volatile state, reported in a `Ready` when it changed; need not be persisted. */
export interface SoftState {
  leader: NodeId | null
  role: Role
}

/**
 * One batch of work for the driver. Process it in this order, then call `advance(ready)`:
 * 1. persist `snapshot` (if present: it replaces the whole log up to its index, and its
 *    data replaces the application state), then `hardState` (if present) and `entries`
 *    (appending; an entry with index i replaces every persisted entry with index >= i),
 *    durably (fsync) when `mustSync`;
 * 2. only then send `messages` (they may promise that the state above is durable);
 * 3. apply `committedEntries` in order (they are already persisted once step 1 is done).
 * Entries and messages are shared with the core: treat them as immutable.
 */
export interface Ready {
  softState?: SoftState
  snapshot?: Snapshot
  hardState?: HardState
  entries: Entry[]
  messages: Message[]
  committedEntries: Entry[]
  mustSync: boolean
}

/** A proposal could not be accepted here (no leader known, transfer in progress, pending conf change, ...). */
export class ProposalDroppedError extends PlexusError {}

/** The requested entries were compacted out of storage. */
export class CompactedError extends PlexusError {}

/**
 * The requested entries are durable but not in memory right now (a storage that keeps only a
 * recent window in memory is fetching them). Only ever thrown for entries the core has
 * already applied, that is, when a leader needs old entries for a follower far behind: the
 * append is skipped and sent once the storage has them (`RawNode.sendAppends`).
 */
export class EntriesUnavailableError extends PlexusError {}

/** An internal Raft invariant broke (a bug, or storage that lost acknowledged state). */
export class RaftInvariantError extends PlexusError {}

/** Creates a message with every optional field zeroed. */
export function message(fields: Partial<Message> & Pick<Message, 'type' | 'to'>): Message {
  return {
    from: '',
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    transfer: false,
    recovering: false,
    ...fields,
  }
}

/** True for messages that answer a request (their sender must be a known member to matter). */
export function isResponse(t: MessageType): boolean {
  return t === 'MsgAppResp' || t === 'MsgVoteResp' || t === 'MsgPreVoteResp' || t === 'MsgHeartbeatResp'
}

/** The response type for a (pre-)vote request. */
export function voteRespType(t: 'MsgVote' | 'MsgPreVote'): 'MsgVoteResp' | 'MsgPreVoteResp' {
  return t === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp'
}

/** Payload size used for batching limits (data bytes plus a fixed per-entry overhead). */
export function entrySize(e: Entry): number {
  return e.data.length + 24
}
