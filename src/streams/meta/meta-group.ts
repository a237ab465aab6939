/**
 * `MetaGroup`: one member's side of a cluster's metadata Raft group (`meta/<cluster>`), which
 * replicates the cluster's `StreamCatalog`. See docs/architecture.md, "Durable streams".
 *
 * Bootstrap follows the "join an existing group" rule: the member first probes the other
 * proven members of the cluster (control group `meta-ctl/<cluster>`) for a running group;
 * when one answers, it starts its replica with the voters it learned (it then receives the
 * log or a snapshot) and asks the leader to add it; only when nobody answers does the member
 * with the lowest peer id bootstrap a one-voter group. The leader adds joiners one conf
 * change at a time (up to `maxVoters`). A member whose directory already holds replica state
 * restarts from it and only asks to be added when it is not a voter yet. A member the group
 * had no room for stays outside and asks again every `outsideRetryMs`.
 *
 * Leaving: a member that stops (node stop or cluster leave) first takes itself out of the
 * voters (a leader hands leadership to another voter first; then it asks the leader), waiting
 * at most `leaveMs`, unless it is the last voter. A group whose voters stop
 * one after another therefore keeps a quorum of those still running, and a joiner is never
 * left waiting on a two-voter group whose other voter is gone. A voter that vanishes without
 * leaving (killed) is removed by the leader once it has been missing from the cluster's
 * members for `departedVoterMs` (its announcement expired), so an outside member can take
 * its seat; it joins again like a new member when it comes back.
 *
 * The raft log is compacted every `META_COMPACT_ENTRIES` applied entries into a snapshot of
 * the catalog (`StreamCatalog.snapshot`), so durable consumer commits (ten a second per
 * consumer) never grow it without bound; a member that restarts restores the snapshot, then
 * replays the entries after it, and a member far behind is sent the snapshot.
 *
 * Control message layout (util/binary): `u8 kind | u32 request id | body`
 * - probe (1): empty
 * - probeReply (2): `u8 running | str leader ('' none) | u16 n | n × str voter`
 * - join (3): `str id` (must be the sender)
 * - joinReply (4): `u8 status (0 ok, 1 not leader, 2 error) | str leader hint or message`
 * - leave (5): `str id` (must be the sender); leaveReply (6): as joinReply. A member from before
 *   leaves drops both kinds; the leaver then stops after its wait.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { AbortedError } from '../../errors.js'
import type { ConfChange, ProposalResult } from '../../raft/index.js'
import {
  NotLeaderError,
  type RaftTransport,
  ReplicaDriver,
  type ReplicaDriverOptions,
} from '../../replication/index.js'
import { BinaryReader, BinaryWriter } from '../../util/binary.js'
import type { StreamCatalog } from './metadata.js'

/** Applied entries after which the metadata raft log is compacted into a catalog snapshot. */
export const META_COMPACT_ENTRIES = 4096
/** Longest a stopping member waits for its removal from the voters (ms). */
export const META_LEAVE_MS = 2000
/** How long a member that said it is leaving is not chosen to take the group over (ms). */
const META_LEAVER_MS = 10_000
/** Pause between join attempts of a member the group had no room for (ms). */
export const META_OUTSIDE_RETRY_MS = 2000
/**
 * A voter missing from the cluster's members this long (ms) is removed by a leader that has
 * led at least as long. Members keep a killed node's announcement until it expires (60 s), so
 * a voter is removed about 70 s after it was killed, never during a restart or a short cut.
 */
export const META_DEPARTED_VOTER_MS = 10_000

/** What a `MetaGroup` needs from its node (see `nodeInternals`). */
export interface MetaGroupHost {
  raft: RaftTransport
  /** Proven members of a cluster (peer ids; this node may or may not be listed). */
  members(cluster: string): string[]
}

/** Options of `MetaGroup`. */
export interface MetaGroupOptions {
  host: MetaGroupHost
  /** This node's peer id. */
  id: string
  cluster: string
  /** Replica directory of the metadata group on this node. */
  dir: string
  /** The state machine the group's committed entries are applied to. */
  catalog: StreamCatalog
  /** Driver knobs (tick, election timing, randomness, error hook). */
  driver?: Pick<
    ReplicaDriverOptions,
    'tickMs' | 'electionTick' | 'heartbeatTick' | 'rand' | 'raft' | 'onError' | 'onLeaderChange'
  >
  /** Called after committed entries were applied to the catalog. */
  applied?: () => void
  /** How long to wait for control replies (ms, default 500). */
  probeTimeoutMs?: number
  /** Pause between bootstrap or join attempts (ms, default 200). */
  retryMs?: number
  /** Most voters the group grows to (default 3); further members stay outside. */
  maxVoters?: number
  /**
   * A member bootstraps a group only after running this long and seeing the same member set
   * for half of it (ms, default 2000): members starting together must see each other first,
   * or each would bootstrap a group of its own.
   */
  settleMs?: number
  /** Applied entries after which the raft log is compacted (default `META_COMPACT_ENTRIES`). */
  compactEntries?: number
  /** Longest wait for this member's removal when it stops (ms, default `META_LEAVE_MS`). */
  leaveMs?: number
  /** Pause between join attempts while the group is full (ms, default `META_OUTSIDE_RETRY_MS`). */
  outsideRetryMs?: number
  /** How long a voter may be missing from the members before the leader removes it (ms). */
  departedVoterMs?: number
}

enum Kind {
  Probe = 1,
  ProbeReply = 2,
  Join = 3,
  JoinReply = 4,
  Leave = 5,
  LeaveReply = 6,
}

type JoinReply =
  | { status: 'ok' }
  | { status: 'notLeader'; leader: string | null }
  | { status: 'error'; message: string }
interface ProbeReply {
  from: string
  running: boolean
  leader: string | null
  voters: string[]
}
type Reply =
  | { kind: Kind.ProbeReply; probe: ProbeReply }
  | { kind: Kind.JoinReply | Kind.LeaveReply; join: JoinReply }

/** One node's member of a cluster's metadata Raft group. */
export class MetaGroup {
  /** Raft group id of the metadata group. */
  readonly group: string
  private readonly ctlGroup: string
  private readonly opts: MetaGroupOptions
  private driver: ReplicaDriver | undefined
  private readonly unregister: Array<() => void> = []
  private readonly waiting = new Map<number, (r: Reply) => void>()
  private nextRequest = 1
  private joinChain: Promise<unknown> = Promise.resolve()
  private stopped = false
  /** Members that told us they are leaving, and when (kept `META_LEAVER_MS`). */
  private readonly leavers = new Map<string, number>()
  /** A leader answered our join with ok (this replica may not have applied it yet). */
  private accepted = false
  /** Set while a stopping member takes itself out of the voters: no more joins. */
  private leaving = false
  private running: Promise<void> | undefined
  /** Once a second: departed voters (leader only). */
  private reaper: NodeJS.Timeout | undefined
  /** Since when each voter has been missing from the members, and since when we lead (ms). */
  private readonly missingSince = new Map<string, number>()
  private leaderSince: number | undefined
  /** Set when the group is full and this member stays outside it. */
  private outside = false
  /** Entries applied since the last compaction, and the compaction running (if any). */
  private sinceCompaction = 0
  private compacting: Promise<void> | undefined

  constructor(opts: MetaGroupOptions) {
    this.opts = opts
    this.group = `meta/${opts.cluster}`
    this.ctlGroup = `meta-ctl/${opts.cluster}`
  }

  /**
   * Registers the raft and control groups and starts bootstrapping or joining in the
   * background (see the module doc). Resolves once registered; watch `voters`/`leader`.
   */
  start(): Promise<void> {
    const { raft } = this.opts.host
    const allowed = (peer: string): boolean => this.members().includes(peer)
    this.unregister.push(
      raft.register(this.group, (from, bytes) => this.driver?.receive(from, bytes), allowed),
      raft.register(this.ctlGroup, (from, bytes) => this.onControl(from, bytes), allowed),
    )
    this.running = this.run().catch((err) => {
      if (!this.stopped) this.opts.driver?.onError?.(err)
    })
    this.reaper = setInterval(() => this.removeDeparted(), 1000)
    this.reaper.unref()
    return Promise.resolve()
  }

  /**
   * Leaves the voters (see the module doc; at most `leaveMs`), then stops the replica and
   * unregisters both groups.
   */
  async stop(): Promise<void> {
    if (this.stopped) return
    clearInterval(this.reaper)
    this.leaving = true
    await this.leave().catch(() => {})
    this.stopped = true
    for (const u of this.unregister.splice(0)) u()
    for (const w of this.waiting.values())
      w({ kind: Kind.JoinReply, join: { status: 'error', message: 'stopped' } })
    this.waiting.clear()
    await this.compacting
    await this.running
    await this.driver?.stop()
  }

  /**
   * Proposes an encoded metadata command (`encodeCommand`). Resolves once committed and
   * applied here (read the outcome with `catalog.resultAt(index)`). Rejects with
   * `NotLeaderError` (carrying the leader hint) on a non-leader, plus `ReplicaDriver.propose`'s
   * errors.
   */
  propose(bytes: Uint8Array): Promise<ProposalResult> {
    if (this.driver === undefined) return Promise.reject(new NotLeaderError(null))
    return this.driver.propose(bytes)
  }

  /** The leader as this member knows it (null: none known or not started). */
  get leader(): string | null {
    return this.driver?.leader ?? null
  }

  /** Raft index of this member's last snapshot (compaction or install; 0: none). */
  get snapshotIndex(): number {
    return this.driver?.storage?.snapshot().index ?? 0
  }

  /** The group's voters as this member knows them (empty before its replica starts). */
  get voters(): string[] {
    return this.driver ? this.driver.status().voters : []
  }

  /** This member's role; `outside` when it has no replica (yet, or the group is full). */
  get role(): string {
    const d = this.driver
    if (d === undefined) return 'outside'
    return this.outside && !d.status().voters.includes(this.opts.id) ? 'outside' : d.role
  }

  /** The replica driver, once started (diagnostics and tests). */
  get replica(): ReplicaDriver | undefined {
    return this.driver
  }

  private members(): string[] {
    return this.opts.host.members(this.opts.cluster).filter((m) => m !== this.opts.id)
  }

  private get retryMs(): number {
    return this.opts.retryMs ?? 200
  }

  /** Bootstrap or join, then keep asking to be added until this member is a voter. */
  private async run(): Promise<void> {
    const { id } = this.opts
    if (existsSync(join(this.opts.dir, 'confstate'))) await this.startDriver(undefined)
    let target: string | null = null
    const settle = this.opts.settleMs ?? 2000
    const started = Date.now()
    let view = ''
    let viewSince = started
    while (!this.stopped && !this.leaving) {
      const now = Date.now()
      const seen = this.members().sort().join(',')
      if (seen !== view) {
        view = seen
        viewSince = now
      }
      if (this.driver?.status().voters.includes(id)) {
        // A voter by its own state, which may predate its removal (it left as it stopped and
        // restarted from its directory before applying that): the leader's view decides.
        const replies = await this.probe()
        if (this.stopped || this.leaving) return
        const led = replies.find((r) => r.running && r.leader !== null && r.from === r.leader)
        if (led?.voters.includes(id)) {
          this.outside = false
          return
        }
        if (led === undefined) {
          // No leader answered (the group is starting, or it is us): ask again later.
          await sleep(this.opts.outsideRetryMs ?? META_OUTSIDE_RETRY_MS)
          continue
        }
        target = led.leader
      }
      if (target === null) {
        const replies = await this.probe()
        if (this.stopped) return
        const live = replies.filter((r) => r.running && r.voters.length > 0)
        const settled = now - started >= settle && now - viewSince >= settle / 2
        if (live.length === 0 && this.driver === undefined && settled) {
          const everyone = [id, ...this.members()].sort()
          if (everyone[0] === id) {
            await this.startDriver([id])
            continue
          }
        } else if (live.length > 0) {
          const best = live.find((r) => r.leader !== null) ?? live[0]!
          if (this.driver === undefined) await this.startDriver(best.voters)
          target = best.leader
        }
      }
      if (target !== null) {
        const reply = await this.request(target, Kind.Join, (w) => w.str(id))
        if (reply?.kind !== Kind.JoinReply) target = null
        else if (reply.join.status === 'ok') this.accepted = true
        else if (reply.join.status === 'notLeader') target = reply.join.leader
        else if (reply.join.status === 'error') {
          target = null
          if (reply.join.message === 'full') {
            this.outside = true
            await sleep(this.opts.outsideRetryMs ?? META_OUTSIDE_RETRY_MS)
            continue
          }
        }
      }
      await sleep(this.retryMs)
    }
  }

  private async startDriver(voters: string[] | undefined): Promise<void> {
    if (this.driver !== undefined || this.stopped) return
    const { raft } = this.opts.host
    const d: ReplicaDriver = new ReplicaDriver({
      tickMs: 20,
      electionTick: 10,
      ...this.opts.driver,
      id: this.opts.id,
      dir: this.opts.dir,
      voters,
      send: (to, bytes) => raft.send(this.group, to, bytes),
      apply: (entries) => {
        this.opts.catalog.applyEntries(entries)
        this.opts.applied?.()
        this.sinceCompaction += entries.length
        if (this.sinceCompaction >= (this.opts.compactEntries ?? META_COMPACT_ENTRIES))
          this.scheduleCompaction()
      },
      restore: (snap) => {
        if (snap.data.length > 0) this.opts.catalog.restore(snap.data)
        this.opts.applied?.()
      },
    })
    await d.start() // assigned only once started: `status()` throws before
    if (this.stopped) await d.stop()
    else this.driver = d
  }

  /**
   * Compacts the raft log into a catalog snapshot once the apply that asked for it has been
   * confirmed to the driver (after the current turn: the driver's applied index then covers
   * the catalog's).
   */
  private scheduleCompaction(): void {
    if (this.compacting !== undefined) return
    this.compacting = new Promise<void>((resolve) => setImmediate(resolve))
      .then(async () => {
        const d = this.driver
        const catalog = this.opts.catalog
        const index = catalog.lastApplied
        if (d === undefined || this.stopped || index > d.applied) return
        await d.compact(index, catalog.snapshot()) // index and data taken in the same turn
        this.sinceCompaction = 0
      })
      .catch((err) => {
        if (!this.stopped) this.opts.driver?.onError?.(err)
      })
      .finally(() => {
        this.compacting = undefined
      })
  }

  /** Asks every other member whether the group runs; collects replies for the probe timeout. */
  private async probe(): Promise<ProbeReply[]> {
    const replies = await Promise.all(this.members().map((m) => this.request(m, Kind.Probe, () => {})))
    return replies.flatMap((r) => (r?.kind === Kind.ProbeReply ? [r.probe] : []))
  }

  /** Sends one control request; resolves with its reply, or undefined after the timeout. */
  private request(to: string, kind: Kind, body: (w: BinaryWriter) => void): Promise<Reply | undefined> {
    const req = this.nextRequest++
    const w = new BinaryWriter(64)
    w.u8(kind).u32(req)
    body(w)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(req)
        resolve(undefined)
      }, this.opts.probeTimeoutMs ?? 500)
      this.waiting.set(req, (r) => {
        clearTimeout(timer)
        this.waiting.delete(req)
        resolve(r)
      })
      this.opts.host.raft.send(this.ctlGroup, to, w.finish().slice())
    })
  }

  private reply(to: string, kind: Kind, req: number, body: (w: BinaryWriter) => void): void {
    const w = new BinaryWriter(64)
    w.u8(kind).u32(req)
    body(w)
    this.opts.host.raft.send(this.ctlGroup, to, w.finish().slice())
  }

  /** A control message from a proven member. Malformed messages are dropped. */
  private onControl(from: string, bytes: Uint8Array): void {
    if (this.stopped) return
    try {
      const r = new BinaryReader(bytes)
      const kind = r.u8('kind')
      const req = r.u32('request id')
      switch (kind) {
        case Kind.Probe: {
          r.end('probe')
          const d = this.driver
          const voters = d ? d.status().voters : []
          this.reply(from, Kind.ProbeReply, req, (w) => {
            w.u8(d ? 1 : 0)
              .str(d?.leader ?? '')
              .u16(voters.length)
            for (const v of voters) w.str(v)
          })
          return
        }
        case Kind.ProbeReply: {
          const running = r.u8('running') === 1
          const leader = r.str('leader') || null
          const n = r.u16('voter count')
          const voters: string[] = []
          for (let i = 0; i < n; i++) voters.push(r.str('voter'))
          r.end('probe reply')
          this.waiting.get(req)?.({ kind, probe: { from, running, leader, voters } })
          return
        }
        case Kind.Join: {
          const id = r.str('id')
          r.end('join')
          if (id !== from) return
          void this.onJoin(id).then((res) =>
            this.reply(from, Kind.JoinReply, req, (w) => writeJoinReply(w, res)),
          )
          return
        }
        case Kind.Leave: {
          const id = r.str('id')
          r.end('leave')
          if (id !== from) return
          this.leavers.set(from, Date.now())
          if (req === 0) return // a notice (see `leave`)
          void this.onLeave(id).then((res) =>
            this.reply(from, Kind.LeaveReply, req, (w) => writeJoinReply(w, res)),
          )
          return
        }
        case Kind.JoinReply:
        case Kind.LeaveReply: {
          const status = r.u8('status')
          const text = r.str('hint')
          r.end('join reply')
          const join: JoinReply =
            status === 0
              ? { status: 'ok' }
              : status === 1
                ? { status: 'notLeader', leader: text || null }
                : { status: 'error', message: text }
          this.waiting.get(req)?.({ kind, join })
          return
        }
      }
    } catch {
      // malformed: dropped
    }
  }

  /** Leader side of a join: adds `id` as a voter, one conf change at a time. */
  private onJoin(id: string): Promise<JoinReply> {
    return this.changeVoters((voters) => {
      if (voters.includes(id)) return 'done'
      if (voters.length >= (this.opts.maxVoters ?? 3)) return 'full'
      return { type: 'addNode', nodeId: id }
    })
  }

  /** Leader side of a leave (or of removing a departed voter): removes `id` unless it is the last voter. */
  private onLeave(id: string): Promise<JoinReply> {
    return this.changeVoters((voters) => {
      if (!voters.includes(id)) return 'done'
      if (voters.length <= 1) return 'last voter'
      return { type: 'removeNode', nodeId: id }
    })
  }

  /**
   * Runs one voter change on the leader, after the previous one (one conf change at a time);
   * `decide` sees the voters at that moment and names the change, 'done', or a refusal.
   */
  private changeVoters(
    decide: (voters: string[]) => ConfChange | 'done' | 'full' | 'last voter',
  ): Promise<JoinReply> {
    const run = async (): Promise<JoinReply> => {
      const d = this.driver
      if (d === undefined || d.role !== 'leader') return { status: 'notLeader', leader: d?.leader ?? null }
      const change = decide(d.status().voters)
      if (change === 'done') return { status: 'ok' }
      if (typeof change === 'string') return { status: 'error', message: change }
      try {
        await d.proposeConfChange(change)
        return { status: 'ok' }
      } catch (err) {
        if (err instanceof NotLeaderError) return { status: 'notLeader', leader: err.leader }
        if (err instanceof AbortedError) return { status: 'error', message: 'stopped' }
        return { status: 'error', message: err instanceof Error ? err.message : String(err) }
      }
    }
    const p = this.joinChain.then(run)
    this.joinChain = p.catch(() => {})
    return p
  }

  /**
   * A stopping member takes itself out of the voters: a leader first hands leadership to
   * another voter that is still a member (a leader removing itself would step down before
   * its followers learn the removal committed, which leaves a two-voter group without a
   * leader), then, as a follower, asks the leader to remove it. Gives up after `leaveMs`; the
   * last voter, a member outside the voters and one that never started stay as they are.
   */
  private async leave(): Promise<void> {
    const d = this.driver
    const id = this.opts.id
    if (d === undefined) return
    const deadline = Date.now() + (this.opts.leaveMs ?? META_LEAVE_MS)
    // Tell the other voters first (request id 0: no reply): members stopping together then
    // see that nobody stays to hold the group and stop without handing it around.
    for (const v of d.status().voters) {
      if (v === id) continue
      const w = new BinaryWriter(64)
      w.u8(Kind.Leave).u32(0).str(id)
      this.opts.host.raft.send(this.ctlGroup, v, w.finish().slice())
    }
    let handedAt = 0
    while (Date.now() < deadline) {
      const voters = d.status().voters
      // A join the leader accepted counts before this replica applied it: the leader needs
      // this member's acks from then on.
      const mine = voters.includes(id) || this.accepted
      const members = new Set(this.members())
      const now = Date.now()
      const staying = voters.filter(
        (v) => v !== id && members.has(v) && now - (this.leavers.get(v) ?? -Infinity) > META_LEAVER_MS,
      )
      if (!mine || staying.length === 0) return
      if (d.role === 'leader') {
        const heir = staying[0]!
        if (Date.now() - handedAt >= 500) {
          d.transferLeader(heir)
          handedAt = Date.now()
        }
        await sleep(20)
        continue
      }
      const leader = d.leader
      const reply =
        leader !== null && leader !== id
          ? await this.request(leader, Kind.Leave, (w) => w.str(id))
          : undefined
      if (reply?.kind === Kind.LeaveReply && reply.join.status === 'ok') return
      await sleep(50)
    }
  }

  /** Leader, once a second: removes one voter that has been missing from the members too long. */
  private removeDeparted(): void {
    const d = this.driver
    const now = Date.now()
    if (this.stopped || this.leaving || d === undefined || d.role !== 'leader') {
      this.leaderSince = undefined
      this.missingSince.clear()
      return
    }
    this.leaderSince ??= now
    const grace = this.opts.departedVoterMs ?? META_DEPARTED_VOTER_MS
    const members = new Set(this.members())
    const voters = d.status().voters.filter((v) => v !== this.opts.id)
    for (const v of [...this.missingSince.keys()])
      if (members.has(v) || !voters.includes(v)) this.missingSince.delete(v)
    for (const v of voters) if (!members.has(v) && !this.missingSince.has(v)) this.missingSince.set(v, now)
    if (now - this.leaderSince < grace) return
    const gone = [...this.missingSince].find(([, since]) => now - since >= grace)
    if (gone === undefined) return
    this.missingSince.delete(gone[0])
    void this.onLeave(gone[0])
  }
}

function writeJoinReply(w: BinaryWriter, res: JoinReply): void {
  if (res.status === 'ok') w.u8(0).str('')
  else if (res.status === 'notLeader') w.u8(1).str(res.leader ?? '')
  else w.u8(2).str(res.message)
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
