/**
 * Delivery of pub/sub frames to subscribers this node has no link to (their interest came in
 * a record, `interest.ts`): the first frame opens an on-demand link; frames published while it
 * opens wait in a bounded queue per peer (`OVERLAY.pendingMessages` / `pendingBytes`; more are
 * dropped and counted `pubsub.farDropped`) and go out in publish order once it is open. When
 * the link cannot be opened the queue is dropped and counted (`pubsub.farUndeliverable`);
 * nothing waits on it, so one unreachable subscriber never holds up a publisher or the others.
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

interface Waiting {
  frames: Uint8Array[]
  bytes: number
}

/** Frames for peers whose on-demand link is opening (see the module doc). */
export class FarDelivery {
  private readonly waiting = new Map<string, Waiting>()

  constructor(private readonly host: FarHost) {}

  /** Peers with frames waiting for their link. */
  get pending(): number {
    return this.waiting.size
  }

  /** Sends one encoded frame to `peer` (copied when it has to wait). */
  send(peer: string, frame: Uint8Array): void {
    const q = this.waiting.get(peer)
    if (q) {
      if (q.frames.length >= OVERLAY.pendingMessages || q.bytes + frame.length > OVERLAY.pendingBytes) {
        this.host.count('pubsub.farDropped')
        return
      }
      q.frames.push(frame.slice())
      q.bytes += frame.length
      return
    }
    const link = this.host.link(peer)
    if (link) {
      link.write((w) => {
        w.raw(frame)
      })
      return
    }
    this.waiting.set(peer, { frames: [frame.slice()], bytes: frame.length })
    this.host.open(peer).then(
      (l) => this.opened(peer, l),
      () => this.opened(peer, undefined),
    )
  }

  private opened(peer: string, link: Link | undefined): void {
    const q = this.waiting.get(peer)
    this.waiting.delete(peer)
    if (!q) return
    if (!link || link.closed) {
      this.host.count('pubsub.farUndeliverable', q.frames.length)
      return
    }
    for (const f of q.frames) {
      link.write((w) => {
        w.raw(f)
      })
    }
  }

  /** Drops every waiting frame (node stopping). */
  clear(): void {
    this.waiting.clear()
  }
}
