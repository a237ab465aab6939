/**
 * Fair dispatch of link frames (link/reader.ts): a link dispatches a slice of frames per
 * turn, waits with its stream paused, keeps every frame in order across slices and chunk
 * boundaries, and does not hold back another link's frame behind its own.
 */
import type { Stream } from '@libp2p/interface'
import { describe, expect, it, onTestFinished } from 'vitest'
import { LINK } from '../../src/constants.js'
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

/**
 * Starts a fair reader on a new stream; bodies received are pushed to `out` as `tag:i`.
 * `work` runs for each frame (to make the loop busy); `trusted` says whether the peer is a
 * proven member.
 */
function reader(out: string[], slice: number, trusted = true, work?: () => void): PausableStream {
  const s = new PausableStream()
  readFrames(
    s as unknown as Stream,
    'p',
    1 << 20,
    (_peer, _type, body) => {
      const b = body.bytes()
      out.push(`${b[0]}:${b[1]}`)
      work?.()
    },
    undefined,
    // A slice's time bound far above what these frames take: a loaded machine pausing the
    // process mid-slice must not cut slices short (the frame and byte bounds are tested).
    { slice, trusted: () => trusted, sliceMs: 1000 },
  )
  return s
}

/** Keeps the loop busy for `ms` (a handler's work). */
const spin = (ms: number) => () => {
  const end = performance.now() + ms
  while (performance.now() < end);
}

/** Frames of each tag dispatched in each of `turns` turns, while `each` runs before every turn. */
async function perTurn(out: string[], turns: number, each: () => void): Promise<Array<Map<string, number>>> {
  const counts: Array<Map<string, number>> = []
  for (let t = 0; t < turns; t++) {
    const from = out.length
    each()
    await turn()
    const m = new Map<string, number>()
    for (const x of out.slice(from)) {
      const tag = x.slice(0, x.indexOf(':'))
      m.set(tag, (m.get(tag) ?? 0) + 1)
    }
    counts.push(m)
  }
  return counts
}

const closeAll = (...streams: PausableStream[]) => {
  for (const s of streams) s.dispatchEvent(new Event('close'))
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

  it('a non-member flooding a busy loop beside an active link gets shared slices; a member keeps full ones', async () => {
    const out: string[] = []
    const work = spin(0.002)
    const stranger = reader(out, 64, false, work)
    const member = reader(out, 64, true, work)
    const good = reader(out, 64, true)
    onTestFinished(() => closeAll(stranger, member, good))
    stranger.push(frames(40_000, 1))
    member.push(frames(40_000, 2))
    // A good peer sends a frame every turn (an active link); turns of about 0.3 ms: several
    // 20 ms windows of a loop busy all the time.
    const counts = await perTurn(out, 400, () => good.push(frames(1, 3)))
    // Totals over the last 200 turns (a measured turn may hold two of a reader's turns or
    // none: the test's setImmediate and the readers' share the check phase).
    const late = counts.slice(200)
    const total = (tag: string) => late.reduce((n, m) => n + (m.get(tag) ?? 0), 0)
    // At most a shared slice per turn, with slack for windows in which the loop, paused by a
    // loaded machine for longer than two windows, saw no other link active (full slices
    // would be 64 per turn: eight times the bound).
    expect(total('1'), 'the non-member: a shared slice per turn').toBeLessThanOrEqual(
      3 * LINK.readShareSlice * late.length,
    )
    expect(total('1'), 'it still gets a slice every turn').toBeGreaterThanOrEqual(late.length / 2)
    expect(total('2'), 'the member: full slices').toBeGreaterThan(LINK.readShareSlice * 2 * late.length)
    expect(total('3'), "the good peer's frame every turn").toBe(late.length)
  })

  it('a non-member alone on a busy loop keeps full slices', async () => {
    const out: string[] = []
    const stranger = reader(out, 64, false, spin(0.002))
    onTestFinished(() => closeAll(stranger))
    stranger.push(frames(30_000, 1))
    const counts = await perTurn(out, 300, () => {})
    // Full slices (64 frames; fewer only where the slice's time ran out on a loaded machine).
    const got = counts.slice(100).reduce((n, m) => n + (m.get('1') ?? 0), 0)
    expect(got, 'more than shared slices').toBeGreaterThan(LINK.readShareSlice * 2 * 200)
  })
})
