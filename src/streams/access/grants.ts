/**
 * Publish/consume authorization of streams whose `access` asks for a capability
 * (docs/security.md, "Who may do what"), without a signature per message:
 *
 * - **Presenting** (caller, `GrantPresenter`): before the first publish or read with a
 *   capability on a member, the caller sends it that capability once (`s.grant`, body
 *   `signPresentation` of cluster/capability.ts: the token and the holder's signature over
 *   the caller's and the member's peer ids and the time). Each later `s.pub`, `s.fetch` and
 *   `s.cons` call carries only the token's hash (`GRANT_HASH_BYTES`). A call refused with
 *   `UnauthorizedError` is presented again and sent once more (the member may have restarted
 *   or forgotten it); a presentation refused is the caller's answer.
 * - **Checking** (member, `GrantCache` and `dataRefusal`): the member verifies a presentation
 *   (the cluster's signature on the token, expiry, the holder's signature, which names the
 *   presenting peer that noise proved) and keeps the token per (peer, hash): at most
 *   `GRANTS.perPeer` per peer (the oldest forgotten) and `GRANTS.total` in all (more are
 *   refused with `OverloadedError`), forgotten when the peer's link goes down or at expiry.
 *   A call is then allowed when the stream's access for the operation is open, the caller is
 *   this node or a proven member of the stream's cluster (it holds the cluster key), or the
 *   hash it carries names a token this peer presented that grants the operation on the stream,
 *   has not expired, and covers the topic (publish, per message) or the stream's subject
 *   (consume). Nothing else is appended or returned: `UnauthorizedError`.
 *
 * A hash only ever refers to what the same peer presented, so a peer cannot use another
 * peer's capability by naming its hash (and a relay node uses only the capability its client
 * sent with that call, or the node's own credentials).
 */
import { createHash } from 'node:crypto'
import {
  type Capability,
  type CapabilityToken,
  checkPresentation,
  grantRefusal,
  parseCapability,
  signPresentation,
} from '../../cluster/capability.js'
import type { ClusterSigner } from '../../cluster/proof.js'
import { GRANTS } from '../../constants.js'
import { OverloadedError, UnauthorizedError } from '../../errors.js'
import { matches, patternCovers } from '../../pubsub/subject.js'
import type { PeerRpc } from '../../rpc/rpc.js'
import { accessOf, type StreamSpec } from '../meta/metadata-codec.js'
import type { AdminCredentials } from './authz.js'

/** Bytes of the token hash a call carries. */
export const GRANT_HASH_BYTES = 16

/** A capability a caller publishes or reads with, and the hash its calls carry. */
export interface DataAuth {
  capability: Capability
  hash: Uint8Array
  /** The hash in hex (map key). */
  key: string
}

const authOf = new WeakMap<Capability, DataAuth>()

/** The `DataAuth` of a parsed capability (computed once per capability object). */
export function dataAuth(capability: Capability): DataAuth {
  let a = authOf.get(capability)
  if (a === undefined) {
    const hash = tokenHash(capability.token.bytes)
    a = { capability, hash, key: Buffer.from(hash).toString('hex') }
    authOf.set(capability, a)
  }
  return a
}

/** The hash calls carry for `token`: the first `GRANT_HASH_BYTES` of its SHA-256. */
export function tokenHash(token: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(token).digest().subarray(0, GRANT_HASH_BYTES))
}

/** Capabilities peers presented to this member; see the module doc. */
export class GrantCache {
  private readonly byPeer = new Map<string, Map<string, CapabilityToken>>()
  private size = 0

  constructor(private readonly bounds: { perPeer: number; total: number } = GRANTS) {}

  /** Tokens held now (for status). */
  get held(): number {
    return this.size
  }

  /**
   * Serves `s.grant` from `from`: verifies the presentation (see `checkPresentation`) and
   * keeps its token. Throws `UnauthorizedError` (why) or `OverloadedError` (cache full).
   */
  present(
    body: Uint8Array,
    from: string,
    self: string,
    signerOf: (cluster: string) => ClusterSigner | undefined,
    now: number,
  ): void {
    const t = checkPresentation(body, from, self, signerOf, now)
    if (typeof t === 'string') throw new UnauthorizedError(t)
    const key = Buffer.from(tokenHash(t.bytes)).toString('hex')
    let mine = this.byPeer.get(from)
    if (mine === undefined) this.byPeer.set(from, (mine = new Map()))
    for (const [k, old] of mine) if (now > old.expires) this.remove(mine, k)
    if (mine.has(key))
      this.remove(mine, key) // re-inserted: newest last
    else if (this.size >= this.bounds.total) {
      if (mine.size === 0) this.byPeer.delete(from)
      throw new OverloadedError(`this member holds ${this.bounds.total} presented capabilities`)
    }
    if (mine.size >= this.bounds.perPeer) this.remove(mine, mine.keys().next().value!)
    mine.set(key, t)
    this.size++
  }

  /** The token `peer` presented with hash `hash`, unless expired at `now` (then forgotten). */
  get(peer: string, hash: Uint8Array, now: number): CapabilityToken | undefined {
    const mine = this.byPeer.get(peer)
    if (mine === undefined) return undefined
    const key = Buffer.from(hash).toString('hex')
    const t = mine.get(key)
    if (t !== undefined && now > t.expires) {
      this.remove(mine, key)
      return undefined
    }
    return t
  }

  /** Forgets everything `peer` presented (its link went down). */
  dropPeer(peer: string): void {
    const mine = this.byPeer.get(peer)
    if (mine === undefined) return
    this.size -= mine.size
    this.byPeer.delete(peer)
  }

  private remove(mine: Map<string, CapabilityToken>, key: string): void {
    if (mine.delete(key)) this.size--
  }
}

/** What a caller may do on a stream, as `dataRefusal` found it. */
export type DataGrant =
  /** Everything (open access, or a member). */
  | undefined
  /** Through a capability: publish only to topics its `subject` matches ('' any). */
  | { subject: string }

/**
 * The member's check of a `publish` or `consume` call from `from` on stream `spec` of
 * `cluster`, carrying the token hash `hash` (absent: none). Returns what is allowed, or
 * throws `UnauthorizedError` naming why not. Cheap: map lookups, no signature.
 */
export function dataRefusal(
  spec: StreamSpec,
  cluster: string,
  op: 'publish' | 'consume',
  from: string,
  isMember: (peer: string) => boolean,
  grants: GrantCache,
  hash: Uint8Array | undefined,
  now: number,
): DataGrant {
  if (accessOf(spec)[op] === 'open' || isMember(from)) return undefined
  const what = `${op} on stream "${spec.name}" of cluster ${cluster}`
  if (hash === undefined)
    throw new UnauthorizedError(
      `${what} needs a capability granting ${op} (plexus keygen --capability ${op}; pass it with the call's capability option or the node's credentials), or membership of the cluster`,
    )
  const t = grants.get(from, hash, now)
  if (t === undefined)
    throw new UnauthorizedError(`${what}: the capability was not presented to this member (or expired)`)
  const refused = grantRefusal(t, cluster, op, spec.name, now)
  if (refused !== undefined) throw new UnauthorizedError(`${what}: ${refused}`)
  const subject = t.subject ?? ''
  if (op === 'consume' && subject !== '' && !patternCovers(subject, spec.subject))
    throw new UnauthorizedError(
      `${what}: the capability's subject ${subject} does not cover the stream's subject ${spec.subject}`,
    )
  return { subject }
}

/** The member side for `StreamService`: presentations in, per-call checks, counted refusals. */
export class DataGate {
  private readonly grants = new GrantCache()

  constructor(
    private readonly d: {
      self: string
      /** Proven members of a cluster. */
      members(cluster: string): string[]
      signer(cluster: string): ClusterSigner | undefined
      count(name: string): void
    },
  ) {}

  /** Serves `s.grant` from `from` (see `GrantCache.present`). */
  present(body: Uint8Array, from: string): void {
    this.grants.present(body, from, this.d.self, (c) => this.d.signer(c), Date.now())
  }

  /**
   * Whether `from` may `op` on stream `spec` of `cluster` (`dataRefusal`; this node and proven
   * members always may): what it may do, or `UnauthorizedError` thrown and counted
   * `streams.refused.<op>`.
   */
  check(
    spec: StreamSpec,
    cluster: string,
    op: 'publish' | 'consume',
    from: string,
    auth: Uint8Array | undefined,
  ): DataGrant {
    const member = (p: string) => p === this.d.self || this.d.members(cluster).includes(p)
    try {
      return dataRefusal(spec, cluster, op, from, member, this.grants, auth, Date.now())
    } catch (err) {
      this.d.count(`streams.refused.${op}`)
      throw err
    }
  }

  /** The link to `peer` went down: what it presented is forgotten. */
  dropPeer(peer: string): void {
    this.grants.dropPeer(peer)
  }
}

/** Most per-call capabilities (`capability` options) a node keeps parsed. */
const MAX_PARSED_CAPABILITIES = 256

/** The caller side's choice of what a publish or read carries (client.ts, consumers). */
export class DataCredentials {
  /** Per-call capability options, parsed (parsing derives a key: not per message). */
  private readonly parsed = new Map<string, Capability>()

  constructor(private readonly admin: AdminCredentials) {}

  /** Parses a call's `capability` option (`InvalidArgumentError` naming `field`), cached. */
  option(text: unknown, field: string): Capability | undefined {
    if (text === undefined) return undefined
    const hit = typeof text === 'string' ? this.parsed.get(text) : undefined
    if (hit !== undefined) return hit
    const c = parseCapability(text, field)
    if (this.parsed.size >= MAX_PARSED_CAPABILITIES) this.parsed.delete(this.parsed.keys().next().value!)
    this.parsed.set(text as string, c)
    return c
  }

  /**
   * What calls to `op` on stream `spec` of `cluster` carry: nothing for an open stream or
   * when the node is a member, else the capability `AdminCredentials.dataCapability` chooses
   * (the call's `option` first). `topic`: the publish's topic.
   */
  pick(
    cluster: string,
    spec: StreamSpec,
    op: 'publish' | 'consume',
    option: Capability | undefined,
    topic?: string,
  ): DataAuth | undefined {
    if (accessOf(spec)[op] === 'open') return undefined
    const fits = (c: Capability) => {
      const sub = c.token.subject
      if (sub === undefined) return true
      return topic !== undefined ? matches(sub, topic) : patternCovers(sub, spec.subject)
    }
    const c = this.admin.dataCapability(cluster, op, spec.name, fits, option)
    return c === undefined || c === 'member' ? undefined : dataAuth(c)
  }
}

/** Whether a publish grant allows `topic`. */
export function topicAllowed(grant: DataGrant, topic: string): boolean {
  return grant === undefined || grant.subject === '' || matches(grant.subject, topic)
}

/** Options of one internal call. */
interface CallOptions {
  timeout: number
  signal?: AbortSignal
}

/** The caller side: presents capabilities to members once and sends calls; see the module doc. */
export class GrantPresenter {
  /** Presentations done or under way, by `peer hash`. */
  private readonly presented = new Map<string, Promise<void>>()
  /** Those accepted (a subset of `presented`). */
  private readonly done = new Set<string>()

  constructor(private readonly d: { self: string; rpc: PeerRpc; maxEntries?: number }) {}

  /**
   * Calls `method` on `peer` with `body` (which carries `auth.hash` when `auth` is set),
   * presenting `auth` first when not yet presented there, and once more (then sending again)
   * when the call is refused with `UnauthorizedError`.
   */
  async call(
    peer: string,
    method: string,
    body: Uint8Array,
    opts: CallOptions,
    auth: DataAuth | undefined,
  ): Promise<Uint8Array> {
    if (auth === undefined) return this.d.rpc.call(peer, method, body, opts)
    // Already presented: no await before the call (publish latency stays as without one).
    if (!this.done.has(`${peer} ${auth.key}`)) await this.present(peer, auth, opts, false)
    try {
      return await this.d.rpc.call(peer, method, body, opts)
    } catch (err) {
      if (!(err instanceof UnauthorizedError)) throw err
      await this.present(peer, auth, opts, true)
      return this.d.rpc.call(peer, method, body, opts)
    }
  }

  /** Forgets what was presented to `peer` (its link went down: it forgot too). */
  onLinkDown(peer: string): void {
    const prefix = `${peer} `
    for (const k of [...this.presented.keys()])
      if (k.startsWith(prefix)) {
        this.presented.delete(k)
        this.done.delete(k)
      }
  }

  private present(peer: string, auth: DataAuth, opts: CallOptions, again: boolean): Promise<void> {
    const k = `${peer} ${auth.key}`
    let p = again ? undefined : this.presented.get(k)
    if (p === undefined) {
      const body = signPresentation(auth.capability, this.d.self, peer, Date.now())
      this.done.delete(k)
      const sent: Promise<void> = this.d.rpc.call(peer, 's.grant', body, opts).then(() => {
        if (this.presented.get(k) === sent) this.done.add(k)
      })
      p = sent
      if (this.presented.size >= (this.d.maxEntries ?? GRANTS.total)) {
        const oldest = this.presented.keys().next().value!
        this.presented.delete(oldest)
        this.done.delete(oldest)
      }
      this.presented.set(k, p)
      p.catch(() => {
        if (this.presented.get(k) === p) this.presented.delete(k)
      })
    }
    return p
  }
}
