/**
 * Byte plumbing shared by the client commands and `plexus node`'s tunnel handlers: reading
 * stdin whole, writing with backpressure (waiting for 'drain', never buffering without
 * bound), and pumping a readable stream into a tunnel and a tunnel into a writable stream.
 */
import type { Readable, Writable } from 'node:stream'
import { UsageError } from './output.js'

/** The sending and reading half of a tunnel (library `Tunnel` or relay `RelayTunnel`). */
export interface TunnelLike extends AsyncIterable<Uint8Array> {
  send(data: Uint8Array): Promise<void>
  close(): Promise<void>
}

/** Reads all of stdin, refusing more than `max` bytes (`what` names the data in the error). */
export async function readStdin(max: number, what = 'data'): Promise<Uint8Array> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer
    size += b.length
    if (size > max) throw new UsageError(`${what} on stdin is over ${max} bytes (maxMessageSize)`)
    chunks.push(b)
  }
  return new Uint8Array(Buffer.concat(chunks))
}

/**
 * Writes `chunk` to `stream`; when the stream's buffer is full, resolves only after it
 * drained (or the stream closed or failed, which `write` callers learn from `gone`).
 */
export function writeChunk(
  stream: Writable | NodeJS.WritableStream,
  chunk: Uint8Array | string,
): Promise<void> {
  const s = stream as Writable
  if (s.destroyed || s.writableEnded) return Promise.resolve()
  let ok: boolean
  try {
    ok = s.write(chunk)
  } catch {
    return Promise.resolve()
  }
  if (ok) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      s.off('drain', done)
      s.off('close', done)
      s.off('error', done)
      resolve()
    }
    s.on('drain', done)
    s.on('close', done)
    s.on('error', done)
  })
}

/** True once `stream` cannot take more bytes (closed, destroyed, ended). */
export function gone(stream: Writable | NodeJS.WritableStream): boolean {
  const s = stream as Writable
  return s.destroyed || s.writableEnded || s.closed === true
}

/**
 * Sends everything `input` yields into `tunnel` (split to at most `maxMessage` bytes per
 * message), then half-closes the tunnel. Reading pauses while `send` waits for credit:
 * the async iterator only pulls the next chunk after the previous one was sent.
 */
export async function pumpIntoTunnel(input: Readable, tunnel: TunnelLike, maxMessage: number): Promise<void> {
  for await (const chunk of input) {
    const b: Uint8Array = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array)
    for (let off = 0; off < b.length; off += maxMessage) {
      await tunnel.send(b.subarray(off, Math.min(b.length, off + maxMessage)))
    }
  }
  await tunnel.close()
}

/**
 * Writes every message of `tunnel` to `output` as it arrives, waiting for 'drain' when the
 * output is slow (so the tunnel's credit, not memory, absorbs the difference). Resolves
 * when the other side closed, with the last byte written (undefined when none); rejects
 * with the tunnel's error when it failed. When the output goes away, the rest is read and
 * discarded so the other side is not stalled.
 */
export async function pumpFromTunnel(
  tunnel: TunnelLike,
  output: Writable | NodeJS.WritableStream,
): Promise<number | undefined> {
  let last: number | undefined
  for await (const msg of tunnel) {
    if (gone(output)) continue
    await writeChunk(output, msg)
    if (msg.length > 0) last = msg[msg.length - 1]
  }
  return last
}

/** The data bytes as they are, plus a newline (one line of `subscribe` and `consume`). */
export function lineOf(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 1)
  out.set(data)
  out[data.length] = 0x0a
  return out
}
