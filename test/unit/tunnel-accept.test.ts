/**
 * Tunnel setup when the acceptor's link back is not up yet (the flaky DHT loopback test's
 * `tunnel to svc not accepted within 10000 ms`): links are one-way, so an opening can arrive
 * over the opener's fresh on-demand link before the acceptor's own link to the opener opens.
 * The acceptor must open its link and answer, not drop the opening.
 */
import { describe, expect, it } from 'vitest'
import { FrameType } from '../../src/link/frames.js'
import type { Link } from '../../src/link/link.js'
import { type TunnelHost, TunnelManager } from '../../src/tunnel/manager.js'
import { BinaryReader, BinaryWriter } from '../../src/util/binary.js'

const NAMES: Record<number, 'open' | 'accept' | 'data' | 'credit' | 'close'> = {
  [FrameType.TunnelOpen]: 'open',
  [FrameType.TunnelAccept]: 'accept',
  [FrameType.TunnelData]: 'data',
  [FrameType.TunnelCredit]: 'credit',
  [FrameType.TunnelClose]: 'close',
}

/** A one-way link from `from` that hands every frame to `to` on the next turn. */
function fakeLink(from: string, to: () => TunnelManager): Link {
  return {
    peer: from === 'a' ? 'b' : 'a',
    closed: false,
    write(encode: (w: BinaryWriter) => void) {
      const w = new BinaryWriter()
      encode(w)
      const bytes = w.finish()
      setImmediate(() => {
        const r = new BinaryReader(bytes)
        const len = r.u32()
        const type = r.u8()
        to().onFrame(NAMES[type]!, from, new BinaryReader(bytes, 5, 4 + len))
      })
      return true
    },
  } as unknown as Link
}

function host(
  self: string,
  links: Map<string, Link>,
  open: (p: string) => Promise<Link | undefined>,
): TunnelHost {
  return {
    self,
    link: (p) => links.get(p),
    open,
    pick: (_c, exclude) => (exclude.has('b') ? undefined : 'b'),
    unserved: () => undefined,
    nextChange: (signal) =>
      new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      ),
    discovering: () => false,
    maxMessageSize: 1 << 20,
    count: () => {},
  }
}

/**
 * Two tunnel managers: a already linked to b, b's link back to a opened only when b asks
 * (after `delayMs`). `hostA` may adjust a's host before a is built.
 */
function pair(delayMs = 0, hostA?: (h: ReturnType<typeof host>, aLinks: Map<string, Link>) => void) {
  const aLinks = new Map<string, Link>()
  const bLinks = new Map<string, Link>()
  const counts = { opened: 0 }
  let a!: TunnelManager
  let b!: TunnelManager
  aLinks.set(
    'b',
    fakeLink('a', () => b),
  )
  const ha = host('a', aLinks, async (p) => aLinks.get(p))
  hostA?.(ha, aLinks)
  a = new TunnelManager(ha)
  b = new TunnelManager(
    host('b', bLinks, async () => {
      counts.opened++
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
      bLinks.set(
        'a',
        fakeLink('b', () => a),
      )
      return bLinks.get('a')
    }),
  )
  return { a, b, aLinks, bLinks, counts }
}

describe('tunnel setup over a link that is up one way only', () => {
  it('the acceptor opens its link back and accepts instead of dropping the opening', async () => {
    // b's link to a opens only when asked, a little later (a dial on an existing connection).
    const { a, b, counts } = pair(20)
    const accepted: string[] = []
    b.serve('svc', (_t, ctx) => void accepted.push(ctx.from), 10)
    const t = await a.open('svc', 1000)
    expect(t).toBeDefined()
    expect(accepted).toEqual(['a'])
    expect(counts.opened).toBe(1)
    expect(a.openCount).toBe(1)
    expect(b.openCount).toBe(1)
  })

  it('a refusal also waits for the link back, so the opener learns it at once', async () => {
    const { a } = pair()
    // Not a member of svc: refused (NotMember), and with no other member the opener fails fast.
    const t0 = performance.now()
    await expect(a.open('svc', 5000)).rejects.toThrow(/no member of svc accepted/)
    expect(performance.now() - t0).toBeLessThan(1000)
  })

  it('an opening whose link closes first is tried again on that member once linked again', async () => {
    let changed: () => void = () => {}
    const { a, b, aLinks } = pair(0, (h, links) => {
      h.pick = (_c, exclude) => (links.has('b') && !exclude.has('b') ? 'b' : undefined)
      h.nextChange = () => new Promise<void>((r) => (changed = r))
    })
    b.serve('svc', () => {}, 10)
    // The first opening goes out on a link that is lost before it arrives.
    aLinks.set('b', { peer: 'b', closed: false, write: () => 0 } as unknown as Link)
    const opening = a.open('svc', 2000)
    await new Promise((r) => setImmediate(r))
    aLinks.delete('b')
    a.onLinkDown('b')
    await new Promise((r) => setImmediate(r))
    // Linked again: the same member is tried once more and accepts.
    aLinks.set(
      'b',
      fakeLink('a', () => b),
    )
    changed()
    expect(await opening).toBeDefined()
    expect(b.openCount).toBe(1)
  })
})
