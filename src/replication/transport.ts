/**
 * Raft traffic over the overlay's links. Every Raft group a node takes part in (a stream
 * partition, a cluster's metadata group) registers under a group id; its messages travel
 * as `Raft` frames on the same batched, long-lived link as everything else between two
 * peers, so a node hosting many partitions still uses one stream per peer.
 *
 * Frame body: str group | bytes message (the raft codec's encoding).
 *
 * Security: a group accepts a message only from the peers its `allowed` callback names
 * (its voters, who are proven members of the owning cluster); anything else is dropped
 * and counted. Delivery is best effort and in order per peer, as Raft expects.
 */
import { FrameType, writeFrame } from '../link/frames.js'
import type { BinaryReader, BinaryWriter } from '../util/binary.js'

/** Largest raft message accepted in one frame (bytes). */
export const MAX_RAFT_FRAME = 8 * 1024 * 1024

/** What the transport needs from the node. */
export interface RaftTransportHost {
  /** Writes a frame to `peer`, opening the link when needed; never throws. */
  sendTo(peer: string, encode: (w: BinaryWriter) => void): void
  count(counter: string): void
}

interface Group {
  receive: (from: string, bytes: Uint8Array) => void
  allowed: (peer: string) => boolean
}

/** Routes raft messages of many groups over the node's links. */
export class RaftTransport {
  private readonly groups = new Map<string, Group>()

  constructor(private readonly host: RaftTransportHost) {}

  /**
   * Registers a group. `receive` gets each message from an allowed peer, in the order that
   * peer sent it. Returns the function that unregisters it. Throws if the id is taken.
   */
  register(
    group: string,
    receive: (from: string, bytes: Uint8Array) => void,
    allowed: (peer: string) => boolean,
  ): () => void {
    if (this.groups.has(group)) throw new Error(`raft group ${group} is already registered`)
    const g: Group = { receive, allowed }
    this.groups.set(group, g)
    return () => {
      if (this.groups.get(group) === g) this.groups.delete(group)
    }
  }

  /** Sends one encoded raft message of `group` to `to` (best effort). */
  send(group: string, to: string, bytes: Uint8Array): void {
    this.host.sendTo(to, (w) => writeFrame(w, FrameType.Raft, (b) => b.str(group).bytes(bytes)))
  }

  /** A `Raft` frame arrived from `from`. */
  onFrame(from: string, r: BinaryReader): void {
    const group = r.str('raft group')
    const bytes = r.bytes('raft message', MAX_RAFT_FRAME)
    r.end('raft')
    const g = this.groups.get(group)
    if (!g) {
      this.host.count('raft.unknownGroup')
      return
    }
    if (!g.allowed(from)) {
      this.host.count('raft.refused')
      return
    }
    g.receive(from, bytes)
  }
}
