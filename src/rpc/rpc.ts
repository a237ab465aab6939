/**
 * `PeerRpc`: internal calls from this node to one named peer over the existing links (the
 * durable-stream layers use it: metadata commands, publishes to a partition leader, reads).
 * User requests go through `request/` instead (addressed to a cluster, balanced by load).
 *
 * Frame bodies (util/binary):
 * - `RpcCall`: `u32 id | str method | u32 timeout ms | u8 flags (bit 0: no reply) | bytes body`
 * - `RpcReply`: `u32 id | u8 status (0 ok, 1 error) | ok: bytes body | error: str name | str message`
 *
 * Guarantees: a call is written once (never resent); it resolves with the handler's bytes, or
 * rejects with the handler's error class (by name, see errors.ts), `TimeoutError` after its
 * timeout, `MemberLostError` when the link to the peer closes first (the handler may or may
 * not have run), `AbortedError` on `signal` or `close()`. Replies to calls that already gave
 * up are dropped.
 *
 * Bounds on the serving side (docs/security.md, "Per-peer bounds"; defaults in constants.ts
 * `RPC`): at most `maxConcurrent` handlers run at once, and at most `maxPerPeer` for one
 * remote peer, so a peer that floods us fills only its own share; further calls are
 * answered `OverloadedError` without running (counted `rpc.refused.peerLimit` and
 * `rpc.refused.total`), as are calls from a peer whose link holds its bound of unread bytes
 * (`rpc.refused.queue`); a large reply to such a peer becomes an `OverloadedError` reply.
 * A handler's signal aborts at the caller's deadline but never later than `maxServeMs`,
 * and at once when the caller's link or connection goes (`onLinkDown`/`onPeerGone`): long
 * polls that follow it end then and free their slot.
 */
import { MAX_TIMEOUT, RPC } from '../constants.js'
import {
  AbortedError,
  errorFromWire,
  errorMessage,
  errorName,
  InvalidArgumentError,
  MemberLostError,
  OverloadedError,
  PlexusError,
  TimeoutError,
} from '../errors.js'
import { FRAME_HEADER_BYTES, FrameType, writeFrame } from '../link/frames.js'
import { BinaryReader, BinaryWriter } from '../util/binary.js'
import { PeerInputError, refusedCounter } from '../util/peer-input.js'

/** Longest method name (bytes of UTF-8 are close enough for ASCII names). */
const MAX_METHOD = 64
/** Largest call or reply body accepted from a peer. */
export const MAX_RPC_BODY = 16 * 1024 * 1024
const FLAG_NO_REPLY = 1
/** Replies up to this size (bytes) are sent even to a peer whose link is full. */
const SMALL_REPLY = 1024

/** What `PeerRpc` needs from its node. */
export interface RpcHost {
  /** This node's peer id: calls to it run the handler in-process. */
  self: string
  /**
   * Writes a frame to a peer (opening the link when needed); never throws. Calls
   * `undeliverable` when no link could be opened (the frame was not sent).
   */
  sendTo(peer: string, encode: (w: BinaryWriter) => void, undeliverable?: () => void): void
  count(name: string): void
  /**
   * True while the link to `peer` holds its bound of queued bytes (the peer does not read
   * what we send): its new calls are refused, so unread replies cannot pile up.
   */
  full?(peer: string): boolean
}

/**
 * The call was never written: no link to the peer could be opened. Safe to retry elsewhere.
 * Internal (never crosses the wire).
 */
export class PeerUnreachableError extends PlexusError {}

/** Context of one served call. */
export interface RpcContext {
  from: string
  /**
   * Aborted when the call's timeout passes (at most `maxServeMs`), the caller's link or
   * connection goes, or the node stops.
   */
  signal: AbortSignal
}

/** Bounds of `PeerRpc` on the serving side (defaults: constants.ts `RPC`). */
export interface RpcLimits {
  /** Handlers running at once, for every caller together. */
  maxConcurrent?: number
  /** Handlers running at once for one remote caller (this node's own calls: only the total). */
  maxPerPeer?: number
  /** Longest a handler's signal stays unaborted, whatever deadline the caller sent (ms). */
  maxServeMs?: number
}

/** Internal: what one remote caller holds here (`ServedCall` updates it). */
export interface CallerState {
  /** Its handlers running now. */
  running: number
  /** Signals handed to its running handlers. */
  readonly serving: Set<AbortController>
  /** Bumped when its link or connection goes: calls started before see their signal aborted. */
  epoch: number
}

/** Serves one method. Throwing (or rejecting) sends the error back by class name. */
export type RpcHandler = (body: Uint8Array, ctx: RpcContext) => Uint8Array | Promise<Uint8Array>

/** Options of `call`. */
export interface CallOptions {
  /** Milliseconds (required: every call has a deadline). */
  timeout: number
  signal?: AbortSignal
}

interface Pending {
  peer: string
  signal: AbortSignal | undefined
  timer: NodeJS.Timeout | undefined
  resolve(body: Uint8Array): void
  reject(err: Error): void
}

/** Internal peer-to-peer calls; see the module doc. */
export class PeerRpc {
  private readonly handlers = new Map<string, { handler: RpcHandler; allowed?: (peer: string) => boolean }>()
  private readonly pending = new Map<number, Pending>()
  /** Calls waiting on each caller signal (one abort listener per signal). */
  private readonly watched = new WeakMap<AbortSignal, Set<Pending>>()
  /** Handlers running now. */
  private running = 0
  /** What each caller with a running handler holds (removed when it holds nothing). */
  private readonly callers = new Map<string, CallerState>()
  private nextId = 1
  private closed = false
  private readonly maxConcurrent: number
  private readonly maxPerPeer: number
  /** Internal (`ServedCall`): longest a handler's signal stays unaborted (ms). */
  readonly maxServeMs: number

  constructor(
    private readonly host: RpcHost,
    opts: RpcLimits = {},
  ) {
    this.maxConcurrent = opts.maxConcurrent ?? RPC.maxConcurrent
    this.maxPerPeer = opts.maxPerPeer ?? RPC.maxPerPeer
    this.maxServeMs = opts.maxServeMs ?? RPC.maxServeMs
  }

  /** Handlers running now, and how many callers they serve. */
  stats(): { serving: number; servingPeers: number } {
    return { serving: this.running, servingPeers: this.callers.size }
  }

  /**
   * Registers the handler of `method` (replacing none: a method is served once). `allowed`
   * filters callers; refused callers get `UnauthorizedError`. Returns the unregister function.
   */
  handle(method: string, handler: RpcHandler, allowed?: (peer: string) => boolean): () => void {
    if (method.length === 0 || method.length > MAX_METHOD)
      throw new InvalidArgumentError(`bad method ${method}`)
    if (this.handlers.has(method)) throw new InvalidArgumentError(`method ${method} is already served`)
    const entry = { handler, allowed }
    this.handlers.set(method, entry)
    return () => {
      if (this.handlers.get(method) === entry) this.handlers.delete(method)
    }
  }

  /** Calls `method` on `peer`; see the module doc for the outcomes. */
  call(peer: string, method: string, body: Uint8Array, options: CallOptions): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new AbortedError('node is stopped'))
    const { signal } = options
    if (signal?.aborted) return Promise.reject(new AbortedError('aborted'))
    const id = this.allocateId()
    return new Promise<Uint8Array>((resolve, reject) => {
      const p: Pending = {
        peer,
        signal,
        timer: undefined,
        resolve: (b) => {
          this.finish(id, p)
          resolve(b)
        },
        reject: (e) => {
          this.finish(id, p)
          reject(e)
        },
      }
      p.timer = setTimeout(() => {
        p.reject(new TimeoutError(`${method} to ${peer} got no reply within ${options.timeout} ms`))
      }, options.timeout)
      this.pending.set(id, p)
      if (signal !== undefined) this.watch(signal, p)
      const timeoutMs = Math.min(Math.ceil(options.timeout), 0xffffffff)
      if (peer === this.host.self) {
        this.serve(peer, id, method, timeoutMs, 0, body)
        return
      }
      this.host.sendTo(
        peer,
        (w) => {
          writeFrame(w, FrameType.RpcCall, (b) => b.u32(id).str(method).u32(timeoutMs).u8(0).bytes(body))
        },
        () => this.pending.get(id)?.reject(new PeerUnreachableError(`no link to ${peer}`)),
      )
    })
  }

  /** A call settled: forget it. */
  private finish(id: number, p: Pending): void {
    clearTimeout(p.timer)
    if (this.pending.get(id) === p) this.pending.delete(id)
    if (p.signal !== undefined) this.watched.get(p.signal)?.delete(p)
  }

  /**
   * Rejects `p` with `AbortedError` when `signal` aborts. One listener per signal, however
   * many calls share it (the stream client passes its one closing signal with every call):
   * adding and removing an event listener per call costs more than the rest of the call.
   */
  private watch(signal: AbortSignal, p: Pending): void {
    let set = this.watched.get(signal)
    if (set === undefined) {
      const calls = new Set<Pending>()
      set = calls
      this.watched.set(signal, calls)
      signal.addEventListener(
        'abort',
        () => {
          this.watched.delete(signal)
          for (const c of [...calls]) c.reject(new AbortedError('aborted'))
        },
        { once: true },
      )
    }
    set.add(p)
  }

  /** Sends a call whose reply nobody waits for (fire and forget; errors are dropped). */
  notify(peer: string, method: string, body: Uint8Array): void {
    if (this.closed) return
    this.host.sendTo(peer, (w) => {
      writeFrame(w, FrameType.RpcCall, (b) => b.u32(0).str(method).u32(30_000).u8(FLAG_NO_REPLY).bytes(body))
    })
  }

  /** Decodes an `RpcCall` frame body from `peer` and serves it. Throws `DecodeError` if malformed. */
  onCall(peer: string, r: BinaryReader): void {
    const id = r.u32('rpc id')
    const method = r.str('rpc method')
    const timeout = r.u32('rpc timeout')
    const flags = r.u8('rpc flags')
    const body = r.bytes('rpc body', MAX_RPC_BODY)
    r.end('rpc call')
    if (timeout > MAX_TIMEOUT) {
      // A deadline no local caller can set (Node's timers would fire at once): refused.
      const err = new PeerInputError('timeout', `rpc timeout ${timeout} ms is over ${MAX_TIMEOUT} ms`)
      this.refuse(peer, id, (flags & FLAG_NO_REPLY) !== 0, err)
      return
    }
    this.serve(peer, id, method, timeout, flags, body)
  }

  private serve(
    peer: string,
    id: number,
    method: string,
    timeout: number,
    flags: number,
    body: Uint8Array,
  ): void {
    const noReply = (flags & FLAG_NO_REPLY) !== 0
    const refusal = this.refusal(peer, method)
    if (refusal !== undefined) {
      this.refuse(peer, id, noReply, refusal)
      return
    }
    const entry = this.handlers.get(method)!
    let state = this.callers.get(peer)
    if (state === undefined) {
      state = { running: 0, serving: new Set(), epoch: 0 }
      this.callers.set(peer, state)
    }
    this.running++
    state.running++
    const call = new ServedCall(this, peer, id, timeout, noReply, state)
    let result: Uint8Array | Promise<Uint8Array>
    try {
      result = entry.handler(body, call)
    } catch (err) {
      call.settle(undefined, err)
      return
    }
    if (result instanceof Uint8Array) call.settle(result, undefined)
    else Promise.resolve(result).then(call.ok, call.bad)
  }

  /** Internal (`ServedCall`): sends the reply of call `id` to `peer` (in process when it is this node). */
  reply(peer: string, id: number, ok: Uint8Array | undefined, err: unknown): void {
    if (this.closed) return
    if (err instanceof PeerInputError) {
      // A body field the public API would refuse (util/peer-input.ts): counted, and the
      // caller learns it as the public API would say it.
      this.host.count(refusedCounter(err))
      err = new InvalidArgumentError(err.message)
    }
    if (peer === this.host.self) {
      const w = new BinaryWriter(64)
      writeReplyBody(w, id, ok, err)
      this.onReply(peer, new BinaryReader(w.finish()))
      return
    }
    if (ok !== undefined && ok.length > SMALL_REPLY && this.host.full?.(peer)) {
      // The peer does not read what we send: a large reply would only pile up.
      this.host.count('rpc.refused.queue')
      ok = undefined
      err = new OverloadedError(`reply dropped: the link to ${peer} is full (its replies are not read)`)
    }
    this.host.sendTo(peer, (w) => {
      const start = w.length
      w.u32(0).u8(FrameType.RpcReply)
      writeReplyBody(w, id, ok, err)
      w.patchU32(start, w.length - start - FRAME_HEADER_BYTES)
    })
  }

  /** Why a call of `method` from `peer` may not run now (counted), if it may not. */
  private refusal(peer: string, method: string): Error | undefined {
    const entry = this.handlers.get(method)
    if (entry === undefined) {
      this.host.count('rpc.unknownMethod')
      return new InvalidArgumentError(`no handler for ${method} on this node`)
    }
    if (entry.allowed && !entry.allowed(peer)) {
      this.host.count('rpc.refused')
      return new InvalidArgumentError(`${method} refused: not allowed from ${peer}`)
    }
    const mine = this.callers.get(peer)?.running ?? 0
    if (mine >= this.maxPerPeer && peer !== this.host.self) {
      this.host.count('rpc.refused.peerLimit')
      return new OverloadedError(
        `${mine} internal calls from ${peer} already running (limit per peer ${this.maxPerPeer})`,
      )
    }
    if (peer !== this.host.self && this.host.full?.(peer)) {
      this.host.count('rpc.refused.queue')
      return new OverloadedError(`the link to ${peer} is full: its replies are not read`)
    }
    if (this.running >= this.maxConcurrent) {
      this.host.count('rpc.refused.total')
      return new OverloadedError(`${this.running} internal calls already running`)
    }
    return undefined
  }

  /** A call refused before any handler ran. */
  private refuse(peer: string, id: number, noReply: boolean, err: Error): void {
    if (!noReply) this.reply(peer, id, undefined, err)
  }

  /** Internal (`ServedCall`): a served call finished. */
  release(state: CallerState, from: string, ac: AbortController | undefined): void {
    this.running--
    state.running--
    if (ac !== undefined) state.serving.delete(ac)
    if (state.running === 0 && this.callers.get(from) === state) this.callers.delete(from)
  }

  /**
   * Internal (`ServedCall`): a handler asked for its signal; tracked so `close` and the
   * caller's departure abort it. False when it must start aborted.
   */
  track(state: CallerState, epoch: number, ac: AbortController): boolean {
    if (this.closed || state.epoch !== epoch) return false
    state.serving.add(ac)
    return true
  }

  /** Decodes an `RpcReply` frame body. Throws `DecodeError` if malformed. */
  onReply(peer: string, r: BinaryReader): void {
    const id = r.u32('rpc id')
    const status = r.u8('rpc status')
    const p = this.pending.get(id)
    if (status === 0) {
      const body = r.bytes('rpc reply', MAX_RPC_BODY)
      r.end('rpc reply')
      if (p && p.peer === peer) p.resolve(body)
    } else {
      const name = r.str('error name')
      const message = r.str('error message')
      r.end('rpc error')
      if (p && p.peer === peer) p.reject(errorFromWire(name, message))
    }
  }

  /**
   * The link to `peer` closed: its pending calls fail with `MemberLostError`, and the
   * handlers serving its calls see their signal aborted (`onPeerGone`).
   */
  onLinkDown(peer: string): void {
    for (const p of [...this.pending.values()]) {
      if (p.peer === peer) p.reject(new MemberLostError(`link to ${peer} closed before its reply`))
    }
    this.onPeerGone(peer)
  }

  /**
   * Every connection to `peer` closed (or its link did): the signals of the handlers serving
   * its calls abort now, so long polls end and free their slots at once.
   */
  onPeerGone(peer: string): void {
    const state = this.callers.get(peer)
    if (state === undefined || peer === this.host.self) return
    state.epoch++
    const acs = [...state.serving]
    state.serving.clear()
    for (const ac of acs) ac.abort()
  }

  /** Fails every pending call (`AbortedError`) and aborts running handlers. */
  close(): void {
    this.closed = true
    for (const p of [...this.pending.values()]) p.reject(new AbortedError('node is stopped'))
    for (const state of this.callers.values()) for (const ac of [...state.serving]) ac.abort()
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1
      if (!this.pending.has(id)) return id
    }
  }
}

/** `RpcReply` body after the id: `u8 0 | bytes body` or `u8 1 | str name | str message`. */
function writeReplyBody(w: BinaryWriter, id: number, ok: Uint8Array | undefined, err: unknown): void {
  w.u32(id)
  if (ok !== undefined) w.u8(0).bytes(ok)
  else w.u8(1).str(errorName(err)).str(errorMessage(err))
}

/**
 * One call being served, and the handler's `RpcContext`. Its signal (aborted at the call's
 * deadline, capped at `maxServeMs`, when the caller goes or when the node stops) and the
 * deadline timer exist only once the handler reads `signal`; most handlers never do.
 */
class ServedCall implements RpcContext {
  private ac: AbortController | undefined
  private timer: NodeJS.Timeout | undefined
  private readonly started = Date.now()

  constructor(
    private readonly rpc: PeerRpc,
    readonly from: string,
    private readonly id: number,
    private readonly timeout: number,
    private readonly noReply: boolean,
    private readonly state: CallerState,
    private readonly epoch = state.epoch,
  ) {}

  get signal(): AbortSignal {
    if (this.ac === undefined) {
      const ac = new AbortController()
      this.ac = ac
      if (!this.rpc.track(this.state, this.epoch, ac)) ac.abort()
      else {
        const left = Math.min(this.timeout, this.rpc.maxServeMs) - (Date.now() - this.started)
        this.timer = setTimeout(() => ac.abort(), Math.max(0, left))
      }
    }
    return this.ac.signal
  }

  /** The handler finished with `bytes` or threw `err`. */
  settle(bytes: Uint8Array | undefined, err: unknown): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.rpc.release(this.state, this.from, this.ac)
    if (!this.noReply) this.rpc.reply(this.from, this.id, bytes, err)
  }

  readonly ok = (bytes: Uint8Array): void => this.settle(bytes, undefined)
  readonly bad = (err: unknown): void => this.settle(undefined, err ?? new Error('rejected'))
}
