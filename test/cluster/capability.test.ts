/**
 * Capabilities and admin proofs (src/cluster/capability.ts) without a network: a capability
 * round-trips, every byte of its token is covered by the signature, its scope and expiry are
 * enforced, malformed input is refused naming the field, and an admin proof authorizes only
 * the call it was made for.
 */
import { describe, expect, it } from 'vitest'
import {
  adminRefusal,
  capabilityRefusal,
  decodeCapabilityToken,
  issueCapability,
  parseCapability,
  signAdminProof,
  streamInScope,
} from '../../src/cluster/capability.js'
import { ClusterSigner } from '../../src/cluster/proof.js'
import { generateKey } from '../../src/index.js'

const key = generateKey()
const signer = new ClusterSigner(new Uint8Array(Buffer.from(key, 'hex')), 'db', 'net')
const hour = Date.now() + 3_600_000

describe('capabilities', () => {
  it('round-trips its grant and is refused beyond it', () => {
    const text = issueCapability(
      key,
      { cluster: 'db', ops: ['create', 'publish'], stream: 'ord*', subject: 'orders.>', expires: hour },
      'net',
    )
    expect(text).toMatch(/^pxc1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/)
    const { token } = parseCapability(text, 'cap')
    expect(token).toMatchObject({
      cluster: 'db',
      ops: ['create', 'publish'],
      stream: 'ord*',
      subject: 'orders.>',
    })
    expect(token.expires).toBe(hour)
    const now = Date.now()
    expect(capabilityRefusal(token, signer, 'create', 'orders', now)).toBeUndefined()
    expect(capabilityRefusal(token, signer, 'delete', 'orders', now)).toMatch(/does not grant delete/)
    expect(capabilityRefusal(token, signer, 'create', 'payments', now)).toMatch(
      /does not cover stream "payments"/,
    )
    expect(capabilityRefusal(token, signer, 'create', 'orders', hour + 1)).toMatch(/expired/)
    const web = new ClusterSigner(new Uint8Array(Buffer.from(key, 'hex')), 'web', 'net')
    expect(capabilityRefusal(token, web, 'create', 'orders', now)).toMatch(/for cluster db, not web/)
    const otherNet = new ClusterSigner(new Uint8Array(Buffer.from(key, 'hex')), 'db', 'other')
    expect(capabilityRefusal(token, otherNet, 'create', 'orders', now)).toMatch(/not signed/)
  })

  it('every byte of the token is signed: flipping any one is refused or does not decode', () => {
    const { token } = parseCapability(
      issueCapability(key, { cluster: 'db', ops: ['delete'], stream: '*', expires: hour }, 'net'),
      'cap',
    )
    for (let i = 0; i < token.bytes.length; i++) {
      const bytes = token.bytes.slice()
      bytes[i]! ^= 1
      let refused: string | undefined
      try {
        refused = capabilityRefusal(decodeCapabilityToken(bytes), signer, 'delete', 'x', Date.now())
      } catch {
        refused = 'does not decode'
      }
      expect(refused, `byte ${i}`).toBeDefined()
    }
  })

  it('refuses malformed capabilities and grants, naming the field', () => {
    const good = issueCapability(key, { cluster: 'db', ops: ['create'], expires: hour, stream: '*' }, 'net')
    const [p, t, s] = good.split('.')
    const cases: Array<[unknown, RegExp]> = [
      [42, /got 42/],
      ['nope', /expected pxc1/],
      [`${p}.${t}.${s!.slice(2)}`, /secret is not 32 bytes/],
      [`${p}.${t!.slice(4)}.${s}`, /token does not decode/],
      [`${p}.${t}.${Buffer.alloc(32, 1).toString('base64url')}`, /secret does not match its token/],
    ]
    for (const [v, re] of cases) expect(() => parseCapability(v, 'opt.cap')).toThrow(re)
    const grants: Array<[object, RegExp]> = [
      [{ cluster: 'bad name', ops: ['create'], expires: hour }, /cluster/],
      [{ cluster: 'db', ops: [], expires: hour }, /ops/],
      [{ cluster: 'db', ops: ['fly'], expires: hour }, /ops/],
      [{ cluster: 'db', ops: ['create'], expires: 'soon' }, /expires/],
      [{ cluster: 'db', ops: ['create'], expires: hour, stream: 'a b' }, /stream/],
      [{ cluster: 'db', ops: ['create'], expires: hour, subject: 'a..b' }, /subject/],
      [{ cluster: 'db', ops: ['create'], expires: hour, colour: 'red' }, /unknown capability field colour/],
    ]
    for (const [g, re] of grants) expect(() => issueCapability(key, g as never, 'net')).toThrow(re)
    expect(streamInScope('*', 'x')).toBe(true)
    expect(streamInScope('a*', 'ab')).toBe(true)
    expect(streamInScope('a*', 'ba')).toBe(false)
    expect(streamInScope('ab', 'abc')).toBe(false)
  })
})

describe('admin proofs', () => {
  const call = new TextEncoder().encode('delete orders r1')
  it('authorize only the call, the key and the time they were made for', () => {
    const now = Date.now()
    const proof = signAdminProof({ signer }, call, now)
    expect(adminRefusal(signer, 'delete', 'orders', call, proof, now)).toBeUndefined()
    expect(adminRefusal(signer, 'delete', 'orders', call, undefined, now)).toMatch(/needs the cluster key/)
    const other = new TextEncoder().encode('delete orders r2')
    expect(adminRefusal(signer, 'delete', 'orders', other, proof, now)).toMatch(
      /not signed with the cluster key/,
    )
    expect(adminRefusal(signer, 'delete', 'orders', call, proof, now + 61_000)).toMatch(/more than 60 s/)
    const wrong = new ClusterSigner(new Uint8Array(32).fill(9), 'db', 'net')
    expect(
      adminRefusal(signer, 'delete', 'orders', call, signAdminProof({ signer: wrong }, call, now), now),
    ).toMatch(/not signed with the cluster key/)
    for (let i = 0; i < proof.length; i++) {
      const bad = proof.slice()
      bad[i]! ^= 1
      expect(adminRefusal(signer, 'delete', 'orders', call, bad, now), `byte ${i}`).toBeDefined()
    }
  })

  it('with a capability: checked against its grant and its holder key', () => {
    const now = Date.now()
    const cap = parseCapability(
      issueCapability(key, { cluster: 'db', ops: ['delete'], stream: 'orders', expires: hour }, 'net'),
      'cap',
    )
    const proof = signAdminProof({ capability: cap }, call, now)
    expect(adminRefusal(signer, 'delete', 'orders', call, proof, now)).toBeUndefined()
    expect(adminRefusal(signer, 'create', 'orders', call, proof, now)).toMatch(/does not grant create/)
    expect(adminRefusal(signer, 'delete', 'other', call, proof, now)).toMatch(/does not cover stream "other"/)
    expect(adminRefusal(signer, 'delete', 'orders', call, proof, hour + 1)).toMatch(/more than 60 s|expired/)
  })
})
