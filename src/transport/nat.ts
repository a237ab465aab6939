/**
 * Reachability and circuit relay use of one node (a libp2p service, `services.nat`).
 *
 * - **Reachability.** Identify tells us, on every direct connection, the address the peer
 *   sees us at. Seen at an address that is not one of our interfaces' (or a loopback peer):
 *   the traffic went through a NAT, so we are `private`. Seen at our own address: `public`
 *   (no translation between us), and so is an address AutoNAT confirmed (public addresses
 *   only: AutoNAT never checks private ones, so on a private network the first rule decides).
 *   A `private` sighting wins over `public` ones (a LAN peer sees our own address while the
 *   rest of the world sees the NAT's).
 * - **Reservations.** With `reserve: 'always'`, or `'auto'` once we are `private`, we listen
 *   on `/p2p-circuit` `reservations` times: libp2p's reservation store then takes a slot on
 *   relay servers we are connected to (any peer whose identify lists the hop protocol) and
 *   finds another when one goes away. Our relayed addresses join `getMultiaddrs()`, so the
 *   membership announcements carry them (`onAddressesChanged`).
 * - **Upgrades.** A relayed connection is limited (the relay's data and duration limits) and
 *   slow; when one opens, we try a direct connection to the peer's non-relayed addresses (the
 *   NATed end dialling out to a reachable peer always works; libp2p's DCUtR also hole-punches
 *   where both ends have public addresses). As soon as a direct connection to a peer exists,
 *   its relayed connections are closed, so its link reopens on the direct one (a link moves
 *   in about 200 ms; frames already sent on the relayed one are lost like on any link drop).
 *   Why a peer is still relayed is kept per peer for `status()`.
 * - **Relay server gate** (`gater`): a relay serves only peers that speak our network's link
 *   protocol, so nodes of other networks cannot use our relays.
 *
 * Bounded: one reason per connected peer (dropped when its connections close) and at most
 * `CIRCUIT_RELAY.maxObservations` address sightings.
 */
import { networkInterfaces } from 'node:os'
import type { Connection, IdentifyResult, PeerId, PeerStore } from '@libp2p/interface'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { CIRCUIT_RELAY } from '../constants.js'
import type { NatStatus } from '../types.js'

/** What the service needs from libp2p (its components). */
export interface NatComponents {
  peerId: PeerId
  peerStore: PeerStore
  events: EventTarget
  connectionManager: {
    getConnections(peer?: PeerId): Connection[]
    openConnection(addrs: Multiaddr[], options: { signal: AbortSignal; force: boolean }): Promise<Connection>
  }
  transportManager: { listen(addrs: Multiaddr[]): Promise<void> }
  addressManager: {
    getAddresses(): Multiaddr[]
    getAddressesWithMetadata(): Array<{ multiaddr: Multiaddr; verified: boolean; type: string }>
  }
}

/** Settings of the service. */
export interface NatInit {
  /** Our network's link protocol: relays serve only peers that speak it. */
  linkProtocol: string
  reserve: 'auto' | 'always' | 'never'
  reservations: number
  /** This node runs the relay server (hop). */
  server: boolean
  /** Counts events (`nat.*` counters in status). */
  count?: (counter: string) => void
  /** Our relayed addresses changed (re-announce). */
  onAddressesChanged?: () => void
  /** Bytes sent and received on the link to `peer` so far (grows with traffic). */
  activity?: (peer: string) => number
  /** True while requests to or from `peer` are unanswered. */
  busy?: (peer: string) => boolean
  /** Opens the link to `peer` (on the direct connection, once the relayed one closed). */
  relink?: (peer: PeerId) => void
}

/** libp2p events after which our addresses may have changed. */
const ADDRESS_EVENTS = ['self:peer:update', 'transport:listening', 'transport:close']

/** True when `ma` goes through a circuit relay. */
export function isRelayed(ma: Multiaddr | string): boolean {
  return ma.toString().includes('/p2p-circuit')
}

/** The IP of a `/ip4/...` or `/ip6/...` multiaddr, or undefined. */
function ipOf(ma: Multiaddr): string | undefined {
  const c = ma.getComponents()[0]
  return c && (c.name === 'ip4' || c.name === 'ip6') ? c.value : undefined
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1'
}

/** The NAT service (see the module doc). */
export class NatService {
  private reachability: NatStatus['reachability'] = 'unknown'
  private reason = 'no peer has told us the address it sees us at yet'
  /** Latest sightings: peer → IP it sees us at, and whether that IP is ours. */
  private readonly sightings = new Map<string, { ip: string; ours: boolean }>()
  /** Why a peer's link is still relayed. */
  private readonly relayedWhy = new Map<string, string>()
  private reserving = false
  private stopped = false
  private lastAddrs = ''
  private readonly count: (counter: string) => void
  private readonly timers = new Set<NodeJS.Timeout>()
  /** Pending direct-connection attempts, by relayed connection id. */
  private readonly upgrading = new Map<string, { timer: NodeJS.Timeout; failures: number }>()

  constructor(
    private readonly c: NatComponents,
    private readonly init: NatInit,
  ) {
    this.count = init.count ?? (() => {})
  }

  readonly [Symbol.toStringTag] = 'plexus-nat'

  start(): void {
    this.c.events.addEventListener('peer:identify', this.onIdentify)
    this.c.events.addEventListener('connection:open', this.onOpen)
    this.c.events.addEventListener('connection:close', this.onClose)
    // A relay listener says `listening` once its address is confirmed (self:peer:update comes
    // from a debounced peer store write that does not always follow).
    for (const e of ADDRESS_EVENTS) this.c.events.addEventListener(e, this.onSelfUpdate)
  }

  afterStart(): void {
    if (this.init.reserve === 'always') this.startReserving('reserve: always')
  }

  stop(): void {
    this.stopped = true
    this.c.events.removeEventListener('peer:identify', this.onIdentify)
    this.c.events.removeEventListener('connection:open', this.onOpen)
    this.c.events.removeEventListener('connection:close', this.onClose)
    for (const e of ADDRESS_EVENTS) this.c.events.removeEventListener(e, this.onSelfUpdate)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.upgrading.clear()
  }

  /** Reachability, reservations and served slots (`serving` is filled by the caller). */
  status(): Omit<NatStatus, 'serving'> {
    const reservations = new Set<string>()
    for (const a of this.c.addressManager.getAddressesWithMetadata()) {
      const s = a.multiaddr.toString()
      const i = s.indexOf('/p2p-circuit')
      if (i < 0) continue
      const relay = s.slice(0, i).split('/p2p/').pop()
      if (relay) reservations.add(relay)
    }
    this.refreshReachability()
    return { reachability: this.reachability, reason: this.reason, reservations: [...reservations] }
  }

  /** Why the link to `peer` is relayed (undefined when it is not known to be). */
  relayedReason(peer: string): string | undefined {
    return this.relayedWhy.get(peer)
  }

  /**
   * Relay server gate: a reservation, or a circuit through us, only for peers that speak our
   * network's link protocol (identify lists it; identify runs before any hop request).
   */
  async foreign(peer: PeerId): Promise<boolean> {
    try {
      const p = await this.c.peerStore.get(peer)
      return !p.protocols.includes(this.init.linkProtocol)
    } catch {
      return true
    }
  }

  private readonly onIdentify = (evt: Event): void => {
    const r = (evt as CustomEvent<IdentifyResult>).detail
    if (r.connection.limits != null) {
      // Identify over a relayed connection: the peer's listen addresses are known now.
      this.scheduleUpgrade(r.peerId, r.connection, 0, 0)
      return
    }
    if (r.observedAddr === undefined) return
    const seen = ipOf(r.observedAddr)
    const from = ipOf(r.connection.remoteAddr)
    if (seen === undefined || from === undefined || isLoopback(from)) return
    const ours = localIps().has(seen)
    const peer = r.peerId.toString()
    this.sightings.delete(peer)
    this.sightings.set(peer, { ip: seen, ours })
    if (this.sightings.size > CIRCUIT_RELAY.maxObservations)
      this.sightings.delete(this.sightings.keys().next().value!)
    this.refreshReachability()
  }

  private refreshReachability(): void {
    const before = this.reachability
    const nat = [...this.sightings.entries()].find(([, s]) => !s.ours)
    const direct = [...this.sightings.entries()].find(([, s]) => s.ours)
    const confirmed = this.c.addressManager
      .getAddressesWithMetadata()
      .find((a) => a.verified && a.type === 'observed' && !isRelayed(a.multiaddr))
    if (nat) {
      this.reachability = 'private'
      this.reason = `peer ${short(nat[0])} sees us at ${nat[1].ip}, not an address of ours (NAT)`
    } else if (confirmed) {
      this.reachability = 'public'
      this.reason = `AutoNAT: peers dialled us at ${confirmed.multiaddr.toString()}`
    } else if (direct) {
      this.reachability = 'public'
      this.reason = `peer ${short(direct[0])} sees us at our own address ${direct[1].ip} (no NAT between)`
    }
    if (this.reachability === 'private' && before !== 'private') {
      this.count('nat.private')
      if (this.init.reserve === 'auto') this.startReserving(this.reason)
    }
  }

  /** Listens on `/p2p-circuit` `reservations` times (once per node). */
  private startReserving(_why: string): void {
    if (this.reserving || this.stopped) return
    this.reserving = true
    const addrs = Array.from({ length: this.init.reservations }, () => multiaddr('/p2p-circuit'))
    this.c.transportManager.listen(addrs).catch(() => this.count('nat.reserveFailed'))
  }

  private readonly onSelfUpdate = (): void => {
    // What `getMultiaddrs()` (and so our announcements) carries.
    const relayed = this.c.addressManager
      .getAddresses()
      .map((a) => a.toString())
      .filter(isRelayed)
      .sort()
      .join(' ')
    if (relayed === this.lastAddrs) return
    this.lastAddrs = relayed
    this.init.onAddressesChanged?.()
  }

  private readonly onOpen = (evt: Event): void => {
    const conn = (evt as CustomEvent<Connection>).detail
    const peer = conn.remotePeer
    const key = peer.toString()
    const conns = this.c.connectionManager.getConnections(peer)
    if (conn.limits == null) {
      // A direct connection: relayed ones to the same peer are no longer needed.
      const relayed = conns.filter((c) => c.limits != null && c.status === 'open')
      if (relayed.length > 0) {
        this.count('nat.upgraded')
        this.relayedWhy.set(key, 'moving to a direct connection')
        this.closeWhenQuiet(peer, relayed)
      }
      return
    }
    this.count('nat.relayedConnections')
    if (conns.some((c) => c.limits == null && c.status === 'open')) {
      // Already direct (a crossed dial): the relayed one is surplus.
      void conn.close().catch(() => {})
      return
    }
    this.relayedWhy.set(key, 'trying a direct connection')
    // Tried when identify has run on it (onIdentify), or after `upgradeDelay` without it.
    this.scheduleUpgrade(peer, conn, CIRCUIT_RELAY.upgradeDelay, 0)
  }

  /**
   * Tries a direct connection to `peer` in `delay` ms (once per relayed connection at a time);
   * after a failure, again after `upgradeRetry` ms, doubling up to `upgradeRetryMax`, while
   * the relayed connection stays open.
   */
  private scheduleUpgrade(peer: PeerId, relayed: Connection, delay: number, failures: number): void {
    const pending = this.upgrading.get(relayed.id)
    if (pending !== undefined) {
      if (delay > 0 || pending.failures > 0) return
      clearTimeout(pending.timer) // identify came first: try now
      this.timers.delete(pending.timer)
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      void this.upgrade(peer, relayed).then((ok) => {
        this.upgrading.delete(relayed.id)
        if (!ok && !this.stopped && relayed.status === 'open') {
          const wait = Math.min(CIRCUIT_RELAY.upgradeRetry * 2 ** failures, CIRCUIT_RELAY.upgradeRetryMax)
          this.scheduleUpgrade(peer, relayed, wait, failures + 1)
        }
      })
    }, delay)
    this.timers.add(timer)
    this.upgrading.set(relayed.id, { timer, failures })
  }

  private readonly onClose = (evt: Event): void => {
    const conn = (evt as CustomEvent<Connection>).detail
    const pending = this.upgrading.get(conn.id)
    if (pending) {
      clearTimeout(pending.timer)
      this.timers.delete(pending.timer)
      this.upgrading.delete(conn.id)
    }
    if (this.c.connectionManager.getConnections(conn.remotePeer).length === 0)
      this.relayedWhy.delete(conn.remotePeer.toString())
  }

  /**
   * Closes `relayed` (the link then reopens on the direct connection) once the link to `peer`
   * carried nothing for `moveQuietMs` with no request unanswered either way, or after
   * `moveMaxWaitMs`: a frame in flight on it when it closes is lost like on any link drop
   * (and a tunnel over it ends), so the move waits for a pause.
   */
  private closeWhenQuiet(peerId: PeerId, relayed: Connection[]): void {
    const peer = peerId.toString()
    const activity = this.init.activity ?? (() => 0)
    const busy = this.init.busy ?? (() => false)
    const started = Date.now()
    let last = activity(peer)
    let quietSince = started
    const tick = () => {
      if (this.stopped) return
      const now = Date.now()
      const a = activity(peer)
      if (a !== last || busy(peer)) {
        last = a
        quietSince = now
      }
      if (now - quietSince >= CIRCUIT_RELAY.moveQuietMs || now - started >= CIRCUIT_RELAY.moveMaxWaitMs) {
        this.relayedWhy.delete(peer)
        const closing = relayed.map((r) =>
          r.close().catch(() => r.abort(new Error('replaced by a direct connection'))),
        )
        // The link reopens on the direct connection now, not after the link layer's pause.
        void Promise.all(closing).then(() => {
          if (!this.stopped) this.init.relink?.(peerId)
        })
        return
      }
      const t = setTimeout(() => {
        this.timers.delete(t)
        tick()
      }, 25)
      this.timers.add(t)
    }
    tick()
  }

  /** Tries a direct connection to a peer we reached through a relay; true when one opened. */
  private async upgrade(peer: PeerId, relayed: Connection): Promise<boolean> {
    if (this.stopped || relayed.status !== 'open') return true
    const key = peer.toString()
    let addrs: Multiaddr[] = []
    try {
      addrs = (await this.c.peerStore.get(peer)).addresses
        .map((a) => a.multiaddr)
        .filter((ma) => !isRelayed(ma) && ipOf(ma) !== undefined && !isLoopback(ipOf(ma)!))
        .map((ma) => (ma.getComponents().some((c) => c.name === 'p2p') ? ma : ma.encapsulate(`/p2p/${key}`)))
    } catch {
      // not in the peer store: no address
    }
    if (addrs.length === 0) {
      this.relayedWhy.set(key, 'no direct address of the peer is known')
      return false
    }
    try {
      await this.c.connectionManager.openConnection(addrs, {
        signal: AbortSignal.timeout(CIRCUIT_RELAY.upgradeTimeout),
        force: true,
      })
      // onOpen closes the relayed connection.
      return true
    } catch (err) {
      if (this.stopped) return true
      this.count('nat.directFailed')
      const punch = addrs.some((a) => !isPrivateIp(ipOf(a)!))
        ? 'DCUtR hole punching did not replace it either'
        : 'no public address for DCUtR hole punching'
      if (relayed.status === 'open')
        this.relayedWhy.set(
          key,
          `direct dial to ${addrs.map(String).join(' ')} failed (${(err as Error).name}); ${punch}`,
        )
      return false
    }
  }
}

/** The IPs of this host's interfaces (inside a network namespace: the namespace's). */
function localIps(): Set<string> {
  const out = new Set<string>()
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) out.add(i.address)
  return out
}

/** RFC 1918, link-local, CGNAT and unique-local ranges (what DCUtR will not punch to). */
function isPrivateIp(ip: string): boolean {
  return /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|169\.254\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.|f[cd]|fe80)/i.test(
    ip,
  )
}

function short(peer: string): string {
  return peer.slice(-8)
}
