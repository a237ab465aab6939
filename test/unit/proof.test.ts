import { describe, expect, it } from 'vitest'
import { type DirectoryHost, MemberDirectory } from '../../src/cluster/membership.js'
import {
  AnnounceKind,
  ClusterSigner,
  decodeAnnouncement,
  verifyAnnouncement,
} from '../../src/cluster/proof.js'
import { DecodeError } from '../../src/util/binary.js'
import { parseKey } from '../../src/util/keys.js'

const key = parseKey('11'.repeat(32), 'key')
const otherKey = parseKey('22'.repeat(32), 'key')

function directory(now = { t: 1_000_000 }, self = 'self') {
  const added: string[] = []
  const removed: string[] = []
  const flooded: Uint8Array[] = []
  const host: DirectoryHost = {
    network: 'net',
    self,
    now: () => now.t,
    addresses: () => ['/ip4/127.0.0.1/tcp/1'],
    flood: (b) => flooded.push(b),
    changed: (c, p, add) => (add ? added : removed).push(`${c}/${p}`),
  }
  return { dir: new MemberDirectory(host), added, removed, flooded, now }
}

describe('membership proofs', () => {
  it('a signed announcement verifies and decodes its fields', () => {
    const s = new ClusterSigner(key, 'db', 'net')
    const a = decodeAnnouncement(s.announce(AnnounceKind.Join, 'peerA', 42, ['/ip4/1.2.3.4/tcp/5']))
    expect(a).toMatchObject({ kind: AnnounceKind.Join, cluster: 'db', peer: 'peerA', counter: 42 })
    expect(a.addrs).toEqual(['/ip4/1.2.3.4/tcp/5'])
    expect(verifyAnnouncement(a, 'net')).toBe(true)
  })

  it('does not verify under another network name', () => {
    const s = new ClusterSigner(key, 'db', 'net')
    expect(verifyAnnouncement(decodeAnnouncement(s.announce(1, 'p', 1, [])), 'other')).toBe(false)
  })

  it('the same key gives different signing keys per cluster', () => {
    expect(new ClusterSigner(key, 'a', 'n').publicKey).not.toEqual(new ClusterSigner(key, 'b', 'n').publicKey)
  })

  it('any flipped byte is refused (malformed or bad signature), never accepted', () => {
    const bytes = new ClusterSigner(key, 'db', 'net').announce(1, 'peerA', 1_000_000, [])
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice()
      bad[i] ^= 0x40
      const { dir } = directory()
      let accepted = false
      try {
        accepted = dir.receive(bad, 'x')
      } catch (err) {
        expect(err).toBeInstanceOf(DecodeError)
      }
      expect(accepted, `byte ${i}`).toBe(false)
    }
  })

  it('truncated announcements throw DecodeError', () => {
    const bytes = new ClusterSigner(key, 'db', 'net').announce(1, 'peerA', 1, [])
    for (let n = 0; n < bytes.length; n++)
      expect(() => decodeAnnouncement(bytes.subarray(0, n))).toThrow(DecodeError)
  })
})

describe('member directory', () => {
  it('accepts a fresh join, floods it once, and refuses its replay', () => {
    const { dir, added, flooded, now } = directory()
    const s = new ClusterSigner(key, 'db', 'net')
    const ann = s.announce(AnnounceKind.Join, 'peerA', now.t, [])
    expect(dir.receive(ann, 'peerA')).toBe(true)
    expect(added).toEqual(['db/peerA'])
    expect(flooded.length).toBe(1)
    expect(dir.receive(ann, 'peerB')).toBe(false)
    expect(dir.refused.replay).toBe(1)
    expect(flooded.length).toBe(1)
  })

  it('a leave removes the member at once; an old join replayed after it is refused', () => {
    const { dir, removed, now } = directory()
    const s = new ClusterSigner(key, 'db', 'net')
    const join = s.announce(AnnounceKind.Join, 'peerA', now.t, [])
    dir.receive(join, 'peerA')
    dir.receive(s.announce(AnnounceKind.Leave, 'peerA', now.t + 1, []), 'peerA')
    expect(removed).toEqual(['db/peerA'])
    expect(dir.members('db')).toEqual([])
    expect(dir.receive(join, 'evil')).toBe(false)
    expect(dir.members('db')).toEqual([])
  })

  it('refuses stale and far-future announcements (replays to a fresh node)', () => {
    const { dir, now } = directory()
    const s = new ClusterSigner(key, 'db', 'net')
    expect(dir.receive(s.announce(1, 'peerA', now.t - 120_000, []), 'x')).toBe(false)
    expect(dir.receive(s.announce(1, 'peerB', now.t + 120_000, []), 'x')).toBe(false)
    expect(dir.refused.stale).toBe(2)
  })

  it('a member refuses announcements made with another key (forged membership)', () => {
    const { dir, now } = directory()
    dir.join('db', key)
    const forged = new ClusterSigner(otherKey, 'db', 'net').announce(1, 'mallory', now.t, [])
    expect(dir.receive(forged, 'mallory')).toBe(false)
    expect(dir.refused['wrong-key']).toBe(1)
    expect(dir.members('db').map((m) => m.peer)).toEqual(['self'])
  })

  it('a non-member pins the first key seen and refuses a conflicting one', () => {
    const { dir, now } = directory()
    dir.receive(new ClusterSigner(key, 'db', 'net').announce(1, 'good', now.t, []), 'good')
    expect(dir.receive(new ClusterSigner(otherKey, 'db', 'net').announce(1, 'bad', now.t, []), 'bad')).toBe(
      false,
    )
    expect(dir.members('db').map((m) => m.peer)).toEqual(['good'])
  })

  it('forgets members not refreshed within maxAge', () => {
    const { dir, now, removed } = directory()
    dir.receive(new ClusterSigner(key, 'db', 'net').announce(1, 'peerA', now.t, []), 'peerA')
    now.t += 61_000
    dir.refresh()
    expect(removed).toEqual(['db/peerA'])
  })

  it('ignores announcements about itself coming back from peers', () => {
    const { dir, now } = directory()
    const s = new ClusterSigner(key, 'db', 'net')
    expect(dir.receive(s.announce(1, 'self', now.t + 5, []), 'x')).toBe(false)
  })
})
