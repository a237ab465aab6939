/**
 * Conditional appends (`expectedRevision`): a publish of one keyed message stored only when
 * the key's latest live record is at the expected offset (or, with `ABSENT`, when it has none).
 *
 * The check runs on the partition leader, atomically with the append, serialized per key:
 * the leader tracks every key it has proposed a write for that is not applied yet (any
 * publish, conditional or not), and checks a conditional message against the key index only
 * once no write of its key is in flight and the leader's view is current (it committed an
 * entry of its own term and applied every committed entry); the message is then proposed at
 * once, its key marked in flight, so no other write of the key can come between the check
 * and the append. A message failing the check is refused (`WrongRevisionError` naming the
 * current revision) and nothing is appended. The decision is the leader's: followers apply
 * what it proposed, so their key indexes never decide anything. Conditional messages wait
 * here in arrival order per key; leadership lost rejects them with `NotLeaderError` (nothing
 * appended: the caller sends them to the new leader).
 */
import { WrongRevisionError } from '../../errors.js'
import { NotLeaderError } from '../../replication/index.js'
import { ABSENT, type KeyIndex } from './key-index.js'

/** A conditional message waiting for its check. */
interface Waiter {
  key: Uint8Array
  keyText: string
  expected: number
  /** Appends the message now (its key is marked in flight first). */
  go: () => void
  fail: (err: unknown) => void
}

/** What the gate needs of its replica: whether it leads and its view is current. */
export type LeaderView = () => 'ready' | 'wait' | NotLeaderError

/** Serializes conditional appends per key on the leader; see the module doc. */
export class CasGate {
  /** Keys with a proposed write not applied yet, and how many. */
  private readonly inFlight = new Map<string, number>()
  private waiting: Waiter[] = []

  constructor(
    private readonly index: KeyIndex,
    private readonly view: LeaderView,
  ) {}

  /** Conditional messages waiting. */
  get size(): number {
    return this.waiting.length
  }

  /** Marks writes of `keys` in flight (called when a publish is queued). */
  begin(keys: readonly string[]): void {
    for (const k of keys) this.inFlight.set(k, (this.inFlight.get(k) ?? 0) + 1)
  }

  /** The writes of `keys` were applied or failed. */
  end(keys: readonly string[]): void {
    for (const k of keys) {
      const n = (this.inFlight.get(k) ?? 1) - 1
      if (n <= 0) this.inFlight.delete(k)
      else this.inFlight.set(k, n)
    }
    if (this.waiting.length > 0) this.run()
  }

  /** Queues a conditional message; checks it now when it can. */
  submit(w: Waiter): void {
    this.waiting.push(w)
    this.run()
  }

  /** Checks the waiting messages that can be checked now (after an apply, a write's end). */
  run(): void {
    if (this.waiting.length === 0) return
    const v = this.view()
    if (v instanceof NotLeaderError) {
      this.failAll(v)
      return
    }
    if (v === 'wait') return
    const blocked = new Set<string>()
    const keep: Waiter[] = []
    for (const w of this.waiting) {
      // A key with a write in flight, or an earlier waiter, waits: checks see applied writes.
      if (blocked.has(w.keyText) || this.inFlight.has(w.keyText)) {
        blocked.add(w.keyText)
        keep.push(w)
        continue
      }
      const bad = this.index.check(w.key, w.expected)
      if (bad === undefined) {
        w.go()
        continue
      }
      const cur = bad.current
      const now =
        cur === undefined ? 'unknown (key index bound reached)' : cur === ABSENT ? 'absent' : String(cur)
      w.fail(
        new WrongRevisionError(
          `expected revision ${w.expected === ABSENT ? 'absent' : w.expected}, current revision ${now}`,
        ),
      )
    }
    this.waiting = keep
  }

  /** Rejects every waiting message with `err` (leadership lost, stop). */
  failAll(err: unknown): void {
    for (const w of this.waiting.splice(0)) w.fail(err)
  }
}
