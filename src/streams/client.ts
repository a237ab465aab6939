/**
 * `StreamsClient`: the side of durable streams every node offers, member or not —
 * `streams.create/info/delete/list`, routing publishes to partition leaders, and the calls
 * consumers make. Everything goes through `PeerRpc` to members named by the
 * `StreamDirectory` (or, for metadata, to the cluster's members, leader hint first).
 *
 * Retry rules: metadata commands carry a request id, so they are retried on any member
 * until the deadline (the metadata group deduplicates). Publishes are batched per partition
 * by `Publisher` (publisher.ts), which retries a message only while it is certainly not
 * appended; once written to a leader, losing the link or the deadline rejects with the
 * outcome unknown (`MemberLostError`, `TimeoutError`), except that a message with a `msgId`
 * is sent again after a lost link (the leader deduplicates it). Ordering: one node's
 * publishes to a partition reach its leader in the order they were made.
 */
import type { AdminAuth, Capability } from '../cluster/capability.js'
import { noRoleMessage } from '../cluster/roles.js'
import {
  AbortedError,
  errorFromWire,
  InvalidArgumentError,
  MemberLostError,
  NoMembersError,
  PlexusError,
  StreamNotFoundError,
  TimeoutError,
} from '../errors.js'
import { type PeerRpc, PeerUnreachableError } from '../rpc/rpc.js'
import type {
  PartitionInfo,
  PublishAck,
  StreamCallOptions,
  StreamConfig,
  StreamInfo,
  Streams,
} from '../types.js'
import { checkOptions, checkSignal, checkTimeout, describe } from '../util/validate.js'
import type { AdminCredentials } from './access/authz.js'
import { type DataAuth, DataCredentials, GrantPresenter } from './access/grants.js'
import {
  consumerInfo,
  deleteConsumer,
  listConsumers,
  listStreams,
  purgeStream,
  updateStream,
} from './admin.js'
import { encodeSeek, type LeaderReply, type SeekTarget } from './consumer/consumer-wire.js'
import { partitionKey } from './host/host.js'
import type { KnownStream, StreamDirectory } from './meta/directory.js'
import { newRequestId, validateStreamConfig } from './meta/metadata.js'
import { accessOf } from './meta/metadata-codec.js'
import { checkStorageMembers } from './meta/placement.js'
import { Publisher, sleep } from './publisher.js'
import { getMessage, lastMessage } from './read.js'
import {
  decodeFetchReply,
  decodeLoad,
  decodeMetaReply,
  decodeOffsetReply,
  decodeStateReply,
  encodeFetchCall,
  encodeMetaCall,
  encodeRef,
  type FetchResult,
  type MetaCall,
  type PartitionRef,
  type PartitionState,
  type PubMessage,
  type Routed,
  type Stored,
  type WireAck,
} from './wire.js'

/** Default deadline of stream calls and acked publishes (ms). */
export const STREAM_CALL_TIMEOUT = 10_000
/** Most fire-and-forget appends (publish without ack to a captured topic) in flight. */
const MAX_BACKGROUND_APPENDS = 4096

/** What the client needs from its node. */
export interface StreamsClientDeps {
  self: string
  rpc: PeerRpc
  directory: StreamDirectory
  /** The leader of a partition this node hosts, as its replica sees it (`streams.list`). */
  localLeader?: (ref: PartitionRef) => string | null | undefined
  members(cluster: string): string[]
  /** Proven members of a cluster with a data directory (they host replicas and metadata). */
  storageMembers(cluster: string): string[]
  /** Proves admin calls (create, delete) to the metadata leader (authz.ts). */
  admin: AdminCredentials
  clusters(): string[]
  nextChange(signal: AbortSignal): Promise<void>
  maxMessageSize: number
  count(name: string): void
  /** Publishes an advisory on pub/sub (best effort, at most once; consumer advisories). */
  advise?(topic: string, data: Uint8Array): void
}

const utf8 = new TextEncoder()

/** 32-bit FNV-1a of bytes: the partition of a keyed message is `hash(key) % partitions`. */
export function keyHash(key: Uint8Array): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Transient failures of one metadata attempt: try another member. */
const retryable = (err: unknown) =>
  err instanceof PeerUnreachableError ||
  err instanceof TimeoutError ||
  err instanceof MemberLostError ||
  (err instanceof PlexusError && err.name === 'OverloadedError')

/** What a durable consumer reports to the metrics. */
export interface DurableStats {
  stream: string
  durable: string
  /** Messages of the partitions it reads that it has not acknowledged (up to the last end it saw). */
  pending: number
  /** Messages handed out and not acknowledged yet. */
  unacked: number
}

/** The client side of durable streams; see the module doc. */
export class StreamsClient {
  readonly api: Streams
  /**
   * Durable consumers opened through this client (metrics); each leaves on its first
   * `stats()` after it ended.
   */
  readonly durables = new Set<{ stats(): DurableStats | undefined }>()
  private readonly leaders = new Map<string, string>()
  /** Last metadata leader seen per cluster. */
  private readonly metaLeaders = new Map<string, string>()
  private readonly roundRobin = new Map<string, number>()
  private background = 0
  private slotWaiters: Array<() => void> = []
  private readonly closing = new AbortController()
  private readonly publisher: Publisher
  /** Presents capabilities to members and sends the calls that carry them (grants.ts). */
  readonly presenter: GrantPresenter
  /** Chooses what publishes and reads carry (grants.ts). */
  readonly data: DataCredentials

  constructor(private readonly d: StreamsClientDeps) {
    this.presenter = new GrantPresenter({ self: d.self, rpc: d.rpc })
    this.data = new DataCredentials(d.admin)
    this.publisher = new Publisher({
      rpc: d.rpc,
      presenter: this.presenter,
      leaders: this.leaders,
      signal: this.closing.signal,
    })
    this.api = {
      create: (name, config, options) => this.create(name, config, options),
      info: (name, options) => this.info(name, options),
      delete: (name, options) => this.delete(name, options),
      list: () =>
        listStreams(
          d.directory,
          (ref) => d.localLeader?.(ref) ?? this.leaders.get(partitionKey(ref)) ?? null,
        ),
      update: (name, changes, options) => updateStream(this, name, changes, options),
      purge: (name, target, options) => purgeStream(this, name, target, options),
      consumers: (stream, options) => listConsumers(this, stream, options),
      consumerInfo: (stream, name, options) => consumerInfo(this, stream, name, options),
      deleteConsumer: (stream, name, options) => deleteConsumer(this, stream, name, options),
      get: (name, at, options) => getMessage(this, name, at, options),
      last: (name, by, options) => lastMessage(this, name, by, options),
    }
  }

  /** Publishes an advisory on pub/sub (best effort; see `StreamsClientDeps.advise`). */
  advise(topic: string, data: Uint8Array): void {
    this.d.advise?.(topic, data)
  }

  /** The partition of a keyed message in a stream of `partitions` partitions. */
  keyPartition(key: Uint8Array, partitions: number): number {
    return keyHash(key) % partitions
  }

  /** The link to `peer` went down: capabilities presented there are presented again. */
  onLinkDown(peer: string): void {
    this.presenter.onLinkDown(peer)
  }

  /** Aborts every call in progress (node stop). */
  close(): void {
    this.closing.abort()
    this.publisher.close()
  }

  /** Members able to host replicas of `cluster`, with the replicas they already host. */
  async loads(cluster: string, members: string[]): Promise<Map<string, number>> {
    const body = new TextEncoder().encode(cluster)
    const out = new Map<string, number>()
    await Promise.all(
      members.map(async (m) => {
        try {
          const l = decodeLoad(await this.d.rpc.call(m, 's.load', body, { timeout: 1500 }))
          if (l.canHost) out.set(m, l.replicas)
        } catch {
          // unreachable members are not placed
        }
      }),
    )
    return out
  }

  /** Takes a signed stream table a metadata leader answered with. */
  receiveTable(table: Uint8Array): void {
    this.d.directory.receive(table, undefined)
  }

  /** What admin calls are proven with (authz.ts). */
  get admin(): AdminCredentials {
    return this.d.admin
  }

  /** A call's deadline and signal from its options (`InvalidArgumentError` naming a bad one). */
  callOptions(options: StreamCallOptions | undefined): { deadline: number; signal: AbortSignal } {
    const o = checkOptions<StreamCallOptions>(options ?? {}, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout') ?? STREAM_CALL_TIMEOUT
    checkSignal(o.signal)
    const signal = o.signal ? AbortSignal.any([o.signal, this.closing.signal]) : this.closing.signal
    return { deadline: Date.now() + timeout, signal }
  }

  private async create(name: string, config: StreamConfig, options?: StreamCallOptions): Promise<StreamInfo> {
    const { cluster, ...spec } = validateStreamConfig(name, config)
    const opts = this.callOptions(options)
    const other = this.d.directory.get(name)
    if (other && other.cluster !== cluster)
      throw new InvalidArgumentError(`stream "${name}" already exists in cluster ${other.cluster}`)
    // Members reach a node over its links one by one (a node just linked may know the stream
    // tables before every member): a short view is looked at again after each change while
    // it grows (a change, or 250 ms without one, that adds nobody ends the wait).
    let storing = this.d.storageMembers(cluster).length
    for (let last = -1; storing < spec.replicas && storing > last; ) {
      last = storing
      await this.d.nextChange(opts.signal).catch(() => {})
      storing = this.d.storageMembers(cluster).length
    }
    checkStorageMembers(cluster, spec.replicas, this.d.members(cluster).length, storing)
    const auth = this.d.admin.resolve(cluster, 'create', name, options)
    const table = await this.meta({ op: 'create', cluster, requestId: newRequestId(), spec }, opts, auth)
    this.d.directory.receive(table, undefined)
    return this.info(name, { timeout: Math.max(1, opts.deadline - Date.now()), signal: opts.signal })
  }

  private async delete(name: string, options?: StreamCallOptions): Promise<void> {
    if (typeof name !== 'string' || name === '')
      throw new InvalidArgumentError(`name must be a stream name, got ${describe(name)}`)
    const opts = this.callOptions(options)
    const known = await this.locate(name, opts)
    const auth = this.d.admin.resolve(known.cluster, 'delete', name, options)
    const table = await this.meta(
      { op: 'delete', cluster: known.cluster, requestId: newRequestId(), name },
      opts,
      auth,
    )
    this.d.directory.receive(table, undefined)
  }

  private async info(name: string, options?: StreamCallOptions): Promise<StreamInfo> {
    if (typeof name !== 'string' || name === '')
      throw new InvalidArgumentError(`name must be a stream name, got ${describe(name)}`)
    const opts = this.callOptions(options)
    const { cluster, meta } = await this.locate(name, opts)
    const partitions = await Promise.all(
      meta.placement.map((replicas, partition) =>
        this.partitionInfo({ stream: name, createdIndex: meta.createdIndex, partition }, replicas, opts),
      ),
    )
    return {
      name,
      cluster,
      subject: meta.subject,
      replicas: meta.replicas,
      retention: { ...meta.retention },
      compact: meta.compact,
      duplicateWindow: meta.duplicateWindow,
      access: { ...accessOf(meta) },
      partitions,
    }
  }

  /** Asks every replica of a partition for its state (bounded wait); the leader's view wins. */
  private async partitionInfo(
    ref: PartitionRef,
    replicas: string[],
    opts: { deadline: number; signal: AbortSignal },
  ): Promise<PartitionInfo> {
    const timeout = Math.max(1, Math.min(1500, opts.deadline - Date.now()))
    const body = encodeRef(ref)
    const states = await Promise.all(
      replicas.map(async (peer) => {
        try {
          const r = decodeStateReply(
            await this.d.rpc.call(peer, 's.pstat', body, { timeout, signal: opts.signal }),
          )
          return r.status === 'ok' ? { peer, ...r.value } : undefined
        } catch (err) {
          if (err instanceof AbortedError) throw err
          return undefined
        }
      }),
    )
    const known = states.filter((s): s is PartitionState & { peer: string } => s !== undefined)
    const leader = known.find((s) => s.role === 'leader')
    if (leader) this.leaders.set(partitionKey(ref), leader.peer)
    const hint = leader?.peer ?? known.find((s) => s.leader !== null)?.leader ?? null
    return {
      partition: ref.partition,
      leader: hint,
      replicas: [...replicas],
      inSync: leader?.inSync ?? [],
      firstOffset: leader?.firstOffset ?? Math.min(...known.map((s) => s.firstOffset), 0),
      nextOffset: leader?.nextOffset ?? Math.max(0, ...known.map((s) => s.nextOffset)),
    }
  }

  /** The stream named `name`: from the directory, else asked of every known cluster. */
  async locate(name: string, opts: { deadline: number; signal: AbortSignal }): Promise<KnownStream> {
    const known = this.d.directory.get(name)
    if (known) return known
    const timeout = Math.max(1, Math.min(2000, opts.deadline - Date.now()))
    await Promise.all(
      this.d.clusters().map(async (cluster) => {
        const body = encodeMetaCall({ op: 'table', cluster })
        for (const peer of this.d.storageMembers(cluster).slice(0, 3)) {
          try {
            const r = decodeMetaReply(
              await this.d.rpc.call(peer, 's.meta', body, { timeout, signal: opts.signal }),
            )
            if (r.status === 'ok') {
              this.d.directory.receive(r.table, undefined)
              return
            }
          } catch (err) {
            if (err instanceof AbortedError) throw err
          }
        }
      }),
    )
    const found = this.d.directory.get(name)
    if (found) return found
    throw new StreamNotFoundError(`no stream named "${name}"`)
  }

  /**
   * Runs a metadata call on the cluster's metadata leader, proven with `auth` (a fresh proof
   * per attempt); resolves with the signed table.
   */
  meta(
    call: MetaCall,
    opts: { deadline: number; signal: AbortSignal },
    auth?: AdminAuth,
  ): Promise<Uint8Array> {
    return this.leaderCall(
      call.cluster,
      's.meta',
      () => this.d.admin.prove(call, auth, encodeMetaCall),
      (bytes) => {
        const r = decodeMetaReply(bytes)
        return r.status === 'ok' ? { status: 'ok', value: r.table } : r
      },
      opts,
    )
  }

  /**
   * Calls `method` on the cluster's metadata leader: the known leader first, then each member,
   * following leader hints, until the deadline. Safe only for calls that may run twice
   * (metadata commands carry request ids; consumer commits only move forward).
   */
  async leaderCall<T>(
    cluster: string,
    method: string,
    body: Uint8Array | (() => Uint8Array),
    decode: (bytes: Uint8Array) => LeaderReply<T>,
    opts: { deadline: number; signal: AbortSignal },
    /** The capability the body's hash names, presented first (grants.ts). */
    auth?: DataAuth,
  ): Promise<T> {
    let hint: string | null = this.metaLeaders.get(cluster) ?? this.d.directory.table(cluster)?.leader ?? null
    const tried = new Set<string>()
    let last: unknown
    let sawMembers = false
    while (Date.now() < opts.deadline) {
      if (opts.signal.aborted) throw new AbortedError('aborted')
      // Only members with a data directory run the metadata group.
      const members = this.d.storageMembers(cluster)
      if (members.length === 0) {
        const wait = AbortSignal.any([
          opts.signal,
          AbortSignal.timeout(Math.max(1, opts.deadline - Date.now())),
        ])
        await this.d.nextChange(wait).catch(() => {})
        continue
      }
      sawMembers = true
      const peer =
        hint !== null && members.includes(hint) && !tried.has(hint)
          ? hint
          : members.find((m) => !tried.has(m))
      hint = null
      if (peer === undefined) {
        tried.clear()
        await sleep(150, opts.signal)
        continue
      }
      tried.add(peer)
      const timeout = Math.max(1, Math.min(5000, opts.deadline - Date.now()))
      let r: LeaderReply<T>
      try {
        const bytes = typeof body === 'function' ? body() : body
        r = decode(await this.presenter.call(peer, method, bytes, { timeout, signal: opts.signal }, auth))
      } catch (err) {
        if (!retryable(err)) throw err
        last = err
        continue
      }
      if (r.status === 'ok') {
        this.metaLeaders.set(cluster, peer)
        return r.value
      }
      if (r.status === 'error') throw errorFromWire(r.name, r.message)
      hint = r.hint
      if (hint === null || tried.has(hint)) await sleep(100, opts.signal)
      if (hint !== null) tried.delete(hint)
    }
    if (!sawMembers) {
      const all = this.d.members(cluster).length // known, but none with a data directory
      throw new NoMembersError(
        all > 0 ? noRoleMessage(cluster, 'storage', all) : `no reachable member of cluster ${cluster}`,
      )
    }
    throw new TimeoutError(
      `no metadata leader of cluster ${cluster} answered in time${last ? ` (last: ${(last as Error).message})` : ''}`,
    )
  }

  /**
   * Routes a call to a partition: the cached leader first, then the replicas in turn,
   * following leader hints; sent again only when it was certainly not served (unreachable
   * peer, not the leader, not hosted there). Publishes go through `Publisher` instead.
   */
  async route<T>(
    ref: PartitionRef,
    replicas: string[],
    method: string,
    body: Uint8Array,
    decode: (bytes: Uint8Array) => Routed<T>,
    opts: { deadline: number; signal: AbortSignal },
    /** The capability the body's hash names, presented first (grants.ts). */
    auth?: DataAuth,
    /**
     * The call only reads (`s.fetch`, `s.seek`): when the link to the replica is lost while
     * it waits (`MemberLostError`, e.g. the leader's process died), ask the next replica.
     */
    readOnly = false,
  ): Promise<T> {
    const key = partitionKey(ref)
    let next: string | undefined = this.leaders.get(key)
    let turn = 0
    while (true) {
      const remaining = opts.deadline - Date.now()
      if (remaining <= 0)
        throw new TimeoutError(`partition ${ref.partition} of stream ${ref.stream}: no leader in time`)
      if (opts.signal.aborted) throw new AbortedError('aborted')
      const peer: string = next ?? replicas[turn++ % replicas.length]!
      next = undefined
      let r: Routed<T>
      try {
        const o = { timeout: remaining, signal: opts.signal }
        r = decode(await this.presenter.call(peer, method, body, o, auth))
      } catch (err) {
        if (!(err instanceof PeerUnreachableError || (readOnly && err instanceof MemberLostError))) throw err
        if (this.leaders.get(key) === peer) this.leaders.delete(key)
        if (turn % replicas.length === 0) await sleep(100, opts.signal)
        continue
      }
      if (r.status === 'ok') {
        this.leaders.set(key, peer)
        return r.value
      }
      if (this.leaders.get(key) === peer) this.leaders.delete(key)
      if (r.status === 'notLeader' && r.hint !== null && r.hint !== peer && replicas.includes(r.hint))
        next = r.hint
      else await sleep(r.status === 'notLeader' ? 50 : 100, opts.signal)
    }
  }

  /**
   * Appends a message published on `topic` to the stream capturing it; undefined when none
   * does. With an `ack` other than 'none' and no such stream it throws `StreamNotFoundError`
   * at once, before anything is sent (the caller then delivers nothing to subscribers either).
   * Without `ack` the append runs in the background (at most `MAX_BACKGROUND_APPENDS` at once;
   * more wait here).
   */
  publish(
    topic: string,
    data: Uint8Array,
    key: Uint8Array | undefined,
    headers: Record<string, string> | undefined,
    ack: WireAck,
    timeout: number,
    msgId?: string,
    capability?: Capability,
    /** Conditional append: the key's latest live offset (-1: none); partition-cas.ts. */
    expectedRevision?: number,
  ): Promise<PublishAck | undefined> | undefined {
    const known = this.d.directory.forTopic(topic)
    if (known === undefined) {
      if (ack === 'none') return undefined
      // Thrown, not returned: the caller has not delivered the message to subscribers yet and
      // must not (a failed publish delivers nothing).
      throw new StreamNotFoundError(`no durable stream captures topic ${topic} (ack: '${ack}' needs one)`)
    }
    const { meta } = known
    let partition: number
    if (key !== undefined) partition = keyHash(key) % meta.partitions
    else if (msgId !== undefined)
      partition = keyHash(utf8.encode(msgId)) % meta.partitions // retries land alike
    else {
      const n = this.roundRobin.get(meta.name) ?? 0
      this.roundRobin.set(meta.name, n + 1)
      partition = n % meta.partitions
    }
    const ref = { stream: meta.name, createdIndex: meta.createdIndex, partition }
    const replicas = meta.placement[partition]!
    const message: PubMessage = { topic, msgId, key, headers, data }
    if (expectedRevision !== undefined) message.expectedRevision = expectedRevision
    const auth = this.data.pick(known.cluster, meta, 'publish', capability, topic)
    const send = (resolve: (s: Stored) => void, reject: (err: unknown) => void) =>
      this.publisher.publish(
        partitionKey(ref),
        ref,
        replicas,
        { message, ack, deadline: Date.now() + timeout, timeout, resolve, reject },
        auth,
      )
    if (ack !== 'none')
      return new Promise<Stored>(send).then(({ offset, duplicate }) => {
        const a: PublishAck = { stream: meta.name, partition, offset }
        if (duplicate) a.duplicate = true
        return a
      })
    return this.backgroundSlot().then(() => {
      send(
        () => this.releaseSlot(),
        () => {
          this.d.count('streams.appendsFailed')
          this.releaseSlot()
        },
      )
      return undefined
    })
  }

  private backgroundSlot(): Promise<void> {
    if (this.background < MAX_BACKGROUND_APPENDS) {
      this.background++
      return Promise.resolve()
    }
    return new Promise((resolve) =>
      this.slotWaiters.push(() => {
        this.background++
        resolve()
      }),
    )
  }

  private releaseSlot(): void {
    this.background--
    this.slotWaiters.shift()?.()
  }

  /**
   * Asks the partition leader (followers send the caller on to it) for an offset: `'end'`, the
   * committed end as the leader knows it at the time of the call (every message acknowledged
   * before lies below it), or `{ time }`, the first offset at or after `time` (ms).
   */
  seek(ref: PartitionRef, replicas: string[], target: SeekTarget, signal: AbortSignal): Promise<number> {
    const sig = AbortSignal.any([signal, this.closing.signal])
    const opts = { deadline: Date.now() + 10_000, signal: sig }
    return this.route(
      ref,
      replicas,
      's.seek',
      encodeSeek(ref, target),
      decodeOffsetReply,
      opts,
      undefined,
      true,
    )
  }

  /** Fetches committed messages of a partition from `offset` (long poll up to `waitMs`). */
  fetch(
    ref: PartitionRef,
    replicas: string[],
    offset: number,
    waitMs: number,
    signal: AbortSignal,
    /** Bytes to read at most (a replica returns one message even when it alone is larger). */
    maxBytes = 1024 * 1024,
    /** The capability to read with (grants.ts). */
    auth?: DataAuth,
  ): Promise<FetchResult> {
    // The reply must fit one link frame of this node (maxMessageSize + FRAME_OVERHEAD).
    const body = encodeFetchCall({
      ...ref,
      offset,
      maxBytes: Math.min(maxBytes, this.d.maxMessageSize),
      waitMs,
      auth: auth?.hash,
    })
    const sig = AbortSignal.any([signal, this.closing.signal])
    const opts = { deadline: Date.now() + waitMs + 10_000, signal: sig }
    return this.route(ref, replicas, 's.fetch', body, decodeFetchReply, opts, auth, true)
  }
}
