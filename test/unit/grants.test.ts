/**
 * The member's cache of presented capabilities (src/streams/access/grants.ts): what it accepts, its
 * bounds per peer and in total, forgetting a peer's grants when its link goes down and a
 * grant at expiry, and the per-call check `dataRefusal` (no signature per call).
 */
import { describe, expect, it } from 'vitest'
import { parseCapability, signPresentation } from '../../src/cluster/capability.js'
import { ClusterSigner } from '../../src/cluster/proof.js'
import { generateKey, issueCapability } from '../../src/index.js'
import { dataAuth, dataRefusal, GrantCache } from '../../src/streams/access/grants.js'
import type { StreamSpec } from '../../src/streams/meta/metadata-codec.js'

const key = generateKey()
const signer = new ClusterSigner(new Uint8Array(Buffer.from(key, 'hex')), 'db', 'plexus')
const signerOf = (c: string) => (c === 'db' ? signer : undefined)
const now = Date.now()
const cap = (expires = now + 60_000, stream = 'locked') =>
  parseCapability(issueCapability(key, { cluster: 'db', ops: ['publish'], stream, expires }), 'cap')
const spec: StreamSpec = {
  name: 'locked',
  subject: 'locked.>',
  partitions: 1,
  replicas: 1,
  retention: {},
  compact: false,
  duplicateWindow: 120_000,
  access: { publish: 'capability', consume: 'capability' },
}
const notMember = () => false

describe('GrantCache', () => {
  it('keeps what a peer presented, per peer, and a call names it by hash', () => {
    const g = new GrantCache({ perPeer: 2, total: 3 })
    const c = cap()
    g.present(signPresentation(c, 'A', 'M', now), 'A', 'M', signerOf, now)
    const hash = dataAuth(c).hash
    expect(dataRefusal(spec, 'db', 'publish', 'A', notMember, g, hash, now)).toEqual({ subject: '' })
    // Another peer naming the same hash: not presented by it.
    expect(() => dataRefusal(spec, 'db', 'publish', 'B', notMember, g, hash, now)).toThrow(/not presented/)
    expect(() => dataRefusal(spec, 'db', 'consume', 'A', notMember, g, hash, now)).toThrow(
      /does not grant consume/,
    )
    expect(() => dataRefusal(spec, 'db', 'publish', 'A', notMember, g, undefined, now)).toThrow(
      /needs a capability/,
    )
    // Members and open streams need nothing.
    expect(dataRefusal(spec, 'db', 'publish', 'B', () => true, g, undefined, now)).toBeUndefined()
    const open = { ...spec, access: undefined }
    expect(dataRefusal(open, 'db', 'consume', 'B', notMember, g, undefined, now)).toBeUndefined()
    // The link goes down: forgotten.
    g.dropPeer('A')
    expect(g.held).toBe(0)
    expect(() => dataRefusal(spec, 'db', 'publish', 'A', notMember, g, hash, now)).toThrow(/not presented/)
  })

  it('is bounded per peer (oldest forgotten) and in total (refused), and forgets at expiry', () => {
    const g = new GrantCache({ perPeer: 2, total: 3 })
    const caps = [cap(), cap(), cap()]
    for (const c of caps) g.present(signPresentation(c, 'A', 'M', now), 'A', 'M', signerOf, now)
    expect(g.held).toBe(2)
    expect(g.get('A', dataAuth(caps[0]!).hash, now)).toBeUndefined()
    expect(g.get('A', dataAuth(caps[2]!).hash, now)).toBeDefined()
    g.present(signPresentation(cap(), 'B', 'M', now), 'B', 'M', signerOf, now)
    expect(g.held).toBe(3)
    expect(() => g.present(signPresentation(cap(), 'C', 'M', now), 'C', 'M', signerOf, now)).toThrow(
      expect.objectContaining({ name: 'OverloadedError' }),
    )
    // Expiry: a grant is dropped when looked up after it.
    const short = cap(now + 1000)
    const g2 = new GrantCache()
    g2.present(signPresentation(short, 'A', 'M', now), 'A', 'M', signerOf, now)
    expect(g2.get('A', dataAuth(short).hash, now + 999)).toBeDefined()
    expect(g2.get('A', dataAuth(short).hash, now + 1001)).toBeUndefined()
    expect(g2.held).toBe(0)
  })

  it('refuses presentations for another member, by another presenter, stale, or of another cluster', () => {
    const g = new GrantCache()
    const c = cap()
    const refuse = (body: Uint8Array, from: string, why: RegExp) =>
      expect(() => g.present(body, from, 'M', signerOf, now)).toThrow(why)
    refuse(signPresentation(c, 'A', 'other-member', now), 'A', /holder did not sign/)
    refuse(signPresentation(c, 'A', 'M', now), 'B', /holder did not sign/)
    refuse(signPresentation(c, 'A', 'M', now - 120_000), 'A', /more than 60 s/)
    refuse(signPresentation(cap(now - 1), 'A', 'M', now), 'A', /expired/)
    const web = parseCapability(
      issueCapability(key, { cluster: 'web', ops: ['publish'], stream: '*', expires: now + 60_000 }),
      'web',
    )
    refuse(signPresentation(web, 'A', 'M', now), 'A', /not a member of cluster web/)
    refuse(new Uint8Array([1, 2, 3]), 'A', /malformed/)
    expect(g.held).toBe(0)
  })
})
