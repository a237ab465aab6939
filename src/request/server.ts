/**
 * Serving requests for joined clusters. Each request runs the cluster's handler at once or
 * is refused: over `limits.requests` running handlers or `limits.queueBytes` held bytes the
 * member answers Overloaded (nothing queues without bound), and so it does when one remote
 * peer already holds its share of them (`peerShare` of each limit, counted
 * `requests.refused.peerLimit`), so one caller cannot take every slot. The caller's deadline travels
 * as remaining milliseconds: work that arrives expired is dropped, `ctx.signal` aborts at
 * the deadline, when the caller cancels or when the caller's connection goes (`onPeerGone`),
 * and a reply produced after that is discarded.
 * A handler that throws becomes a RemoteError reply; it never takes the node down.
 */
import { errorMessage, errorName, RemoteError } from '../errors.js'
import {
  encodeReplyError,
  encodeReplyOk,
  ReplyStatus,
  RequestFlag,
  type RequestFrame,
} from '../link/frames.js'
import type { Limits, RequestContext, RequestHandlerResult } from '../types.js'
import type { BinaryWriter } from '../util/binary.js'
import { peerShare } from '../util/peer-share.js'
import { toReply } from '../util/validate.js'

/** A request handler as given to `join`: the reply bytes, text, or `{ data, headers }`. */
export type RequestHandler = (
  data: Uint8Array,
  ctx: RequestContext,
) => RequestHandlerResult | Promise<RequestHandlerResult>

/** A handler's reply as the server passes it on. */
export interface ServedReply {
  data: Uint8Array
  headers: Record<string, string> | undefined
}

interface Served {
  cluster: string
  handler: RequestHandler | undefined
  limits: Required<Limits>
  running: number
  runningBytes: number
  /** What each remote caller holds now (removed when nothing). */
  byPeer: Map<string, { running: number; bytes: number }>
}

/** Outcome callback of one execution. */
type Done = (err: unknown, reply?: Uint8Array, headers?: Record<string, string>) => void

/** What the server needs from the node around it. */
export interface ServerHost {
  now(): number
  /** Writes a frame to `peer`, opening the link first when it is not up yet. */
  sendTo(peer: string, encode: (w: BinaryWriter) => void): void
  count(counter: string): void
  /** Told how each request of a served cluster ended: ok, error, overloaded, dropped (metrics). */
  served?(cluster: string, outcome: 'ok' | 'error' | 'overloaded' | 'dropped'): void
}

/** Runs request handlers of the clusters this node serves. */
export class RequestServer {
  private readonly served = new Map<string, Served>()
  private readonly running = new Map<string, AbortController | null>()

  constructor(private readonly host: ServerHost) {}

  serve(cluster: string, handler: RequestHandler | undefined, limits: Required<Limits>): void {
    this.served.set(cluster, { cluster, handler, limits, running: 0, runningBytes: 0, byPeer: new Map() })
  }

  unserve(cluster: string): void {
    this.served.delete(cluster)
  }

  /** Handlers running now for requests from `peer`, every cluster together. */
  servingFor(peer: string): number {
    let n = 0
    for (const s of this.served.values()) n += s.byPeer.get(peer)?.running ?? 0
    return n
  }

  /** Handlers running now, every served cluster together (for status). */
  get serving(): number {
    let n = 0
    for (const s of this.served.values()) n += s.running
    return n
  }

  /** Load of a served cluster (for status). */
  load(cluster: string): { running: number; runningBytes: number } | undefined {
    const s = this.served.get(cluster)
    return s && { running: s.running, runningBytes: s.runningBytes }
  }

  /** A request frame from a peer. */
  onRequest(peer: string, f: RequestFrame): void {
    const reply = (status: number, name: string, message: string) =>
      this.host.sendTo(peer, (w) => encodeReplyError(w, f.id, status, name, message))
    const s = this.served.get(f.cluster)
    if (!s) {
      this.host.count('requests.notMember')
      reply(ReplyStatus.NotMember, 'NoMembersError', `not a member of ${f.cluster}`)
      return
    }
    if (f.remainingMs === 0) {
      this.host.count('requests.expired')
      return
    }
    const key = `${peer}/${f.id}`
    // Reply headers go only to a caller that reads them (older callers get the data alone).
    const replyHeaders = (f.flags & RequestFlag.ReplyHeaders) !== 0
    const refused = this.execute(s, peer, f.data, f.headers, f.remainingMs, key, true, (err, data, h) => {
      this.running.delete(key)
      if (err === undefined)
        this.host.sendTo(peer, (w) => encodeReplyOk(w, f.id, data!, replyHeaders ? h : undefined))
      else
        this.host.sendTo(peer, (w) =>
          encodeReplyError(w, f.id, ReplyStatus.Error, errorName(err), errorMessage(err)),
        )
    })
    if (refused) reply(ReplyStatus.Overloaded, 'OverloadedError', refused)
  }

  /** The caller gave up: abort the handler's signal; its reply will be dropped. */
  onCancel(peer: string, id: number): void {
    const key = `${peer}/${id}`
    const ac = this.running.get(key)
    this.running.delete(key)
    ac?.abort(new Error('caller cancelled'))
  }

  /**
   * Every connection to `peer` closed: the handlers serving its requests see their signal
   * abort, and their replies are dropped (nobody could receive them).
   */
  onPeerGone(peer: string): void {
    const prefix = `${peer}/`
    for (const [key, ac] of [...this.running]) {
      if (!key.startsWith(prefix)) continue
      this.running.delete(key)
      ac?.abort(new Error('caller gone'))
    }
  }

  /**
   * Runs a request for a cluster this node serves, without the network (the node is its
   * own member). Rejects with Overloaded/NoMembers like a remote member would answer.
   */
  runLocal(
    cluster: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    remainingMs: number,
    from: string,
  ): Promise<ServedReply> {
    const s = this.served.get(cluster)
    if (!s) return Promise.reject(new RemoteError(`not a member of ${cluster}`))
    return new Promise((resolve, reject) => {
      const refused = this.execute(s, from, data, headers, remainingMs, undefined, false, (err, reply, h) =>
        err === undefined ? resolve({ data: reply!, headers: h }) : reject(err),
      )
      if (refused) reject(Object.assign(new Error(refused), { overloaded: true }))
    })
  }

  /**
   * Starts the handler unless limits are full (then returns the refusal message).
   * `done` is called at most once, and not at all when the deadline passed or the caller
   * cancelled before the handler finished.
   */
  private execute(
    s: Served,
    from: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    remainingMs: number,
    key: string | undefined,
    remote: boolean,
    done: Done,
  ) {
    if (s.running >= s.limits.requests) {
      this.host.count('requests.overloaded')
      this.host.served?.(s.cluster, 'overloaded')
      return `${s.cluster}: ${s.running} requests running, limit ${s.limits.requests}`
    }
    if (s.runningBytes + data.length > s.limits.queueBytes) {
      this.host.count('requests.overloaded')
      this.host.served?.(s.cluster, 'overloaded')
      return `${s.cluster}: ${s.runningBytes + data.length} bytes held, limit ${s.limits.queueBytes}`
    }
    const mine = remote ? (s.byPeer.get(from) ?? { running: 0, bytes: 0 }) : undefined
    if (mine !== undefined) {
      const refused = peerRefusal(s, mine, data.length)
      if (refused !== undefined) {
        this.host.count('requests.refused.peerLimit')
        this.host.served?.(s.cluster, 'overloaded')
        return `${s.cluster}: ${refused} from ${from}`
      }
      mine.running++
      mine.bytes += data.length
      s.byPeer.set(from, mine)
    }
    s.running++
    s.runningBytes += data.length
    const deadline = this.host.now() + remainingMs
    let ac: AbortController | undefined
    let timer: NodeJS.Timeout | undefined
    let finished = false
    const running = this.running
    if (key) running.set(key, null)
    const ctx: RequestContext = {
      from,
      cluster: s.cluster,
      deadline,
      headers,
      get signal() {
        if (!ac) {
          ac = new AbortController()
          if (key) running.set(key, ac)
          const left = deadline - Date.now()
          if (left <= 0) ac.abort(new Error('deadline passed'))
          else if (!finished) {
            timer = setTimeout(() => ac!.abort(new Error('deadline passed')), left)
            timer.unref()
          }
        }
        return ac.signal
      },
    }
    const finish = (err: unknown, reply?: Uint8Array, replyHeaders?: Record<string, string>) => {
      if (finished) return
      finished = true
      if (timer) clearTimeout(timer)
      s.running--
      s.runningBytes -= data.length
      if (mine !== undefined) {
        mine.running--
        mine.bytes -= data.length
        if (mine.running === 0 && s.byPeer.get(from) === mine) s.byPeer.delete(from)
      }
      const cancelled = key !== undefined && !running.has(key)
      if (cancelled || this.host.now() > deadline) {
        this.host.count('requests.dropped')
        this.host.served?.(s.cluster, 'dropped')
        if (key) running.delete(key)
        return
      }
      this.host.count(err === undefined ? 'requests.served' : 'requests.failed')
      this.host.served?.(s.cluster, err === undefined ? 'ok' : 'error')
      done(err, reply, replyHeaders)
    }
    if (!s.handler) {
      finish(new RemoteError(`${s.cluster}: this member has no request handler`))
      return undefined
    }
    try {
      const out = s.handler(data, ctx)
      if (out instanceof Promise) {
        out.then(
          (r) => finishValue(r),
          (err) => finish(asRemote(err)),
        )
      } else finishValue(out)
    } catch (err) {
      finish(asRemote(err))
    }
    return undefined

    function finishValue(r: unknown) {
      if (r instanceof Uint8Array) {
        finish(undefined, r)
        return
      }
      try {
        const reply = toReply(r)
        finish(undefined, reply.data, reply.headers)
      } catch (err) {
        finish(asRemote(err))
      }
    }
  }

  /** Aborts every running handler (node stopping). */
  abortAll(): void {
    for (const ac of this.running.values()) ac?.abort(new Error('node stopping'))
    this.running.clear()
  }
}

/** Request bytes one caller may always hold (the whole `queueBytes` when smaller). */
const PEER_BYTES_MIN = 4 * 1024 * 1024

/** Why one remote caller may not start another request now (its share is full), if so. */
function peerRefusal(s: Served, mine: { running: number; bytes: number }, bytes: number): string | undefined {
  const requests = peerShare(s.limits.requests)
  if (mine.running >= requests) return `${mine.running} requests running, limit per peer ${requests}`
  const held = peerShare(s.limits.queueBytes, PEER_BYTES_MIN)
  if (mine.bytes > 0 && mine.bytes + bytes > held)
    return `${mine.bytes + bytes} bytes held, limit per peer ${held}`
  return undefined
}

function asRemote(err: unknown): Error {
  if (err instanceof RemoteError) return err
  return new RemoteError(errorMessage(err), { cause: err })
}
