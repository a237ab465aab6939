/**
 * A hostile peer for tests: a plain libp2p node without any key that speaks our link
 * protocol by hand. It writes whatever frames a test crafts on its own link stream to a
 * target node, keeps the link alive with heartbeats, and reads what the target sends back
 * (RPC replies are counted by id). `disconnect()` hangs up every connection at once.
 */
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { PlexusNode } from '../../src/index.js'
import { FrameType, writeFrame } from '../../src/link/frames.js'
import { readFrames } from '../../src/link/link.js'
import { type PlexusLibp2p, protocols } from '../../src/transport/libp2p.js'
import { type BinaryReader, BinaryWriter } from '../../src/util/binary.js'
import { keylessLibp2p } from './keyless-libp2p.js'

/** A reply the target sent to one of our internal calls. */
export interface HostileReply {
  id: number
  ok: boolean
  /** Error name when not ok. */
  name?: string
}

/** See the module doc. */
export class HostilePeer {
  /** Replies to our internal calls, by call id. */
  readonly replies = new Map<number, HostileReply>()
  /** Frames of each type the target sent us. */
  readonly received = new Map<number, number>()
  /** Signed records the target sent us (announcements, stream tables; the first 256), to replay. */
  readonly records: Array<{ type: number; body: Uint8Array }> = []
  private stream: Stream | undefined
  /** The target's link stream to us (what it sends). */
  private inbound: Stream | undefined
  private beat: NodeJS.Timeout | undefined
  private nextId = 1

  private constructor(
    readonly libp2p: PlexusLibp2p,
    private readonly target: PlexusNode,
  ) {}

  /** Starts a keyless libp2p node on `target`'s network and opens a link stream to it. */
  static async attach(target: PlexusNode): Promise<HostilePeer> {
    const libp2p = await keylessLibp2p(target.network)
    const peer = new HostilePeer(libp2p, target)
    const protocol = protocols(target.network).link
    // The target links back to us: read its frames (replies, pings) from that stream.
    await libp2p.handle(protocol, (stream) => {
      peer.inbound = stream
      readFrames(stream, 'target', 128 * 1024 * 1024, (_from, type, body) => peer.onFrame(type, body))
    })
    await peer.connect()
    // Until the target's link to us is up, some of its answers would be dropped.
    const end = Date.now() + 5000
    while (peer.received.size === 0) {
      if (Date.now() > end) throw new Error('the target never linked back')
      await new Promise((r) => setTimeout(r, 10))
    }
    return peer
  }

  /** Our peer id. */
  get id(): string {
    return this.libp2p.peerId.toString()
  }

  /** Opens (again) our link stream to the target and keeps it alive with pings. */
  async connect(): Promise<void> {
    const addr = this.target.addresses.find((a) => a.includes('127.0.0.1')) ?? this.target.addresses[0]!
    this.stream = await this.libp2p.dialProtocol(multiaddr(addr), protocols(this.target.network).link)
    clearInterval(this.beat)
    this.beat = setInterval(() => this.frame(FrameType.Ping, (w) => w.u64(Date.now())), 500)
  }

  /** Writes one frame on our link stream; false when the stream asks us to wait (`drained`). */
  frame(type: number, body: (w: BinaryWriter) => void): boolean {
    const w = new BinaryWriter(256)
    writeFrame(w, type, body)
    return this.raw(w.finish().slice())
  }

  /** Writes bytes as they are on our link stream (frames cut or with lying lengths). */
  raw(bytes: Uint8Array): boolean {
    return this.stream?.send(bytes) ?? false
  }

  /** Resolves once our link stream takes more (at once when it does now, or is gone). */
  async drained(): Promise<void> {
    const s = this.stream
    if (s?.writableNeedsDrain && s.status === 'open') await s.onDrain({ signal: AbortSignal.timeout(10_000) })
  }

  /** True while our link stream is open (the target resets it on a bad frame). */
  get open(): boolean {
    return this.stream?.status === 'open'
  }

  /** Sends an internal call (`RpcCall`); returns its id. */
  call(method: string, body: Uint8Array, timeoutMs: number): number {
    const id = this.nextId++
    this.frame(FrameType.RpcCall, (w) => w.u32(id).str(method).u32(timeoutMs).u8(0).bytes(body))
    return id
  }

  /** Stops reading what the target sends (its link to us backs up). */
  stopReading(): void {
    this.inbound?.pause()
  }

  /** Replies received with the given error name. */
  refusals(name: string): number {
    let n = 0
    for (const r of this.replies.values()) if (!r.ok && r.name === name) n++
    return n
  }

  /** Hangs up every connection to the target (the hostile peer goes away). */
  async disconnect(): Promise<void> {
    clearInterval(this.beat)
    this.beat = undefined
    await this.libp2p.hangUp(this.libp2p.getConnections()[0]!.remotePeer).catch(() => {})
  }

  /** Stops the libp2p node. */
  async stop(): Promise<void> {
    clearInterval(this.beat)
    await this.libp2p.stop()
  }

  private onFrame(type: number, body: BinaryReader): void {
    this.received.set(type, (this.received.get(type) ?? 0) + 1)
    if ((type === FrameType.Announce || type === FrameType.StreamTable) && this.records.length < 256)
      this.records.push({ type, body: body.bytes('record').slice() })
    if (type === FrameType.Ping) {
      const token = body.u64('ping')
      this.frame(FrameType.Pong, (w) => w.u64(token))
      return
    }
    if (type !== FrameType.RpcReply) return
    const id = body.u32('id')
    const status = body.u8('status')
    if (status === 0) this.replies.set(id, { id, ok: true })
    else {
      const name = body.str('name')
      this.replies.set(id, { id, ok: false, name })
    }
  }
}
