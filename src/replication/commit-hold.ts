/**
 * The commit-only appends a leader holds back (see `ReplicaDriverOptions.commitDelayMs`): an
 * append carrying nothing but a new commit index for a caught-up follower waits up to
 * `delayMs` and is dropped when the next append to that follower (which carries the commit
 * too) leaves first.
 *
 * Each held append leaves once it has itself been held `delayMs` (measured from the first
 * commit held for that follower since the last append to it), not when a timer started by
 * an earlier one fires: a publisher waiting on each acknowledgement in turn proposes every
 * few milliseconds, so a shared timer found an append held a moment ago at most firings and
 * sent it, with the follower's answer, right beside the next publish (issue 17). The timer
 * runs only while something is held.
 *
 * Ordering and bound: a follower learns a commit index at most `delayMs` (plus timer
 * lateness) after the first commit held for it, from the held append or from a later
 * append; delaying or dropping an append is always safe in Raft.
 */
import type { Message, NodeId } from '../raft/index.js'

interface Held {
  m: Message
  /** `performance.now()` when the first of the commits held in turn for this follower came. */
  since: number
}

/** Commit-only appends held per follower, each released `delayMs` after it was first held. */
export class CommitHold {
  private readonly held = new Map<NodeId, Held>()
  private timer: NodeJS.Timeout | undefined
  /** When the timer fires (`performance.now()`), Infinity when not armed. */
  private timerAt = Number.POSITIVE_INFINITY

  /**
   * `release` sends a held append whose time is up (the caller checks the term is still
   * led); `now` is the clock (tests).
   */
  constructor(
    private readonly delayMs: number,
    private readonly release: (m: Message) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Appends held right now. */
  get size(): number {
    return this.held.size
  }

  /**
   * Holds `m` for its follower, replacing an append already held for it (which it
   * supersedes: it carries a commit index at least as new). True when it replaced one.
   */
  hold(m: Message): boolean {
    const prev = this.held.get(m.to)
    const since = prev?.since ?? this.now()
    this.held.set(m.to, { m, since })
    this.arm(since + this.delayMs)
    return prev !== undefined
  }

  /**
   * An append to `to` is leaving and carries the commit index: the one held for `to`, if
   * any, is dropped. True when one was.
   */
  drop(to: NodeId): boolean {
    if (!this.held.delete(to)) return false
    if (this.held.size === 0) this.disarm()
    return true
  }

  /** Every held append, oldest first, then holds nothing (a stop or a failure). */
  takeAll(): Message[] {
    this.disarm()
    const out = [...this.held.values()].map((h) => h.m)
    this.held.clear()
    return out
  }

  private arm(at: number): void {
    if (at >= this.timerAt) return
    this.disarm()
    this.timerAt = at
    this.timer = setTimeout(this.fire, Math.max(0, at - this.now()))
    this.timer.unref()
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
  }

  private readonly fire = (): void => {
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
    // Node's timers may fire up to a millisecond early of a fractional deadline.
    const due = this.now() - this.delayMs + 1
    let next = Number.POSITIVE_INFINITY
    for (const [to, h] of this.held) {
      if (h.since <= due) {
        this.held.delete(to)
        this.release(h.m)
      } else if (h.since + this.delayMs < next) next = h.since + this.delayMs
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next)
  }
}
