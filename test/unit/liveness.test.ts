/**
 * `PeerLiveness` (streams/host/liveness.ts), scripted: a member the node holds no link to is
 * up while it answers probes, down at once when a probe goes unanswered, and probed at most
 * once at a time and once per `probeEvery`.
 */
import { describe, expect, it } from 'vitest'
import { PeerLiveness } from '../../src/streams/host/liveness.js'

const settle = () => new Promise((r) => setImmediate(r))

describe('PeerLiveness', () => {
  it('an unlinked peer is up while it answers probes and down once one goes unanswered', async () => {
    let clock = 1000
    const linked = new Set<string>(['a'])
    const probes: Array<{ peer: string; answer(ok: boolean): void }> = []
    const l = new PeerLiveness(
      {
        self: 'me',
        now: () => clock,
        linked: (p) => linked.has(p),
        probe: (peer) =>
          new Promise((resolve, reject) =>
            probes.push({ peer, answer: (ok) => (ok ? resolve(undefined) : reject(new Error('no'))) }),
          ),
      },
      { probeEvery: 2000, upFor: 6000 },
    )
    expect(l.isUp('me')).toBe(true)
    expect(l.isUp('a')).toBe(true) // linked
    expect(probes).toHaveLength(0)
    // Never heard of, not linked: down until a probe answers; one probe at a time.
    expect(l.isUp('b')).toBe(false)
    expect(l.isUp('b')).toBe(false)
    expect(probes.map((p) => p.peer)).toEqual(['b'])
    probes.shift()!.answer(true)
    await settle()
    expect(l.isUp('b')).toBe(true)
    clock += 1999
    expect(l.isUp('b')).toBe(true)
    expect(probes).toHaveLength(0) // answered less than probeEvery ago
    clock += 1
    expect(l.isUp('b')).toBe(true) // still within upFor; probed again
    expect(probes).toHaveLength(1)
    probes.shift()!.answer(false)
    await settle()
    expect(l.isUp('b')).toBe(false) // unanswered: down at once
    // A linked peer whose link goes: up for upFor after it was last seen linked, then probed.
    linked.delete('a')
    clock += 100
    expect(l.isUp('a')).toBe(true)
    clock += 6000
    expect(l.isUp('a')).toBe(false)
  })
})
