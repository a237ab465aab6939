/**
 * `Publisher`: sends this node's publishes to partition leaders, batching the concurrent
 * publishes to one partition into one `s.pub` call (wire.ts) each.
 *
 * Per partition, a queue: a publish joins it and is sent at the end of the current microtask
 * with everything queued meanwhile, in calls of at most `PUB_BATCH_MESSAGES` messages and
 * `PUB_BATCH_BYTES` bytes (one message may exceed it: it goes alone), all of one
 * acknowledgement level, with at most `PUB_CALLS_IN_FLIGHT` calls in flight. A publish made
 * while nothing is in flight leaves at once, alone: batching adds no delay. The leader appends
 * a call's messages in order and answers each separately (offset, duplicate, or error).
 *
 * Ordering: messages leave in the order `publish` was called and one call's messages are
 * appended in that order; calls go out in order on the one link to the leader. While no
 * leader is known only one call is in flight, and while a call is being retried (no leader
 * yet, another leader) no new call leaves, so publishes reach the next leader in order too.
 *
 * Retry rules (as for a single publish): a call is sent again only while its messages are
 * certainly not appended (not the leader, replica not started, peer unreachable, or the
 * leader answered "retry" for them). When the outcome is unknown — the link dropped after the
 * call was written, or the leader answered `LeadershipLostError` (it lost leadership before
 * the message committed) — messages with a `msgId` are sent again, following the new leader
 * (the stream's duplicate window stores them once; the caller gets the final answer, with
 * `duplicate: true` when the first attempt was stored after all), and the others reject with
 * `MemberLostError` / `LeadershipLostError`. Each message rejects with `TimeoutError` at its own
 * deadline, whatever the other messages of its call (its `cause` is the last unknown outcome).
 *
 * Memory: the queue holds the callers' messages (no copies), at most `PUB_MAX_QUEUED` per
 * partition (beyond it a publish rejects at once with `OverloadedError`: the caller is
 * publishing faster than the leader acknowledges and should await earlier publishes); at
 * most `PUB_CALLS_IN_FLIGHT` encoded calls exist per partition. Acknowledged data is the leader's business: a publish
 * resolves only with the leader's answer for that message.
 */
import {
  AbortedError,
  errorFromWire,
  LeadershipLostError,
  MemberLostError,
  OverloadedError,
  PlexusError,
  TimeoutError,
} from '../errors.js'
import { type PeerRpc, PeerUnreachableError } from '../rpc/rpc.js'
import { BinaryWriter, uninitializedBytes } from '../util/binary.js'
import type { DataAuth, GrantPresenter } from './access/grants.js'
import {
  decodePubReply,
  type PartitionRef,
  type PubMessage,
  pubMessageSize,
  type Stored,
  type WireAck,
  writePubHead,
  writePubMessage,
} from './wire.js'

/** Most messages in one `s.pub` call. */
export const PUB_BATCH_MESSAGES = 1024
/** Most bytes of messages in one `s.pub` call (a larger single message goes alone). */
export const PUB_BATCH_BYTES = 1 << 20
/** Most `s.pub` calls in flight per partition from one node. */
export const PUB_CALLS_IN_FLIGHT = 4
/** Most publishes queued per partition on one node; more reject with `OverloadedError`. */
export const PUB_MAX_QUEUED = 65_536

/** What the publisher needs from its node's stream client. */
export interface PublisherDeps {
  rpc: PeerRpc
  /** Sends calls made with a capability, presenting it first (grants.ts). */
  presenter: GrantPresenter
  /** Last leader seen per partition key (shared with the stream client). */
  leaders: Map<string, string>
  /** Aborted when the node stops. */
  signal: AbortSignal
}

/** Resolves after `ms`; rejects with `AbortedError` when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(done, ms)
    function done() {
      signal?.removeEventListener('abort', abort)
      resolve()
    }
    function abort() {
      clearTimeout(t)
      reject(new AbortedError('aborted'))
    }
    signal?.addEventListener('abort', abort, { once: true })
  })
}

/** One publish waiting for its result. */
export interface PendingPublish {
  message: PubMessage
  ack: WireAck
  /** Epoch ms after which it rejects with `TimeoutError`. */
  deadline: number
  /** The caller's timeout (ms), for the error message. */
  timeout: number
  resolve(stored: Stored): void
  reject(err: unknown): void
}

interface Entry extends PendingPublish {
  size: number
  /** Written in a call at least once (a timeout then leaves the outcome unknown). */
  sent: boolean
  done: boolean
  /** Why an earlier attempt's outcome is unknown (the `cause` of a later timeout). */
  unknown?: Error
}

/**
 * The publishes of this node, batched per partition (see the module doc). Ordering: one
 * partition's messages reach its leader in `publish` order. Durability: each resolves only
 * with the leader's answer for that message (`ack` as the caller asked); nothing is
 * acknowledged here.
 */
export class Publisher {
  private readonly parts = new Map<string, PartitionQueue>()

  constructor(private readonly d: PublisherDeps) {}

  /**
   * Queues `p` for partition `ref` (key `key`), whose replicas are `replicas` (placement
   * order); `p` settles exactly once. `auth`: the capability it is published with (grants.ts);
   * publishes with different capabilities queue apart (ordered only among themselves).
   */
  publish(key: string, ref: PartitionRef, replicas: string[], p: PendingPublish, auth?: DataAuth): void {
    if (auth !== undefined) key = `${key} ${auth.key}`
    const e = p as Entry
    e.size = pubMessageSize(p.message)
    e.sent = false
    e.done = false
    e.unknown = undefined
    if (this.d.signal.aborted) {
      settle(e, new AbortedError('node is stopped'))
      return
    }
    let q = this.parts.get(key)
    if (q === undefined) {
      q = new PartitionQueue(this.d, key, ref, auth, () => {
        if (this.parts.get(key) === q) this.parts.delete(key)
      })
      this.parts.set(key, q)
    }
    q.replicas = replicas
    if (q.queued >= PUB_MAX_QUEUED) {
      settle(
        e,
        new OverloadedError(
          `${PUB_MAX_QUEUED} publishes queued for partition ${ref.partition} of stream ${ref.stream}; ` +
            'await earlier publishes before sending more',
        ),
      )
      return
    }
    q.add(e)
  }

  /** Rejects every queued publish (`AbortedError`); calls in flight end with the node's signal. */
  close(): void {
    for (const q of [...this.parts.values()]) q.close()
    this.parts.clear()
  }
}

function settle(e: Entry, err: unknown, stored?: Stored): void {
  if (e.done) return
  e.done = true
  if (stored !== undefined) e.resolve(stored)
  else e.reject(err)
}

/** One partition's queue and calls in flight. */
class PartitionQueue {
  replicas: string[] = []
  private queue: Entry[] = []
  private head = 0
  private inflight = 0
  /** Calls waiting to be sent again: no new call leaves meanwhile (ordering). */
  private retrying = 0
  private scheduled = false
  private turn = 0
  /** Messages of the calls in flight (swept for deadlines). */
  private readonly calls = new Set<Entry[]>()
  private timer: NodeJS.Timeout | undefined
  private timerAt = Number.POSITIVE_INFINITY

  constructor(
    private readonly d: PublisherDeps,
    private readonly key: string,
    private readonly ref: PartitionRef,
    private readonly auth: DataAuth | undefined,
    private readonly onIdle: () => void,
  ) {}

  /** Publishes queued and not yet sent. */
  get queued(): number {
    return this.queue.length - this.head
  }

  add(e: Entry): void {
    this.queue.push(e)
    if (e.deadline < this.timerAt) this.arm(e.deadline)
    if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(() => this.pump())
    }
  }

  close(): void {
    const err = new AbortedError('node is stopped')
    for (let i = this.head; i < this.queue.length; i++) settle(this.queue[i]!, err)
    this.queue = []
    this.head = 0
    clearTimeout(this.timer)
  }

  /** Sends queued messages while calls may leave. */
  private pump(): void {
    this.scheduled = false
    while (this.inflight < PUB_CALLS_IN_FLIGHT && this.retrying === 0) {
      // With no leader known, one call finds it first: the others would try replicas in
      // turn and could reach the leader out of order.
      if (this.inflight > 0 && !this.d.leaders.has(this.key)) break
      const batch = this.take()
      if (batch === undefined) break
      this.inflight++
      this.calls.add(batch)
      void this.send(batch)
    }
    if (this.head > 0 && (this.head >= this.queue.length || this.head > 1024)) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    this.idleCheck()
  }

  /**
   * The next call's messages: the queue's head run of one ack level, within the per-call
   * bounds. (Taking all that is queued beats spreading a burst over the free calls: measured,
   * fewer and larger calls cost the leader less per message and keep its raft entries full.)
   */
  private take(): Entry[] | undefined {
    while (this.head < this.queue.length && this.queue[this.head]!.done) this.head++
    if (this.head >= this.queue.length) return undefined
    const ack = this.queue[this.head]!.ack
    const batch: Entry[] = []
    let bytes = 0
    while (this.head < this.queue.length && batch.length < PUB_BATCH_MESSAGES) {
      const e = this.queue[this.head]!
      if (e.done) {
        this.head++
        continue
      }
      if (e.ack !== ack || (batch.length > 0 && bytes + e.size > PUB_BATCH_BYTES)) break
      batch.push(e)
      bytes += e.size
      this.head++
    }
    return batch
  }

  private encode(live: Entry[], ack: WireAck): Uint8Array {
    let size = 96 + this.ref.stream.length * 3
    for (const e of live) size += e.size
    const b = writePubHead(new BinaryWriter(0, uninitializedBytes(size)), this.ref, ack, live.length)
    for (const e of live) writePubMessage(b, e.message)
    if (this.auth !== undefined) b.bytes(this.auth.hash)
    return b.finish()
  }

  /** Sends one call's messages until each settled; see the module doc for the retry rules. */
  private async send(batch: Entry[]): Promise<void> {
    const { d, key } = this
    const ack = batch[0]!.ack
    let next = d.leaders.get(key)
    let live = batch
    let retried = false
    /** This call goes again (after `ms`): new calls wait for it. */
    const again = async (ms: number) => {
      if (!retried) {
        retried = true
        this.retrying++
      }
      if (ms > 0) await sleep(ms, d.signal)
    }
    try {
      for (;;) {
        live = live.filter((e) => !e.done)
        if (live.length === 0) return
        this.calls.delete(batch)
        batch = live
        this.calls.add(batch)
        if (d.signal.aborted) throw new AbortedError('node is stopped')
        const replicas = this.replicas
        const peer: string = next ?? replicas[this.turn++ % replicas.length]!
        next = undefined
        let deadline = 0
        const wasSent = live.map((e) => e.sent)
        for (const e of live) {
          e.sent = true // while in flight it may have been written
          if (e.deadline > deadline) deadline = e.deadline
        }
        let results: ReturnType<typeof decodePubReply>
        try {
          const body = this.encode(live, ack)
          const timeout = Math.max(1, deadline - Date.now())
          const opts = { timeout, signal: d.signal }
          results = decodePubReply(
            this.auth === undefined
              ? await d.rpc.call(peer, 's.pub', body, opts)
              : await d.presenter.call(peer, 's.pub', body, opts, this.auth),
          )
        } catch (err) {
          if (err instanceof PeerUnreachableError) {
            for (let i = 0; i < live.length; i++) live[i]!.sent = wasSent[i]! // not written this time
          } else if (err instanceof MemberLostError) {
            // written, outcome unknown: only messages with a msgId may go again (deduplicated)
            for (const e of live) {
              if (e.message.msgId === undefined) settle(e, err)
              else e.unknown = err
            }
          } else throw err
          if (d.leaders.get(key) === peer) d.leaders.delete(key)
          await again(this.turn % replicas.length === 0 ? 100 : 0)
          continue
        }
        if (results.status === 'ok') {
          d.leaders.set(key, peer)
          const res = results.value
          if (res.length !== live.length)
            throw new PlexusError(`${peer} answered ${res.length} results for ${live.length} messages`)
          const retry: Entry[] = []
          for (let i = 0; i < res.length; i++) {
            const r = res[i]!
            const e = live[i]!
            if (r === 'retry') retry.push(e)
            else if ('error' in r) {
              const err = errorFromWire(r.error.name, r.error.message)
              if (!(err instanceof LeadershipLostError)) settle(e, err)
              else if (e.message.msgId !== undefined) {
                // outcome unknown, but deduplicated: send it again, to the next leader
                e.unknown = err
                retry.push(e)
              } else settle(e, this.lost(err))
            } else settle(e, undefined, r)
          }
          if (retry.length === 0) return
          live = retry
          if (d.leaders.get(key) === peer) d.leaders.delete(key)
          await again(50)
          continue
        }
        if (d.leaders.get(key) === peer) d.leaders.delete(key)
        const hint = results.status === 'notLeader' ? results.hint : null
        if (hint !== null && hint !== peer && replicas.includes(hint)) {
          next = hint
          await again(0)
        } else await again(results.status === 'notLeader' ? 50 : 100)
      }
    } catch (err) {
      for (const e of live) settle(e, err)
    } finally {
      this.calls.delete(batch)
      this.inflight--
      if (retried) this.retrying--
      if (!this.scheduled) {
        this.scheduled = true
        queueMicrotask(() => this.pump())
      }
    }
  }

  /** The error of a publish without msgId whose leader lost leadership (outcome unknown). */
  private lost(err: LeadershipLostError): LeadershipLostError {
    return new LeadershipLostError(
      `publish to partition ${this.ref.partition} of stream ${this.ref.stream}: ${err.message} ` +
        '(the message may or may not be stored; a publish with a msgId is retried instead)',
      { cause: err },
    )
  }

  /** Forgets the partition's state once nothing is queued or in flight. */
  private idleCheck(): void {
    if (this.inflight > 0 || this.head < this.queue.length) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
    this.onIdle()
  }

  private arm(at: number): void {
    clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(() => this.sweep(), Math.max(0, at - Date.now()) + 1)
    this.timer.unref()
  }

  /** Rejects every message past its deadline, queued or in flight; re-arms for the next. */
  private sweep(): void {
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
    const now = Date.now()
    let nextAt = Number.POSITIVE_INFINITY
    const check = (e: Entry) => {
      if (e.done) return
      if (e.deadline <= now) {
        const what = `publish to partition ${this.ref.partition} of stream ${this.ref.stream}`
        const why = e.unknown === undefined ? '' : `: ${e.unknown.message}`
        settle(
          e,
          new TimeoutError(
            e.sent
              ? `${what}: no acknowledgement within ${e.timeout} ms (outcome unknown${why})`
              : `${what}: no leader in time (${e.timeout} ms)`,
            e.unknown === undefined ? undefined : { cause: e.unknown },
          ),
        )
      } else if (e.deadline < nextAt) nextAt = e.deadline
    }
    for (let i = this.head; i < this.queue.length; i++) check(this.queue[i]!)
    for (const c of this.calls) for (const e of c) check(e)
    if (nextAt !== Number.POSITIVE_INFINITY) this.arm(nextAt)
  }
}
