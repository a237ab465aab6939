/**
 * `DurableConsumer`: a consumer whose position is stored replicated in the stream's cluster
 * (the metadata group, `consumerCommit` commands), so it resumes where it left off.
 *
 * Per partition, a *session*:
 * 1. Take the partition's lease for this durable name from the metadata leader (one holder
 *    per durable name and partition; `LEASE_TTL_MS`, renewed every `TICK_MS`). Consumers
 *    sharing a name thereby share the partitions; a consumer that gets no lease waits and
 *    retries, taking over within a lease time when the holder dies.
 * 2. Read the committed position (or start at `from` the first time) and fetch from there.
 * 3. Every delivered message is pending until acked; delivery pauses at `maxAckPending`
 *    unacked, and fetching while `maxBytesInFlight` bytes are unacked (buffered ones
 *    included: the consumer keeps them for redelivery); an unacked message is delivered
 *    again after `ackWait` (or its `backoff` value; `working()` restarts the wait, `nak()`
 *    sets it), delivery count + 1, and dropped instead after `maxDeliver` deliveries.
 *    `term()`, a drop, and messages skipped by `filter` count as acked; with `ackPolicy:
 *    'none'` a message is acked when handed out. Redeliveries are checked every `TICK_MS`, so
 *    one comes at most `TICK_MS` (plus a busy event loop) after it is due; `nak()` without a
 *    delay redelivers at once.
 * 4. Every `TICK_MS` (and on close) the acked prefix is committed: the position moves to the
 *    first unacked offset. Positions only move forward.
 * A session ends when its lease is lost, or when this consumer holds more than its fair share
 * (`ceil(partitions / consumers)`, consumers counted by the metadata leader from recent lease
 * requests) and hands one partition over: its buffered messages are dropped and later acks of
 * its messages are ignored (the next holder starts from the committed position).
 *
 * Deleting the durable name (`streams.deleteConsumer`) ends a consumer running under it: its
 * next commit or lease renewal (within `TICK_MS`) fails with `ConsumerNotFoundError`, which
 * ends its iteration with that error; nothing it acks afterwards is recorded.
 *
 * Counts of redeliveries, terminations and drops are sent to the metadata leader (`s.cons`
 * op `tally`) with every lease renewal and on close; it keeps them in memory for
 * `consumerInfo`.
 *
 * Guarantees: at least once. Nothing below the committed position is delivered again;
 * messages acked within the last tick before a crash, and unacked ones, are.
 */

import { randomBytes } from 'node:crypto'
import { CONSUMER } from '../../constants.js'
import { AbortedError, ConsumerNotFoundError } from '../../errors.js'
import { matches } from '../../pubsub/subject.js'
import type { ConsumeFrom, StreamMessage } from '../../types.js'
import type { BinaryReader } from '../../util/binary.js'
import type { MessageSettler } from '../../util/received.js'
import type { DurableStats, StreamsClient } from '../client.js'
import type { StreamMeta } from '../meta/metadata.js'
import { BufferedConsumer, toStreamMessage } from './consumer-base.js'
import {
  type DurableOptions,
  maxDeliveriesAdvisory,
  type Pending,
  redelivery,
  type Session,
  sleep,
} from './consumer-settle.js'
import {
  type ConsumerCall,
  type ConsumerRef,
  decodeLeaderReply,
  encodeConsumerCall,
  readLease,
  readPositions,
  readTally,
  type Tally,
} from './consumer-wire.js'

export type { DurableOptions }

/** Lease lifetime (ms): a dead holder's partitions move on after this long. */
export const LEASE_TTL_MS = 5000
/** Lease renewal, commit and redelivery check interval (ms). */
const TICK_MS = 100
/** Renew the lease every this many ticks. */
const RENEW_EVERY = 10
/**
 * Handing a partition over (fair share), the session first stops delivering and waits this
 * long at most for the messages it handed out to be acknowledged, so that they are committed
 * and the next holder does not receive them again (ms).
 */
const YIELD_DRAIN_MS = 2000

/** A durable consumer; see the module doc. */
export class DurableConsumer extends BufferedConsumer {
  private readonly holder = randomBytes(8).toString('hex')
  private ref: ConsumerRef | undefined
  private readonly sessions = new Set<Session>()
  private partCount = 1
  private lastYield = 0
  /** Counts not yet reported to the metadata leader. */
  private readonly tally: Tally = { redelivered: 0, terminated: 0, dropped: 0 }
  private reporting = false

  constructor(
    client: StreamsClient,
    stream: string,
    private readonly from: ConsumeFrom,
    partition: number | undefined,
    signal: AbortSignal | undefined,
    private readonly o: DurableOptions,
  ) {
    super(client, stream, signal, o.maxBytesInFlight, o.capability)
    client.durables.add(this)
    // The budget counts unacknowledged messages too: read ahead only two fetches of it.
    this.readAhead = Math.min(o.maxBytesInFlight, 2 * CONSUMER.fetchBytes)
    this.filter = o.filter
    if (!this.ended) this.run(partition).catch((err) => this.fail(err))
  }

  /** Lag and unacknowledged counts for the metrics; undefined once the consumer ended. */
  stats(): DurableStats | undefined {
    if (this.ended || this.ac.signal.aborted) return undefined
    let pending = 0
    let unacked = 0
    for (const s of this.sessions) {
      pending += Math.max(0, s.end - s.ackedUpTo)
      unacked += s.unacked
    }
    return { stream: this.ref?.stream ?? this.stream, durable: this.o.durable, pending, unacked }
  }

  /** Ends the iteration, commits what was acked, and releases the leases. */
  override close(): void {
    if (this.ended) return
    const sessions = [...this.sessions]
    super.close()
    void Promise.all(sessions.map((s) => this.finish(s))).then(() => this.report(this.finalOptions()))
  }

  protected override take(): StreamMessage | undefined {
    // Skip messages of sessions that lost their lease meanwhile; the ackWait clock of a
    // message starts when it is handed out.
    for (let b = this.shift(); b; b = this.shift()) {
      const m = b.msg
      for (const s of this.sessions) {
        const p = s.partition === m.partition && !s.ac.signal.aborted ? s.pending.get(m.offset) : undefined
        if (p && !p.acked && p.msg === m) {
          if (this.o.ackNone) this.done(s, p)
          else p.due = Date.now() + this.waitFor(m.deliveryCount)
          return m
        }
      }
    }
    return undefined
  }

  private async run(only: number | undefined): Promise<void> {
    const { cluster, meta, parts } = await this.partitions(only)
    this.ref = { cluster, stream: meta.name, createdIndex: meta.createdIndex, durable: this.o.durable }
    this.partCount = parts.length
    await Promise.all(parts.map((p) => this.partitionLoop(meta, p)))
  }

  private call<T>(call: ConsumerCall, read: (r: BinaryReader) => T, timeout = 5000): Promise<T> {
    return this.client.leaderCall(
      call.cluster,
      's.cons',
      encodeConsumerCall({ ...call, auth: this.auth?.hash }),
      (bytes) => decodeLeaderReply(bytes, read),
      { deadline: Date.now() + timeout, signal: this.ac.signal },
      this.auth,
    )
  }

  /** Takes the partition's lease (waiting while another consumer holds it), then reads. */
  private async partitionLoop(meta: StreamMeta, partition: number): Promise<void> {
    const ref = this.ref!
    while (!this.ac.signal.aborted) {
      const lease = await this.call(
        { ...ref, op: 'lease', partition, holder: this.holder, ttlMs: LEASE_TTL_MS },
        readLease,
      )
      if (!lease.granted) {
        await sleep(LEASE_TTL_MS / 5, this.ac.signal)
        continue
      }
      const positions = await this.call({ ...ref, op: 'positions' }, readPositions)
      const pref = { stream: meta.name, createdIndex: meta.createdIndex, partition }
      const start =
        positions.get(partition) ?? (await this.startOffset(meta, pref, this.from, this.ac.signal))
      const ac = new AbortController()
      const signal = AbortSignal.any([this.ac.signal, ac.signal])
      const s: Session = {
        partition,
        ac,
        pending: new Map(),
        ackedUpTo: start,
        readPos: start,
        committed: start,
        unacked: 0,
        end: start,
        ackWaiters: [],
        settler: undefined as never,
        signal,
      }
      s.settler = this.settlerOf(s)
      this.sessions.add(s)
      const ticking = this.tick(s, signal)
      try {
        await this.read(meta, s, start, signal)
      } catch (err) {
        if (!(err instanceof AbortedError) || this.ac.signal.aborted) throw err
      } finally {
        s.ac.abort()
        await ticking
        this.sessions.delete(s)
        // Its unacked messages are given up (the next holder reads them again).
        for (const p of s.pending.values()) if (!p.acked) this.release(p.chunk)
        s.pending.clear()
      }
      if (s.yielded && !this.ac.signal.aborted) {
        // Hand the partition over: release the lease, then stay away while another takes it.
        await this.call({ ...ref, op: 'lease', partition, holder: this.holder, ttlMs: 0 }, readLease).catch(
          () => {},
        )
        await sleep(LEASE_TTL_MS, this.ac.signal).catch(() => {})
      }
    }
  }

  private async read(meta: StreamMeta, s: Session, start: number, signal: AbortSignal): Promise<void> {
    const ref = { stream: meta.name, createdIndex: meta.createdIndex, partition: s.partition }
    const replicas = meta.placement[s.partition]!
    let offset = start
    while (!signal.aborted) {
      await this.room(s, signal)
      const got = await this.fetchChunk(ref, replicas, offset, signal)
      if (!got) return
      const { res, chunk } = got
      if (res.nextOffset > s.end) s.end = res.nextOffset
      if (res.messages.length === 0 && res.firstOffset > offset) {
        offset = res.firstOffset // retention removed them: nothing to ack
        s.readPos = offset
        this.advance(s)
      }
      const filter = this.filter
      for (const [i, m] of res.messages.entries()) {
        if (filter !== undefined && !matches(filter, m.topic)) {
          // Skipped: counts as acknowledged (the position passes it once those before are).
          this.release(chunk)
          offset = m.offset + 1
          s.readPos = offset
          this.advance(s)
          continue
        }
        await this.room(s, signal)
        if (signal.aborted) {
          this.release(chunk, res.messages.length - i)
          return
        }
        const p: Pending = {
          msg: toStreamMessage(meta.name, s.partition, m, 1, s.settler),
          due: Number.POSITIVE_INFINITY,
          acked: false,
          chunk,
        }
        s.pending.set(m.offset, p)
        s.unacked++
        offset = m.offset + 1
        s.readPos = offset
        if (!(await this.push(p.msg, signal))) {
          this.release(chunk, res.messages.length - i - 1)
          return
        }
      }
    }
  }

  /** Waits while `maxAckPending` messages are unacknowledged, or the session drains. */
  private async room(s: Session, signal: AbortSignal): Promise<void> {
    while ((s.unacked >= this.o.maxAckPending || s.draining === true) && !signal.aborted)
      await new Promise<void>((r) => s.ackWaiters.push(r))
  }

  /** Stops delivery and waits (at most `YIELD_DRAIN_MS`) until every handed-out message is settled. */
  private async drain(s: Session): Promise<void> {
    s.draining = true
    const deadline = Date.now() + YIELD_DRAIN_MS
    while (s.unacked > 0 && !s.signal.aborted && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()))
        s.ackWaiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
    }
  }

  /** The ack kinds of one session's messages; each a no-op once the message is settled. */
  private settlerOf(s: Session): MessageSettler {
    /** The pending entry of `m` while unsettled (and, `latest`, when `m` is its latest delivery). */
    const open = (m: StreamMessage, latest: boolean): Pending | undefined => {
      const p = s.pending.get(m.offset)
      if (p === undefined || p.acked || s.ac.signal.aborted) return undefined
      return latest && (p.msg !== m || p.due === Number.POSITIVE_INFINITY) ? undefined : p
    }
    return {
      ack: async (m) => {
        const p = open(m, false)
        if (p) this.done(s, p)
      },
      term: async (m) => {
        const p = open(m, false)
        if (!p) return
        this.done(s, p)
        this.tally.terminated++
      },
      nak: async (m, delayMs) => {
        const p = open(m, true)
        if (!p) return
        if (delayMs > 0) p.due = Date.now() + delayMs
        else this.expire(s, p)
      },
      working: async (m) => {
        const p = open(m, true)
        if (p) p.due = Date.now() + this.waitFor(p.msg.deliveryCount)
      },
    }
  }

  /** How long delivery number `n` waits for its acknowledgement (ms). */
  private waitFor(n: number): number {
    const b = this.o.backoff
    return b === undefined ? this.o.ackWait : b[Math.min(n, b.length) - 1]!
  }

  /** `p` is settled (acked, terminated, dropped): it counts as acknowledged. */
  private done(s: Session, p: Pending): void {
    p.acked = true
    s.unacked--
    this.release(p.chunk)
    this.advance(s)
    for (const w of s.ackWaiters.splice(0)) w()
  }

  /** `p`'s wait ran out (or it was `nak`ed): deliver it again, or drop it after `maxDeliver`. */
  private expire(s: Session, p: Pending): void {
    const m = p.msg
    if (this.o.maxDeliver !== undefined && m.deliveryCount >= this.o.maxDeliver) {
      this.done(s, p)
      this.tally.dropped++
      const ref = this.ref
      if (ref === undefined) return
      const a = maxDeliveriesAdvisory(ref, m)
      this.client.advise(a.topic, a.data)
      return
    }
    p.due = Number.POSITIVE_INFINITY
    p.msg = redelivery(m, s.settler)
    this.tally.redelivered++
    void this.push(p.msg, s.signal)
  }

  /** Moves `ackedUpTo` to the first unacked offset (offsets may have gaps after compaction). */
  private advance(s: Session): void {
    for (const [offset, p] of s.pending) {
      if (!p.acked) {
        s.ackedUpTo = offset
        return
      }
      s.pending.delete(offset) // pending is in offset order: drop the acked prefix
    }
    s.ackedUpTo = s.readPos
  }

  /** Commits, renews the lease and redelivers expired messages until the session ends. */
  private async tick(s: Session, signal: AbortSignal): Promise<void> {
    let n = 0
    while (!signal.aborted) {
      try {
        await sleep(TICK_MS, signal)
      } catch {
        break
      }
      try {
        await this.commit(s)
        if (++n % RENEW_EVERY === 0) {
          const ref = this.ref!
          const l = await this.call(
            { ...ref, op: 'lease', partition: s.partition, holder: this.holder, ttlMs: LEASE_TTL_MS },
            readLease,
          )
          if (!l.granted) {
            s.ac.abort() // another consumer holds it now
            break
          }
          await this.report({ deadline: Date.now() + 5000, signal })
          // Fair share: with n consumers on this name, hold at most ceil(partitions / n).
          const held = [...this.sessions].filter((x) => !x.ac.signal.aborted).length
          if (held > Math.ceil(this.partCount / l.consumers) && Date.now() - this.lastYield > LEASE_TTL_MS) {
            this.lastYield = Date.now()
            await this.drain(s)
            await this.commit(s)
            s.yielded = true
            s.ac.abort()
            break
          }
        }
        this.redeliver(s)
      } catch (err) {
        if (signal.aborted) break
        if (err instanceof ConsumerNotFoundError) {
          this.fail(err) // the name was deleted (streams.deleteConsumer): this consumer ends
          break
        }
        if (!(err instanceof AbortedError)) continue // transient (leader change): next tick
      }
    }
    for (const w of s.ackWaiters.splice(0)) w()
  }

  private async commit(s: Session): Promise<void> {
    const next = s.ackedUpTo
    if (next <= s.committed) return
    await this.call(
      { ...this.ref!, op: 'commit', offsets: [[s.partition, next]], holder: this.holder },
      () => undefined,
    )
    s.committed = Math.max(s.committed, next)
  }

  private redeliver(s: Session): void {
    const now = Date.now()
    for (const p of s.pending.values()) if (!p.acked && p.due <= now) this.expire(s, p)
  }

  /** Sends the counts not yet reported to the metadata leader (one call at a time). */
  private async report(opts: { deadline: number; signal: AbortSignal }): Promise<void> {
    const t = this.tally
    const ref = this.ref
    if (this.reporting || ref === undefined || t.redelivered + t.terminated + t.dropped === 0) return
    this.reporting = true
    const sent = { ...t }
    try {
      await this.client.leaderCall(
        ref.cluster,
        's.cons',
        encodeConsumerCall({ ...ref, op: 'tally', tally: sent, auth: this.auth?.hash }),
        (b) => decodeLeaderReply(b, readTally),
        opts,
        this.auth,
      )
      t.redelivered -= sent.redelivered
      t.terminated -= sent.terminated
      t.dropped -= sent.dropped
    } catch {
      // kept for the next report
    } finally {
      this.reporting = false
    }
  }

  /** Call options of the calls made on close (a short deadline of their own). */
  private finalOptions(): { deadline: number; signal: AbortSignal } {
    return { deadline: Date.now() + 2000, signal: new AbortController().signal }
  }

  /** Final commit and lease release on close (best effort, bounded by a short deadline). */
  private async finish(s: Session): Promise<void> {
    const ref = this.ref
    if (ref === undefined) return
    const opts = this.finalOptions()
    const call = (c: ConsumerCall) =>
      this.client.leaderCall(
        c.cluster,
        's.cons',
        encodeConsumerCall({ ...c, auth: this.auth?.hash }),
        (b) => decodeLeaderReply(b, () => undefined),
        opts,
        this.auth,
      )
    try {
      if (s.ackedUpTo > s.committed)
        await call({ ...ref, op: 'commit', offsets: [[s.partition, s.ackedUpTo]], holder: this.holder })
      await call({ ...ref, op: 'lease', partition: s.partition, holder: this.holder, ttlMs: 0 })
    } catch {
      // the lease expires by itself
    }
  }
}
