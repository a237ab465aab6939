/**
 * `StreamService`: the durable-stream layer of a node. It owns the network-wide
 * `StreamDirectory`, one `ClusterHost` per joined cluster (when the node has a data
 * directory), the internal calls partition replicas and metadata leaders serve
 * (`s.meta`, `s.pub`, `s.fetch`, `s.pstat`, `s.load` in wire.ts; `s.get` in read-wire.ts; `s.copy` in
 * partition-copy.ts; `s.purge` in purge.ts), and the client
 * side every node offers: `streams.create/info/delete/list`, publish routing, `consume`
 * (client.ts, consumer.ts). See docs/architecture.md, "Durable streams".
 */
import { join } from 'node:path'
import type { ClusterSigner } from '../cluster/proof.js'
import { MAX_LONG_POLL_MS } from '../constants.js'
import { AbortedError, TimeoutError } from '../errors.js'
import { ProposalDroppedError } from '../raft/index.js'
import { NotLeaderError, type RaftTransport } from '../replication/index.js'
import type { PeerRpc, RpcContext } from '../rpc/rpc.js'
import type {
  ConsumeOptions,
  Consumer,
  Logger,
  NodeStatus,
  PublishAck,
  StreamMessage,
  Streams,
} from '../types.js'
import { errFields } from '../util/logger.js'
import { AdminCredentials, type ResolvedCredentials } from './access/authz.js'
import { DataGate } from './access/grants.js'
import { ReadBudget } from './access/read-budget.js'
import { type DurableStats, StreamsClient } from './client.js'
import { openConsumer } from './consumer/consumer.js'
import { toStreamMessage } from './consumer/consumer-base.js'
import { decodeConsumerCall, decodeSeek, encodeLeaderReply } from './consumer/consumer-wire.js'
import { ClusterHost, type HostedPartition, partitionKey } from './host/host.js'
import { servePublish } from './host/publish-serve.js'
import { checkPurge, decodePurgeCall } from './host/purge.js'
import { leaderEnd, serveGet } from './host/read-serve.js'
import { replicaState } from './host/replica-state.js'
import { StreamDirectory } from './meta/directory.js'
import {
  COPY_MAX_BYTES,
  decodeCopyCall,
  decodeCopyReply,
  encodeCopyCall,
  encodeCopyReply,
  fitCopyChunk,
} from './partition/partition-copy.js'
import { lastOrUndefined, type ReadCallOptions } from './read.js'
import { decodeGetCall, encodeGetReply } from './read-wire.js'
import {
  decodeFetchCall,
  decodeMetaCall,
  decodePubCall,
  decodeRef,
  decodeStateReply,
  encodeFetchReply,
  encodeLoad,
  encodeMetaReply,
  encodeOffsetReply,
  encodePubReply,
  encodeRef,
  encodeStateReply,
  type PartitionState,
} from './wire.js'

/** Deadline of one `s.copy` call (a chunk of a few MiB). */
const COPY_TIMEOUT_MS = 30_000

/** What the stream layer needs from its node. */
export interface StreamServiceDeps {
  self: string
  network: string
  dataDir: string | undefined
  raft: RaftTransport
  rpc: PeerRpc
  maxMessageSize: number
  /** Proven members of a cluster. */
  members(cluster: string): string[]
  /**
   * Proven members of a cluster with a data directory: the metadata group forms among them
   * and only they are placed; members without one neither block nor host.
   */
  storageMembers(cluster: string): string[]
  /** Every cluster name this node knows. */
  clusters(): string[]
  signer(cluster: string): ClusterSigner | undefined
  /** What admin calls of clusters not joined are proven with (`createNode`'s `credentials`). */
  credentials: ResolvedCredentials
  publicKey(cluster: string): Uint8Array | undefined
  /** Floods a stream table frame body to every link except `except`. */
  flood(bytes: Uint8Array, except?: string): void
  /** Resolves on the next membership or link change (or after a short while). */
  nextChange(signal: AbortSignal): Promise<void>
  count(name: string): void
  /** Raft timing (defaults: 50 ms ticks, 10 ticks election timeout). */
  tickMs?: number
  electionTick?: number
  /** Stream table refresh (ms, default 10 s). */
  refreshMs?: number
  /** True while `peer` is linked or answered a probe lately (host/liveness.ts; itself: always). */
  isUp(peer: string): boolean
  /** A placed replica unreachable this long is replaced (ms). */
  replaceAfterMs: number
  /** Raft log bytes a partition replica applies before compacting it. */
  raftLogBytes: number
  /** Where replica failures, restarts and rebuilds are reported. */
  logger: Logger
  /** Publishes consumer advisories on pub/sub (`StreamsClientDeps.advise`). */
  advise?(topic: string, data: Uint8Array): void
}

/** The node's durable-stream layer; see the module doc. */
export class StreamService {
  readonly directory: StreamDirectory
  readonly hosted = new Map<string, HostedPartition>()
  private readonly hosts = new Map<string, ClusterHost>()
  private readonly unregister: Array<() => void> = []
  private readonly client: StreamsClient
  /** Bytes reads hold, per caller and in all. */
  private readonly reads: ReadBudget
  /** Publish/consume access: presented capabilities and the per-call check (grants.ts). */
  private readonly gate: DataGate
  private stopped = false

  constructor(private readonly d: StreamServiceDeps) {
    this.reads = new ReadBudget(d.self, (n) => d.count(n))
    this.gate = new DataGate(d)
    this.directory = new StreamDirectory({
      network: d.network,
      now: Date.now,
      publicKey: (c) => d.publicKey(c),
      flood: (bytes, except) => d.flood(bytes, except),
      changed: (cluster, table) => this.hosts.get(cluster)?.onTable(table),
    })
    this.client = new StreamsClient({
      self: d.self,
      rpc: d.rpc,
      directory: this.directory,
      localLeader: (ref) => this.hosted.get(partitionKey(ref))?.replica.raft?.leader,
      members: d.members,
      storageMembers: d.storageMembers,
      admin: new AdminCredentials(d.network, d.credentials, (c) => d.signer(c)),
      clusters: d.clusters,
      nextChange: d.nextChange,
      maxMessageSize: d.maxMessageSize,
      count: d.count,
      advise: d.advise,
    })
  }

  /** The public `node.streams` object. */
  get streams(): Streams {
    return this.client.api
  }

  /** Registers the internal calls. */
  start(): void {
    const { rpc } = this.d
    this.unregister.push(
      rpc.handle('s.meta', (b) => this.onMeta(b)),
      rpc.handle('s.pub', (b, ctx) => this.onPublish(b, ctx)),
      rpc.handle('s.fetch', (b, ctx) => this.onFetch(b, ctx)),
      rpc.handle('s.cons', (b, ctx) => this.onConsumer(b, ctx)),
      rpc.handle('s.grant', (b, ctx) => {
        this.gate.present(b, ctx.from)
        return new Uint8Array(0)
      }),
      rpc.handle('s.seek', (b, ctx) => this.onSeek(b, ctx)),
      rpc.handle('s.get', (b, ctx) => this.onGet(b, ctx)),
      rpc.handle('s.pstat', (b) => encodeStateReply(this.partitionState(b))),
      rpc.handle('s.copy', (b) => this.onCopy(b)),
      rpc.handle('s.purge', (b) => this.onPurge(b)),
      rpc.handle('s.load', (b) => {
        const cluster = new TextDecoder().decode(b)
        return encodeLoad(this.hosts.has(cluster), this.hosted.size)
      }),
    )
  }

  /** Stops every cluster host (replicas stop; data kept). */
  async stop(): Promise<void> {
    this.stopped = true
    this.client.close()
    for (const u of this.unregister.splice(0)) u()
    await Promise.all(
      [...this.hosts.entries()].map(([cluster, h]) =>
        h
          .stop()
          .catch((err) =>
            this.d.logger.warn(
              { cluster, ...errFields(err) },
              'durable streams of a cluster did not stop cleanly',
            ),
          ),
      ),
    )
    this.hosts.clear()
  }

  /** This node joined `cluster`: host its streams when the node has a data directory. */
  async onJoin(cluster: string): Promise<void> {
    const signer = this.d.signer(cluster)
    if (this.stopped || this.d.dataDir === undefined || signer === undefined || this.hosts.has(cluster))
      return
    const host = new ClusterHost({
      id: this.d.self,
      cluster,
      dir: join(this.d.dataDir, 'streams', cluster),
      raft: this.d.raft,
      signer,
      directory: this.directory,
      members: () => this.d.storageMembers(cluster),
      loads: (members) => this.client.loads(cluster, members),
      hosted: this.hosted,
      now: Date.now,
      onError: (err) => {
        this.d.count('streams.replicaErrors')
        this.d.logger.error(
          { cluster, ...errFields(err) },
          'durable streams: error (metadata replica or hosting)',
        )
      },
      logger: this.d.logger,
      partitionState: async (peer, ref) => {
        const r = decodeStateReply(await this.d.rpc.call(peer, 's.pstat', encodeRef(ref), { timeout: 5000 }))
        return r.status === 'ok' ? r.value : undefined
      },
      tickMs: this.d.tickMs ?? 50,
      electionTick: this.d.electionTick ?? 10,
      refreshMs: this.d.refreshMs ?? 10_000,
      isUp: (p) => this.d.isUp(p),
      replaceAfterMs: this.d.replaceAfterMs,
      raftLogBytes: this.d.raftLogBytes,
      count: (n) => this.d.count(n),
      // The reply must fit one link frame of this node (maxMessageSize + FRAME_OVERHEAD):
      // a bigger one resets the link, and the copy would retry it forever.
      copy: async (peer, call, signal) =>
        decodeCopyReply(
          await this.d.rpc.call(
            peer,
            's.copy',
            encodeCopyCall({ ...call, maxBytes: Math.min(call.maxBytes, this.d.maxMessageSize) }),
            { timeout: COPY_TIMEOUT_MS, signal },
          ),
        ),
    })
    this.hosts.set(cluster, host)
    await host.start()
  }

  /** The link to `peer` went down: what it presented here, and what we presented there, is forgotten. */
  onLinkDown(peer: string): void {
    this.gate.dropPeer(peer)
    this.client.onLinkDown(peer)
  }

  /** This node left `cluster`: its replicas there stop (data kept for a later join). */
  async onLeave(cluster: string): Promise<void> {
    const host = this.hosts.get(cluster)
    this.hosts.delete(cluster)
    await host?.stop()
  }

  /** A `StreamTable` frame from a peer. */
  onTable(peer: string, bytes: Uint8Array): void {
    this.directory.receive(bytes, peer)
  }

  /** Publishes through a stream capturing `topic` (see `StreamsClient.publish`). */
  publish(
    topic: string,
    data: Uint8Array,
    key: Uint8Array | undefined,
    headers: Record<string, string> | undefined,
    ack: 'none' | 'leader' | 'all',
    timeout: number,
    msgId?: string,
    capability?: string,
    /** Conditional append (partition-cas.ts); the key-value buckets use it. */
    expectedRevision?: number,
  ): Promise<PublishAck | undefined> | undefined {
    const cap = this.client.data.option(capability, 'options.capability')
    return this.client.publish(topic, data, key, headers, ack, timeout, msgId, cap, expectedRevision)
  }

  /** `streams.last` without the error: undefined when `key` has no live message (read.ts). */
  last(name: string, key: Uint8Array, options?: ReadCallOptions): Promise<StreamMessage | undefined> {
    return lastOrUndefined(this.client, name, { key }, options)
  }

  /**
   * Reads partition `partition` of stream `name` from its earliest message up to its
   * committed end at the time of the call (asked of the leader), handing each fetched batch
   * to `onBatch` in offset order; resolves with that end.
   */
  async scan(
    name: string,
    partition: number,
    onBatch: (messages: StreamMessage[]) => void,
    options: { timeout?: number; signal?: AbortSignal; capability?: string } = {},
  ): Promise<number> {
    const c = this.client
    const opts = c.callOptions({ timeout: options.timeout, signal: options.signal })
    const { cluster, meta } = await c.locate(name, opts)
    const ref = { stream: meta.name, createdIndex: meta.createdIndex, partition }
    const replicas = meta.placement[partition]!
    const auth = c.data.pick(
      cluster,
      meta,
      'consume',
      c.data.option(options.capability, 'options.capability'),
    )
    const end = await c.seek(ref, replicas, 'end', opts.signal)
    let offset = 0
    while (offset < end) {
      if (Date.now() > opts.deadline) throw new TimeoutError(`reading stream ${name} took too long`)
      const r = await c.fetch(ref, replicas, offset, 1000, opts.signal, 1 << 20, auth)
      const batch = r.messages.filter((m) => m.offset < end)
      if (batch.length > 0) onBatch(batch.map((m) => toStreamMessage(name, partition, m, 1)))
      const last = r.messages[r.messages.length - 1]
      offset = Math.max(offset, r.firstOffset, last === undefined ? offset : last.offset + 1)
    }
    return end
  }

  /** Opens a consumer (see `Consumer`). */
  consume(stream: string, options: ConsumeOptions | undefined): Consumer {
    return openConsumer(this.client, stream, options)
  }

  /**
   * The metadata leader of a joined cluster as this node's metadata replica knows it (null:
   * none known), or undefined when this node hosts no metadata replica of it (no dataDir).
   */
  metaLeader(cluster: string): string | null | undefined {
    const host = this.hosts.get(cluster)
    return host === undefined ? undefined : host.meta.leader
  }

  /** Lag of the durable consumers open on this node (metrics); forgets ended ones. */
  durableStats(): DurableStats[] {
    const out: DurableStats[] = []
    for (const c of this.client.durables) {
      const s = c.stats()
      if (s === undefined) this.client.durables.delete(c)
      else out.push(s)
    }
    return out
  }

  /** Streams for `status()`: the directory's, with the partitions hosted here. */
  status(): NodeStatus['streams'] {
    return this.directory.list().map(({ cluster, meta }) => ({
      name: meta.name,
      cluster,
      subject: meta.subject,
      partitions: meta.partitions,
      replicas: meta.replicas,
      hosted: [...this.hosted.values()]
        .filter((h) => h.meta.name === meta.name && h.cluster === cluster)
        .sort((a, b) => a.partition - b.partition)
        .map((h) => {
          const s = this.stateOf(h)
          return {
            partition: h.partition,
            role: s.role,
            leader: s.leader,
            replicas: [...(h.meta.placement[h.partition] ?? [])],
            inSync: s.inSync,
            firstOffset: s.firstOffset,
            nextOffset: s.nextOffset,
            snapshotIndex: h.replica.raft?.storage?.snapshot().index ?? 0,
            raftLogBytes: h.replica.raft?.storage?.diskBytes() ?? 0,
            health: h.health,
            failures: h.supervisor.failuresInARow,
            rebuilds: h.supervisor.rebuilds,
            lastError: h.supervisor.lastError ?? null,
          }
        }),
      consumers: this.consumersOf(cluster, meta.name),
    }))
  }

  /**
   * Durable consumers of a stream and their committed positions, as this node's replica of
   * the cluster's metadata group has them; null when it holds none.
   */
  private consumersOf(cluster: string, stream: string): NodeStatus['streams'][number]['consumers'] {
    const host = this.hosts.get(cluster)
    if (host === undefined || host.meta.role === 'outside') return null
    return host.catalog.durables(stream).map((name) => ({
      name,
      positions: [...host.catalog.positions(stream, name)]
        .sort((a, b) => a[0] - b[0])
        .map(([partition, offset]) => ({ partition, offset })),
    }))
  }

  private async onMeta(body: Uint8Array): Promise<Uint8Array> {
    const call = decodeMetaCall(body)
    const host = this.hosts.get(call.cluster)
    if (host === undefined) return encodeMetaReply({ status: 'notLeader', hint: null })
    try {
      return encodeMetaReply(await host.handleMeta(call))
    } catch (err) {
      if (err instanceof NotLeaderError) return encodeMetaReply({ status: 'notLeader', hint: err.leader })
      if (err instanceof ProposalDroppedError) return encodeMetaReply({ status: 'notLeader', hint: null })
      throw err
    }
  }

  /**
   * `s.seek`, answered by the partition leader only (a follower says `notLeader` with its
   * hint, so the caller moves on): the committed end of the partition as the leader knows it
   * now, or the first offset at or after a time (the end of the leader's partition log when
   * there is none yet). Ordering: every message acknowledged (`ack: 'all'`) before the call
   * lies below the end returned, whichever replica the caller asked first.
   */
  private async onSeek(body: Uint8Array, ctx: RpcContext): Promise<Uint8Array> {
    const call = decodeSeek(body)
    const h = this.hosted.get(partitionKey(call))
    if (h === undefined) return encodeOffsetReply({ status: 'notHere' })
    const end = await leaderEnd(h, ctx.signal)
    if (typeof end !== 'number') return encodeOffsetReply(end)
    if (call.target === 'end') return encodeOffsetReply({ status: 'ok', value: end })
    const offset = await h.replica.offsetForTime(call.target.time)
    return encodeOffsetReply({ status: 'ok', value: offset ?? h.replica.latest() + 1 })
  }

  /** `s.get` (read-wire.ts, host/read-serve.ts): one message, read by the partition leader. */
  private async onGet(body: Uint8Array, ctx: RpcContext): Promise<Uint8Array> {
    const call = decodeGetCall(body)
    const h = this.hosted.get(partitionKey(call))
    if (h === undefined) return encodeGetReply({ status: 'notHere' })
    this.gate.check(h.meta, h.cluster, 'consume', ctx.from, call.auth)
    return encodeGetReply(await serveGet(h, call, ctx.signal))
  }

  private async onConsumer(body: Uint8Array, ctx: RpcContext): Promise<Uint8Array> {
    const call = decodeConsumerCall(body)
    const host = this.hosts.get(call.cluster)
    if (host === undefined) return encodeLeaderReply({ status: 'notLeader', hint: null }, () => {})
    // Reading and acknowledging need consume access; listing and describing durables stay
    // open, like streams.info (docs/security.md, "Who may do what").
    const spec = host.catalog.get(call.stream)
    if (spec !== undefined && call.op !== 'list' && call.op !== 'describe')
      this.gate.check(spec, call.cluster, 'consume', ctx.from, call.auth)
    try {
      return await host.handleConsumer(call)
    } catch (err) {
      if (err instanceof NotLeaderError)
        return encodeLeaderReply({ status: 'notLeader', hint: err.leader }, () => {})
      if (err instanceof ProposalDroppedError)
        return encodeLeaderReply({ status: 'notLeader', hint: null }, () => {})
      throw err
    }
  }

  /** `s.pub`: a batch of messages for a partition this node leads (publish-serve.ts). */
  private async onPublish(body: Uint8Array, ctx: RpcContext): Promise<Uint8Array> {
    const call = decodePubCall(body)
    const h = this.hosted.get(partitionKey(call))
    if (h === undefined) return encodePubReply({ status: 'notHere' })
    const grant = this.gate.check(h.meta, h.cluster, 'publish', ctx.from, call.auth)
    return encodePubReply(
      await servePublish(
        h.replica,
        call,
        this.d.maxMessageSize,
        (n) => this.d.count(n),
        h.meta.subject,
        grant,
      ),
    )
  }

  private async onFetch(body: Uint8Array, ctx: RpcContext): Promise<Uint8Array> {
    const call = decodeFetchCall(body)
    const h = this.hosted.get(partitionKey(call))
    if (h === undefined) return encodeFetchReply({ status: 'notHere' })
    this.gate.check(h.meta, h.cluster, 'consume', ctx.from, call.auth)
    const r = h.replica
    const maxBytes = Math.max(1, Math.min(call.maxBytes, 4 * 1024 * 1024))
    // Bytes read are held until the reply is encoded, within the caller's share (read-budget.ts).
    let grant = this.reads.take(ctx.from, maxBytes)
    try {
      // Messages purged by key are left out; `scanned` is where the reader goes on past them.
      let { messages, scanned } = await r.readVisible(call.offset, { maxBytes: grant })
      const from = Math.max(call.offset, scanned)
      if (messages.length === 0 && call.waitMs > 0 && r.latest() < from) {
        this.reads.give(ctx.from, grant) // a long poll holds nothing while it waits
        grant = 0
        const wait = Math.min(call.waitMs, MAX_LONG_POLL_MS) // whatever the caller asks
        const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(wait)])
        try {
          await r.waitForNew(from - 1, signal)
          grant = this.reads.take(ctx.from, maxBytes)
          ;({ messages, scanned } = await r.readVisible(from, { maxBytes: grant }))
        } catch (err) {
          if (!(err instanceof AbortedError)) throw err
        }
      }
      return encodeFetchReply({
        status: 'ok',
        // With nothing to return, `firstOffset` tells the reader to go on past purged messages.
        value: {
          firstOffset: messages.length === 0 ? Math.max(r.earliest(), scanned) : r.earliest(),
          nextOffset: r.latest() + 1,
          messages,
        },
      })
    } finally {
      if (grant > 0) this.reads.give(ctx.from, grant)
    }
  }

  /**
   * `s.purge` (purge.ts): the proof is checked first (`UnauthorizedError`), then the partition
   * leader proposes the purge entry (by key when the call names one) and answers with the new
   * first offset once applied here.
   */
  private async onPurge(body: Uint8Array): Promise<Uint8Array> {
    const call = decodePurgeCall(body)
    const h = this.hosted.get(partitionKey(call))
    const signer = h && this.d.signer(h.cluster)
    if (h === undefined || signer === undefined) return encodeOffsetReply({ status: 'notHere' })
    const { before, key } = checkPurge(call, signer, Date.now())
    try {
      const first = key === undefined ? await h.replica.purge(before) : await h.replica.purgeKey(before, key)
      return encodeOffsetReply({ status: 'ok', value: first })
    } catch (err) {
      if (err instanceof NotLeaderError) return encodeOffsetReply({ status: 'notLeader', hint: err.leader })
      if (err instanceof ProposalDroppedError) return encodeOffsetReply({ status: 'notLeader', hint: null })
      throw err
    }
  }

  /** `s.copy`: committed records for a replica catching up from a snapshot (partition-copy.ts). */
  private async onCopy(body: Uint8Array): Promise<Uint8Array> {
    const call = decodeCopyCall(body)
    const h = this.hosted.get(partitionKey(call))
    if (h === undefined) return encodeCopyReply(undefined)
    const maxBytes = Math.max(1, Math.min(call.maxBytes, COPY_MAX_BYTES))
    return encodeCopyReply(fitCopyChunk(await h.replica.copyOut(call.fromOffset, maxBytes), maxBytes))
  }

  private partitionState(body: Uint8Array) {
    const h = this.hosted.get(partitionKey(decodeRef(body)))
    if (h === undefined) return { status: 'notHere' as const }
    return { status: 'ok' as const, value: this.stateOf(h) }
  }

  /** A hosted replica's view (replica-state.ts); in-sync followers heard within 3 election timeouts. */
  private stateOf(h: HostedPartition): PartitionState {
    return replicaState(h, this.d.self, 3 * (this.d.tickMs ?? 50) * (this.d.electionTick ?? 10))
  }
}
