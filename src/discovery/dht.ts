/**
 * Clusters found across networks through the Kademlia DHT (`discovery.dht`).
 *
 * Members advertise every joined cluster as a DHT provider record under `clusterKey(network,
 * cluster)`, a CID derived from the two names only, so a node that knows nothing but a
 * cluster's name can look it up. The record proves nothing: a provider found is only dialled
 * through the normal dial path, and it becomes a member of the cluster for us only once its
 * signed announcement arrives over the link and passes the membership rules
 * (cluster/membership.ts, docs/security.md). A provider that is not a proven member gets no
 * traffic.
 *
 * Advertising (`advertise`/`withdraw`): provided at join, again every `DHT.provideInterval`
 * (jittered), and retried from `DHT.provideRetry` doubling while no peer took the record
 * (a node that has just started has an empty routing table). On leave our own record is
 * removed; the copies other nodes store expire after `DHT.recordTtl`.
 *
 * Lookups (`lookup`): at most one per cluster at a time and `DHT.maxLookups` in all, each
 * stopped after `DHT.lookupTimeout`, after `DHT.maxProviders` providers or when the node
 * stops; the outcome is reused for `DHT.cacheMs`. Providers found are dialled at once;
 * callers wait `DHT.reachWait` after a lookup that found some for their announcements.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { DHT } from '../constants.js'

/** The multicodec of raw bytes, and the multihash code of SHA-256. */
const RAW_CODEC = 0x55
const SHA2_256 = 0x12

/**
 * The DHT key of a cluster: a CIDv1 (raw codec) of SHA-256 over a domain tag, the network
 * name and the cluster name, so two networks never share a key and the key reveals neither
 * name. Names are checked by the caller (no NUL inside them).
 */
export function clusterKey(network: string, cluster: string): CID {
  const hash = createHash('sha256').update(`plexus-cluster/1\0${network}\0${cluster}`).digest()
  return CID.createV1(RAW_CODEC, createDigest(SHA2_256, new Uint8Array(hash)))
}

/** A provider found by a lookup. */
export interface FoundProvider {
  id: string
  addrs: string[]
}

/** What the DHT part needs from the node around it (a kad-dht service and the dialer). */
export interface DhtHost {
  network: string
  self: string
  /** Stores provider records for `key` pointing to us; resolves with how many peers took one. */
  provide(key: CID, signal: AbortSignal): Promise<number>
  /** Removes our own provider record for `key` (no more republishing). */
  withdraw(key: CID): Promise<void>
  /** Providers of `key` as the query finds them. */
  findProviders(key: CID, signal: AbortSignal): AsyncIterable<FoundProvider>
  /** True when the DHT has a peer to ask (else no lookup starts: it would find nothing). */
  ready(): boolean
  /** True when a link to `peer` is open. */
  linked(peer: string): boolean
  /** True when `peer` is already a proven member of `cluster` (found again, it is nothing new). */
  known(cluster: string, peer: string): boolean
  /** Dials `peer` through the discovery dial path (never throws). */
  dial(peer: string, addrs: string[]): void
  /** A lookup ended: callers waiting on it re-check. */
  changed(): void
  now?(): number
  /** Uniform in [0, 1) (tests pass a seeded one). */
  random?(): number
}

/** One cluster's lookup state. */
interface Lookup {
  cluster: string
  key: CID
  running: boolean
  ac: AbortController
  /** When it ended (ms), or 0 while running. */
  doneAt: number
  /** Providers found that were not known members (not this node). */
  found: number
  /** Providers dialled for it, not yet seen as members. */
  dialled: Set<string>
}

/** One joined cluster being advertised. */
interface Advert {
  key: CID
  timer: NodeJS.Timeout | undefined
  ac: AbortController | undefined
  /** Advertisements in a row that reached no peer (the retry backoff exponent). */
  misses: number
}

/** Counters shown in status and /metrics (`dht.*`). */
export interface DhtCounters {
  /** Lookups started. */
  lookups: number
  /** Distinct providers (not this node) returned by lookups. */
  providersFound: number
  /** Providers dialled by a lookup that then proved to be members of the cluster. */
  membersReached: number
  /** Advertisements that reached at least one peer. */
  provides: number
  /** Advertisements that reached no peer or failed. */
  provideMisses: number
}

/** Cluster advertising and lookups over the DHT (see the module doc). */
export class ClusterDht {
  private readonly lookups = new Map<string, Lookup>()
  private readonly adverts = new Map<string, Advert>()
  private running = 0
  private stopped = false
  private readonly now: () => number
  private readonly random: () => number
  readonly counters: DhtCounters = {
    lookups: 0,
    providersFound: 0,
    membersReached: 0,
    provides: 0,
    provideMisses: 0,
  }

  /** When this node started (ms; see `DHT.firstPeerWait`). */
  private readonly startedAt: number

  constructor(private readonly host: DhtHost) {
    this.now = host.now ?? Date.now
    this.random = host.random ?? Math.random
    this.startedAt = this.now()
  }

  /** Lookups running now. */
  get inFlight(): number {
    return this.running
  }

  /** Starts advertising `cluster` (joined): at once, then every `DHT.provideInterval`. */
  advertise(cluster: string): void {
    if (this.stopped || this.adverts.has(cluster)) return
    const a: Advert = {
      key: clusterKey(this.host.network, cluster),
      timer: undefined,
      ac: undefined,
      misses: 0,
    }
    this.adverts.set(cluster, a)
    void this.provide(cluster, a)
  }

  /** Stops advertising `cluster` (left) and removes our own record of it. */
  withdraw(cluster: string): void {
    const a = this.adverts.get(cluster)
    if (!a) return
    this.adverts.delete(cluster)
    this.cancel(a)
    this.host.withdraw(a.key).catch(() => {})
  }

  /**
   * A link came up: advertisements that have reached no peer yet are tried again now (the
   * routing table may have its first entries).
   */
  linkUp(): void {
    for (const [cluster, a] of this.adverts) {
      if (a.misses > 0 && a.ac === undefined) {
        clearTimeout(a.timer)
        void this.provide(cluster, a)
      }
    }
  }

  /**
   * A call addresses `cluster` and has no (reachable) member: true while it is worth waiting
   * for one found through the DHT. Starts a lookup unless one is running or a finished one is
   * still cached. True while it runs when `none` (no member of the cluster is known at all;
   * with known but unreachable members the call fails at once as before, and the lookup runs
   * for the next calls), and for `DHT.reachWait` after one that found providers that were
   * not known members (while they are dialled and announce themselves). False when the last
   * lookup found nothing new or when `DHT.maxLookups` are running. While the DHT has no peer
   * to ask yet, true (when `none`) during the node's first `DHT.firstPeerWait` ms (on a busy
   * machine the first peer can take longer than the call's 3 s discovery grace), and the next
   * check after the first DHT peer starts the lookup.
   */
  lookup(cluster: string, none = true): boolean {
    if (this.stopped) return false
    const now = this.now()
    const e = this.lookups.get(cluster)
    if (e?.running) return none
    if (e && now - e.doneAt < DHT.cacheMs) return e.found > 0 && now - e.doneAt < DHT.reachWait
    if (this.running >= DHT.maxLookups) return false
    if (!this.host.ready()) return none && now - this.startedAt < DHT.firstPeerWait
    this.start(cluster, e?.key ?? clusterKey(this.host.network, cluster))
    return none
  }

  /** `peer` was accepted as a member of `cluster`: counted when a lookup dialled it. */
  memberAdded(cluster: string, peer: string): void {
    const e = this.lookups.get(cluster)
    if (e?.dialled.delete(peer)) this.counters.membersReached++
  }

  /** Stops every lookup and advertisement (node stopping); records elsewhere expire. */
  stop(): void {
    this.stopped = true
    for (const e of this.lookups.values()) e.ac.abort()
    for (const a of this.adverts.values()) this.cancel(a)
    this.adverts.clear()
  }

  private cancel(a: Advert): void {
    clearTimeout(a.timer)
    a.timer = undefined
    a.ac?.abort()
    a.ac = undefined
  }

  private start(cluster: string, key: CID): void {
    const e: Lookup = {
      cluster,
      key,
      running: true,
      ac: new AbortController(),
      doneAt: 0,
      found: 0,
      dialled: new Set(),
    }
    this.lookups.delete(cluster) // re-inserted last: the map stays in age order
    this.lookups.set(cluster, e)
    if (this.lookups.size > DHT.maxEntries) this.evict()
    this.running++
    this.counters.lookups++
    void this.run(e)
  }

  /** Forgets the oldest finished lookup (running ones are bounded by `maxLookups`). */
  private evict(): void {
    for (const [cluster, e] of this.lookups) {
      if (!e.running) {
        this.lookups.delete(cluster)
        return
      }
    }
  }

  private async run(e: Lookup): Promise<void> {
    const signal = AbortSignal.any([e.ac.signal, AbortSignal.timeout(DHT.lookupTimeout)])
    const seen = new Set<string>()
    try {
      for await (const p of this.host.findProviders(e.key, signal)) {
        if (p.id === this.host.self || seen.has(p.id)) continue
        seen.add(p.id)
        this.counters.providersFound++
        if (this.host.known(e.cluster, p.id)) continue
        e.found++
        if (!this.host.linked(p.id)) {
          e.dialled.add(p.id)
          this.host.dial(p.id, p.addrs)
        }
        if (seen.size >= DHT.maxProviders) break
      }
    } catch {
      // Aborted, timed out or no peers to ask: what was found is kept.
    } finally {
      e.ac.abort() // ends the query when we stopped reading early
      e.running = false
      e.doneAt = this.now()
      this.running--
      this.host.changed()
    }
  }

  private async provide(cluster: string, a: Advert): Promise<void> {
    a.timer = undefined
    const ac = (a.ac = new AbortController())
    let reached = 0
    try {
      reached = await this.host.provide(
        a.key,
        AbortSignal.any([ac.signal, AbortSignal.timeout(DHT.provideTimeout)]),
      )
    } catch {
      reached = 0
    }
    if (a.ac !== ac || this.adverts.get(cluster) !== a) return // withdrawn or stopped meanwhile
    a.ac = undefined
    if (reached > 0) {
      this.counters.provides++
      a.misses = 0
    } else {
      this.counters.provideMisses++
      a.misses++
    }
    const delay =
      a.misses === 0
        ? DHT.provideInterval * (1 - 0.1 * this.random())
        : Math.min(DHT.provideInterval, DHT.provideRetry * 2 ** Math.min(a.misses - 1, 20))
    a.timer = setTimeout(() => void this.provide(cluster, a), delay)
    a.timer.unref()
  }
}
