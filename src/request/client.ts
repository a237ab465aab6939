/**
 * Sending requests. Each request goes to one proven member that serves requests (its signed
 * roles say it has a request handler) with an open link (or to this node when it is such a
 * member itself), chosen by `chooseMember`. The deadline travels with
 * it; on timeout or abort the member is told to cancel.
 *
 * Delivery: at-most-once by default. A request whose member refused it (not a member any
 * more, overloaded) or whose link closed before the request was handed to the stream is
 * sent to another member. When the link closes after that, the caller gets
 * `MemberLostError` unless it passed `retry: true`, which resends it (at-least-once).
 *
 * Unreachable members: a member silent for two heartbeats (`LINK.suspectAfter`) gets no new
 * requests while another is reachable; when every member left has no link and its last dial
 * failed, the request fails at once with `NoMembersError` instead of waiting for its deadline.
 */

import { noRoleMessage, type Role } from '../cluster/roles.js'
import { DEFAULT_REQUEST_TIMEOUT, LATENCY_EWMA_ALPHA, LINK } from '../constants.js'
import {
  AbortedError,
  errorFromWire,
  MemberLostError,
  NoMembersError,
  OverloadedError,
  TimeoutError,
} from '../errors.js'
import {
  encodeRequest,
  encodeU32Frame,
  FrameType,
  type ReplyFrame,
  ReplyStatus,
  RequestFlag,
} from '../link/frames.js'
import type { Link } from '../link/link.js'
import type { RequestReply } from '../types.js'
import { type Candidate, chooseMember } from './balancer.js'
import type { ServedReply } from './server.js'

/** Options of one request as the client takes them (checked by the node). */
export interface ClientRequestOptions {
  timeout?: number
  signal?: AbortSignal
  retry?: boolean
  headers?: Record<string, string>
  /**
   * Send to this member only (for `requestMany`): no other member is tried, and a refusal
   * (not a member, overloaded) or a lost link fails the request at once.
   */
  only?: string
}

/** On-demand links asked for at once when no member of a cluster is linked. */
const WANT_AT_ONCE = 2

/** What the client needs from the node around it. */
export interface ClientHost {
  self: string
  now(): number
  /** Proven members of a cluster (peer ids). */
  members(cluster: string): string[]
  /** Proven members of a cluster whose signed roles include `role` (peer ids). */
  servers(cluster: string, role: Role): string[]
  link(peer: string): Link | undefined
  /** True when this node serves the cluster itself. */
  servesLocally(cluster: string): boolean
  runLocal(
    cluster: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    remainingMs: number,
  ): Promise<ServedReply>
  /** Resolves on the next membership or link change (or when `signal` aborts). */
  nextChange(signal: AbortSignal): Promise<void>
  /** True while the node is young enough that members may still be on their way. */
  discovering(): boolean
  /**
   * The cluster has no known or no reachable member: true while a DHT lookup for it is worth
   * waiting for (starting one if needed; discovery/dht.ts). Absent without the DHT.
   */
  lookup?(cluster: string): boolean
  count(counter: string): void
  /** True when `peer` has no link and the last dial to it failed (requests fail at once). */
  unreachable?(peer: string): boolean
  /**
   * No member with the role is linked: open an on-demand link to `peer` (bounded links,
   * src/overlay/); the request waits for the link like for any other change.
   */
  want?(peer: string): void
  /** Told how each request ended (`err` undefined: a reply) and how long it took (metrics). */
  settled?(cluster: string, err: Error | undefined, seconds: number): void
}

/** Reason used to end waits of a settled request (no DOMException per request). */
const SETTLED = new Error('request settled')

/** One request waiting for its reply. */
class Pending {
  tried: Set<string> | undefined
  overloaded = false
  member: string | undefined
  /** Link ticket of the request frame (for isFlushed). */
  ticket = 0
  sentAt = 0
  timer: NodeJS.Timeout | undefined
  /** Created only when the request has to wait for members. */
  ac: AbortController | undefined
  onAbort: (() => void) | undefined

  constructor(
    readonly id: number,
    readonly cluster: string,
    readonly data: Uint8Array,
    readonly headers: Record<string, string> | undefined,
    readonly only: string | undefined,
    readonly deadline: number,
    readonly retry: boolean,
    readonly userSignal: AbortSignal | undefined,
    private readonly res: (v: RequestReply) => void,
    private readonly rej: (e: Error) => void,
  ) {}

  get signal(): AbortSignal {
    this.ac ??= new AbortController()
    return this.ac.signal
  }

  private cleanup(): void {
    clearTimeout(this.timer)
    if (this.onAbort) this.userSignal?.removeEventListener('abort', this.onAbort)
    this.ac?.abort(SETTLED)
  }

  resolve(v: RequestReply): void {
    this.cleanup()
    this.res(v)
  }

  reject(e: Error): void {
    this.cleanup()
    this.rej(e)
  }
}

/** Per-member bookkeeping kept by the client. */
interface MemberStats {
  outstanding: number
  latencyMs: number | null
}

/** Request sender with load balancing, failover and deadlines. */
export class RequestClient {
  private readonly pending = new Map<number, Pending>()
  private readonly stats = new Map<string, MemberStats>()
  private nextId = 1
  private turn = 0

  constructor(private readonly host: ClientHost) {}

  /** Outstanding count and latency this node measured for a member. */
  memberStats(peer: string): MemberStats {
    return this.stats.get(peer) ?? { outstanding: 0, latencyMs: null }
  }

  /** Requests made on this node (status `requests.sent`). */
  sent = 0

  /** Requests waiting for a reply. */
  get inFlight(): number {
    return this.pending.size
  }

  request(cluster: string, data: Uint8Array, opts: ClientRequestOptions): Promise<RequestReply> {
    const timeout = opts.timeout ?? DEFAULT_REQUEST_TIMEOUT
    if (opts.signal?.aborted) return Promise.reject(new AbortedError('request aborted before it was sent'))
    return new Promise<RequestReply>((res, rej) => {
      let resolve = res
      let reject = rej
      const settled = this.host.settled
      if (settled) {
        const t0 = performance.now()
        resolve = (v) => {
          settled(cluster, undefined, (performance.now() - t0) / 1000)
          res(v)
        }
        reject = (e) => {
          settled(cluster, e, (performance.now() - t0) / 1000)
          rej(e)
        }
      }
      const id = this.nextId
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1
      const p = new Pending(
        id,
        cluster,
        data,
        opts.headers,
        opts.only,
        this.host.now() + timeout,
        opts.retry === true,
        opts.signal,
        resolve,
        reject,
      )
      p.timer = setTimeout(
        () => this.fail(p, new TimeoutError(`request to ${cluster} timed out after ${timeout} ms`)),
        timeout,
      )
      if (opts.signal) {
        p.onAbort = () => this.fail(p, new AbortedError('request aborted', { cause: opts.signal?.reason }))
        opts.signal.addEventListener('abort', p.onAbort, { once: true })
      }
      this.pending.set(id, p)
      this.sent++
      if (!this.trySend(p)) void this.dispatch(p)
    })
  }

  /** Gives up on a request (timeout, abort) and tells its member to stop working on it. */
  private fail(p: Pending, err: Error): void {
    if (this.pending.get(p.id) !== p) return
    const member = p.member
    this.finish(p)
    if (member && member !== this.host.self) {
      this.host.link(member)?.write((w) => encodeU32Frame(w, FrameType.Cancel, p.id))
    }
    p.reject(err)
  }

  /** Sends to a chosen member when one is reachable now. */
  private trySend(p: Pending): boolean {
    const chosen = chooseMember(this.candidates(p), this.turn++)
    if (!chosen) return false
    this.send(p, chosen.peer)
    return true
  }

  private finish(p: Pending): void {
    this.pending.delete(p.id)
    if (p.member) {
      const s = this.stats.get(p.member)
      if (s && s.outstanding > 0) s.outstanding--
    }
  }

  /** Waits for a member to become reachable, then sends; or fails when none will. */
  private async dispatch(p: Pending): Promise<void> {
    while (this.pending.get(p.id) === p) {
      if (this.trySend(p)) return
      if (p.only !== undefined) {
        // One member only: it cannot be reached (or was already tried).
        this.finish(p)
        p.reject(new NoMembersError(`member ${p.only} of ${p.cluster} is not reachable`))
        return
      }
      const known = this.host.servers(p.cluster, 'request')
      const untried = known.filter((m) => !p.tried?.has(m))
      // Every member left is unlinked and its last dial failed: fail now, not at the deadline.
      const unreachable = untried.length > 0 && untried.every((m) => this.host.unreachable?.(m) === true)
      const searching = (unreachable || known.length === 0) && this.host.lookup?.(p.cluster) === true
      if (
        !searching &&
        (unreachable || (untried.length === 0 && !(known.length === 0 && this.host.discovering())))
      ) {
        this.finish(p)
        const tried = p.tried?.size ?? 0
        const all = this.host.members(p.cluster).length
        if (p.overloaded) p.reject(new OverloadedError(`every member of ${p.cluster} is overloaded`))
        else if (known.length === 0 && all > 0)
          p.reject(new NoMembersError(noRoleMessage(p.cluster, 'request', all)))
        else if (known.length === 0) p.reject(new NoMembersError(`no members of ${p.cluster} are known`))
        else if (unreachable)
          p.reject(
            new NoMembersError(
              `no reachable member of ${p.cluster}: ${untried.length} known, no link and dials failing (tried ${tried})`,
            ),
          )
        else p.reject(new NoMembersError(`no reachable member of ${p.cluster} (tried ${tried})`))
        return
      }
      // Members known but not linked yet (or still discovering): wait for a change.
      try {
        await this.host.nextChange(p.signal)
      } catch {
        return
      }
    }
  }

  /**
   * Members of `cluster` a request could go to now (serving requests, linked, or this node),
   * best first as `chooseMember` ranks them: fewest outstanding, then lowest latency. While
   * none is reachable it waits for a membership or link change as a request does; it rejects
   * with `NoMembersError` when no member will come (or `signal` aborts: its reason).
   */
  async reachable(cluster: string, signal: AbortSignal): Promise<string[]> {
    for (;;) {
      const list = this.candidates({ cluster, tried: undefined })
      if (list.length > 0) {
        const lat = (c: Candidate) => c.latencyMs ?? Number.MAX_SAFE_INTEGER
        list.sort((x, y) => x.outstanding - y.outstanding || lat(x) - lat(y))
        return list.map((c) => c.peer)
      }
      const known = this.host.servers(cluster, 'request').length
      // The lookup is asked first so it starts even while the node is young.
      if (known === 0 && this.host.lookup?.(cluster) !== true && !this.host.discovering()) {
        const all = this.host.members(cluster).length
        throw new NoMembersError(
          all > 0 ? noRoleMessage(cluster, 'request', all) : `no members of ${cluster} are known`,
        )
      }
      await this.host.nextChange(signal)
    }
  }

  /**
   * Picks a member of `cluster` with `role` like a request would, skipping `exclude` (for
   * tunnels). Null when none is linked but some known one is not unreachable: on-demand links
   * to them are opening (`candidates` asked for them), worth waiting for as a request does.
   */
  pick(cluster: string, exclude: Set<string>, role: Role = 'request'): string | undefined | null {
    const peer = chooseMember(this.candidates({ cluster, tried: exclude }, role), this.turn++)?.peer
    if (peer !== undefined || !this.host.want) return peer
    for (const m of this.host.servers(cluster, role)) {
      if (!exclude.has(m) && !this.host.link(m) && !this.host.unreachable?.(m)) return null
    }
    return undefined
  }

  private candidates(
    p: Pick<Pending, 'cluster' | 'tried'> & { only?: string },
    role: Role = 'request',
  ): Array<Candidate & { peer: string }> {
    const out: Candidate[] = []
    const now = this.host.now()
    let suspect: Candidate[] | undefined
    const only = p.only
    for (const peer of this.host.servers(p.cluster, role)) {
      if (p.tried?.has(peer)) continue
      if (only !== undefined && peer !== only) continue
      const local = peer === this.host.self
      const link = local ? undefined : this.host.link(peer)
      if (!local && !link) continue
      const s = this.memberStats(peer)
      // Latency is the link's recent heartbeat round trips (balancer.ts LatencyWindow): the
      // network distance to the member. Request round trips are not used here: under
      // concurrency they measure queueing, which `outstanding` already accounts for.
      const c = { peer, outstanding: s.outstanding, latencyMs: link ? link.recentRtt.estimate(now) : 0 }
      // A member silent for two heartbeats is likely cut off: used only when no other is left.
      if (link && now - link.lastSeen > LINK.suspectAfter) (suspect ??= []).push(c)
      else out.push(c)
    }
    if (out.length === 0 && suspect === undefined && this.host.want) this.wantSome(p, role, only)
    return out.length > 0 || suspect === undefined ? out : suspect
  }

  /** Asks for on-demand links to a few unlinked members (none is linked now). */
  private wantSome(p: Pick<Pending, 'cluster' | 'tried'>, role: Role, only: string | undefined): void {
    let asked = 0
    for (const peer of this.host.servers(p.cluster, role)) {
      if (asked >= WANT_AT_ONCE) return
      if (peer === this.host.self || p.tried?.has(peer) || (only !== undefined && peer !== only)) continue
      if (this.host.unreachable?.(peer)) continue
      this.host.want!(peer)
      asked++
    }
  }

  private send(p: Pending, peer: string): void {
    p.member = peer
    ;(p.tried ??= new Set()).add(peer)
    let s = this.stats.get(peer)
    if (!s) this.stats.set(peer, (s = { outstanding: 0, latencyMs: null }))
    s.outstanding++
    p.sentAt = this.host.now()
    const remaining = p.deadline - p.sentAt
    if (peer === this.host.self) {
      this.host.runLocal(p.cluster, p.data, p.headers, remaining).then(
        (reply) =>
          this.onReply(
            peer,
            { id: p.id, status: ReplyStatus.Ok, data: reply.data, headers: reply.headers },
            p,
          ),
        (err: Error & { overloaded?: boolean }) => {
          if (err.overloaded)
            this.onReply(
              peer,
              { id: p.id, status: ReplyStatus.Overloaded, name: 'OverloadedError', message: err.message },
              p,
            )
          else if (this.pending.get(p.id) === p) {
            this.finish(p)
            p.reject(err)
          }
        },
      )
      return
    }
    const link = this.host.link(peer)!
    const write = () => {
      p.ticket = link.write((w) =>
        encodeRequest(w, {
          id: p.id,
          cluster: p.cluster,
          remainingMs: p.deadline - this.host.now(),
          flags: RequestFlag.ReplyHeaders,
          headers: p.headers,
          data: p.data,
        }),
      )
    }
    if (!link.full) {
      write()
      return
    }
    // Backpressure: the link's queue is full, so the request waits for room (its deadline
    // still runs) instead of growing the queue without bound.
    link.writable().then(
      () => {
        if (this.pending.get(p.id) === p && p.member === peer && !link.closed) write()
      },
      () => {}, // the link closed: onLinkDown fails the request over
    )
  }

  /** A reply frame arrived from `peer`. `local` is set for replies of this node itself. */
  onReply(peer: string, f: ReplyFrame, local?: Pending): void {
    const p = local ?? this.pending.get(f.id)
    if (!p || this.pending.get(p.id) !== p || p.member !== peer) return
    const s = this.stats.get(peer)
    if (s) {
      if (s.outstanding > 0) s.outstanding--
      const rtt = this.host.now() - p.sentAt
      s.latencyMs = s.latencyMs === null ? rtt : s.latencyMs + LATENCY_EWMA_ALPHA * (rtt - s.latencyMs)
    }
    p.member = undefined
    if (f.status === ReplyStatus.Ok) {
      this.pending.delete(p.id)
      const ok = f as { data: Uint8Array; headers?: Record<string, string> }
      if (!ok.headers) {
        p.resolve(ok.data)
        return
      }
      // The headers ride on a view of the bytes of its own (a local handler's array may be reused).
      const reply: RequestReply = new Uint8Array(ok.data.buffer, ok.data.byteOffset, ok.data.length)
      reply.headers = ok.headers
      p.resolve(reply)
      return
    }
    if (p.only === undefined && (f.status === ReplyStatus.NotMember || f.status === ReplyStatus.Overloaded)) {
      // Not run: safe to try another member.
      if (f.status === ReplyStatus.Overloaded) p.overloaded = true
      this.host.count('requests.failover')
      void this.dispatch(p)
      return
    }
    this.pending.delete(p.id)
    const e = f as { name: string; message: string }
    p.reject(errorFromWire(e.name, e.message))
  }

  /** The link to `peer` closed: fail over, retry, or fail what was sent to it. */
  onLinkDown(link: Link): void {
    for (const p of [...this.pending.values()]) {
      if (p.member !== link.peer) continue
      const s = this.stats.get(link.peer)
      if (s && s.outstanding > 0) s.outstanding--
      p.member = undefined
      const written = p.ticket > 0 && link.isFlushed(p.ticket)
      if (p.only === undefined && (!written || p.retry)) {
        this.host.count(written ? 'requests.retried' : 'requests.failover')
        if (written) p.tried?.delete(link.peer)
        void this.dispatch(p)
      } else if (p.only !== undefined) {
        this.pending.delete(p.id)
        p.reject(new MemberLostError(`member ${link.peer} of ${p.cluster} was lost before it replied`))
      } else {
        this.pending.delete(p.id)
        p.reject(
          new MemberLostError(
            `member ${link.peer} of ${p.cluster} was lost after the request was sent; it may have run (pass retry: true to resend)`,
          ),
        )
      }
    }
  }

  /** Rejects everything (node stopping). */
  abortAll(): void {
    for (const p of [...this.pending.values()]) {
      this.pending.delete(p.id)
      p.reject(new AbortedError('node stopped'))
    }
  }
}
