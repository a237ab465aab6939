/**
 * Fair dispatch of link frames (link/reader.ts): a link dispatches a slice of frames per
 * turn, waits with its stream paused, keeps every frame in order across slices and chunk
 * boundaries, and does not hold back another link's frame behind its own.
 */
import type { Stream } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { encodeBytesFrame, FrameType } from '../../src/link/frames.js'
import { readFrames } from '../../src/link/reader.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

/** A stream that behaves like libp2p's on pause/resume: data waits while paused; resume dispatches it at once. */
class PausableStream extends EventTarget {
  paused = false
  pauses = 0
  private buffered: Uint8Array[] = []
  pause(): void {
    if (!this.paused) this.pauses++
    this.paused = true
  }
  resume(): void {
    this.paused = false
    const data = this.buffered
    this.buffered = []
    for (const d of data) this.deliver(d)
  }
  push(data: Uint8Array): void {
    if (this.paused) this.buffered.push(data)
    else this.deliver(data)
  }
  abort(err: Error): void {
    throw err
  }
  private deliver(data: Uint8Array): void {
    const evt = new Event('message') as Event & { data: Uint8Array }
    evt.data = data
    this.dispatchEvent(evt)
  }
}

const turn = () => new Promise<void>((r) => setImmediate(r))

/** `n` announce frames whose bodies are `tag, i` (2 bytes each), in one buffer. */
function frames(n: number, tag: number): Uint8Array {
  const w = new BinaryWriter(1024)
  for (let i = 0; i < n; i++) encodeBytesFrame(w, FrameType.Announce, Uint8Array.of(tag, i & 0xff))
  return w.finish().slice()
}

/** Starts a fair reader on a new stream; bodies received are pushed to `out` as `tag:i`. */
function reader(out: string[], slice: number): PausableStream {
  const s = new PausableStream()
  readFrames(
    s as unknown as Stream,
    'p',
    1 << 20,
    (_peer, _type, body) => {
      const b = body.bytes()
      out.push(`${b[0]}:${b[1]}`)
    },
    undefined,
    { slice, trusted: () => true },
  )
  return s
}

describe('fair reader', () => {
  it('dispatches a slice per turn with the stream paused, then resumes; all frames in order', async () => {
    const out: string[] = []
    const s = reader(out, 4)
    s.push(frames(10, 1))
    expect(out.length).toBe(4)
    expect(s.paused).toBe(true)
    s.push(frames(2, 2)) // arrives while paused: waits behind the rest
    await turn()
    expect(out.length).toBe(8)
    await turn()
    await turn()
    expect(out).toEqual([...Array.from({ length: 10 }, (_, i) => `1:${i}`), '2:0', '2:1'])
    expect(s.paused).toBe(false)
  })

  it("serves another link's frame before a flooding link's next slice", async () => {
    const out: string[] = []
    const flood = reader(out, 4)
    const good = reader(out, 4)
    flood.push(frames(40, 1))
    good.push(frames(1, 2))
    expect(out.indexOf('2:0')).toBe(4)
    await turn()
    good.push(frames(1, 3))
    // One slice of the flood ran in that turn, then the good link's frame at once.
    expect(out.indexOf('3:0')).toBe(9)
    for (let i = 0; i < 10; i++) await turn()
    expect(out.filter((x) => x.startsWith('1:'))).toEqual(Array.from({ length: 40 }, (_, i) => `1:${i}`))
  })

  it('keeps frames intact across random chunk boundaries and slices', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const out: string[] = []
    const s = reader(out, 1 + Math.floor(rand() * 8))
    const all = frames(200, 7)
    for (let pos = 0; pos < all.length; ) {
      const n = 1 + Math.floor(rand() * 40)
      s.push(all.subarray(pos, pos + n))
      pos += n
      if (rand() < 0.3) await turn()
    }
    for (let i = 0; i < 300 && out.length < 200; i++) await turn()
    expect(out, `seed ${seed}`).toEqual(Array.from({ length: 200 }, (_, i) => `7:${i & 0xff}`))
  })
})
