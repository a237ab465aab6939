/**
 * Capabilities and admin proofs: how a caller shows a cluster's members that it may
 * administer the cluster's streams (create, update, purge, delete, delete a consumer), and
 * the token format for publish/consume rights. Both reuse the cluster signing key of
 * cluster/proof.ts (`ClusterSigner`, derived from the cluster key K); K never leaves the
 * process.
 *
 * **Capability** (what `issueCapability` / `plexus keygen --capability` prints):
 * `pxc1.<token>.<secret>`, both parts base64url. The token is public (sent to members with
 * each call); the secret is the holder's and never crosses the wire between nodes.
 *   token: `u8 version (1) | str cluster | u8 ops (bit i = CAPABILITY_OPS[i]) | str stream
 *   ('*' every stream; a trailing '*' a prefix) | str subject ('' any topic) | u64 expires
 *   (ms since the epoch) | 32 holder public key | 64 signature`
 * The signature is the cluster signing key's over everything before it, domain
 * `plexus-capability/1` (and the network name, as every `ClusterSigner` signature): only a
 * holder of K can issue one, and it is valid in one network and one cluster only. The
 * holder key is derived from the secret the same way a cluster signing key is derived from K.
 *
 * **Admin proof** (appended to a metadata call): `u8 kind (1 cluster key, 2 capability) |
 * u64 time (ms) | kind 2: bytes token | 64 signature` over domain `plexus-admin/1`, the
 * encoded call (cluster, operation, request id, stream name or spec), the time and the kind
 * (and the token). Kind 1 is signed with the cluster signing key, kind 2 with the holder key
 * of the capability. So a proof authorizes exactly one call: changing the operation, the
 * stream, the request id or the spec breaks it, and it is refused more than
 * `PROOF_MAX_SKEW_MS` from the checking member's clock. Sending the very same call again is
 * a retry (the metadata group answers a known request id with its first outcome).
 *
 * Checking: Ed25519 signatures are deterministic (RFC 8032), so a member checks a signature
 * made with the cluster signing key by making it again with its own signer and comparing.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { CLUSTER_NAME_RE, DEFAULT_NETWORK } from '../constants.js'
import { InvalidArgumentError } from '../errors.js'
import { checkPattern } from '../pubsub/subject.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import { parseKey } from '../util/keys.js'
import { describe } from '../util/validate.js'
import { CAPABILITY_PREFIX, splitCapability } from './capability-text.js'
import { ClusterSigner, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, verifyClusterSignature } from './proof.js'

/** Operations a capability may grant, in bit order. */
export const CAPABILITY_OPS = [
  'create',
  'update',
  'purge',
  'delete',
  'consumer-delete',
  'publish',
  'consume',
] as const
/** An operation a capability may grant. */
export type CapabilityOp = (typeof CAPABILITY_OPS)[number]

/** A proof (or a clock) further than this from the checking member's clock is refused (ms). */
export const PROOF_MAX_SKEW_MS = 60_000

const TOKEN_VERSION = 1
const CAPABILITY_DOMAIN = 'plexus-capability/1'
const ADMIN_DOMAIN = 'plexus-admin/1'
/** The label holder keys are derived under (with `ClusterSigner`, from the secret). */
const HOLDER_LABEL = 'capability-holder'
/** Largest token accepted (bytes). */
const MAX_TOKEN_BYTES = 1024

/** Proof kinds. */
export const ProofKind = { ClusterKey: 1, Capability: 2 } as const

/** What a capability grants (the signed fields of its token). */
export interface CapabilityGrant {
  cluster: string
  ops: CapabilityOp[]
  /** A stream name, `*` for every stream, or a prefix ending in `*`. */
  stream: string
  /** A topic pattern publish/consume rights are limited to ('' or absent: any). */
  subject?: string
  /** Expiry, ms since the epoch. */
  expires: number
}

/** A decoded capability token (not yet verified). */
export interface CapabilityToken extends CapabilityGrant {
  holder: Uint8Array
  /** The whole token, as sent. */
  bytes: Uint8Array
  signed: Uint8Array
  signature: Uint8Array
}

/** A parsed capability: its token and the holder's signer (from the secret). */
export interface Capability {
  token: CapabilityToken
  holder: ClusterSigner
}

/** What a caller proves an admin call with: a cluster signer (it holds K) or a capability. */
export type AdminAuth = { signer: ClusterSigner } | { capability: Capability }

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url')

/**
 * Issues a capability for `grant` with the cluster key `clusterKey`, valid in `network`
 * (default `plexus`). Returns the `pxc1.<token>.<secret>` text to hand to its holder.
 * Throws `InvalidArgumentError` naming a bad field.
 */
export function issueCapability(
  clusterKey: string | Uint8Array,
  grant: Omit<CapabilityGrant, 'expires'> & { expires: number | Date },
  network = DEFAULT_NETWORK,
): string {
  const key = parseKey(clusterKey, 'clusterKey')
  const g = checkGrant(grant)
  const secret = randomBytes(32)
  const holder = new ClusterSigner(secret, HOLDER_LABEL, '')
  const w = new BinaryWriter(256)
  w.u8(TOKEN_VERSION)
    .str(g.cluster)
    .u8(opsToBits(g.ops))
    .str(g.stream)
    .str(g.subject ?? '')
  w.u64(g.expires).raw(holder.publicKey)
  const signed = w.finish().slice()
  const sig = new ClusterSigner(key, g.cluster, network).sign(CAPABILITY_DOMAIN, signed)
  const token = new BinaryWriter(signed.length + SIGNATURE_BYTES).raw(signed).raw(sig).finish()
  return `${CAPABILITY_PREFIX}.${b64(token)}.${b64(secret)}`
}

/** Parses a capability text (`pxc1.<token>.<secret>`); `InvalidArgumentError` naming `field`. */
export function parseCapability(text: unknown, field: string): Capability {
  const { parts, bad } = splitCapability(text, field)
  const secret = Buffer.from(parts[2]!, 'base64url')
  if (secret.length !== 32) throw bad('its secret is not 32 bytes')
  let token: CapabilityToken
  try {
    token = decodeCapabilityToken(new Uint8Array(Buffer.from(parts[1]!, 'base64url')))
  } catch (err) {
    throw bad(`its token does not decode: ${(err as Error).message}`)
  }
  const holder = new ClusterSigner(secret, HOLDER_LABEL, '')
  if (!timingSafeEqual(holder.publicKey, token.holder)) throw bad('its secret does not match its token')
  return { token, holder }
}

/** Decodes a capability token; throws `DecodeError` on anything malformed. */
export function decodeCapabilityToken(bytes: Uint8Array): CapabilityToken {
  if (bytes.length > MAX_TOKEN_BYTES) throw new DecodeError('capability token too large')
  const r = new BinaryReader(bytes)
  const v = r.u8('capability version')
  if (v !== TOKEN_VERSION) throw new DecodeError(`unknown capability version ${v}`)
  const cluster = r.str('cluster')
  const bits = r.u8('operations')
  const ops = CAPABILITY_OPS.filter((_, i) => bits & (1 << i))
  const stream = r.str('stream')
  const subject = r.str('subject')
  const expires = r.u64('expires')
  const holder = r.raw(PUBLIC_KEY_BYTES, 'holder key')
  const end = r.pos
  const signature = r.raw(SIGNATURE_BYTES, 'signature')
  r.end('capability token')
  const token: CapabilityToken = {
    cluster,
    ops,
    stream,
    expires,
    holder,
    bytes,
    signed: bytes.subarray(0, end),
    signature,
  }
  if (subject !== '') token.subject = subject
  return token
}

/** True when a capability's stream scope covers `stream`. */
export function streamInScope(scope: string, stream: string): boolean {
  if (scope === '*') return true
  if (scope.endsWith('*')) return stream.startsWith(scope.slice(0, -1))
  return scope === stream
}

/**
 * Why a capability does not allow `op` on `stream` of `cluster` at `now` (a message for
 * `UnauthorizedError`), or undefined when it does. `signer` is the checking member's
 * signer of that cluster: the token must carry its signature.
 */
export function capabilityRefusal(
  token: CapabilityToken,
  signer: ClusterSigner,
  op: CapabilityOp,
  stream: string,
  now: number,
): string | undefined {
  const scope = grantRefusal(token, signer.cluster, op, stream, now)
  if (scope !== undefined) return scope
  if (!sameSignature(signer.sign(CAPABILITY_DOMAIN, token.signed), token.signature))
    return `the capability is not signed with the key of cluster ${signer.cluster}`
  return undefined
}

/**
 * Why a capability's grant (its fields, the signature not checked) does not cover `op` on
 * `stream` of `cluster` at `now`, or undefined when it does.
 */
export function grantRefusal(
  grant: CapabilityGrant,
  cluster: string,
  op: CapabilityOp,
  stream: string,
  now: number,
): string | undefined {
  if (grant.cluster !== cluster) return `the capability is for cluster ${grant.cluster}, not ${cluster}`
  if (now > grant.expires) return `the capability expired at ${new Date(grant.expires).toISOString()}`
  if (!grant.ops.includes(op))
    return `the capability does not grant ${op} (it grants ${grant.ops.join(', ') || 'nothing'})`
  if (!streamInScope(grant.stream, stream))
    return `the capability does not cover stream "${stream}" (its scope is "${grant.stream}")`
  return undefined
}

/** Signs an admin proof for the encoded call `call` at `now`; the bytes to append to it. */
export function signAdminProof(auth: AdminAuth, call: Uint8Array, now: number): Uint8Array {
  const kind = 'signer' in auth ? ProofKind.ClusterKey : ProofKind.Capability
  const token = 'capability' in auth ? auth.capability.token.bytes : undefined
  const signed = adminSigned(call, now, kind, token)
  const sig =
    'signer' in auth
      ? auth.signer.sign(ADMIN_DOMAIN, signed)
      : auth.capability.holder.sign(ADMIN_DOMAIN, signed)
  const w = new BinaryWriter(96 + (token?.length ?? 0)).u8(kind).u64(now)
  if (token) w.bytes(token)
  return w.raw(sig).finish().slice()
}

/**
 * Checks the admin proof `proof` of the encoded call `call` (`op` on `stream`) with the
 * cluster's signer. Returns why it is refused (a message for `UnauthorizedError`), or
 * undefined when it proves the cluster key or an in-scope, unexpired capability. Never throws.
 */
export function adminRefusal(
  signer: ClusterSigner,
  op: CapabilityOp,
  stream: string,
  call: Uint8Array,
  proof: Uint8Array | undefined,
  now: number,
): string | undefined {
  const what = `${op} of stream "${stream}" in cluster ${signer.cluster}`
  const need = `needs the cluster key or a capability (join the cluster, or pass the key or a capability from plexus keygen --capability)`
  if (proof === undefined || proof.length === 0) return `${what} ${need}`
  let kind: number
  let time: number
  let token: Uint8Array | undefined
  let signature: Uint8Array
  try {
    const r = new BinaryReader(proof)
    kind = r.u8('proof kind')
    time = r.u64('proof time')
    if (kind === ProofKind.Capability) token = r.bytes('capability token')
    else if (kind !== ProofKind.ClusterKey) throw new DecodeError(`unknown proof kind ${kind}`)
    signature = r.raw(SIGNATURE_BYTES, 'signature')
    r.end('admin proof')
  } catch (err) {
    return `${what}: malformed proof (${(err as Error).message})`
  }
  if (Math.abs(now - time) > PROOF_MAX_SKEW_MS)
    return `${what}: the proof was made at ${new Date(time).toISOString()}, more than ${PROOF_MAX_SKEW_MS / 1000} s from this member's clock (replayed, or a clock is off)`
  const signed = adminSigned(call, time, kind, token)
  if (token === undefined) {
    if (!sameSignature(signer.sign(ADMIN_DOMAIN, signed), signature))
      return `${what}: the proof is not signed with the cluster key`
    return undefined
  }
  let t: CapabilityToken
  try {
    t = decodeCapabilityToken(token)
  } catch (err) {
    return `${what}: malformed capability (${(err as Error).message})`
  }
  const refused = capabilityRefusal(t, signer, op, stream, now)
  if (refused !== undefined) return `${what}: ${refused}`
  if (!verifyClusterSignature(ADMIN_DOMAIN, '', t.holder, signed, signature))
    return `${what}: the proof is not signed by the capability's holder`
  return undefined
}

const PRESENT_DOMAIN = 'plexus-present/1'

/**
 * What a caller sends a member once per (member, capability) before publishing or reading
 * with it (`s.grant`, streams/access/grants.ts): `bytes token | u64 time | 64 signature`, the
 * signature by the capability's holder key over domain `plexus-present/1`, the token, the
 * presenter's and the member's peer ids and the time. Noise proves the presenter's peer id
 * on the link, so the presentation is good for that peer only and that member only.
 */
export function signPresentation(
  cap: Capability,
  presenter: string,
  member: string,
  now: number,
): Uint8Array {
  const sig = cap.holder.sign(PRESENT_DOMAIN, presentSigned(cap.token.bytes, presenter, member, now))
  return new BinaryWriter(cap.token.bytes.length + 80)
    .bytes(cap.token.bytes)
    .u64(now)
    .raw(sig)
    .finish()
    .slice()
}

/**
 * Checks a presentation (`signPresentation`) that `presenter` sent to `member` at `now`:
 * the token decodes, is for the cluster of `signer` (the member's), carries its signature
 * and has not expired, the time is within `PROOF_MAX_SKEW_MS`, and the holder signed it.
 * Returns the token, or why it is refused (a message for `UnauthorizedError`). Never throws.
 * One Ed25519 signature made and one verified: not for a per-message path.
 */
export function checkPresentation(
  body: Uint8Array,
  presenter: string,
  member: string,
  signerOf: (cluster: string) => ClusterSigner | undefined,
  now: number,
): CapabilityToken | string {
  let bytes: Uint8Array
  let time: number
  let signature: Uint8Array
  let t: CapabilityToken
  try {
    const r = new BinaryReader(body)
    bytes = r.bytes('capability token')
    time = r.u64('time')
    signature = r.raw(SIGNATURE_BYTES, 'signature')
    r.end('capability presentation')
    t = decodeCapabilityToken(bytes)
  } catch (err) {
    return `malformed capability presentation (${(err as Error).message})`
  }
  const signer = signerOf(t.cluster)
  if (signer === undefined) return `this node is not a member of cluster ${t.cluster}`
  if (now > t.expires) return `the capability expired at ${new Date(t.expires).toISOString()}`
  if (!sameSignature(signer.sign(CAPABILITY_DOMAIN, t.signed), t.signature))
    return `the capability is not signed with the key of cluster ${t.cluster}`
  if (Math.abs(now - time) > PROOF_MAX_SKEW_MS)
    return `the capability was presented at ${new Date(time).toISOString()}, more than ${PROOF_MAX_SKEW_MS / 1000} s from this member's clock`
  if (
    !verifyClusterSignature(
      PRESENT_DOMAIN,
      '',
      t.holder,
      presentSigned(bytes, presenter, member, time),
      signature,
    )
  )
    return `the capability's holder did not sign this presentation (the presenter does not hold its secret)`
  return t
}

function presentSigned(token: Uint8Array, presenter: string, member: string, time: number): Uint8Array {
  return new BinaryWriter(token.length + 128)
    .bytes(token)
    .str(presenter)
    .str(member)
    .u64(time)
    .finish()
    .slice()
}

function adminSigned(
  call: Uint8Array,
  time: number,
  kind: number,
  token: Uint8Array | undefined,
): Uint8Array {
  const w = new BinaryWriter(call.length + 32 + (token?.length ?? 0)).bytes(call).u64(time).u8(kind)
  if (token) w.bytes(token)
  return w.finish().slice()
}

function sameSignature(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

function opsToBits(ops: readonly CapabilityOp[]): number {
  let bits = 0
  for (const op of ops) bits |= 1 << CAPABILITY_OPS.indexOf(op)
  return bits
}

function checkGrant(g: unknown): CapabilityGrant {
  if (typeof g !== 'object' || g === null)
    throw new InvalidArgumentError(`grant must be an object, got ${describe(g)}`)
  const o = g as Record<string, unknown>
  for (const k of Object.keys(o))
    if (!['cluster', 'ops', 'stream', 'subject', 'expires'].includes(k))
      throw new InvalidArgumentError(`unknown capability field ${k}`)
  if (typeof o.cluster !== 'string' || !CLUSTER_NAME_RE.test(o.cluster))
    throw new InvalidArgumentError(`cluster must be a cluster name, got ${describe(o.cluster)}`)
  if (!Array.isArray(o.ops) || o.ops.length === 0 || o.ops.some((op) => !CAPABILITY_OPS.includes(op)))
    throw new InvalidArgumentError(
      `ops must be a non-empty list of ${CAPABILITY_OPS.join(', ')}; got ${describe(o.ops)}`,
    )
  const stream = o.stream ?? '*'
  if (typeof stream !== 'string' || !/^(\*|[A-Za-z0-9_-]{1,64}\*?)$/.test(stream))
    throw new InvalidArgumentError(
      `stream must be a stream name, '*' or a prefix ending in '*', got ${describe(stream)}`,
    )
  if (o.subject !== undefined) checkPattern(o.subject, 'subject')
  const expires = o.expires instanceof Date ? o.expires.getTime() : o.expires
  if (typeof expires !== 'number' || !Number.isSafeInteger(expires) || expires <= 0)
    throw new InvalidArgumentError(`expires must be a Date or ms since the epoch, got ${describe(o.expires)}`)
  const out: CapabilityGrant = {
    cluster: o.cluster,
    ops: [...new Set(o.ops as CapabilityOp[])],
    stream,
    expires,
  }
  if (o.subject !== undefined) out.subject = o.subject as string
  return out
}
