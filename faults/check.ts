/**
 * The check after a schedule (pure): every acknowledged write must be readable exactly once,
 * at the offset its ack named, with its content, on every member; offsets dense from 0; no
 * message id stored twice; nothing stored that was never published; the same records on all
 * members.
 */
import type { ReplicaDump } from './cluster.js'
import type { Acked } from './workload.js'

/** What the check found (counts over all members unless said otherwise). */
export interface CheckResult {
  acked: number
  /** Acked writes missing or with other content at their offset on at least one member. */
  lost: number
  /** Acked writes whose record could not be read on at least one member. */
  unreadable: number
  /** Message ids stored more than once (per member, summed). */
  duplicates: number
  /** Missing offsets below a member's end (per member, summed). */
  gaps: number
  /** Records with a message id never published. */
  strangers: number
  /** Offsets where a member's record differs from member 0's, or lengths differ. */
  divergent: number
  /** Unknown-outcome publishes found stored (once). */
  unknownStored: number
  /** Records per member. */
  lengths: number[]
  /** Up to 10 human-readable problems. */
  problems: string[]
}

/** Compares the members' dumps with the acknowledged writes. */
export function checkDumps(acked: Acked[], unknown: Set<string>, dumps: ReplicaDump[]): CheckResult {
  const r: CheckResult = {
    acked: acked.length,
    lost: 0,
    unreadable: 0,
    duplicates: 0,
    gaps: 0,
    strangers: 0,
    divergent: 0,
    unknownStored: 0,
    lengths: dumps.map((d) => d.records.length),
    problems: [],
  }
  const problem = (s: string) => {
    if (r.problems.length < 10) r.problems.push(s)
  }
  const ackedIds = new Set(acked.map((a) => a.msgId))
  const byOffset = dumps.map((d) => new Map(d.records.map((x) => [x.offset, x])))
  const unreadable = dumps.map((d) => new Set(d.unreadable))
  dumps.forEach((d, k) => {
    if (d.error) problem(`member ${k}: ${d.error}`)
    // Dense offsets from 0 up to the member's end.
    let expect = 0
    for (const rec of d.records) {
      if (rec.offset !== expect) {
        const missing = rec.offset - expect
        const unread = [...unreadable[k]!].filter((o) => o >= expect && o < rec.offset).length
        if (missing - unread > 0) {
          r.gaps += missing - unread
          problem(`member ${k}: offsets ${expect}..${rec.offset - 1} missing`)
        }
      }
      expect = rec.offset + 1
    }
    if (expect < d.nextOffset) {
      r.gaps += d.nextOffset - expect
      problem(`member ${k}: offsets ${expect}..${d.nextOffset - 1} missing below its end`)
    }
    const count = new Map<string, number>()
    for (const rec of d.records) count.set(rec.msgId, (count.get(rec.msgId) ?? 0) + 1)
    for (const [id, n] of count) {
      if (n > 1) {
        r.duplicates += n - 1
        problem(`member ${k}: msgId ${id} stored ${n} times`)
      }
      if (!ackedIds.has(id) && !unknown.has(id)) {
        r.strangers += n
        problem(`member ${k}: msgId ${id} was never published`)
      }
      if (k === 0 && unknown.has(id)) r.unknownStored++
    }
  })
  for (const a of acked) {
    let lost = false
    let unread = false
    byOffset.forEach((m, k) => {
      const rec = m.get(a.offset)
      if (rec === undefined) {
        if (unreadable[k]!.has(a.offset)) unread = true
        else lost = true
        if (r.problems.length < 10)
          problem(`member ${k}: acked ${a.msgId} at offset ${a.offset}: ${unread ? 'unreadable' : 'missing'}`)
      } else if (rec.msgId !== a.msgId || rec.digest !== a.digest || rec.length !== a.length) {
        lost = true
        problem(
          `member ${k}: offset ${a.offset} acked for ${a.msgId} holds ${rec.msgId} (${rec.length} B, ${rec.digest})`,
        )
      }
    })
    if (lost) r.lost++
    else if (unread) r.unreadable++
  }
  // Same records everywhere.
  const first = dumps[0]
  if (first) {
    for (let k = 1; k < dumps.length; k++) {
      const d = dumps[k]!
      if (d.records.length !== first.records.length)
        problem(`member ${k} holds ${d.records.length} records, member 0 ${first.records.length}`)
      let diff = Math.abs(d.records.length - first.records.length)
      const m0 = byOffset[0]!
      for (const rec of d.records) {
        const o = m0.get(rec.offset)
        if (o !== undefined && (o.msgId !== rec.msgId || o.digest !== rec.digest)) diff++
      }
      if (diff > 0) problem(`member ${k} differs from member 0 at ${diff} offsets`)
      r.divergent += diff
    }
  }
  return r
}

/** True when the result shows no problem at all. */
export function clean(r: CheckResult): boolean {
  return (
    r.lost === 0 &&
    r.unreadable === 0 &&
    r.duplicates === 0 &&
    r.gaps === 0 &&
    r.strangers === 0 &&
    r.divergent === 0
  )
}
