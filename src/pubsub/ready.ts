/**
 * Subscription readiness: knowing when linked peers have applied our interest changes, so
 * that a publish they make afterwards reaches our subscribers (`sub.ready`, `node.flush()`).
 *
 * Interest frames travel on our ordered link to each peer and the peer applies them in
 * order, as it reads them. To learn that a peer applied every change up to some point we
 * send it, on the same link after those frames, a call (`PUBSUB_SYNC`, an internal RPC)
 * and wait for its answer: the peer reads the call only after the interest frames before
 * it, so any answer proves them applied — also an error answer, as an older node without
 * the method sends, which keeps mixed versions working. From then on the peer routes every
 * publish on a matching topic to us.
 *
 * Interest changes are numbered (`epoch`). Per peer we keep the highest epoch it
 * acknowledged and at most one sync call in flight: waiters that need a later epoch than
 * the call in flight covers get the next call, sent when that one returns. A peer whose
 * call fails (the link closed, the peer stopped answering within `SYNC_TIMEOUT`) or whose
 * connection ends no longer counts: its waiters stop waiting for it. Memory: one entry per
 * linked peer, one per pending waiter; a waiter is forgotten as soon as it settles or its
 * owner cancels it (unsubscribe, timeout, abort), so subscribe/unsubscribe cycles leave
 * nothing behind.
 */

import { AbortedError, TimeoutError } from '../errors.js'

/** Name of the internal call a peer answers once it applied our earlier interest frames. */
export const PUBSUB_SYNC = 'pubsub.sync'

/** Longest wait for one peer's sync answer (ms); a peer silent that long is given up. */
export const SYNC_TIMEOUT = 10_000

/** What readiness needs from the node. */
export interface SyncHost {
  /** Peers linked now. */
  peers(): string[]
  /**
   * Sends `PUBSUB_SYNC` to `peer` on its link, after every frame written to it so far;
   * settles with the peer's answer (an error answer counts as an answer: it resolves with
   * `'answered'`), rejects when no answer can come (link closed, timeout).
   */
  sync(peer: string): Promise<unknown>
}

/** One wait for interest changes up to `target` to be acknowledged (internal). */
export interface SyncWaiter {
  readonly target: number
  /** Peers still to acknowledge. */
  readonly pending: Set<string>
  /** Called once every pending peer acknowledged or stopped counting. */
  readonly done: () => void
}

interface PeerSync {
  /** Highest epoch this peer acknowledged. */
  acked: number
  inflight: boolean
  waiters: Set<SyncWaiter>
}

/** Tracks which interest changes linked peers acknowledged; see the module doc. */
export class InterestSync {
  /** Number of the latest interest change written to the links. */
  epoch = 0
  private readonly peers = new Map<string, PeerSync>()
  private active = 0

  constructor(private readonly host: SyncHost) {}

  /** An interest change was written to every link: returns its number. */
  changed(): number {
    return ++this.epoch
  }

  /** Waiters not yet settled (for status and tests). */
  get waiting(): number {
    return this.active
  }

  /**
   * Waits until every peer linked now acknowledged changes up to `target` (or stops
   * counting); then calls `done`. Calls `done` at once and returns undefined when nothing
   * is to wait for; otherwise returns the waiter, for `cancel`.
   */
  wait(target: number, done: () => void): SyncWaiter | undefined {
    const w: SyncWaiter = { target, pending: new Set(), done }
    const start: Array<[string, PeerSync]> = []
    for (const peer of this.host.peers()) {
      let ps = this.peers.get(peer)
      if (ps && ps.acked >= target) continue
      if (!ps) {
        ps = { acked: 0, inflight: false, waiters: new Set() }
        this.peers.set(peer, ps)
      }
      w.pending.add(peer)
      ps.waiters.add(w)
      if (!ps.inflight) start.push([peer, ps])
    }
    if (w.pending.size === 0) {
      done()
      return undefined
    }
    this.active++
    for (const [peer, ps] of start) this.start(peer, ps)
    return w
  }

  /** Forgets `w` without calling its `done` (its owner settles it). */
  cancel(w: SyncWaiter): void {
    if (w.pending.size === 0) return
    for (const peer of w.pending) this.peers.get(peer)?.waiters.delete(w)
    w.pending.clear()
    this.active--
  }

  /** `peer`'s connection ended: it no longer counts, and what it acknowledged is void. */
  forget(peer: string): void {
    const ps = this.peers.get(peer)
    if (!ps) return
    this.peers.delete(peer)
    for (const w of [...ps.waiters]) this.release(w, peer, ps)
  }

  /** Cancels every waiter (node stopping); their owners settle them. */
  clear(): void {
    for (const ps of this.peers.values()) {
      for (const w of ps.waiters) if (w.pending.size > 0) this.cancel(w)
    }
    this.peers.clear()
  }

  private start(peer: string, ps: PeerSync): void {
    ps.inflight = true
    const covers = this.epoch
    this.host.sync(peer).then(
      () => this.settle(peer, ps, covers, true),
      () => this.settle(peer, ps, covers, false),
    )
  }

  private settle(peer: string, ps: PeerSync, covers: number, answered: boolean): void {
    ps.inflight = false
    if (answered && covers > ps.acked) ps.acked = covers
    for (const w of [...ps.waiters]) if (!answered || w.target <= ps.acked) this.release(w, peer, ps)
    if (this.peers.get(peer) !== ps) return
    // No answer: what the peer applied is unknown; start over next time.
    if (!answered) this.peers.delete(peer)
    else if (ps.waiters.size > 0) this.start(peer, ps)
  }

  private release(w: SyncWaiter, peer: string, ps: PeerSync): void {
    ps.waiters.delete(w)
    if (!w.pending.delete(peer) || w.pending.size > 0) return
    this.active--
    w.done()
  }
}

/**
 * `node.flush()`: resolves once every peer linked now acknowledged every interest change made
 * so far (or is no longer linked); rejects with `TimeoutError` after `timeout` ms,
 * `AbortedError` on `signal` or when the node stops (`pending` holds the callbacks that fail
 * it; the pub/sub engine calls them on close).
 */
export function flushLinked(
  sync: InterestSync,
  pending: Set<(err: Error) => void>,
  timeout: number,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(new AbortedError('flush aborted'))
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    let waiter: SyncWaiter | undefined
    let settled = false
    const finish = (err?: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      pending.delete(finish)
      if (waiter) sync.cancel(waiter)
      if (err) reject(err)
      else resolve()
    }
    const onAbort = () => finish(new AbortedError('flush aborted'))
    waiter = sync.wait(sync.epoch, () => finish())
    if (settled) return
    const waiting = () => waiter?.pending.size ?? 0
    timer = setTimeout(
      () =>
        finish(new TimeoutError(`flush: ${waiting()} linked peers did not acknowledge within ${timeout} ms`)),
      timeout,
    )
    signal?.addEventListener('abort', onAbort, { once: true })
    pending.add(finish)
  })
}
