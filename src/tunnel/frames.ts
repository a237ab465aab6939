/**
 * Tunnel frames (type codes in `link/frames.ts`). Every body starts with `u32 tid | u8 dir`
 * where tid is chosen by the opener and dir says which end sent it (0 = opener, 1 =
 * acceptor), so the receiver knows which of its tables the tunnel is in.
 *
 *   TunnelOpen:   tid dir | str cluster | u32 timeout ms | u32 window
 *   TunnelAccept: tid dir | u32 window
 *   TunnelData:   tid dir | u8 flags (1 = more fragments of this message follow) | bytes chunk
 *   TunnelCredit: tid dir | u32 bytes
 *   TunnelClose:  tid dir | u8 reason | str message
 */
import { FRAME_HEADER_BYTES, FrameType, writeFrame } from '../link/frames.js'
import type { BinaryWriter } from '../util/binary.js'

export const Dir = { FromOpener: 0, FromAcceptor: 1 } as const
export const CloseReason = {
  /** Closed by the application. */
  Normal: 0,
  /** The acceptor refused: no handler, or its `tunnels` limit is full. */
  Refused: 1,
  /** The acceptor is not (any more) a member of the cluster. */
  NotMember: 2,
  /** Flow-control or protocol violation; or the handler failed. */
  Error: 3,
  /** Setup timed out. */
  Timeout: 4,
} as const

/** Data is cut into chunks of at most this many bytes. */
export const TUNNEL_CHUNK = 64 * 1024
/** Receive window (bytes) each end grants by default: the bound on its buffered data. */
export const TUNNEL_WINDOW = 1024 * 1024
export const FLAG_MORE = 1

export function writeOpen(
  w: BinaryWriter,
  tid: number,
  cluster: string,
  timeoutMs: number,
  window: number,
): void {
  writeFrame(w, FrameType.TunnelOpen, (b) =>
    b.u32(tid).u8(Dir.FromOpener).str(cluster).u32(timeoutMs).u32(window),
  )
}

export function writeAccept(w: BinaryWriter, tid: number, window: number): void {
  writeFrame(w, FrameType.TunnelAccept, (b) => b.u32(tid).u8(Dir.FromAcceptor).u32(window))
}

/** Bytes a data frame adds to its chunk: length, type, tid, dir, flags, chunk length. */
export const DATA_FRAME_OVERHEAD = FRAME_HEADER_BYTES + 1 + 4 + 1 + 1 + 4

export function writeData(w: BinaryWriter, tid: number, dir: number, more: boolean, chunk: Uint8Array): void {
  // Written directly (no body closure): this is the per-message hot path.
  w.u32(DATA_FRAME_OVERHEAD - FRAME_HEADER_BYTES + chunk.length)
    .u8(FrameType.TunnelData)
    .u32(tid)
    .u8(dir)
    .u8(more ? FLAG_MORE : 0)
    .bytes(chunk)
}

export function writeCredit(w: BinaryWriter, tid: number, dir: number, bytes: number): void {
  writeFrame(w, FrameType.TunnelCredit, (b) => b.u32(tid).u8(dir).u32(bytes))
}

export function writeClose(w: BinaryWriter, tid: number, dir: number, reason: number, message: string): void {
  writeFrame(w, FrameType.TunnelClose, (b) => b.u32(tid).u8(dir).u8(reason).str(message.slice(0, 1024)))
}
