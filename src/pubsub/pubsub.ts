/**
 * Topic pub/sub over links. Each node tells every linked peer which patterns it is
 * subscribed to (a full set when the link comes up, then additions and removals); a
 * publisher sends each message once to every linked peer whose interest matches, on that
 * peer's ordered link, so every matching subscriber receives it at most once and in
 * publish order per publisher. Interest of a peer is forgotten when its connection ends.
 *
 * Subscribers with a handler get it called in order, synchronously; iterators read from a
 * bounded queue (`maxPending` messages / `maxPendingBytes`): when it is full, new messages
 * for that subscription are dropped and counted (`dropped`, `pubsub.dropped` in status).
 *
 * With bounded links, a subscriber's plain patterns also travel in its signed interest record
 * over the neighbour graph (src/overlay/interest.ts); a publisher sends to a matching node it
 * has no interest from over an on-demand link (src/overlay/deliver.ts), once per node and in
 * publish order like any other.
 *
 * Readiness (`sub.ready`, `flush`): linked peers acknowledge the interest they applied; see
 * `ready.ts`. A publisher without a link learns it from the record, which readiness does not
 * wait for. Queue groups (`subscribe(p, { queue })`, one member per message): `groups.ts`.
 */
import { PEER_PATTERNS_TOTAL } from '../constants.js'
import { AbortedError, InvalidArgumentError } from '../errors.js'
import { FrameType, writeFrame } from '../link/frames.js'
import { type Link, SENDER_WAIT_BYTES } from '../link/link.js'
import { type BinaryReader, BinaryWriter, encoded, RepeatedString } from '../util/binary.js'
import { PeerInputError, peerTopic } from '../util/peer-input.js'
import { ReceivedMessage } from '../util/received.js'
import {
  InterestMode,
  type PublishQueues,
  type PubMessage,
  type QueueEntry,
  readInterest,
  readPublishRest,
  writeInterest,
  writePublish,
} from './frames.js'

export type { Subscription } from './subscription.js'

import { type FarGroups, type GroupRoute, type MemberState, QueueGroups } from './groups.js'
import { flushLinked, InterestSync } from './ready.js'
import { checkPattern, SubjectIndex } from './subject.js'
import { Sub, type Subscription } from './subscription.js'

const EMPTY = new Uint8Array(0)
/** Topics whose interested peers are cached. */
const ROUTE_CACHE_SIZE = 4096
const NO_QUEUES: string[] = []

/** What pub/sub needs from the node. */
export interface PubSubHost {
  self: string
  links(): Link[]
  link(peer: string): Link | undefined
  count(counter: string, n?: number): void
  /** See `SyncHost.sync` in ready.ts: answers once `peer` applied the frames sent before. */
  sync(peer: string): Promise<unknown>
  /**
   * Bounded links (src/overlay/): peers whose interest record matches `topic`. Those we have
   * no direct interest from (no link yet) get the message through `sendFar`.
   */
  farRoute?(topic: string): string[]
  /** Sends an encoded Publish frame to a peer without a link (opening one on demand). */
  sendFar?(peer: string, frame: Uint8Array): void
  /** Queue-group members known from interest records, and whether one is reachable now. */
  farGroups?: FarGroups & { state(peer: string): MemberState }
  /** Our plain patterns changed (the interest record is re-signed). */
  interestChanged?(): void
}

/** Pub/sub engine of one node. */
export class PubSub {
  /** Messages written to peers' links, one per subscribed peer (metrics). */
  sentToPeers = 0
  /** Local plain subscriptions (queue-group members are in `groups`). */
  private readonly local = new SubjectIndex<Sub>()
  private readonly groups: QueueGroups<Sub>
  /** The groups a received Publish frame names (reused: one frame is read at a time). */
  private readonly frameQueues: PublishQueues = { queues: NO_QUEUES, only: false }
  private readonly subs = new Set<Sub>()
  private readonly patternCount = new Map<string, number>()
  private readonly remote = new Map<string, SubjectIndex<string>>()
  private readonly remotePatterns = new Map<string, Set<string>>()
  /** Patterns of every peer together (at most `PEER_PATTERNS_TOTAL`). */
  private remotePatternTotal = 0
  private routeCache = new Map<string, string[]>()
  /** Local subscriptions matching a topic, cached until a subscription changes. */
  private localCache = new Map<string, Sub[]>()
  /** Scratch buffer for frames written to several peers. */
  private readonly scratch = new BinaryWriter(4096)
  /** The frame `writeOut` copies into a link (saves a closure per link). */
  private out: Uint8Array = EMPTY
  private readonly writeOut = (w: BinaryWriter): void => {
    w.raw(this.out)
  }
  /** Topics of received publish frames (a publisher usually repeats its topic). */
  private readonly topics = new RepeatedString('topic')
  /** The last topic of a received publish found valid (publishers repeat topics). */
  private checkedTopic = ''
  /** Which interest changes linked peers acknowledged (`ready`, `flush`). */
  private readonly sync: InterestSync
  /** Pending `flush` calls: rejected with `AbortedError` when the node stops. */
  private readonly flushes = new Set<(err: Error) => void>()
  /** Messages published from this node (status `pubsub.published`; rates on the dashboard). */
  published = 0
  /** Messages received from peers for local subscriptions (status `pubsub.received`). */
  received = 0

  constructor(readonly host: PubSubHost) {
    this.groups = new QueueGroups(host.self, host.farGroups)
    this.sync = new InterestSync({
      peers: () => host.links().map((l) => l.peer),
      sync: (peer) => host.sync(peer),
    })
  }

  /** Subscribes; with `queue` (checked by the caller) as a member of that queue group. */
  subscribe(
    pattern: string,
    handler?: (m: PubMessage) => void | Promise<void>,
    queue?: string,
  ): Subscription {
    checkPattern(pattern, 'pattern')
    if (handler !== undefined && typeof handler !== 'function') {
      throw new InvalidArgumentError('handler must be a function when given')
    }
    const sub = new Sub(pattern, handler, this, queue)
    this.subs.add(sub)
    if (queue !== undefined) {
      const entry = this.groups.addLocal(pattern, queue, sub)
      if (entry) this.sendInterest(InterestMode.Add, [], [entry])
    } else {
      this.local.add(pattern, sub)
      this.localCache.clear()
      const n = (this.patternCount.get(pattern) ?? 0) + 1
      this.patternCount.set(pattern, n)
      if (n === 1) this.sendInterest(InterestMode.Add, [pattern])
    }
    // Ready once the change that announced this pattern (or a later one) is acknowledged.
    sub.epoch = this.sync.epoch
    return sub
  }

  /** `sub.ready`: see `Subscription.ready`. */
  whenReady(sub: Sub): Promise<void> {
    if (sub.closed) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => {
        sub.waiter = undefined
        sub.resolveReady = undefined
        resolve()
      }
      sub.resolveReady = done
      sub.waiter = this.sync.wait(sub.epoch, done)
    })
  }

  /**
   * Resolves once every peer linked now acknowledged every interest change made so far (or
   * is no longer linked); rejects with `TimeoutError` after `timeout` ms, `AbortedError`
   * on `signal` or when the node stops.
   */
  flush(timeout: number, signal?: AbortSignal): Promise<void> {
    return flushLinked(this.sync, this.flushes, timeout, signal)
  }

  /** Called by a subscription's `unsubscribe`. */
  remove(sub: Sub): void {
    this.subs.delete(sub)
    if (sub.queue !== undefined) {
      const entry = this.groups.removeLocal(sub.pattern, sub.queue, sub)
      if (entry) this.sendInterest(InterestMode.Remove, [], [entry])
    } else {
      this.local.delete(sub.pattern, sub)
      this.localCache.clear()
      const n = (this.patternCount.get(sub.pattern) ?? 1) - 1
      if (n > 0) this.patternCount.set(sub.pattern, n)
      else {
        this.patternCount.delete(sub.pattern)
        this.sendInterest(InterestMode.Remove, [sub.pattern])
      }
    }
    // An ended subscription is ready: stop waiting for peers on its behalf.
    if (sub.waiter) this.sync.cancel(sub.waiter)
    sub.resolveReady?.()
  }

  private sendInterest(mode: number, patterns: string[], queued?: QueueEntry[]): void {
    for (const link of this.host.links()) {
      link.writeControl((w) =>
        writeFrame(w, FrameType.Interest, (b) => writeInterest(b, mode, patterns, queued)),
      )
    }
    this.sync.changed()
    this.host.interestChanged?.()
  }

  /** Our plain subscription patterns (for the interest record). */
  localPatterns(): string[] {
    return [...this.patternCount.keys()]
  }

  /** Our queue-group entries (for the interest record). */
  localQueues(): QueueEntry[] {
    return this.groups.localEntries()
  }

  /**
   * Sends to the peers of `far` we have no direct interest from (`frame`: the encoded Publish
   * frame when already made).
   */
  private publishFar(
    far: string[],
    topic: string,
    data: Uint8Array,
    key: Uint8Array | undefined,
    headers: Record<string, string> | undefined,
    frame: Uint8Array | undefined,
  ): void {
    for (const peer of far) {
      if (this.remote.has(peer) || peer === this.host.self) continue
      if (!frame) {
        this.scratch.reset()
        writeFrame(this.scratch, FrameType.Publish, (b) => writePublish(b, topic, data, key, headers))
        frame = this.scratch.finish()
      }
      this.sentToPeers++
      this.host.sendFar!(peer, frame)
    }
  }

  /** A link came up: tell the peer everything we are subscribed to. */
  onLinkUp(link: Link): void {
    const patterns = [...this.patternCount.keys()]
    const queued = this.groups.localEntries()
    link.writeControl((w) =>
      writeFrame(w, FrameType.Interest, (b) => writeInterest(b, InterestMode.Replace, patterns, queued)),
    )
  }

  /** A peer's connection ended: forget its interest. */
  onPeerGone(peer: string): void {
    this.sync.forget(peer)
    this.remotePatternTotal -= this.groups.forget(peer)
    if (this.remote.delete(peer)) {
      this.remotePatternTotal -= this.remotePatterns.get(peer)?.size ?? 0
      this.remotePatterns.delete(peer)
      this.routeCache.clear()
    }
  }

  onInterest(peer: string, r: BinaryReader): void {
    const { mode, patterns, queued } = readInterest(r) // patterns checked: PeerInputError, refused
    let idx = this.remote.get(peer)
    let set = this.remotePatterns.get(peer)
    if (!idx || !set || mode === InterestMode.Replace) {
      if (set) this.remotePatternTotal -= set.size
      idx = new SubjectIndex()
      set = new Set()
      this.remote.set(peer, idx)
      this.remotePatterns.set(peer, set)
    }
    for (const p of patterns) {
      if (mode === InterestMode.Remove) {
        idx.delete(p, p)
        if (set.delete(p)) this.remotePatternTotal--
      } else if (!set.has(p)) {
        if (set.size >= 10_000) throw new PeerInputError('patterns', 'peer declared more than 10000 patterns')
        if (this.remotePatternTotal >= PEER_PATTERNS_TOTAL) {
          this.host.count('pubsub.refused.totalPatterns') // every peer's share is taken
          continue
        }
        idx.add(p, p)
        set.add(p)
        this.remotePatternTotal++
      }
    }
    this.routeCache.clear()
    if (queued.length > 0 || mode === InterestMode.Replace) this.onQueueInterest(peer, mode, queued)
  }

  /** The queue-group entries of an Interest frame; they count among the peer's patterns. */
  private onQueueInterest(peer: string, mode: number, queued: QueueEntry[]): void {
    this.groups.applyRemote(
      peer,
      mode === InterestMode.Replace,
      mode === InterestMode.Remove,
      queued,
      () => {
        if (this.remotePatternTotal >= PEER_PATTERNS_TOTAL) {
          this.host.count('pubsub.refused.totalPatterns')
          return false
        }
        this.remotePatternTotal++
        return true
      },
      (n) => {
        this.remotePatternTotal -= n
      },
      () => {
        throw new PeerInputError('patterns', 'peer declared more than 10000 queue entries')
      },
    )
  }

  /** Peers with a subscription matching `topic` (cached until interest changes). */
  private route(topic: string): string[] {
    let peers = this.routeCache.get(topic)
    if (peers) return peers
    peers = []
    for (const [peer, idx] of this.remote) if (idx.match(topic).size > 0) peers.push(peer)
    if (this.routeCache.size >= ROUTE_CACHE_SIZE) this.routeCache = new Map()
    this.routeCache.set(topic, peers)
    return peers
  }

  /**
   * Sends a message to every matching subscriber (remote ones once per node). Resolves
   * once it is queued on every link; waits while a link holds `SENDER_WAIT_BYTES` or more (backpressure).
   */
  publish(
    topic: string,
    data: Uint8Array,
    key: Uint8Array | undefined,
    headers: Record<string, string> | undefined,
  ): Promise<void> | undefined {
    this.published++
    if (this.groups.active) {
      const groups = this.groups.route(topic)
      if (groups.length > 0) return this.publishToGroups(topic, data, key, headers, groups)
    }
    const peers = this.route(topic)
    let waits: Promise<void>[] | undefined
    let frame: Uint8Array | undefined
    if (peers.length > 0) {
      if (peers.length > 1) {
        // Encode once; every link copies the bytes into its own block.
        this.scratch.reset()
        writeFrame(this.scratch, FrameType.Publish, (b) => writePublish(b, topic, data, key, headers))
        frame = this.scratch.finish()
      }
      for (const peer of peers) {
        const link = this.host.link(peer)
        if (!link) continue
        this.sentToPeers++
        if (frame) {
          this.out = frame
          link.write(this.writeOut)
        } else
          link.write((w) =>
            writeFrame(w, FrameType.Publish, (b) => writePublish(b, topic, data, key, headers)),
          )
        if (link.crowded) (waits ??= []).push(link.writable(SENDER_WAIT_BYTES).catch(() => {}))
      }
    }
    const far = this.host.farRoute?.(topic)
    if (far !== undefined && far.length > 0) this.publishFar(far, topic, data, key, headers, frame)
    this.out = EMPTY
    if (this.local.size > 0) {
      const subs = this.localMatches(topic)
      if (subs.length > 0) {
        const m: PubMessage = new ReceivedMessage(topic, data, this.host.self)
        if (key) m.key = key
        if (headers) m.headers = headers
        for (const s of subs) s.deliver(m)
      }
    }
    return waits ? Promise.all(waits).then(() => {}) : undefined
  }

  /**
   * `publish` when queue groups match `topic`: one member node per group (`QueueGroups.pick`),
   * told in the frame which of its groups it was picked for; plain subscribers as usual.
   */
  private publishToGroups(
    topic: string,
    data: Uint8Array,
    key: Uint8Array | undefined,
    headers: Record<string, string> | undefined,
    groups: GroupRoute[],
  ): Promise<void> | undefined {
    const self = this.host.self
    const picks = new Map<string, string[]>()
    for (const g of groups) {
      const m = this.groups.pick(g, this.memberState, this.host.farGroups?.state)
      if (m === undefined) continue // every member's link is down: no copy for this group
      const q = picks.get(m)
      if (q) q.push(g.queue)
      else picks.set(m, [g.queue])
    }
    let waits: Promise<void>[] | undefined
    const send = (peer: string, queues: PublishQueues | undefined) => {
      const link = this.host.link(peer)
      const write = (w: BinaryWriter) =>
        writeFrame(w, FrameType.Publish, (b) => writePublish(b, topic, data, key, headers, queues))
      // A far group member (picked from its interest record) gets it over an on-demand link.
      if (!link && queues && this.host.sendFar) this.host.sendFar(peer, encoded(write))
      if (!link) return
      this.sentToPeers++
      link.write(write)
      if (link.crowded) (waits ??= []).push(link.writable(SENDER_WAIT_BYTES).catch(() => {}))
    }
    for (const peer of this.route(topic)) {
      const queues = picks.get(peer)
      if (queues) picks.delete(peer)
      send(peer, queues ? { queues, only: false } : undefined)
    }
    const far = this.host.farRoute?.(topic)
    if (far !== undefined && far.length > 0) this.publishFar(far, topic, data, key, headers, undefined)
    let localQueues: string[] | undefined
    for (const [peer, queues] of picks) {
      if (peer === self) localQueues = queues
      else send(peer, { queues, only: true })
    }
    const subs = this.local.size > 0 ? this.localMatches(topic) : undefined
    if (localQueues || (subs && subs.length > 0)) {
      const m: PubMessage = new ReceivedMessage(topic, data, self)
      if (key) m.key = key
      if (headers) m.headers = headers
      if (subs) for (const s of subs) s.deliver(m)
      if (localQueues) for (const q of localQueues) this.groups.pickLocal(topic, q)?.deliver(m)
    }
    return waits ? Promise.all(waits).then(() => {}) : undefined
  }

  /** Whether a member node's link can take a message now (`QueueGroups.pick`). */
  private readonly memberState = (peer: string): MemberState => {
    const link = this.host.link(peer)
    if (!link || link.closed) return 0
    return link.crowded ? 1 : 2
  }

  /** Local subscriptions matching `topic` (cached per topic). */
  private localMatches(topic: string): Sub[] {
    let subs = this.localCache.get(topic)
    if (!subs) {
      subs = [...this.local.match(topic)]
      if (this.localCache.size >= ROUTE_CACHE_SIZE) this.localCache = new Map()
      this.localCache.set(topic, subs)
    }
    return subs
  }

  onPublish(peer: string, r: BinaryReader, maxData: number): void {
    const topic = this.topics.read(r)
    if (topic !== this.checkedTopic) this.checkedTopic = peerTopic(topic) // no wildcards: refused
    const subs = this.local.size > 0 ? this.localMatches(topic) : undefined
    if ((!subs || subs.length === 0) && !this.groups.hasLocal) {
      this.host.count('pubsub.unwanted')
      return
    }
    const fq = this.frameQueues
    fq.queues = NO_QUEUES
    const m = readPublishRest(r, topic, peer, maxData, fq)
    let delivered = false
    if (subs && !(fq.queues.length > 0 && fq.only)) {
      for (const s of subs) s.deliver(m)
      delivered = subs.length > 0
    }
    for (const q of fq.queues) {
      const s = this.groups.pickLocal(topic, q)
      if (s) {
        s.deliver(m)
        delivered = true
      } else this.host.count('pubsub.unwanted') // its last member here just left: lost (at most once)
    }
    if (delivered) this.received++
    else if (fq.queues.length === 0) this.host.count('pubsub.unwanted')
  }

  /** Counts for status: local subscriptions, their drops, readiness waits pending. */
  stats(): { subscriptions: number; patternsFromPeers: number; dropped: number; readyWaiters: number } {
    let remote = 0
    for (const s of this.remotePatterns.values()) remote += s.size
    remote += this.groups.remoteSize
    let dropped = 0
    for (const s of this.subs) dropped += s.dropped
    return {
      subscriptions: this.subs.size,
      patternsFromPeers: remote,
      dropped,
      readyWaiters: this.sync.waiting,
    }
  }

  /** Ends every local subscription (their `ready` resolves) and fails pending flushes (node stopping). */
  close(): void {
    for (const s of [...this.subs]) s.unsubscribe()
    for (const fail of [...this.flushes]) fail(new AbortedError('node is stopped'))
    this.sync.clear()
  }
}
