import { describe, expect, it } from 'vitest'
import { BROADCAST_FANOUT, Broadcaster } from '../../src/broadcast/broadcast.js'
import { FRAME_HEADER_BYTES, FrameType } from '../../src/link/frames.js'
import { type Link, SENDER_WAIT_BYTES } from '../../src/link/link.js'
import { BinaryReader, BinaryWriter } from '../../src/util/binary.js'

/** A link stand-in that keeps each frame written to it. */
class FakeLink {
  readonly frames: Uint8Array[] = []
  queuedBytes = 0
  closed = false
  /** Frames up to this ticket have left. */
  flushed = 0
  get full(): boolean {
    return this.queuedBytes >= 8 * 1024 * 1024
  }
  isFlushed(ticket: number): boolean {
    return ticket <= this.flushed
  }
  get crowded(): boolean {
    return this.queuedBytes >= SENDER_WAIT_BYTES
  }
  /** `writable` calls: the threshold asked for, and how to let the caller go on. */
  readonly waits: Array<{ below: number | undefined; release: () => void }> = []
  constructor(readonly peer: string) {}
  write(encode: (w: BinaryWriter) => void): number {
    const w = new BinaryWriter(64)
    encode(w)
    this.frames.push(w.finish().slice())
    return this.frames.length
  }
  writable(below?: number): Promise<void> {
    return new Promise((release) => this.waits.push({ below, release }))
  }
}

/** Decodes a broadcast frame written by a link (length and type first). */
function parse(frame: Uint8Array) {
  const r = new BinaryReader(frame.subarray(FRAME_HEADER_BYTES))
  expect(r.u8()).toBe(FrameType.Broadcast)
  const origin = r.str()
  const seq = r.u32()
  const cluster = r.str()
  const n = r.u16()
  const delegates: string[] = []
  for (let i = 0; i < n; i++) delegates.push(r.str())
  const data = r.bytes()
  r.end()
  return { origin, seq, cluster, delegates, data }
}

function setup(memberCount: number) {
  const members = Array.from({ length: memberCount }, (_, i) => `peer-${String(i).padStart(3, '0')}`)
  const links = new Map(members.map((m) => [m, new FakeLink(m)]))
  const counters: Record<string, number> = {}
  const b = new Broadcaster({
    self: 'self',
    members: () => members,
    isMember: (_c: string, p: string) => members.includes(p),
    linkQueueBytes: 8 * 1024 * 1024,
    link: (p) => links.get(p) as unknown as Link | undefined,
    count: (c) => {
      counters[c] = (counters[c] ?? 0) + 1
    },
  })
  return { b, members, links, counters }
}

describe('Broadcaster fan-out', () => {
  it('sends one identical frame to each member when the cluster fits in one fan-out', async () => {
    const { b, links } = setup(5)
    const data = new Uint8Array([1, 2, 3])
    expect(await b.broadcast('c', data)).toBe(5)
    const frames = [...links.values()].map((l) => l.frames)
    for (const f of frames) expect(f.length).toBe(1)
    for (const f of frames) expect(f[0]).toEqual(frames[0]![0])
    const m = parse(frames[0]![0]!)
    expect(m).toMatchObject({ origin: 'self', cluster: 'c', delegates: [] })
    expect([...m.data]).toEqual([1, 2, 3])
  })

  it('names each larger-cluster member exactly once, as a group head or a delegate', async () => {
    const { b, members, links } = setup(3 * BROADCAST_FANOUT + 3)
    expect(await b.broadcast('c', new Uint8Array([9]))).toBe(members.length)
    const reached: string[] = []
    let heads = 0
    for (const [peer, l] of links) {
      for (const f of l.frames) {
        heads++
        reached.push(peer, ...parse(f).delegates)
      }
    }
    expect(heads).toBe(BROADCAST_FANOUT)
    expect(reached.sort()).toEqual([...members].sort())
  })

  it('skips an unreachable member in a one-member group and counts it', async () => {
    const { b, links, counters } = setup(4)
    links.delete('peer-002')
    expect(await b.broadcast('c', new Uint8Array([1]))).toBe(3)
    expect(counters['broadcasts.unreachable']).toBe(1)
  })

  it('waits while a link it used holds SENDER_WAIT_BYTES or more, for that link only', async () => {
    for (const members of [3, 20]) {
      // 3: one frame per member; 20: group heads carry delegates
      const { b, links } = setup(members)
      const all = [...links.values()]
      // peer-000 and peer-002 receive a frame in both cases (with 20, they head groups 0 and 1)
      const busy = all[0]!
      busy.queuedBytes = SENDER_WAIT_BYTES // exactly at the threshold: waits
      all[2]!.queuedBytes = SENDER_WAIT_BYTES - 1 // just below: does not
      let done = false
      const p = b.broadcast('c', new Uint8Array([1])).then(() => {
        done = true
      })
      await new Promise((r) => setImmediate(r))
      expect(done, `${members} members`).toBe(false)
      expect(busy.waits.map((w) => w.below)).toEqual([SENDER_WAIT_BYTES])
      expect(all.filter((l) => l !== busy).every((l) => l.waits.length === 0)).toBe(true)
      busy.waits[0]!.release()
      await p
      expect(done).toBe(true)
    }
  })

  it('drops its own broadcast coming back, and any repeated one', () => {
    const { b, counters } = setup(2)
    const got: string[] = []
    b.serve('c', (_d, ctx) => void got.push(ctx.from), 10)
    const frame = (origin: string, seq: number) => {
      const w = new BinaryWriter(64)
      w.str(origin)
        .u32(seq)
        .str('c')
        .u16(0)
        .bytes(new Uint8Array([7]))
      return new BinaryReader(w.finish())
    }
    b.onFrame('peer-000', frame('self', 1), 1024)
    b.onFrame('peer-000', frame('other', 5), 1024)
    b.onFrame('peer-001', frame('other', 5), 1024)
    expect(got).toEqual(['other'])
    expect(counters['broadcasts.duplicates']).toBe(2)
  })
})

/** A broadcast frame body as a peer would send it. */
function frameFrom(origin: string, seq: number, delegates: string[] = [], size = 1) {
  const w = new BinaryWriter(64)
  w.str(origin).u32(seq).str('c').u16(delegates.length)
  for (const d of delegates) w.str(d)
  w.bytes(new Uint8Array(size))
  return new BinaryReader(w.finish())
}

describe('Broadcaster per-peer bounds', () => {
  it('takes frames naming another origin only from proven members', () => {
    const { b, counters } = setup(2)
    const got: string[] = []
    b.serve('c', (_d, ctx) => void got.push(ctx.from), 10)
    b.onFrame('stranger', frameFrom('someone', 1), 1024)
    b.onFrame('stranger', frameFrom('stranger', 1), 1024)
    b.onFrame('peer-000', frameFrom('someone', 1), 1024)
    expect(got).toEqual(['stranger', 'someone'])
    expect(counters['broadcasts.refused.forwarder']).toBe(1)
  })

  it("bounds the de-duplication windows one peer's frames create, not the others'", () => {
    const { b, counters } = setup(2)
    b.serve('c', undefined, 10)
    for (let i = 0; i < 1000; i++) b.onFrame('peer-000', frameFrom(`o${i}`, 1), 1024)
    expect(b.heldForPeers().origins).toBe(256)
    expect(counters['broadcasts.refused.origins']).toBe(1000 - 256)
    // Another peer still gets its own origins remembered, and a known origin still passes.
    b.onFrame('peer-001', frameFrom('good', 1), 1024)
    b.onFrame('peer-000', frameFrom('o1', 2), 1024)
    expect(b.heldForPeers().origins).toBe(257)
    expect(counters['broadcasts.refused.origins']).toBe(1000 - 256)
  })

  it('runs at most its share of handlers for one peer; others still get theirs', async () => {
    const { b, counters } = setup(2)
    const release: Array<() => void> = []
    const from: string[] = []
    b.serve(
      'c',
      (_d, ctx) =>
        new Promise<void>((r) => {
          from.push(ctx.from)
          release.push(r)
        }),
      64,
    )
    for (let i = 0; i < 100; i++) b.onFrame('peer-000', frameFrom('peer-000', i + 1), 1024)
    expect(release.length).toBe(16)
    expect(counters['broadcasts.refused.peerLimit']).toBe(84)
    b.onFrame('peer-001', frameFrom('peer-001', 1), 1024)
    expect(release.length).toBe(17)
    expect(b.heldForPeers().handlers).toBe(17)
    for (const r of release) r()
    await new Promise((r) => setImmediate(r))
    expect(b.heldForPeers().handlers).toBe(0)
  })

  it('bounds the bytes forwarded for one peer until they leave, and skips full links', () => {
    const { b, links, counters } = setup(3)
    const target = links.get('peer-001')!
    // 2 MiB share of the 8 MiB link bound: 64 KiB frames, about 32 fit.
    for (let i = 0; i < 100; i++)
      b.onFrame('peer-000', frameFrom('peer-000', i + 1, ['peer-001'], 64 * 1024), 1 << 20)
    const first = target.frames.length
    expect(first).toBeGreaterThan(25)
    expect(first).toBeLessThan(40)
    expect(counters['broadcasts.refused.forwardQueue']).toBe(100 - first)
    expect(b.heldForPeers().forwardBytes).toBeGreaterThan(1024 * 1024)
    // Once they left, the peer may forward again.
    target.flushed = target.frames.length
    b.onFrame('peer-000', frameFrom('peer-000', 1000, ['peer-001'], 64 * 1024), 1 << 20)
    expect(target.frames.length).toBe(first + 1)
    // A link over its bound gets no forwards from anyone.
    target.queuedBytes = 8 * 1024 * 1024
    b.onFrame('peer-002', frameFrom('peer-002', 1, ['peer-001']), 1024)
    expect(target.frames.length).toBe(first + 1)
    expect(counters['broadcasts.refused.forwardFull']).toBe(1)
    b.onPeerGone('peer-000')
    expect(b.heldForPeers().forwardBytes).toBe(0)
  })
})
