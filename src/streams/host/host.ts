/**
 * `ClusterHost`: what one member of a cluster runs for the cluster's durable streams — its
 * replica of the metadata group (`MetaGroup` + `StreamCatalog`) and the partition replicas
 * placed on it.
 *
 * - While it leads the metadata group it signs the catalog as a stream table and floods it
 *   (streams/meta/directory.ts) after every applied change and every `refreshMs`.
 * - Every member (metadata voter or not) reconciles its partition replicas with the newest
 *   table of its cluster: it starts the replicas placed on it (raft group
 *   `p/<cluster>/<stream>/<createdIndex>/<partition>`, voters = the placement, bootstrapped
 *   identically on every replica) and stops those the table no longer lists; their data is
 *   deleted only when the table carries the stream's tombstone (an explicit delete), never
 *   because a table merely lacks it.
 * - Metadata calls (create, delete) are answered by the metadata leader: it places the
 *   partitions (members asked for their load; only members with a data directory host),
 *   proposes the command, waits for it to apply, and replies with the signed table.
 *
 * Data layout under `dir`: `meta/` (the metadata replica) and
 * `s/<stream>-<createdIndex>/<partition>/` (a partition replica: `raft/`, `data/`).
 * Durability: everything a replica acknowledged is on disk before the ack (see
 * PartitionReplica); deleting a stream removes its directories.
 */
import { existsSync } from 'node:fs'
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ClusterSigner } from '../../cluster/proof.js'
import { RETIRE_GRACE_MS } from '../../constants.js'
import { errorMessage, errorName, InvalidArgumentError } from '../../errors.js'
import { DEFAULT_RAFT_SEGMENT_BYTES, type RaftTransport, resetReplicaLog } from '../../replication/index.js'
import type { Logger } from '../../types.js'
import { bindLogger, errFields } from '../../util/logger.js'
import { authorizeMeta } from '../access/authz.js'
import type { ConsumerCall } from '../consumer/consumer-wire.js'
import { ConsumerLeases, durableKey } from '../meta/consumer-leases.js'
import type { StreamDirectory, StreamTable } from '../meta/directory.js'
import { MetaGroup } from '../meta/meta-group.js'
import {
  encodeCommand,
  type MetaCommand,
  metaResultError,
  newRequestId,
  StreamCatalog,
  type StreamMeta,
  sameSpec,
} from '../meta/metadata.js'
import { fnv1a, placeStream } from '../meta/placement.js'
import { PartitionReplica } from '../partition/partition.js'
import type { CopyCall, CopyChunk } from '../partition/partition-copy.js'
import type { MetaCall, MetaReply, PartitionRef, PartitionState } from '../wire.js'
import { serveConsumerCall } from './consumer-calls.js'
import { Healer, reconfigureStep } from './healer.js'
import { canRebuild, ReplicaSupervisor } from './replica-supervisor.js'
import { ReplicaWatch } from './replica-watch.js'

/** Errors saying a replica's state on disk cannot be read: it is rebuilt from the others. */
const CORRUPT_ERRORS = new Set(['CorruptReplicaStateError', 'CorruptLogError'])

/** The class name of a thrown value (`Error` for anything else). */
const className = (err: unknown): string => (err instanceof Error ? err.name : 'Error')

/** Key of one partition incarnation in the hosted map. */
export function partitionKey(p: PartitionRef): string {
  return `${p.stream}/${p.createdIndex}/${p.partition}`
}

/** A partition replica running on this node, with what the stream layer tracks about it. */
export interface HostedPartition {
  cluster: string
  meta: StreamMeta
  partition: number
  replica: PartitionReplica
  /** Last time a raft message arrived from each peer (ms). */
  lastHeard: Map<string, number>
  /** Stops the replica and unregisters its raft group (data kept). */
  stop(): Promise<void>
  /** When this node last handed leadership to the preferred leader (ms). */
  lastTransfer: number
  /** A membership change toward the placement is in flight (leader only). */
  reconfiguring: boolean
  /** Failure history: restarts and rebuilds of this replica (replica-supervisor.ts). */
  supervisor: ReplicaSupervisor
  /** When the placement dropped this replica (ms; see `RETIRE_GRACE_MS`). */
  retiringSince?: number
  /** `failed`: stopped on an error, restart or rebuild scheduled. */
  health: 'running' | 'failed'
}

/** What a `ClusterHost` needs from its node. */
export interface ClusterHostDeps {
  id: string
  cluster: string
  /** Directory of this cluster's stream data. */
  dir: string
  raft: RaftTransport
  signer: ClusterSigner
  directory: StreamDirectory
  /** Proven members of the cluster with a data directory (this node included or not). */
  members(): string[]
  /** Asks members for their load: resolves with the members able to host and their replica counts. */
  loads(members: string[]): Promise<Map<string, number>>
  /** Every partition hosted by this node (shared across clusters). */
  hosted: Map<string, HostedPartition>
  now(): number
  onError(err: unknown): void
  /** Raft timing of partitions and the metadata group. */
  tickMs: number
  electionTick: number
  /** Table refresh interval (ms). */
  refreshMs: number
  /** True while `peer` is linked or answered a probe lately (host/liveness.ts; itself: always). */
  isUp(peer: string): boolean
  /** A placed replica whose member is unreachable this long is replaced (ms). */
  replaceAfterMs: number
  count(name: string): void
  /** Raft log bytes a partition replica applies before compacting it (a quarter is kept). */
  raftLogBytes: number
  /** Asks `peer` for committed records of a partition (`s.copy`; undefined: not hosted there). */
  copy(peer: string, call: CopyCall, signal: AbortSignal): Promise<CopyChunk | undefined>
  /** Asks `peer` for its view of a partition (`s.pstat`; undefined: not hosted there). */
  partitionState(peer: string, ref: PartitionRef): Promise<PartitionState | undefined>
  /** Where the cluster's stream events are logged (replica-watch.ts) and replica failures. */
  logger: Logger
}

/** One member's share of a cluster's durable streams; see the module doc. */
export class ClusterHost {
  readonly catalog = new StreamCatalog()
  readonly meta: MetaGroup
  private readonly healer: Healer
  private readonly watch: ReplicaWatch
  private timer: NodeJS.Timeout | undefined
  private lastPublished = 0
  private publishedIndex = -1
  private publishQueued = false
  private reconciling: Promise<void> = Promise.resolve()
  private cleaned = false
  /** Durable consumer leases and activity (leader only). */
  private readonly consumers = new ConsumerLeases()
  private stopped = false

  constructor(private readonly d: ClusterHostDeps) {
    this.watch = new ReplicaWatch({
      self: d.id,
      cluster: d.cluster,
      logger: d.logger,
      now: () => d.now(),
      freshMs: 3 * d.tickMs * d.electionTick,
      partitionState: (peer, h) =>
        d.partitionState(peer, {
          stream: h.meta.name,
          createdIndex: h.meta.createdIndex,
          partition: h.partition,
        }),
    })
    this.meta = new MetaGroup({
      host: { raft: d.raft, members: () => d.members() },
      id: d.id,
      cluster: d.cluster,
      dir: join(d.dir, 'meta'),
      catalog: this.catalog,
      driver: {
        tickMs: d.tickMs,
        electionTick: d.electionTick,
        onError: d.onError,
        onLeaderChange: (c) => this.watch.metaLeaderChanged(c.leader, c.term),
      },
      applied: () => this.queuePublish(),
    })
    this.healer = new Healer({
      id: d.id,
      catalog: this.catalog,
      meta: this.meta,
      members: () => d.members(),
      isUp: (p) => d.isUp(p),
      loads: (m) => d.loads(m),
      now: () => d.now(),
      replaceAfterMs: d.replaceAfterMs,
      newRequestId,
      count: (n) => d.count(n),
      logger: d.logger,
    })
  }

  /** Starts the metadata replica and the table refresh timer. */
  async start(): Promise<void> {
    await this.meta.start()
    this.timer = setInterval(
      () => {
        if (this.meta.role === 'leader' && this.d.now() - this.lastPublished >= this.d.refreshMs)
          this.publish()
        else if (this.meta.role === 'leader' && this.publishedIndex !== this.catalog.lastApplied)
          this.publish()
        this.balanceLeaders()
        void this.healer.tick()
        const mine = [...this.d.hosted.values()].filter((h) => h.cluster === this.d.cluster)
        for (const h of mine) reconfigureStep(h, this.d.id, this.d.logger)
        this.watch.tick(mine)
      },
      Math.min(1000, this.d.refreshMs),
    )
    this.timer.unref()
    const table = this.d.directory.table(this.d.cluster)
    if (table) this.onTable(table)
  }

  /** Stops the metadata replica and every partition replica of this cluster (data kept). */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    await this.reconciling
    const mine = [...this.d.hosted.entries()].filter(([, h]) => h.cluster === this.d.cluster)
    await Promise.all(
      mine.map(async ([key, h]) => {
        this.d.hosted.delete(key)
        await h.stop()
      }),
    )
    await this.meta.stop()
  }

  /** A newer table of this cluster was accepted: reconcile the hosted replicas with it. */
  onTable(table: StreamTable): void {
    if (this.stopped) return
    this.reconciling = this.reconciling.then(() => this.reconcile(table)).catch((err) => this.d.onError(err))
  }

  /**
   * Serves a metadata call (create, delete, table) addressed to this member. A create or
   * delete without a valid admin proof (authz.ts) is refused with `UnauthorizedError`
   * before anything else.
   */
  async handleMeta(call: MetaCall): Promise<MetaReply> {
    const refused = authorizeMeta(call, this.d.signer, this.d.now())
    if (refused !== undefined) return refused
    if (call.op === 'table') {
      const t = this.d.directory.table(this.d.cluster)
      if (this.meta.role === 'leader') return { status: 'ok', table: this.publish() }
      if (t) return { status: 'ok', table: t.bytes }
      return { status: 'notLeader', hint: this.meta.leader }
    }
    if (this.meta.role !== 'leader') return { status: 'notLeader', hint: this.meta.leader }
    let cmd: MetaCommand
    /** Proposed before `cmd`, in order (an update of both retention and replicas). */
    const first: MetaCommand[] = []
    if (call.op === 'purge') {
      const message = 'a purge goes to the partition leaders (s.purge), not to the metadata leader'
      return { status: 'error', name: 'InvalidArgumentError', message }
    }
    if (call.op === 'delete') cmd = { type: 'delete', name: call.name, requestId: call.requestId }
    else if (call.op === 'update') {
      const upd = this.updateCommands(call)
      if ('status' in upd) return upd
      cmd = upd.pop()!
      first.push(...upd)
    } else if (call.op === 'consumer-delete') {
      const s = this.catalog.get(call.name)
      if (!s)
        return {
          status: 'error',
          name: 'StreamNotFoundError',
          message: `stream "${call.name}" does not exist`,
        }
      const key = durableKey(s.name, s.createdIndex, call.durable)
      const unknown = this.catalog.positions(s.name, call.durable).size === 0 && !this.consumers.known(key)
      if (unknown && !this.catalog.knowsRequest(call.requestId)) {
        const message = `stream "${call.name}" has no durable consumer "${call.durable}"`
        return { status: 'error', name: 'ConsumerNotFoundError', message }
      }
      // Before proposing: a commit of a consumer running under the name is refused from now on.
      this.consumers.forget(key, s.partitions)
      cmd = {
        type: 'consumerDelete',
        name: s.name,
        createdIndex: s.createdIndex,
        durable: call.durable,
        requestId: call.requestId,
      }
    } else {
      const existing = this.catalog.get(call.spec.name)
      if (existing && !sameSpec(existing, call.spec)) {
        const message = `stream "${existing.name}" already exists with a different configuration (subject "${existing.subject}", ${existing.partitions} partitions, ${existing.replicas} replicas)`
        return { status: 'error', name: 'InvalidArgumentError', message }
      }
      let placement: string[][] = existing?.placement ?? []
      if (!existing) {
        const members = [...new Set([this.d.id, ...this.d.members()])]
        const load = await this.d.loads(members)
        try {
          placement = placeStream(
            [...load.keys()],
            load,
            call.spec.partitions,
            call.spec.replicas,
            fnv1a(call.spec.name),
          )
        } catch (err) {
          return { status: 'error', name: errorName(err), message: errorMessage(err) }
        }
      }
      cmd = { type: 'create', ...call.spec, placement, requestId: call.requestId }
    }
    for (const c of first) {
      const { index } = await this.meta.propose(encodeCommand(c))
      const r = this.catalog.resultAt(index)
      if (r !== undefined && !r.ok) {
        const err = metaResultError(r)
        return { status: 'error', name: err.name, message: err.message }
      }
    }
    const { index } = await this.meta.propose(encodeCommand(cmd))
    const res = this.catalog.resultAt(index)
    if (res === undefined) throw new InvalidArgumentError('metadata result no longer available; retry')
    if (!res.ok) {
      const err = metaResultError(res)
      return { status: 'error', name: err.name, message: err.message }
    }
    if (!res.duplicate && (res.op === 'created' || res.op === 'deleted') && res.stream)
      this.watch.applied(res.op, res.stream)
    return { status: 'ok', table: this.publish() }
  }

  /**
   * The commands of a `streams.update`: the retention policy, then the replication factor
   * (refused at once when fewer storage members than that are known).
   */
  private updateCommands(call: Extract<MetaCall, { op: 'update' }>): MetaCommand[] | MetaReply {
    const out: MetaCommand[] = []
    const { name, requestId, retention, replicas } = call
    if (retention !== undefined) out.push({ type: 'update', name, retention, requestId })
    if (replicas !== undefined) {
      const storing = new Set([this.d.id, ...this.d.members()]).size
      if (storing < replicas) {
        const message = `stream "${name}" cannot have ${replicas} replicas: only ${storing} member${storing === 1 ? '' : 's'} with a data directory can host them`
        return { status: 'error', name: 'NotEnoughReplicasError', message }
      }
      out.push({ type: 'setReplicas', name, replicas, requestId: `${requestId}/r` })
    }
    if (out.length === 0)
      return { status: 'error', name: 'InvalidArgumentError', message: 'nothing to update' }
    return out
  }

  /**
   * Spreads leaders as placed: a leader that is not its partition's preferred leader
   * (placement order) hands leadership over when the preferred replica is alive, fully caught
   * up and nothing is pending (so no publish in flight sees the change), at most every 3 s.
   */
  private balanceLeaders(): void {
    const now = this.d.now()
    for (const h of this.d.hosted.values()) {
      if (h.cluster !== this.d.cluster || now - h.lastTransfer < 3000) continue
      const preferred = h.meta.placement[h.partition]![0]!
      const driver = h.replica.raft
      if (preferred === this.d.id || driver === undefined || driver.role !== 'leader') continue
      const s = h.replica.status()
      const heard = h.lastHeard.get(preferred)
      const pr = s.raft.progress[preferred]
      if (s.pendingMessages > 0 || pr === undefined || heard === undefined || now - heard > 1000) continue
      if (pr.match < s.raft.lastIndex) continue
      h.lastTransfer = now
      driver.transferLeader(preferred)
    }
  }

  /**
   * Serves a durable-consumer call (metadata leader only): commit positions (replicated in
   * the metadata group), read positions, take/renew/release a partition lease, list or
   * describe durable consumers (leases and activity in memory on the leader:
   * consumer-leases.ts). A consumer that ran under a name when it was deleted gets
   * `ConsumerNotFoundError` for its commits and leases.
   */
  handleConsumer(call: ConsumerCall): Promise<Uint8Array> {
    return serveConsumerCall(call, {
      meta: this.meta,
      catalog: this.catalog,
      consumers: this.consumers,
      now: this.d.now(),
    })
  }

  /** Signs and floods the current catalog as this cluster's table; returns its bytes. */
  private publish(): Uint8Array {
    this.lastPublished = this.d.now()
    this.publishedIndex = this.catalog.lastApplied
    return this.d.directory.publish(
      this.d.signer,
      this.d.id,
      this.catalog.lastApplied,
      this.catalog.list(),
      this.catalog.tombstones(),
    )
  }

  private queuePublish(): void {
    if (this.publishQueued) return
    this.publishQueued = true
    queueMicrotask(() => {
      this.publishQueued = false
      if (!this.stopped && this.meta.role === 'leader') this.publish()
    })
  }

  /**
   * A replica the placement dropped while its stream lives on: it keeps running (with the new
   * placement, so as a leader it hands leadership to a placed replica) while it is still a
   * voter, up to `RETIRE_GRACE_MS`, so the leader can commit its removal. True: keep it.
   */
  private retiring(h: HostedPartition, meta: StreamMeta): boolean {
    const now = this.d.now()
    h.retiringSince ??= now
    h.meta = meta
    if (now - h.retiringSince >= RETIRE_GRACE_MS || h.health !== 'running') return false
    return h.replica.raft?.status().voters.includes(this.d.id) === true
  }

  private async reconcile(table: StreamTable): Promise<void> {
    if (this.stopped) return
    this.watch.table(table)
    const wanted = new Map<string, { meta: StreamMeta; partition: number }>()
    for (const meta of table.streams) {
      meta.placement.forEach((replicas, partition) => {
        if (replicas.includes(this.d.id))
          wanted.set(partitionKey({ stream: meta.name, createdIndex: meta.createdIndex, partition }), {
            meta,
            partition,
          })
      })
    }
    const dead = new Set(table.tombstones.map((t) => `${t.name}-${t.createdIndex}`))
    const current = new Map(table.streams.map((m) => [`${m.name}-${m.createdIndex}`, m]))
    for (const [key, h] of [...this.d.hosted.entries()]) {
      if (h.cluster !== this.d.cluster) continue
      if (wanted.has(key)) {
        h.retiringSince = undefined
        continue
      }
      if (h.meta.createdIndex > table.index) continue // the table predates this stream
      const still = current.get(`${h.meta.name}-${h.meta.createdIndex}`)
      if (still !== undefined && this.retiring(h, still)) continue
      this.d.hosted.delete(key)
      await h.stop()
      // Data goes only with a tombstone: a table merely lacking the stream never deletes it.
      const dir = `${h.meta.name}-${h.meta.createdIndex}`
      if (dead.has(dir)) await rm(this.streamDir(h.meta), { recursive: true, force: true })
    }
    for (const [key, w] of wanted) {
      if (this.stopped) return
      const h = this.d.hosted.get(key)
      if (h) {
        const retention = h.meta.retention
        h.meta = w.meta // placement changes (a replica replaced) reach running replicas
        if (!sameRetention(retention, w.meta.retention) && h.health === 'running') {
          try {
            h.replica.setRetention(w.meta.retention) // a stream update
          } catch (err) {
            this.d.onError(err) // stopping: the restart opens the log with the new limits
          }
        }
      } else await this.host(key, w.meta, w.partition, new ReplicaSupervisor())
    }
    if (!this.cleaned) {
      this.cleaned = true
      await this.removeOrphans(table)
    }
  }

  /**
   * Starts this node's replica of `partition` and registers its raft group. A replica that
   * cannot be opened, or later stops on an error, stays in `hosted` marked failed and is
   * restarted or rebuilt by `recover` (see replica-supervisor.ts); this never throws.
   */
  private async host(
    key: string,
    meta: StreamMeta,
    partition: number,
    supervisor: ReplicaSupervisor,
  ): Promise<void> {
    const group = `p/${this.d.cluster}/${meta.name}/${meta.createdIndex}/${partition}`
    // Bootstrapped with the placement at creation; a replica added later replays the
    // membership changes from the leader's log on top of it.
    const voters = meta.initialPlacement[partition]!
    const lastHeard = new Map<string, number>()
    const replica: PartitionReplica = new PartitionReplica({
      id: this.d.id,
      dir: join(this.streamDir(meta), String(partition)),
      voters,
      send: (to, bytes) => this.d.raft.send(group, to, bytes),
      duplicateWindowMs: meta.duplicateWindow,
      retention: meta.retention,
      compact: meta.compact,
      raftCompactBytes: this.d.raftLogBytes,
      raftRetainBytes: Math.max(1, Math.floor(this.d.raftLogBytes / 4)),
      logger: bindLogger(this.d.logger, { cluster: this.d.cluster, stream: meta.name, partition }),
      copy: (peer, fromOffset, maxBytes, signal) =>
        this.d.copy(
          peer,
          { stream: meta.name, createdIndex: meta.createdIndex, partition, fromOffset, maxBytes },
          signal,
        ),
      driver: {
        tickMs: this.d.tickMs,
        electionTick: this.d.electionTick,
        onError: (err, fatal) => {
          if (fatal) this.replicaFailed(entry, err, false)
          else this.d.onError(err)
        },
        onLeaderChange: (c) => this.watch.partitionLeader(entry, c.leader, c.term),
        // Compaction frees whole raft log segments: a few per compaction window.
        segmentBytes: Math.min(
          DEFAULT_RAFT_SEGMENT_BYTES,
          Math.max(16 * 1024, Math.floor(this.d.raftLogBytes / 4)),
        ),
      },
    })
    const entry: HostedPartition = {
      cluster: this.d.cluster,
      meta,
      partition,
      replica,
      lastHeard,
      stop: async () => {},
      lastTransfer: 0,
      reconfiguring: false,
      supervisor,
      health: 'running',
    }
    const allowed = (peer: string): boolean =>
      entry.meta.placement[partition]!.includes(peer) ||
      voters.includes(peer) ||
      (replica.raft?.status().voters.includes(peer) ?? false)
    const unregister = this.d.raft.register(
      group,
      (from, bytes) => {
        lastHeard.set(from, this.d.now())
        replica.receive(from, bytes)
      },
      allowed,
    )
    const fresh = !existsSync(join(this.streamDir(meta), String(partition), 'raft'))
    entry.stop = async () => {
      unregister()
      await replica
        .stop()
        .catch((err) =>
          this.d.logger.warn(
            { cluster: this.d.cluster, stream: meta.name, partition, ...errFields(err) },
            'stream replica did not stop cleanly',
          ),
        )
    }
    supervisor.started(this.d.now())
    try {
      await replica.start()
    } catch (err) {
      this.d.hosted.set(key, entry) // failed: kept (not hosted again) until `recover`
      this.replicaFailed(entry, err, CORRUPT_ERRORS.has(className(err)))
      return
    }
    this.d.hosted.set(key, entry)
    // Restarted with data, or added to a group that exists: behind until the leader says not.
    this.watch.started(entry, !fresh || !voters.includes(this.d.id))
    // A brand-new group: the preferred leader stands at once (faster than an election timeout).
    if (fresh && voters[0] === this.d.id && meta.placement[partition]![0] === this.d.id)
      replica.raft?.campaign()
  }

  /**
   * A hosted replica stopped on `err` (or could not be opened): counts and logs it, and
   * schedules its restart or rebuild (`recover`) after the supervisor's backoff.
   */
  private replicaFailed(h: HostedPartition, err: unknown, corrupt: boolean): void {
    if (this.stopped || h.health === 'failed') return
    h.health = 'failed'
    this.d.count('streams.replicaErrors')
    const replicas = h.meta.placement[h.partition] ?? []
    const step = h.supervisor.failed(
      this.d.now(),
      `${className(err)}: ${errorMessage(err)}`,
      corrupt,
      canRebuild(replicas, this.d.id, (p) => this.d.isUp(p)),
    )
    this.d.logger.error(
      {
        stream: h.meta.name,
        partition: h.partition,
        err: h.supervisor.lastError,
        failures: step.failures,
        next: step.action,
        inMs: step.delayMs,
      },
      step.action === 'rebuild'
        ? 'stream replica failed; rebuilding it from the other replicas'
        : 'stream replica failed; restarting it from its own data',
    )
    const key = partitionKey({
      stream: h.meta.name,
      createdIndex: h.meta.createdIndex,
      partition: h.partition,
    })
    const timer = setTimeout(() => {
      this.reconciling = this.reconciling
        .then(() => this.recover(key, h, step.action))
        .catch((e) => this.d.onError(e))
    }, step.delayMs)
    timer.unref()
  }

  /** Restarts (or empties and restarts: `rebuild`) a failed replica still wanted here. */
  private async recover(key: string, h: HostedPartition, action: 'restart' | 'rebuild'): Promise<void> {
    if (this.stopped || this.d.hosted.get(key) !== h) return // stopped, deleted or moved meanwhile
    this.d.hosted.delete(key)
    await h.stop()
    if (action === 'rebuild') {
      const dir = join(this.streamDir(h.meta), String(h.partition))
      await rm(join(dir, 'data'), { recursive: true, force: true })
      await resetReplicaLog(join(dir, 'raft'))
    }
    this.d.logger.warn(
      { stream: h.meta.name, partition: h.partition, action, rebuilds: h.supervisor.rebuilds },
      action === 'rebuild'
        ? 'stream replica emptied; catching up from the others'
        : 'stream replica restarting',
    )
    await this.host(key, h.meta, h.partition, h.supervisor)
  }

  private streamDir(meta: StreamMeta): string {
    return join(this.d.dir, 's', `${meta.name}-${meta.createdIndex}`)
  }

  /** Removes stream directories of tombstoned streams (deleted while this member was down). */
  private async removeOrphans(table: StreamTable): Promise<void> {
    let names: string[]
    try {
      names = await readdir(join(this.d.dir, 's'))
    } catch {
      return
    }
    const dead = new Set(table.tombstones.map((t) => `${t.name}-${t.createdIndex}`))
    for (const n of names)
      if (dead.has(n)) await rm(join(this.d.dir, 's', n), { recursive: true, force: true })
  }
}

function sameRetention(a: StreamMeta['retention'], b: StreamMeta['retention']): boolean {
  return a.maxAge === b.maxAge && a.maxBytes === b.maxBytes && a.maxMessages === b.maxMessages
}
