/**
 * Record exchange by digests (digest.ts): what a new link and the periodic anti-entropy round
 * send instead of every record.
 *
 * - A link that comes up: each end sends the other the digest of its announcements (every
 *   link); the receiver sends back the records the digest lacks or holds older (as the
 *   ordinary `Announce` frames, verified and flooded onwards like any record). Once the peer
 *   is a neighbour, each end calls `overlay.digest` with the digest of its interest records
 *   (push-pull as below: the two ends learn of the neighbour link at different times).
 * - Every `OVERLAY.antiEntropyInterval` ms (jittered) a node calls `overlay.digest` on one
 *   random neighbour with the digest of one slice of its records; the neighbour sends what
 *   the caller lacks and answers with its own digest of that slice, from which the caller
 *   sends what the neighbour lacks (push-pull). Slices rotate, so every record is compared
 *   within `sliceCount` rounds; what a flood missed is repaired that way.
 *
 * Traffic per node and round: one digest (at most `DIGEST_MAX_ENTRIES` × 16 bytes) each way
 * plus the records that differ, at most `DIGEST_MAX_ENTRIES` per section.
 */
import { OVERLAY } from '../constants.js'
import {
  decodeDigest,
  encodeDigest,
  missing,
  Section,
  slice,
  sliceCount,
  type Versioned,
  WANT_REPLY,
} from './digest.js'

/** Internal call carrying a digest (answer: empty, or our digest with `WANT_REPLY`). */
export const OVERLAY_DIGEST = 'overlay.digest'

const EMPTY = new Uint8Array(0)
/** How long (ms) a digest call waits for the peer's digest. */
const CALL_TIMEOUT = 5000

/** What the exchange needs from the node. */
export interface AntiEntropyHost {
  /** The announcements we would pass on (every fresh one, or only ours). */
  announcements(): Versioned[]
  /** The interest records we hold, ours included. */
  interest(): Versioned[]
  /** Peers with a neighbour link now. */
  neighbours(): string[]
  sendAnnouncement(peer: string, bytes: Uint8Array): void
  sendInterest(peer: string, bytes: Uint8Array): void
  notify(peer: string, method: string, body: Uint8Array): void
  call(peer: string, method: string, body: Uint8Array, timeoutMs: number): Promise<Uint8Array>
  random(): number
}

/** Digests on link-up and the periodic push-pull (see the module doc). */
export class AntiEntropy {
  private timer: NodeJS.Timeout | undefined
  private round = 0
  /** Digests sent; records sent because a peer's digest lacked them or held them older. */
  readonly stats = { digestsSent: 0, recordsSent: 0 }

  constructor(
    private readonly host: AntiEntropyHost,
    private readonly interval: number = OVERLAY.antiEntropyInterval,
  ) {}

  start(): void {
    const next = () => {
      this.timer = setTimeout(
        () => {
          this.tick()
          next()
        },
        this.interval * (0.75 + 0.5 * this.host.random()),
      )
      this.timer.unref()
    }
    next()
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }

  /** A link came up: it gets the digest of our announcements (every slice). */
  linkUp(peer: string): void {
    this.pushPull(peer, Section.announcements, this.host.announcements(), [], false)
  }

  /**
   * `peer` became a neighbour: push-pull of our interest records with it (each end calls this
   * when it learns of the link, which happens at different times at the two ends).
   */
  neighbourAdded(peer: string): void {
    this.pushPull(peer, Section.interest, [], this.host.interest(), true)
  }

  /** Sends the digest of every slice; with `reply`, as calls whose answers we push to. */
  private pushPull(
    peer: string,
    sections: number,
    ann: Versioned[],
    interest: Versioned[],
    reply: boolean,
  ): void {
    const n = sliceCount(ann.length + interest.length)
    for (let i = 0; i < n; i++) {
      const { lo, hi } = slice(i, n)
      this.stats.digestsSent++
      if (!reply) {
        this.host.notify(peer, OVERLAY_DIGEST, encodeDigest(sections, 0, lo, hi, ann, interest))
        continue
      }
      const body = encodeDigest(sections, WANT_REPLY, lo, hi, ann, interest)
      this.host.call(peer, OVERLAY_DIGEST, body, CALL_TIMEOUT).then(
        (answer) => {
          if (answer.length > 0) this.onDigest(answer, peer)
        },
        () => {},
      )
    }
  }

  /** One anti-entropy round: push-pull of one slice with one random neighbour. */
  tick(): void {
    const ns = this.host.neighbours()
    if (ns.length === 0) return
    const peer = ns[Math.floor(this.host.random() * ns.length)]!
    const ann = this.host.announcements()
    const interest = this.host.interest()
    const n = sliceCount(ann.length + interest.length)
    const { lo, hi } = slice(this.round++ % n, n)
    const sections = Section.announcements | Section.interest
    const body = encodeDigest(sections, WANT_REPLY, lo, hi, ann, interest)
    this.stats.digestsSent++
    this.host.call(peer, OVERLAY_DIGEST, body, CALL_TIMEOUT).then(
      (answer) => {
        if (answer.length > 0) this.onDigest(answer, peer)
      },
      () => {},
    )
  }

  /**
   * A digest from `from`: sends it what it lacks; answers with our digest of the same slice
   * when it asks (else empty). Throws `DecodeError` when malformed.
   */
  onDigest(body: Uint8Array, from: string): Uint8Array {
    const d = decodeDigest(body)
    // Interest records are asked for only by neighbours (a call may arrive before this end
    // hears of the neighbour link: the asker's word is enough, records are public).
    const sections = d.sections
    const ann = sections & Section.announcements ? this.host.announcements() : []
    const interest = sections & Section.interest ? this.host.interest() : []
    const lackingAnn = missing(ann, d.announcements, d.lo, d.hi)
    for (const r of lackingAnn) this.host.sendAnnouncement(from, r.bytes)
    const lackingInterest = missing(interest, d.interest, d.lo, d.hi)
    for (const r of lackingInterest) this.host.sendInterest(from, r.bytes)
    const sent = lackingAnn.length + lackingInterest.length
    if (sent > 0) this.stats.recordsSent += sent
    if (!(d.flags & WANT_REPLY)) return EMPTY
    this.stats.digestsSent++
    return encodeDigest(sections, 0, d.lo, d.hi, ann, interest)
  }
}
