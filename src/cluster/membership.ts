/**
 * The member directory: every node's view of who serves each cluster, built only from
 * verified announcements.
 *
 * An announcement is accepted when its signature verifies, its counter is newer than the
 * last one accepted from that peer for that cluster (replays refused), its time is within
 * `maxAge` of ours, and its public key matches the cluster's: the one derived from our own
 * key when we are a member, else the first one seen (trust on first use; see
 * docs/security.md). Accepted announcements are flooded to every other link once; a node
 * that links up receives every fresh announcement we hold. Members re-sign every
 * `refreshInterval`; an entry not refreshed within `maxAge` is dropped. Each entry carries
 * the member's signed roles (roles.ts); `servers` lists the members with one role.
 */
import { LOG_RATE_INTERVAL, MEMBERSHIP } from '../constants.js'
import type { Logger, MemberRoles } from '../types.js'
import { DecodeError } from '../util/binary.js'
import { RateLimitedLog, SILENT_LOGGER } from '../util/logger.js'
import {
  AnnounceKind,
  type Announcement,
  ClusterSigner,
  decodeAnnouncement,
  verifyAnnouncement,
} from './proof.js'
import { LEGACY_ROLES, noRoleMessage, type Role, rolesToBits } from './roles.js'

/** One proven member of a cluster. */
export interface MemberEntry {
  peer: string
  cluster: string
  counter: number
  addrs: string[]
  /** What the member serves (signed in its announcement). */
  roles: MemberRoles
  /** Encoded announcement, forwarded to peers that link up. */
  bytes: Uint8Array
}

/** What the directory needs from the node around it. */
export interface DirectoryHost {
  network: string
  self: string
  now(): number
  /** Current addresses of this node (put into our announcements). */
  addresses(): string[]
  /** Sends an encoded announcement to every linked peer except `except`. */
  flood(bytes: Uint8Array, except?: string): void
  /** A member was added or removed (for waiters and dialing). */
  changed(cluster: string, peer: string, added: boolean, entry?: MemberEntry): void
  /** A known member's newer announcement was accepted (it is alive; for redialling). */
  refreshed?(entry: MemberEntry): void
  /**
   * Where members joining, leaving and expiring are logged, and refused announcements
   * (at most one line per reason per `LOG_RATE_INTERVAL`; replays and our own announcements
   * coming back are the normal echo of flooding and not logged). Default silent.
   */
  logger?: Logger
}

/** Why a member left the directory (logged). */
type RemoveReason = 'left' | 'expired' | 'dead' | 'cluster key changed'

/** Why an announcement was refused (counted in status). */
export type RefuseReason = 'malformed' | 'signature' | 'replay' | 'stale' | 'wrong-key' | 'self'

interface LocalJoin {
  signer: ClusterSigner
  roles: MemberRoles
}

/** Per-cluster member view with replay protection. */
export class MemberDirectory {
  private readonly clusters = new Map<string, Map<string, MemberEntry>>()
  private readonly lastCounter = new Map<string, number>()
  private readonly pinned = new Map<string, string>()
  private readonly local = new Map<string, LocalJoin>()
  private counter = 0
  private timer: NodeJS.Timeout | undefined
  private readonly log: Logger
  private readonly refusals: RateLimitedLog
  /** Refused announcements by reason. */
  readonly refused: Record<RefuseReason, number> = {
    malformed: 0,
    signature: 0,
    replay: 0,
    stale: 0,
    'wrong-key': 0,
    self: 0,
  }

  constructor(
    private readonly host: DirectoryHost,
    private readonly opts: { refreshInterval?: number; maxAge?: number } = {},
  ) {
    this.log = host.logger ?? SILENT_LOGGER
    this.refusals = new RateLimitedLog(this.log, LOG_RATE_INTERVAL, () => host.now())
  }

  /** Counts a refused announcement and logs it (rate-limited; see `DirectoryHost.logger`). */
  private refuse(reason: RefuseReason, from: string, a?: Announcement): void {
    this.refused[reason]++
    if (reason === 'replay' || reason === 'self') return
    const about = a === undefined ? {} : { cluster: a.cluster, peer: a.peer }
    this.refusals.log('warn', reason, { reason, from, ...about }, 'announcement refused')
  }

  private get maxAge(): number {
    return this.opts.maxAge ?? MEMBERSHIP.maxAge
  }

  start(): void {
    const every = this.opts.refreshInterval ?? MEMBERSHIP.refreshInterval
    this.timer = setInterval(() => this.refresh(), every)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
  }

  /** Proven members of `cluster` (including this node when it has joined). */
  members(cluster: string): MemberEntry[] {
    const m = this.clusters.get(cluster)
    return m ? [...m.values()] : []
  }

  /** True when `peer` is a proven member of `cluster` (this node too once joined). */
  isMember(cluster: string, peer: string): boolean {
    return this.clusters.get(cluster)?.has(peer) ?? false
  }

  /** Proven members of `cluster` that have `role` (peer ids). */
  servers(cluster: string, role: Role): string[] {
    const out: string[] = []
    for (const e of this.members(cluster)) if (e.roles[role]) out.push(e.peer)
    return out
  }

  /** Names of every cluster with at least one known member, or joined here. */
  clusterNames(): string[] {
    const names = new Set<string>(
      [...this.clusters.keys()].filter((c) => (this.clusters.get(c)?.size ?? 0) > 0),
    )
    for (const c of this.local.keys()) names.add(c)
    return [...names].sort()
  }

  /** The signer of a cluster this node has joined (for other signed cluster messages). */
  signer(cluster: string): ClusterSigner | undefined {
    return this.local.get(cluster)?.signer
  }

  /**
   * The cluster's public key: derived from our key when we are a member, else the one pinned
   * from the first accepted announcement; undefined before any.
   */
  publicKey(cluster: string): Uint8Array | undefined {
    const hex = this.pinned.get(cluster)
    return hex === undefined ? undefined : new Uint8Array(Buffer.from(hex, 'hex'))
  }

  /** True when this node has joined `cluster`. */
  joined(cluster: string): boolean {
    return this.local.has(cluster)
  }

  /**
   * Joins: pins our key for the cluster, drops entries under another key, announces this
   * member with `roles` (default: every role).
   */
  join(cluster: string, clusterKey: Uint8Array, roles: MemberRoles = LEGACY_ROLES): void {
    const signer = new ClusterSigner(clusterKey, cluster, this.host.network)
    const hex = Buffer.from(signer.publicKey).toString('hex')
    if (this.pinned.get(cluster) !== hex) {
      this.pinned.set(cluster, hex)
      for (const e of this.members(cluster)) this.remove(cluster, e.peer, 'cluster key changed')
    }
    this.local.set(cluster, { signer, roles })
    this.announce(cluster, AnnounceKind.Join)
  }

  /** Leaves: announces the leave (peers drop us at once) and forgets the local join. */
  leave(cluster: string): void {
    if (!this.local.has(cluster)) return
    this.announce(cluster, AnnounceKind.Leave)
    this.local.delete(cluster)
  }

  /** Leaves every cluster (on stop). */
  leaveAll(): void {
    for (const c of [...this.local.keys()]) this.leave(c)
  }

  private nextCounter(): number {
    this.counter = Math.max(this.counter + 1, this.host.now())
    return this.counter
  }

  private announce(cluster: string, kind: number): void {
    const j = this.local.get(cluster)
    if (!j) return
    const bytes = j.signer.announce(kind, this.host.self, this.nextCounter(), this.host.addresses(), j.roles)
    this.accept(bytes, this.host.self)
    this.host.flood(bytes)
  }

  /** Re-signs our joins (fresh time) and drops entries nobody refreshed. */
  refresh(): void {
    for (const c of this.local.keys()) this.announce(c, AnnounceKind.Join)
    const now = this.host.now()
    for (const [cluster, m] of this.clusters) {
      for (const e of [...m.values()]) {
        if (e.peer !== this.host.self && now - e.counter > this.maxAge)
          this.remove(cluster, e.peer, 'expired')
      }
    }
  }

  /**
   * Handles an announcement received from `from` (or made locally). Returns true when it
   * was new and accepted, in which case it has been flooded onwards.
   */
  receive(bytes: Uint8Array, from: string): boolean {
    let a: Announcement
    try {
      a = decodeAnnouncement(bytes)
    } catch (err) {
      if (err instanceof DecodeError) this.refuse('malformed', from)
      throw err
    }
    if (a.peer === this.host.self) {
      this.refuse('self', from, a)
      return false
    }
    if (!this.accept(bytes, from, a)) return false
    this.host.flood(bytes, from)
    return true
  }

  private accept(bytes: Uint8Array, from: string, decoded?: Announcement): boolean {
    const a = decoded ?? decodeAnnouncement(bytes)
    const key = `${a.peer}/${a.cluster}`
    const last = this.lastCounter.get(key)
    if (last !== undefined && a.counter <= last) {
      this.refuse('replay', from, a)
      return false
    }
    const now = this.host.now()
    if (Math.abs(now - a.counter) > this.maxAge) {
      this.refuse('stale', from, a)
      return false
    }
    const hex = Buffer.from(a.publicKey).toString('hex')
    const pinned = this.pinned.get(a.cluster)
    if (pinned !== undefined && pinned !== hex) {
      this.refuse('wrong-key', from, a)
      return false
    }
    if (!verifyAnnouncement(a, this.host.network)) {
      this.refuse('signature', from, a)
      return false
    }
    if (pinned === undefined) this.pinned.set(a.cluster, hex)
    this.remember(key, a.counter)
    if (a.kind === AnnounceKind.Leave) {
      this.remove(a.cluster, a.peer, 'left')
      return true
    }
    let m = this.clusters.get(a.cluster)
    if (!m) this.clusters.set(a.cluster, (m = new Map()))
    const entry: MemberEntry = {
      peer: a.peer,
      cluster: a.cluster,
      counter: a.counter,
      addrs: a.addrs,
      roles: a.roles,
      bytes,
    }
    const old = m.get(a.peer)
    m.set(a.peer, entry)
    if (old === undefined)
      this.log.info(
        { cluster: a.cluster, peer: a.peer, roles: roleList(a.roles), self: a.peer === this.host.self },
        'member joined',
      )
    // New, or serving something else now: waiters for members look again.
    if (old === undefined || rolesToBits(old.roles) !== rolesToBits(a.roles))
      this.host.changed(a.cluster, a.peer, true, entry)
    else this.host.refreshed?.(entry)
    return true
  }

  private remember(key: string, counter: number): void {
    this.lastCounter.delete(key)
    this.lastCounter.set(key, counter)
    if (this.lastCounter.size > MEMBERSHIP.maxRemembered) {
      const oldest = this.lastCounter.keys().next().value
      if (oldest !== undefined) this.lastCounter.delete(oldest)
    }
  }

  private remove(cluster: string, peer: string, reason: RemoveReason): void {
    const m = this.clusters.get(cluster)
    if (!m?.delete(peer)) return
    const fields = { cluster, peer, self: peer === this.host.self }
    if (reason === 'left') this.log.info(fields, 'member left')
    else if (reason === 'dead') this.log.info(fields, 'member declared dead (failure detector)')
    else if (reason === 'expired') this.log.info(fields, 'member expired (no announcement within maxAge)')
    else this.log.info(fields, 'member dropped: cluster key changed')
    if (m.size === 0) this.clusters.delete(cluster)
    this.host.changed(cluster, peer, false)
  }

  /**
   * `peer` was declared dead by the failure detector (overlay/swim.ts): it leaves every
   * cluster at once; only an announcement newer than the ones held brings it back.
   */
  declareDead(peer: string): void {
    if (peer === this.host.self) return
    for (const cluster of [...this.clusters.keys()]) this.remove(cluster, peer, 'dead')
  }

  /**
   * Every fresh announcement we hold (only ours with `ownOnly`) with its key (`peer/cluster`)
   * and counter: what a digest lists (overlay/digest.ts).
   */
  versioned(ownOnly = false): { key: string; version: number; bytes: Uint8Array }[] {
    const now = this.host.now()
    const out: { key: string; version: number; bytes: Uint8Array }[] = []
    for (const m of this.clusters.values()) {
      for (const e of m.values()) {
        if (now - e.counter > this.maxAge || (ownOnly && e.peer !== this.host.self)) continue
        out.push({ key: `${e.peer}/${e.cluster}`, version: e.counter, bytes: e.bytes })
      }
    }
    return out
  }

  /** Every fresh announcement we hold, to send to a peer that just linked up. */
  snapshot(): Uint8Array[] {
    const now = this.host.now()
    const out: Uint8Array[] = []
    for (const m of this.clusters.values()) {
      for (const e of m.values()) if (now - e.counter <= this.maxAge) out.push(e.bytes)
    }
    return out
  }
}

/** The roles a member serves, as a list for the log. */
function roleList(roles: MemberRoles): string[] {
  return Object.entries(roles)
    .filter(([, on]) => on)
    .map(([r]) => r)
}

/**
 * Why no member of `cluster` can be used for `role` when members are known but none has the
 * role (a `NoMembersError` message); undefined when one has it or none is known.
 */
export function unservedMessage(dir: MemberDirectory, cluster: string, role: Role): string | undefined {
  const all = dir.members(cluster).length
  return all > 0 && dir.servers(cluster, role).length === 0 ? noRoleMessage(cluster, role, all) : undefined
}
