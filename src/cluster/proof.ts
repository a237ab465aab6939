/**
 * Membership proofs. A cluster key K yields, per cluster name, an Ed25519 signing key
 * (seed = HMAC-SHA256(K, "plexus/cluster-sign/v1/" + cluster)). Every announcement is
 * signed with it over the network name, the kind (join/leave), the cluster, the member's
 * peer id, a counter that only grows (the member's clock in ms, bumped when equal), the
 * member's addresses and its roles (src/cluster/roles.ts: which of request, broadcast and
 * tunnel handlers it has, and whether it stores streams). Members, who hold K, accept only
 * the key they derive themselves;
 * others verify with the public key carried in the announcement (see docs/security.md for
 * what that means). K itself never leaves the process.
 *
 * Layout (all big-endian, strings u16-length UTF-8):
 *   u8 version(2) | u8 kind | str cluster | str peer | u64 counter | u16 n | n × str addr |
 *   u8 roles | 32 bytes public key | 64 bytes signature
 * The signature covers "plexus-announce/1\0" | str network | every byte before it (the
 * version and the roles included, so neither can be changed on the way). Version 1 (the
 * same without the roles byte) is still accepted; its member is taken to serve every role
 * (`LEGACY_ROLES`), as before roles existed.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import type { MemberRoles } from '../types.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import { deriveKey } from '../util/keys.js'
import { peerCluster } from '../util/peer-input.js'
import { LEGACY_ROLES, rolesFromBits, rolesToBits } from './roles.js'

/** Version of the announcements this node signs (2: with roles). */
export const ANNOUNCE_VERSION = 2
/** The version before roles, still accepted. */
export const ANNOUNCE_VERSION_NO_ROLES = 1
/** Size of an Ed25519 public key. */
export const PUBLIC_KEY_BYTES = 32
/** Size of an Ed25519 signature. */
export const SIGNATURE_BYTES = 64
/** Most addresses one announcement may carry. */
export const MAX_ANNOUNCED_ADDRS = 16

/** Announcement kinds. */
export const AnnounceKind = { Join: 1, Leave: 2 } as const

/** A decoded (not yet verified) announcement. */
export interface Announcement {
  kind: number
  cluster: string
  peer: string
  counter: number
  addrs: string[]
  /** What the member serves (signed; `LEGACY_ROLES` for a version 1 announcement). */
  roles: MemberRoles
  publicKey: Uint8Array
  signature: Uint8Array
  /** The bytes the signature covers (without the network prefix). */
  signed: Uint8Array
  /** The whole encoded announcement, forwarded as is. */
  bytes: Uint8Array
}

// DER prefixes that wrap raw Ed25519 keys for node:crypto.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** Signs announcements for one cluster with the key derived from the cluster key. */
export class ClusterSigner {
  readonly publicKey: Uint8Array
  private readonly privateKey: KeyObject

  constructor(
    clusterKey: Uint8Array,
    readonly cluster: string,
    private readonly network: string,
  ) {
    const seed = deriveKey(clusterKey, `plexus/cluster-sign/v1/${cluster}`)
    this.privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, seed]),
      format: 'der',
      type: 'pkcs8',
    })
    const spki = createPublicKey(this.privateKey).export({ format: 'der', type: 'spki' })
    this.publicKey = new Uint8Array(spki.subarray(spki.length - PUBLIC_KEY_BYTES))
  }

  /**
   * Signs `signed` for this network under `domain` (a protocol label that keeps signatures
   * of one message kind from being valid for another). Check with `verifyClusterSignature`.
   */
  sign(domain: string, signed: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, signingInput(domain, this.network, signed), this.privateKey))
  }

  /**
   * Encodes and signs an announcement of a member with `roles` (default: every role, what a
   * version 1 announcement means).
   */
  announce(
    kind: number,
    peer: string,
    counter: number,
    addrs: string[],
    roles: MemberRoles = LEGACY_ROLES,
  ): Uint8Array {
    const w = new BinaryWriter(256)
    w.u8(ANNOUNCE_VERSION).u8(kind).str(this.cluster).str(peer).u64(counter)
    const list = addrs.slice(0, MAX_ANNOUNCED_ADDRS)
    w.u16(list.length)
    for (const a of list) w.str(a)
    w.u8(rolesToBits(roles))
    w.raw(this.publicKey)
    const signed = w.finish().slice()
    const sig = this.sign(ANNOUNCE_DOMAIN, signed)
    return new BinaryWriter(signed.length + SIGNATURE_BYTES).raw(signed).raw(sig).finish().slice()
  }
}

/** Decodes an announcement; throws `DecodeError` on anything malformed. */
export function decodeAnnouncement(bytes: Uint8Array): Announcement {
  const r = new BinaryReader(bytes)
  const version = r.u8('announce version')
  if (version !== ANNOUNCE_VERSION && version !== ANNOUNCE_VERSION_NO_ROLES)
    throw new DecodeError(`unknown announce version ${version}`)
  const kind = r.u8('announce kind')
  if (kind !== AnnounceKind.Join && kind !== AnnounceKind.Leave)
    throw new DecodeError(`unknown announce kind ${kind}`)
  const cluster = r.str('cluster')
  const peer = r.str('peer')
  const counter = r.u64('counter')
  const n = r.u16('address count')
  if (n > MAX_ANNOUNCED_ADDRS) throw new DecodeError(`too many addresses (${n})`)
  const addrs: string[] = []
  for (let i = 0; i < n; i++) addrs.push(r.str('address'))
  const roles = version === ANNOUNCE_VERSION ? rolesFromBits(r.u8('roles')) : { ...LEGACY_ROLES }
  const publicKey = r.raw(PUBLIC_KEY_BYTES, 'public key')
  const signedEnd = r.pos
  const signature = r.raw(SIGNATURE_BYTES, 'signature')
  r.end('announcement')
  peerCluster(cluster) // as `join` checks it (PeerInputError)
  return {
    kind,
    cluster,
    peer,
    counter,
    addrs,
    roles,
    publicKey,
    signature,
    signed: bytes.subarray(0, signedEnd),
    bytes,
  }
}

/** True when the signature is valid for this network under the announcement's public key. */
export function verifyAnnouncement(a: Announcement, network: string): boolean {
  return verifyClusterSignature(ANNOUNCE_DOMAIN, network, a.publicKey, a.signed, a.signature)
}

/** True when `signature` is `ClusterSigner.sign(domain, signed)` by the holder of `publicKey`. */
export function verifyClusterSignature(
  domain: string,
  network: string,
  publicKey: Uint8Array,
  signed: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    const key = createPublicKey({
      key: Buffer.concat([SPKI_PREFIX, publicKey]),
      format: 'der',
      type: 'spki',
    })
    return verify(null, signingInput(domain, network, signed), key, signature)
  } catch {
    return false
  }
}

const ANNOUNCE_DOMAIN = 'plexus-announce/1'

function signingInput(domain: string, network: string, signed: Uint8Array): Uint8Array {
  return new BinaryWriter(signed.length + 64)
    .raw(new TextEncoder().encode(`${domain}\0`))
    .str(network)
    .raw(signed)
    .finish()
}
