import type { Stream } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { encodeBytesFrame, FrameType } from '../../src/link/frames.js'
import { LINK_BLOCK, Link, readFrames, SENDER_WAIT_BYTES } from '../../src/link/link.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

/** Stand-in for a libp2p stream: records what is sent; `accept` decides send()'s answer. */
class FakeStream extends EventTarget {
  readonly sent: Uint8Array[] = []
  accept = true
  send(data: Uint8Array): boolean {
    this.sent.push(data.slice())
    return this.accept
  }
  close(): Promise<void> {
    return Promise.resolve()
  }
  abort(): void {}
}

const turn = () => new Promise<void>((r) => setImmediate(r))
const payload = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff)

/** Feeds what a link sent to `readFrames`, as a peer would receive it; returns the bodies. */
function decode(blocks: Uint8Array[]): Uint8Array[] {
  const rx = new EventTarget() as unknown as Stream & { abort(err: Error): void }
  const out: Uint8Array[] = []
  ;(rx as unknown as { abort: (err: Error) => void }).abort = (err) => {
    throw err
  }
  readFrames(rx, 'p', 4 << 20, (_peer, type, body) => {
    expect(type).toBe(FrameType.Announce)
    out.push(body.bytes().slice())
  })
  for (const b of blocks) {
    const evt = new Event('message') as Event & { data: Uint8Array }
    evt.data = b
    rx.dispatchEvent(evt)
  }
  return out
}

describe('Link', () => {
  it('hands a full block to the stream at once and the rest at the end of the turn, in order', async () => {
    const s = new FakeStream()
    const link = new Link('p', s as unknown as Stream, 8 << 20, 0)
    const messages = Array.from({ length: 100 }, (_, i) => payload(1000 + i, i))
    for (const m of messages) link.write((w) => encodeBytesFrame(w, FrameType.Announce, m))
    // 100 frames of ~1 KB fill one block: it left during the writes, not at the end of the turn.
    expect(s.sent.length).toBe(1)
    expect(s.sent[0]!.length).toBe(LINK_BLOCK)
    await turn()
    expect(s.sent.length).toBe(2)
    expect(decode(s.sent)).toEqual(messages)
  })

  it('flushNow hands queued frames to the stream before the turn ends', () => {
    const s = new FakeStream()
    const link = new Link('p', s as unknown as Stream, 8 << 20, 0)
    const m = payload(10, 1)
    link.write((w) => encodeBytesFrame(w, FrameType.Announce, m))
    expect(s.sent.length).toBe(0)
    link.flushNow()
    expect(s.sent.length).toBe(1)
    expect(decode(s.sent)).toEqual([m])
  })

  it('holds blocks while the stream pushes back and sends them in order after drain', async () => {
    const s = new FakeStream()
    s.accept = false
    const link = new Link('p', s as unknown as Stream, 8 << 20, 0)
    const messages = Array.from({ length: 300 }, (_, i) => payload(700 + i, i))
    for (const m of messages) link.write((w) => encodeBytesFrame(w, FrameType.Announce, m))
    link.flushNow()
    await turn()
    expect(s.sent.length).toBe(1) // the first block was taken, then the stream said "full"
    expect(link.queuedBytes).toBeGreaterThan(0)
    s.accept = true
    s.dispatchEvent(new Event('drain'))
    expect(link.queuedBytes).toBe(0)
    expect(decode(s.sent)).toEqual(messages)
  })

  it('is crowded from SENDER_WAIT_BYTES queued, and writable(SENDER_WAIT_BYTES) waits for less', async () => {
    const s = new FakeStream()
    s.accept = false
    const link = new Link('p', s as unknown as Stream, 8 << 20, 0)
    link.write((w) => encodeBytesFrame(w, FrameType.Announce, payload(100, 1)))
    link.flushNow() // the stream takes this one, then pushes back
    const frame = payload(10_000, 2)
    while (link.queuedBytes < SENDER_WAIT_BYTES - 20_000)
      link.write((w) => encodeBytesFrame(w, FrameType.Announce, frame))
    expect(link.crowded).toBe(false)
    while (link.queuedBytes < SENDER_WAIT_BYTES)
      link.write((w) => encodeBytesFrame(w, FrameType.Announce, frame))
    expect(link.crowded).toBe(true)
    expect(link.full).toBe(false)
    let room = false
    const waiting = link.writable(SENDER_WAIT_BYTES).then(() => {
      room = true
    })
    await turn()
    expect(room).toBe(false)
    s.accept = true
    s.dispatchEvent(new Event('drain'))
    await waiting
    expect(link.crowded).toBe(false)
  })
})

/**
 * A stream that sometimes keeps the caller's bytes (as a queue under backpressure would)
 * and copies them out only later; `released` is true when it holds nothing.
 */
class HoldingStream extends EventTarget {
  readonly sent: Uint8Array[] = []
  private held: Uint8Array[] = []
  readonly buffersSeen = new Set<ArrayBufferLike>()
  reused = 0
  constructor(private readonly rand: () => number) {
    super()
  }
  get writeBufferLength(): number {
    return this.held.reduce((n, b) => n + b.length, 0)
  }
  send(data: Uint8Array): boolean {
    if (this.buffersSeen.has(data.buffer)) this.reused++
    this.buffersSeen.add(data.buffer)
    if (this.held.length > 0 || this.rand() < 0.3) this.held.push(data)
    else this.sent.push(data.slice())
    return this.rand() < 0.7
  }
  /** Copies out what was held (the bytes must still be the ones handed over). */
  release(): void {
    for (const b of this.held) this.sent.push(b.slice())
    this.held = []
    this.dispatchEvent(new Event('drain'))
  }
  close(): Promise<void> {
    return Promise.resolve()
  }
  abort(): void {}
}

describe('Link block buffer reuse', () => {
  it('reuses a block buffer only once the stream released it: every frame arrives intact', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const s = new HoldingStream(rand)
    const link = new Link('p', s as unknown as Stream, 64 << 20, 0, () => s.writeBufferLength === 0)
    const messages: Uint8Array[] = []
    for (let i = 0; i < 3000; i++) {
      const big = rand() < 0.02
      const m = payload(big ? 1 + Math.floor(rand() * 200_000) : 1 + Math.floor(rand() * 3000), i)
      messages.push(m)
      link.write((w) => encodeBytesFrame(w, FrameType.Announce, m))
      if (rand() < 0.05) s.release()
      if (rand() < 0.02) await turn()
    }
    // Drain everything: the stream keeps answering "full" at random, so it may take turns.
    for (let i = 0; i < 1000 && (link.queuedBytes > 0 || s.writeBufferLength > 0); i++) {
      await turn()
      s.release()
    }
    expect(link.queuedBytes).toBe(0)
    expect(s.reused, `seed ${seed}`).toBeGreaterThan(10)
    const got = decode(s.sent)
    expect(got.length, `seed ${seed}`).toBe(messages.length)
    for (let i = 0; i < messages.length; i++) {
      if (Buffer.compare(got[i]!, messages[i]!) !== 0) throw new Error(`frame ${i} differs (seed ${seed})`)
    }
  })
})
