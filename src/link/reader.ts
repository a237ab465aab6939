/**
 * Reading a peer's link stream: frames are cut out of the received chunks and handed to the
 * node one by one, in the order they were sent.
 *
 * Fair dispatch (issue 18, opt-in with `ReadOptions.slice`): one link dispatches at most a
 * slice of frames (`LINK.readSlice` frames, `LINK.readSliceBytes` bytes or
 * `LINK.readSliceMs`, whichever comes first) per event-loop turn. A link with more waits, its stream paused, in a queue that
 * gives each waiting link one slice per turn, round-robin; meanwhile other links' frames
 * are dispatched as they arrive. A peer flooding cheap frames therefore gets one slice per
 * turn, and a good peer's frame waits behind at most one slice of each busy link instead of
 * everything a 64 KiB read held. Since a paused stream stops granting yamux window, the
 * flooding peer's sender blocks once its window is used up: what it sent is decrypted only
 * as fast as its slices are dispatched, and nothing piles up in memory beyond the window.
 * A link alone on the loop loses one `setImmediate` per slice.
 *
 * Shared slices: while the loop is over half busy and another link is active, a peer that
 * is no proven member and sends more than a slice per 20 ms window gets a smaller slice
 * (`LINK.readShareSlice` frames) per turn. Its share stays relative to the loop: it still
 * gets a slice every turn, turns come faster as slices shrink, and a backlog keeps draining
 * at a fraction of the loop's speed; what shrinks is how long the other links' frames wait
 * behind it (with its replies and other work its frames start).
 *
 * Frames are never dropped or reordered by waiting; frames of a link whose stream closed
 * while it waited are still dispatched.
 */
import type { Stream } from '@libp2p/interface'
import { LINK } from '../constants.js'
import { BinaryReader, DecodeError } from '../util/binary.js'
import { FRAME_HEADER_BYTES } from './frames.js'

/** A frame's length prefix is 0 or over the bound: the stream is reset. */
export class FrameLengthError extends DecodeError {
  override name = 'FrameLengthError'
}

/**
 * The counter a link stream reset by `readFrames` is counted under: `frames.refused.length`
 * (length prefix out of range), `frames.refused.malformed` (a frame that failed to decode),
 * `links.aborted.error` (anything else: a bug, never expected from any input).
 */
export function abortCounter(err: unknown): string {
  if (err instanceof FrameLengthError) return 'frames.refused.length'
  if (err instanceof DecodeError) return 'frames.refused.malformed'
  return 'links.aborted.error'
}

/** Called for each complete frame; throwing `DecodeError` resets the stream. */
export type FrameHandler = (peer: string, type: number, body: BinaryReader) => void

/** Options of `readFrames`. */
export interface ReadOptions {
  /**
   * Fair dispatch (see the module doc): at most this many frames per turn before the link
   * yields to others. Without it every received chunk is dispatched whole, at once.
   */
  slice?: number
  /** With `slice`: at most this many bytes of frames per turn (`LINK.readSliceBytes`). */
  sliceBytes?: number
  /** With `slice`: at most this much time (ms) of frames per turn (`LINK.readSliceMs`). */
  sliceMs?: number
  /**
   * With `slice`: whether the peer is trusted (a proven member of a cluster this node
   * joined); asked only when the link is about to be held to a share. Default: untrusted.
   */
  trusted?: () => boolean
  /** Told each time the link's share is lowered. */
  onThrottle?: () => void
  /**
   * Told after each slice dispatched from held bytes: the peer is alive although its stream
   * is paused (its heartbeats may wait behind what it sent).
   */
  onSlice?: () => void
}

/** One fair reader as the share accounting sees it. */
interface Account {
  /** The last share window in which the link dispatched a frame other than a heartbeat. */
  active: number
}

/** Every fair reader of the process (the event loop is the process's). */
const accounts = new Set<Account>()

/** The share window `now` (ms, `performance.now()`) falls in. */
const windowOf = (now: number) => Math.floor(now / LINK.readShareWindow)

/** True when a link other than `me` dispatched a non-heartbeat frame this window or the last. */
function othersActive(me: Account, win: number): boolean {
  for (const a of accounts) if (a !== me && a.active >= win - 1) return true
  return false
}

let busyWin = -1
let busyMark = performance.eventLoopUtilization()
let busyLast = 0
/** The event loop's utilization (0–1) from the previous measure to the start of window `win`. */
function loopBusy(win: number): number {
  if (win !== busyWin) {
    const now = performance.eventLoopUtilization()
    busyLast = performance.eventLoopUtilization(now, busyMark).utilization
    busyMark = now
    busyWin = win
  }
  return busyLast
}

/** A plain Uint8Array over memory that is not zero-filled (the caller overwrites it all). */
function uninitialized(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n)
  return new Uint8Array(b.buffer, b.byteOffset, n)
}

/** Links waiting for their next slice, in the order they will get it. */
const waiting: Array<() => void> = []
/** Turns counted by `nextTurn`; a link's slice is per turn. */
let turnNo = 0
let turnScheduled = false

/** Starts a new turn at the next check phase, once per event-loop iteration while needed. */
function scheduleTurn(): void {
  if (turnScheduled) return
  turnScheduled = true
  setImmediate(nextTurn)
}

/** A new turn: every link waiting gets one slice, in order (one that still has more queues again). */
function nextTurn(): void {
  turnScheduled = false
  turnNo++
  for (let n = waiting.length; n > 0; n--) waiting.shift()!()
}

/**
 * Reads frames from a peer's stream. Frames that lie whole inside one received chunk are
 * decoded in place (no copy); only a frame split across chunks is gathered into a buffer.
 * Bounded: a length prefix above `maxFrameSize` or a frame that fails to decode aborts
 * the stream (`onAbort` is told why first; `abortCounter` names it).
 */
export function readFrames(
  stream: Stream,
  peer: string,
  maxFrameSize: number,
  handle: FrameHandler,
  onAbort?: (err: unknown) => void,
  opts: ReadOptions = {},
): void {
  const slice = opts.slice ?? Number.POSITIVE_INFINITY
  const sliceBytes =
    opts.slice === undefined ? Number.POSITIVE_INFINITY : (opts.sliceBytes ?? LINK.readSliceBytes)
  /** A frame split across chunks, allocated at its full size once its length is known. */
  let partial: Uint8Array | undefined
  let filled = 0
  /** Fewer than 4 bytes left over: the start of a length prefix. */
  let head: Uint8Array | undefined
  /** Received bytes not dispatched yet (the link waits for its next slice), oldest first. */
  const held: Uint8Array[] = []
  let queued = false
  /** Inside `stream.resume()`, which undoes a pause made while it dispatches. */
  let resuming = false
  let failed = false
  /** The turn the counts below belong to. */
  let turn = -1
  let frames = 0
  let bytes = 0
  /** When this turn's slice ends (`performance.now()`, fair readers only). */
  let sliceEnd = Number.POSITIVE_INFINITY
  /** Share accounting (fair readers only): the window the link last looked at. */
  const account: Account = { active: Number.NEGATIVE_INFINITY }
  let win = -1
  /** Frames dispatched since the link's window began. */
  let winFrames = 0
  /** This window: the link gets the shared slice (see `newWindow`). */
  let shared = false
  /** This turn's limits (the full slice, or the shared one). */
  let turnFrames = slice
  let turnBytes = sliceBytes
  const sliceMs = opts.sliceMs ?? LINK.readSliceMs
  let turnMs = sliceMs
  const fair = slice !== Number.POSITIVE_INFINITY
  if (fair) {
    accounts.add(account)
    stream.addEventListener('close', () => accounts.delete(account))
  }

  const frameLength = (b: Uint8Array, p: number) => {
    const len = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0
    if (len < 1 || len > maxFrameSize) throw new FrameLengthError(`frame length ${len} out of range`)
    return len
  }
  /** Hands the frame at `buf[start, end)` (after its length prefix) to the handler. */
  const dispatch = (buf: Uint8Array, start: number, end: number) => {
    frames++
    bytes += end - start
    // Types 1 and 2 are heartbeats (`FrameType.Ping`, `Pong`): they do not make a link active.
    winFrames++
    if (buf[start]! > 2) account.active = win
    const r = new BinaryReader(buf, start, end)
    handle(peer, r.u8('frame type'), r)
  }
  /**
   * A new share window: whether the link gets the shared slice in it. An untrusted link that
   * dispatched more than a slice per window since its last one, while the loop was busier
   * than `LINK.readShareBusy` and another link was active, does; so does one that had it and
   * still sends more than a shared slice per window under the same conditions.
   */
  const newWindow = (w: number) => {
    // Frames per window since the link's last window began: a turn longer than a window
    // (a long slice, or a process waiting for a CPU) spans several, and must not read as idle.
    const gap = w - win
    const last = gap > 0 && gap <= 50 ? winFrames / gap : 0
    win = w
    winFrames = 0
    const was = shared
    shared =
      last > (was ? LINK.readShareSlice : slice) &&
      loopBusy(w) > LINK.readShareBusy &&
      othersActive(account, w) &&
      !(opts.trusted?.() ?? false)
    if (shared && !was) opts.onThrottle?.()
    turnFrames = shared ? LINK.readShareSlice : slice
    turnBytes = shared ? Math.ceil(sliceBytes / 8) : sliceBytes
    turnMs = shared ? sliceMs / 4 : sliceMs
  }
  /** True while this turn's slice has room for another frame. */
  const room = () => {
    if (turn !== turnNo) {
      turn = turnNo
      frames = bytes = 0
      if (fair) {
        scheduleTurn()
        const now = performance.now()
        const w = windowOf(now)
        if (w !== win) newWindow(w)
        sliceEnd = now + turnMs
      }
    }
    // The clock is read every 8 frames only.
    return frames < turnFrames && bytes < turnBytes && ((frames & 7) !== 0 || performance.now() < sliceEnd)
  }
  /**
   * Dispatches the frames of `chunk` while the slice has room; returns where it stopped
   * (always at a frame boundary, with nothing partial or held over), or the chunk's length.
   */
  const onChunk = (chunk: Uint8Array): { buf: Uint8Array; pos: number } => {
    let buf = chunk
    let pos = 0
    if (partial) {
      const take = Math.min(partial.length - filled, buf.length)
      partial.set(buf.subarray(0, take), filled)
      filled += take
      pos = take
      if (filled < partial.length) return { buf, pos: buf.length }
      const frame = partial
      partial = undefined
      dispatch(frame, FRAME_HEADER_BYTES, frame.length)
    } else if (head) {
      const joined = new Uint8Array(head.length + buf.length)
      joined.set(head)
      joined.set(buf, head.length)
      buf = joined
      head = undefined
    }
    const end = buf.length
    while (end - pos >= FRAME_HEADER_BYTES) {
      if (!room()) return { buf, pos }
      const len = frameLength(buf, pos)
      const total = FRAME_HEADER_BYTES + len
      if (end - pos < total) {
        partial = uninitialized(total)
        partial.set(buf.subarray(pos))
        filled = end - pos
        return { buf, pos: end }
      }
      const start = pos + FRAME_HEADER_BYTES
      pos += total
      dispatch(buf, start, pos)
    }
    if (pos < end) head = buf.slice(pos)
    return { buf, pos: end }
  }
  const fail = (err: unknown) => {
    failed = true
    partial = head = undefined
    held.length = 0
    onAbort?.(err)
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
  /** Dispatches held bytes while the slice has room; false when some are still held. */
  const drainHeld = (): boolean => {
    while (held.length > 0) {
      const { buf, pos } = onChunk(held[0]!)
      if (pos < buf.length) {
        held[0] = buf.subarray(pos)
        return false
      }
      held.shift()
    }
    return true
  }
  /** The link's slice of a new turn (it waited in `waiting`). */
  const next = () => {
    queued = false
    if (failed) return
    try {
      const done = drainHeld()
      opts.onSlice?.()
      if (!done) return wait()
    } catch (err) {
      return fail(err)
    }
    // Everything held is dispatched: read again. `resume` may dispatch what the stream
    // buffered meanwhile at once (into `onMessage`), and then undoes any pause made there.
    resuming = true
    try {
      stream.resume()
    } catch {
      // The stream closed meanwhile: nothing more will come.
    } finally {
      resuming = false
    }
    if (queued) pause()
  }
  const pause = () => {
    try {
      stream.pause()
    } catch {
      // Closing: nothing more will come.
    }
  }
  /** Holds the link until its next slice; its stream stops reading (unless in `resume`). */
  const wait = () => {
    if (queued) return
    queued = true
    waiting.push(next)
    scheduleTurn()
    if (!resuming) pause()
  }
  const take = (chunk: Uint8Array) => {
    if (held.length > 0 || queued) {
      held.push(chunk)
      return
    }
    const { buf, pos } = onChunk(chunk)
    if (pos < buf.length) {
      held.push(buf.subarray(pos))
      wait()
    }
  }
  stream.addEventListener('message', (evt) => {
    if (failed) return
    try {
      const data = evt.data
      if (data instanceof Uint8Array) take(data)
      else for (const c of data) take(c)
    } catch (err) {
      fail(err)
    }
  })
}
