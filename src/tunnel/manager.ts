/**
 * Opening and accepting tunnels. The opener picks a member with a tunnel handler (its signed
 * roles say so) like a request does, sends
 * TunnelOpen with its window and waits for TunnelAccept (or a refusal: then it tries
 * another member) until `timeout` (`TimeoutError`). The acceptor checks membership and
 * its `tunnels` limit (and one peer's share of it, `peerShare`), answers, and hands the
 * new end to `onTunnel`. Tunnels with a peer
 * whose link closes end with `TunnelClosedError` at once.
 *
 * Links are one-way (each end writes on the stream it opened), so an opening can reach the
 * acceptor over the opener's on-demand link before the acceptor's own link back is up: the
 * acceptor then opens it (`TunnelHost.open`) and answers once it is up, never dropping the
 * opening silently (the opener would wait out its whole timeout). An opening whose link
 * closes before the answer (a busy machine's link timing out) is tried once more on that
 * member when it is linked again, within the timeout.
 */
import { DEFAULT_REQUEST_TIMEOUT } from '../constants.js'
import { NoMembersError, OverloadedError, TimeoutError, TunnelClosedError } from '../errors.js'
import type { Link } from '../link/link.js'
import { type BinaryReader, DecodeError } from '../util/binary.js'
import { peerCluster } from '../util/peer-input.js'
import { peerShare } from '../util/peer-share.js'
import { CloseReason, Dir, TUNNEL_WINDOW, writeAccept, writeClose, writeOpen } from './frames.js'
import { type Tunnel, TunnelEnd } from './tunnel.js'

/**
 * Internal refusal reason (never on the wire): the link to the acceptor closed while the
 * opening waited; the same member may be tried again once linked (a busy machine's link
 * timing out is no answer from the member).
 */
const LINK_LOST = -1

/** A tunnel handler as given to `join`. */
export type TunnelHandler = (tunnel: Tunnel, ctx: { from: string; cluster: string }) => void | Promise<void>

interface Served {
  handler: TunnelHandler | undefined
  limit: number
  open: number
}

interface Opening {
  resolve(end: TunnelEnd): void
  refuse(reason: number, message: string): void
  peer: string
  cluster: string
}

/** Tunnel ends by peer, then tunnel id (no string key per data frame). */
class EndTable {
  private readonly byPeer = new Map<string, Map<number, TunnelEnd>>()
  size = 0

  get(peer: string, tid: number): TunnelEnd | undefined {
    return this.byPeer.get(peer)?.get(tid)
  }

  set(peer: string, tid: number, end: TunnelEnd): void {
    let m = this.byPeer.get(peer)
    if (!m) this.byPeer.set(peer, (m = new Map()))
    if (!m.has(tid)) this.size++
    m.set(tid, end)
  }

  /** Removes the entry if it is still `end`. */
  delete(peer: string, tid: number, end: TunnelEnd): void {
    const m = this.byPeer.get(peer)
    if (m?.get(tid) !== end) return
    m.delete(tid)
    this.size--
    if (m.size === 0) this.byPeer.delete(peer)
  }

  /** Ends with `peer`. */
  countOf(peer: string): number {
    return this.byPeer.get(peer)?.size ?? 0
  }

  ofPeer(peer: string): TunnelEnd[] {
    return [...(this.byPeer.get(peer)?.values() ?? [])]
  }

  all(): TunnelEnd[] {
    return [...this.byPeer.values()].flatMap((m) => [...m.values()])
  }
}

/** What tunnels need from the node. */
export interface TunnelHost {
  self: string
  link(peer: string): Link | undefined
  /** Our link to `peer`, opened when it is not up yet (undefined when it cannot be). */
  open(peer: string): Promise<Link | undefined>
  /**
   * Picks a linked member of the cluster with a tunnel handler, not in `exclude` (like a
   * request), or undefined; null while only unlinked ones are known whose on-demand links
   * are opening (the opening waits for them).
   */
  pick(cluster: string, exclude: Set<string>): string | undefined | null
  /**
   * Why no member can take a tunnel when members are known but none has a tunnel handler
   * (the `NoMembersError` message); undefined otherwise.
   */
  unserved(cluster: string): string | undefined
  /** Waits for a membership or link change. */
  nextChange(signal: AbortSignal): Promise<void>
  discovering(): boolean
  /** No member can be picked: true while a DHT lookup for the cluster is worth waiting for. */
  lookup?(cluster: string): boolean
  maxMessageSize: number
  count(counter: string): void
}

/** Tunnel tables and setup of one node. */
export class TunnelManager {
  private nextTid = 1
  /** Tunnels this node opened, by `${peer}/${tid}`. */
  private readonly outgoing = new EndTable()
  /** Tunnels this node accepted, by `${peer}/${tid}`. */
  private readonly incoming = new EndTable()
  private readonly opening = new Map<string, Opening>()
  private readonly served = new Map<string, Served>()
  /** Tunnel payload bytes sent and received by every end of this node (metrics). */
  readonly bytes = { sent: 0, received: 0 }

  constructor(private readonly host: TunnelHost) {}

  serve(cluster: string, handler: TunnelHandler | undefined, limit: number): void {
    this.served.set(cluster, { handler, limit, open: 0 })
  }

  unserve(cluster: string): void {
    this.served.delete(cluster)
  }

  /** Number of open tunnels (both directions). */
  get openCount(): number {
    return this.outgoing.size + this.incoming.size
  }

  async open(cluster: string, timeout = DEFAULT_REQUEST_TIMEOUT, signal?: AbortSignal): Promise<Tunnel> {
    const deadline = Date.now() + timeout
    const ac = new AbortController()
    const timer = setTimeout(
      () => ac.abort(new TimeoutError(`tunnel to ${cluster} not accepted within ${timeout} ms`)),
      timeout,
    )
    const onAbort = () => ac.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    const tried = new Set<string>()
    /** Members whose link closed during their opening: each is tried once more when linked. */
    const lost = new Set<string>()
    let overloaded = false
    try {
      for (;;) {
        if (ac.signal.aborted) throw ac.signal.reason
        const peer = this.host.pick(cluster, tried)
        if (!peer) {
          // The lookup is asked first so it starts even while the node is young.
          const searching = tried.size === 0 && this.host.lookup?.(cluster) === true
          const retrying = [...lost].some((p) => !tried.has(p))
          const waiting = peer === null || searching || retrying || this.host.discovering()
          if (!waiting && tried.size > 0 && overloaded)
            throw new OverloadedError(`every member of ${cluster} refused the tunnel`)
          const none = tried.size === 0 ? this.host.unserved(cluster) : undefined
          if (!waiting && none !== undefined) throw new NoMembersError(none)
          if (!waiting && tried.size === 0) throw new NoMembersError(`no reachable member of ${cluster}`)
          if (!waiting)
            throw new NoMembersError(`no member of ${cluster} accepted the tunnel (tried ${tried.size})`)
          await this.host.nextChange(ac.signal).catch(() => {})
          continue
        }
        tried.add(peer)
        const result = await this.tryOpen(peer, cluster, Math.max(1, deadline - Date.now()), ac.signal)
        if (result instanceof TunnelEnd) return result
        if (result === CloseReason.Refused) overloaded = true
        if (result === LINK_LOST && !lost.has(peer)) {
          lost.add(peer) // no answer: it may take it once linked again (until the timeout)
          tried.delete(peer)
        }
      }
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** One attempt: resolves to the end, or to the refusal reason. */
  private tryOpen(
    peer: string,
    cluster: string,
    remaining: number,
    signal: AbortSignal,
  ): Promise<TunnelEnd | number> {
    const link = this.host.link(peer)
    if (!link) return Promise.resolve(CloseReason.NotMember)
    const tid = this.nextTid
    this.nextTid = this.nextTid >= 0xffffffff ? 1 : this.nextTid + 1
    const key = `${peer}/${tid}`
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        this.opening.delete(key)
        signal.removeEventListener('abort', onAbort)
      }
      const onAbort = () => {
        cleanup()
        this.host
          .link(peer)
          ?.write((w) => writeClose(w, tid, Dir.FromOpener, CloseReason.Timeout, 'setup timed out'))
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.opening.set(key, {
        peer,
        cluster,
        resolve: (end) => {
          cleanup()
          resolve(end)
        },
        refuse: (reason) => {
          cleanup()
          resolve(reason)
        },
      })
      link.write((w) => writeOpen(w, tid, cluster, remaining, TUNNEL_WINDOW))
    })
  }

  private makeEnd(tid: number, dir: number, peer: string, cluster: string, peerWindow: number): TunnelEnd {
    const table = dir === Dir.FromOpener ? this.outgoing : this.incoming
    const end = new TunnelEnd(tid, dir, peer, cluster, peerWindow, TUNNEL_WINDOW, this.host.maxMessageSize, {
      link: () => this.host.link(peer),
      sent: (n) => {
        this.bytes.sent += n
      },
      finished: () => {
        table.delete(peer, tid, end)
        if (dir === Dir.FromAcceptor) {
          const s = this.served.get(cluster)
          if (s && s.open > 0) s.open--
        }
      },
    })
    table.set(peer, tid, end)
    return end
  }

  onFrame(type: 'open' | 'accept' | 'data' | 'credit' | 'close', peer: string, r: BinaryReader): void {
    const tid = r.u32('tunnel id')
    const dir = r.u8('tunnel dir')
    if (dir > Dir.FromAcceptor) throw new DecodeError(`bad tunnel direction ${dir}`)
    // A frame from the opener concerns a tunnel we accepted, and vice versa.
    const table = dir === Dir.FromOpener ? this.incoming : this.outgoing
    switch (type) {
      case 'open': {
        const cluster = r.str('cluster')
        r.u32('timeout')
        const window = r.u32('window')
        r.end('tunnel open')
        peerCluster(cluster) // as `tunnel` checks it: refused
        this.accept(peer, tid, cluster, window)
        return
      }
      case 'accept': {
        const window = r.u32('window')
        r.end('tunnel accept')
        const o = this.opening.get(`${peer}/${tid}`)
        if (!o) {
          // Accepted after we gave up: tell the acceptor to close it.
          this.host
            .link(peer)
            ?.write((w) => writeClose(w, tid, Dir.FromOpener, CloseReason.Timeout, 'setup timed out'))
          return
        }
        o.resolve(this.makeEnd(tid, Dir.FromOpener, peer, o.cluster, window))
        return
      }
      case 'data': {
        const flags = r.u8('flags')
        const chunk = r.bytes('chunk', 1 << 20)
        r.end('tunnel data')
        this.bytes.received += chunk.length
        const end = table.get(peer, tid)
        if (!end) return
        if (!end.onData((flags & 1) === 1, chunk)) end.fail(CloseReason.Error, 'flow control violated')
        return
      }
      case 'credit': {
        const bytes = r.u32('credit')
        r.end('tunnel credit')
        table.get(peer, tid)?.onCredit(bytes)
        return
      }
      case 'close': {
        const reason = r.u8('reason')
        const message = r.str('message')
        r.end('tunnel close')
        const o = dir === Dir.FromAcceptor ? this.opening.get(`${peer}/${tid}`) : undefined
        if (o) o.refuse(reason, message)
        else table.get(peer, tid)?.onRemoteClose(reason, message)
      }
    }
  }

  private accept(peer: string, tid: number, cluster: string, window: number, waited = false): void {
    const link = this.host.link(peer)
    if (!link) {
      // Our link back is not up yet (see the module doc): answer once it is.
      if (waited) return void this.host.count('tunnels.undeliverable')
      this.host.open(peer).then(
        (l) =>
          l && !l.closed
            ? this.accept(peer, tid, cluster, window, true)
            : this.host.count('tunnels.undeliverable'),
        () => this.host.count('tunnels.undeliverable'),
      )
      return
    }
    const refuse = (reason: number, message: string) =>
      link.write((w) => writeClose(w, tid, Dir.FromAcceptor, reason, message))
    const s = this.served.get(cluster)
    if (!s) return void refuse(CloseReason.NotMember, `not a member of ${cluster}`)
    if (!s.handler) return void refuse(CloseReason.Refused, `${cluster}: this member does not accept tunnels`)
    if (s.open >= s.limit) {
      this.host.count('tunnels.refused')
      return void refuse(CloseReason.Refused, `${cluster}: ${s.open} tunnels open, limit ${s.limit}`)
    }
    const share = peerShare(s.limit)
    const mine = this.incoming.countOf(peer)
    if (mine >= share) {
      this.host.count('tunnels.refused.peerLimit')
      const message = `${cluster}: ${mine} tunnels open from ${peer}, limit per peer ${share}`
      return void refuse(CloseReason.Refused, message)
    }
    s.open++
    const end = this.makeEnd(tid, Dir.FromAcceptor, peer, cluster, window)
    link.write((w) => writeAccept(w, tid, TUNNEL_WINDOW))
    this.host.count('tunnels.accepted')
    try {
      const r = s.handler(end, { from: peer, cluster })
      if (r instanceof Promise)
        r.catch((err) => end.fail(CloseReason.Error, `handler failed: ${String(err)}`))
    } catch (err) {
      end.fail(CloseReason.Error, `handler failed: ${String(err)}`)
    }
  }

  /** The link to a peer closed: every tunnel with it ends. */
  onLinkDown(peer: string): void {
    for (const table of [this.outgoing, this.incoming]) {
      for (const end of table.ofPeer(peer))
        end.terminate(new TunnelClosedError(`tunnel peer ${peer} is gone`))
    }
    for (const [, o] of [...this.opening]) if (o.peer === peer) o.refuse(LINK_LOST, 'peer gone')
  }

  /** Ends every tunnel (node stopping). */
  closeAll(): void {
    for (const table of [this.outgoing, this.incoming]) {
      for (const end of table.all()) end.fail(CloseReason.Error, 'node stopping')
    }
  }
}
