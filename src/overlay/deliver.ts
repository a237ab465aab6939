/**
 * Delivery of frames to peers this node has no link to: pub/sub frames to subscribers whose
 * interest came in a record (`interest.ts`), broadcasts to members known from announcements
 * (`broadcast/`; counters `pubsub.*` or `broadcasts.*` by the frame's kind). The first frame
 * opens an on-demand link; frames sent while it opens wait in a bounded queue per peer
 * (`OVERLAY.pendingMessages` / `pendingBytes`; more are dropped and counted `<kind>.farDropped`)
 * and go out in send order once it is open. When the link cannot be opened the queue is
 * dropped and counted (`<kind>.farUndeliverable`); nothing else waits on it, so one
 * unreachable peer never holds up a sender or the others.
 */
import { OVERLAY } from '../constants.js'
import type { Link } from '../link/link.js'

/** What delivery needs from the node. */
export interface FarHost {
  link(peer: string): Link | undefined
  /** Opens an on-demand link (see `Overlay.open`). */
  open(peer: string): Promise<Link | undefined>
  count(counter: string, n?: number): void
}

/** What a frame carries (the prefix of its counters). */
export type FarKind = 'pubsub' | 'broadcasts'

interface Waiting {
  frames: Uint8Array[]
  kinds: FarKind[]
  bytes: number
  /** Resolves true once the frames were written on the opened link, false if it failed. */
  done: Promise<boolean>
}

/** Frames for peers whose on-demand link is opening (see the module doc). */
export class FarDelivery {
  private readonly waiting = new Map<string, Waiting>()

  constructor(private readonly host: FarHost) {}

  /** Peers with frames waiting for their link. */
  get pending(): number {
    return this.waiting.size
  }

  /** True while frames for `peer` wait for its link (later frames must queue behind them). */
  waits(peer: string): boolean {
    return this.waiting.has(peer)
  }

  /**
   * Sends one encoded frame to `peer` (copied when it has to wait): true when written on its
   * link now, false when dropped (the queue is full), else a promise of whether the link
   * opened and the frame left on it.
   */
  send(peer: string, frame: Uint8Array, kind: FarKind = 'pubsub'): boolean | Promise<boolean> {
    const q = this.waiting.get(peer)
    if (q) {
      if (q.frames.length >= OVERLAY.pendingMessages || q.bytes + frame.length > OVERLAY.pendingBytes) {
        this.host.count(`${kind}.farDropped`)
        return false
      }
      q.kinds.push(kind)
      q.frames.push(frame.slice())
      q.bytes += frame.length
      return q.done
    }
    const link = this.host.link(peer)
    if (link) {
      link.write((w) => {
        w.raw(frame)
      })
      return true
    }
    const done = this.host.open(peer).then(
      (l) => this.opened(peer, l),
      () => this.opened(peer, undefined),
    )
    this.waiting.set(peer, { frames: [frame.slice()], kinds: [kind], bytes: frame.length, done })
    return done
  }

  private opened(peer: string, link: Link | undefined): boolean {
    const q = this.waiting.get(peer)
    this.waiting.delete(peer)
    if (!q) return false
    if (!link || link.closed) {
      for (const k of q.kinds) this.host.count(`${k}.farUndeliverable`)
      return false
    }
    for (const f of q.frames) {
      link.write((w) => {
        w.raw(f)
      })
    }
    return true
  }

  /** Drops every waiting frame (node stopping). */
  clear(): void {
    this.waiting.clear()
  }
}
