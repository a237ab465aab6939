/**
 * Authorization of stream administration (docs/security.md, "Who may do what").
 *
 * - Members: `authorizeMeta` is the check the metadata leader runs before it acts on a create,
 *   delete, update or consumer delete (host.ts `handleMeta`), and a partition leader before it
 *   proposes a purge (service.ts `s.purge`): the call must carry an admin proof (cluster/capability.ts)
 *   made with the cluster key, or with a capability for that operation and stream that has not
 *   expired. Nothing else deletes a stream's data: members delete directories only for a
 *   tombstone in a stream table signed with the cluster key, which only the metadata leader
 *   signs, after this check; metadata Raft messages are accepted only from proven members.
 * - Callers: `AdminCredentials` picks what a node proves an admin call with, in this order:
 *   the call's `capability` option, its `clusterKey` option, the key of a cluster the node
 *   joined, the node's `credentials.clusterKeys`, then the first of its
 *   `credentials.capabilities` that covers the call. With none, the call is sent without a
 *   proof and the leader answers `UnauthorizedError`.
 */
import {
  type AdminAuth,
  adminRefusal,
  type Capability,
  type CapabilityOp,
  grantRefusal,
  issueCapability,
  parseCapability,
  signAdminProof,
} from '../../cluster/capability.js'
import { ClusterSigner } from '../../cluster/proof.js'
import { InvalidArgumentError } from '../../errors.js'
import type { NodeCredentials, StreamCallOptions } from '../../types.js'
import { parseKey } from '../../util/keys.js'
import { checkKnownKeys, checkOptions, describe } from '../../util/validate.js'
import type { MetaCall, MetaReply } from '../wire.js'

/** The operation and stream a metadata call administers (undefined: a read, `table`). */
export function adminTarget(call: MetaCall): { op: CapabilityOp; stream: string } | undefined {
  if (call.op === 'create') return { op: 'create', stream: call.spec.name }
  if (call.op === 'delete') return { op: 'delete', stream: call.name }
  if (call.op === 'consumer-delete') return { op: 'consumer-delete', stream: call.name }
  if (call.op === 'purge') return { op: 'purge', stream: call.name }
  if (call.op === 'update') return { op: 'update', stream: call.name }
  return undefined
}

/**
 * The metadata leader's check of a decoded call with the cluster's `signer` at `now`: an
 * `UnauthorizedError` reply when its proof is missing, forged, made for another call, stale,
 * or made with a capability that does not cover it; undefined when it may proceed (and for
 * reads). Never throws.
 */
export function authorizeMeta(call: MetaCall, signer: ClusterSigner, now: number): MetaReply | undefined {
  const target = adminTarget(call)
  if (target === undefined || call.op === 'table') return undefined
  const refused = adminRefusal(
    signer,
    target.op,
    target.stream,
    call.signed ?? new Uint8Array(),
    call.proof,
    now,
  )
  return refused === undefined ? undefined : { status: 'error', name: 'UnauthorizedError', message: refused }
}

/** Validated node-level credentials. */
export interface ResolvedCredentials {
  clusterKeys: Map<string, Uint8Array>
  capabilities: Capability[]
}

/** Checks `createNode`'s `credentials` option; `InvalidArgumentError` naming a bad field. */
export function checkCredentials(value: unknown): ResolvedCredentials {
  const o = checkOptions<NodeCredentials>(value, 'credentials')
  checkKnownKeys(o, ['clusterKeys', 'capabilities'], 'credentials')
  const clusterKeys = new Map<string, Uint8Array>()
  const keys = checkOptions<Record<string, string | Uint8Array>>(o.clusterKeys, 'credentials.clusterKeys')
  for (const [cluster, key] of Object.entries(keys))
    clusterKeys.set(cluster, parseKey(key, `credentials.clusterKeys.${cluster}`))
  const caps = o.capabilities ?? []
  if (!Array.isArray(caps))
    throw new InvalidArgumentError(`credentials.capabilities must be an array, got ${describe(caps)}`)
  const capabilities = caps.map((c, i) => parseCapability(c, `credentials.capabilities[${i}]`))
  return { clusterKeys, capabilities }
}

/** Chooses and signs the admin proof of this node's calls; see the module doc. */
export class AdminCredentials {
  constructor(
    private readonly network: string,
    private readonly creds: ResolvedCredentials,
    /** The signer of a cluster this node joined. */
    private readonly joined: (cluster: string) => ClusterSigner | undefined,
  ) {}

  /**
   * What to prove `op` on `stream` of `cluster` with, given the call's options (checked
   * here: `InvalidArgumentError` naming a bad one); undefined when the node has nothing.
   */
  resolve(
    cluster: string,
    op: CapabilityOp,
    stream: string,
    options: StreamCallOptions | undefined,
  ): AdminAuth | undefined {
    if (options?.capability !== undefined)
      return { capability: parseCapability(options.capability, 'options.capability') }
    if (options?.clusterKey !== undefined)
      return {
        signer: new ClusterSigner(parseKey(options.clusterKey, 'options.clusterKey'), cluster, this.network),
      }
    const signer = this.joined(cluster)
    if (signer !== undefined) return { signer }
    const key = this.creds.clusterKeys.get(cluster)
    if (key !== undefined) return { signer: new ClusterSigner(key, cluster, this.network) }
    const now = Date.now()
    const cap = this.creds.capabilities.find(
      (c) => grantRefusal(c.token, cluster, op, stream, now) === undefined,
    )
    return cap === undefined ? undefined : { capability: cap }
  }

  /** The call with a fresh proof made with `auth` (none: unchanged), encoded by `encode`. */
  prove(call: MetaCall, auth: AdminAuth | undefined, encode: (c: MetaCall) => Uint8Array): Uint8Array {
    if (auth === undefined || call.op === 'table') return encode(call)
    const unsigned = encode({ ...call, proof: undefined })
    return encode({ ...call, proof: signAdminProof(auth, unsigned, Date.now()) })
  }

  /**
   * What this node publishes to or reads (`op`) a capability stream `stream` of `cluster`
   * with (streams/access/grants.ts): `'member'` when it joined the cluster (members are always
   * allowed); else the call's `option`; else, with the cluster key in
   * `credentials.clusterKeys`, a capability it issues itself (all streams, publish and
   * consume, one hour; reissued before it expires); else the first of
   * `credentials.capabilities` that grants `op` on the stream and satisfies `fits` (its
   * subject covers the topic or the stream's subject); undefined when it has none.
   */
  dataCapability(
    cluster: string,
    op: 'publish' | 'consume',
    stream: string,
    fits: (c: Capability) => boolean,
    option: Capability | undefined,
  ): Capability | 'member' | undefined {
    if (this.joined(cluster) !== undefined) return 'member'
    if (option !== undefined) return option
    const now = Date.now()
    const key = this.creds.clusterKeys.get(cluster)
    if (key !== undefined) {
      let own = this.minted.get(cluster)
      if (own === undefined || own.token.expires - now < MINTED_RENEW_MS) {
        const text = issueCapability(
          key,
          { cluster, ops: ['publish', 'consume'], stream: '*', expires: now + MINTED_LIFETIME_MS },
          this.network,
        )
        own = parseCapability(text, `credentials.clusterKeys.${cluster}`)
        this.minted.set(cluster, own)
      }
      return own
    }
    return this.creds.capabilities.find(
      (c) => grantRefusal(c.token, cluster, op, stream, now) === undefined && fits(c),
    )
  }

  /** Capabilities issued with `credentials.clusterKeys`, per cluster. */
  private readonly minted = new Map<string, Capability>()
}

/** Lifetime of a capability a node issues itself from `credentials.clusterKeys` (ms). */
const MINTED_LIFETIME_MS = 3_600_000
/** Such a capability is reissued once less than this is left (ms). */
const MINTED_RENEW_MS = 600_000
