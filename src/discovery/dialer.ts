/**
 * Turns discovery into connections: dials peers found on this host, by mDNS or announced
 * as members, and keeps dialling `bootstrap` addresses while they are not linked. Peers whose
 * link drops are dialled again with backoff and jitter (`redial.ts`) while they are still
 * wanted; on this host, the lower peer id dials first so two nodes do not cross their dials.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { CIRCUIT_RELAY, LINK, LOG_RATE_INTERVAL } from '../constants.js'
import type { PlexusLibp2p } from '../transport/libp2p.js'
import { isRelayed } from '../transport/nat.js'
import type { Logger } from '../types.js'
import { errFields, RateLimitedLog, SILENT_LOGGER } from '../util/logger.js'
import { LocalDiscovery } from './local.js'
import { Redialer } from './redial.js'

/** How long the higher peer id waits for the lower one to dial (ms). */
const CROSS_DIAL_DELAY = 1500
/** Bootstrap re-dial interval while unlinked (ms). */
const BOOTSTRAP_INTERVAL = 5000

/** What the dialer needs from the node. */
export interface DialerHost {
  libp2p: PlexusLibp2p
  network: string
  networkKey: Uint8Array | undefined
  /** True when a link to the peer is open. */
  linked(peer: string): boolean
  /** Opens the link once connected. */
  ensureLink(peer: PeerId): Promise<unknown>
  count(counter: string): void
  /**
   * False when the link policy does not want a link to `peer` (bounded links, src/overlay/):
   * discovery and healing then leave it alone. Default: every peer is dialled.
   */
  shouldDial?(peer: string): boolean
  /** Every peer discovery finds (same host, mDNS, libp2p discovery, announced members), with its addresses. */
  found?(peer: string, addrs: string[]): void
  /**
   * Where failed dials are logged: a bootstrap address at warn (at most once per address per
   * `LOG_RATE_INTERVAL`), a discovered or announced peer at debug. Default silent.
   */
  logger?: Logger
}

/** Discovery-to-connection glue (start/stop). */
export class Dialer {
  private readonly redial: Redialer
  private readonly firstSeen = new Map<string, number>()
  private local: LocalDiscovery | undefined
  private bootstrapTimer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly onDiscovery = (evt: CustomEvent) => {
    const info = evt.detail as { id: PeerId; multiaddrs: Multiaddr[] }
    if (info.id.equals(this.host.libp2p.peerId) || this.stopped) return
    const addrs = info.multiaddrs.map((m) => m.toString())
    this.host.found?.(info.id.toString(), addrs)
    this.redial.found(info.id.toString(), addrs)
  }

  private readonly log: Logger
  private readonly limited: RateLimitedLog

  constructor(private readonly host: DialerHost) {
    this.log = host.logger ?? SILENT_LOGGER
    this.limited = new RateLimitedLog(this.log, LOG_RATE_INTERVAL)
    this.redial = new Redialer({
      linked: (peer) => this.host.linked(peer),
      dial: (peer, addrs) => this.dial(peer, addrs),
      shouldDial: host.shouldDial && ((peer) => host.shouldDial!(peer)),
      self: host.libp2p.peerId.toString(),
    })
  }

  /** `peer` is a member of a cluster (announced with `addrs`): dialled now and kept linked. */
  member(peer: string, addrs: string[]): void {
    if (this.stopped || peer === this.host.libp2p.peerId.toString()) return
    this.host.found?.(peer, addrs)
    this.redial.member(peer, addrs)
  }

  /**
   * An mDNS answer from `peer`: it is reachable now, so it is wanted again and, when unlinked,
   * dialled soon even during a backoff (`Redialer.heard`).
   */
  mdnsFound(peer: string, addrs: string[]): void {
    if (this.stopped || peer === this.host.libp2p.peerId.toString()) return
    this.host.found?.(peer, addrs)
    this.redial.found(peer, addrs)
    this.redial.heard(peer, addrs)
  }

  /**
   * A provider of a cluster found in the DHT (`dht.ts`): its record is fresh, so it is dialled
   * like an mDNS answer; with bounded links, when the link policy does not want it as a
   * neighbour, it is dialled once all the same (an on-demand link: its announcements come with
   * the link, and the link closes when idle).
   */
  providerFound(peer: string, addrs: string[]): void {
    this.mdnsFound(peer, addrs)
    if (!this.stopped && this.host.shouldDial?.(peer) === false && !this.host.linked(peer))
      void this.dial(peer, addrs)
  }

  /** A fresh announcement of member `peer` arrived: dialled soon if unlinked (`Redialer.heard`). */
  heard(peer: string, addrs: string[]): void {
    this.redial.heard(peer, addrs)
  }

  /** `peer` is no longer a member of any known cluster: redialled only while otherwise wanted. */
  notMember(peer: string): void {
    this.redial.notMember(peer)
  }

  /** A link came up (see `Redialer.linkUp`). */
  linkUp(peer: string): void {
    this.redial.linkUp(peer)
  }

  /** A link closed: the peer is dialled again with backoff while wanted. */
  linkDown(peer: string): void {
    if (!this.stopped) this.redial.linkDown(peer)
  }

  /** True when `peer` has no link and its last dial failed. */
  unreachable(peer: string): boolean {
    return this.redial.unreachable(peer)
  }

  async start(opts: { local: boolean; bootstrap: string[] }): Promise<void> {
    const self = this.host.libp2p.peerId.toString()
    this.host.libp2p.addEventListener('peer:discovery', this.onDiscovery as never)
    if (opts.local) {
      this.local = new LocalDiscovery({
        network: this.host.network,
        networkKey: this.host.networkKey,
        self,
        addresses: () => this.localAddresses(),
        found: (peer) => {
          this.host.found?.(peer.id, peer.addrs)
          if (this.host.linked(peer.id)) return
          const seen = this.firstSeen.get(peer.id) ?? Date.now()
          this.firstSeen.set(peer.id, seen)
          if (self < peer.id || Date.now() - seen >= CROSS_DIAL_DELAY) this.redial.found(peer.id, peer.addrs)
        },
      })
      await this.local.start()
    }
    if (opts.bootstrap.length > 0) {
      const dialBootstrap = () => {
        for (const a of opts.bootstrap) {
          const ma = multiaddr(a)
          const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value
          if (peer && (this.host.linked(peer) || this.host.shouldDial?.(peer) === false)) continue
          this.host.libp2p.dial(ma, { signal: AbortSignal.timeout(LINK.openTimeout) }).catch((err) => {
            this.host.count('dials.failed')
            if (!this.stopped)
              this.limited.log('warn', a, { address: a, ...errFields(err) }, 'bootstrap address unreachable')
          })
        }
      }
      dialBootstrap()
      this.bootstrapTimer = setInterval(dialBootstrap, BOOTSTRAP_INTERVAL)
      this.bootstrapTimer.unref()
    }
  }

  private localAddresses(): string[] {
    const all = this.host.libp2p.getMultiaddrs().map((a) => a.toString())
    const loop = all.filter((a) => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/'))
    return loop.length > 0 ? loop : all
  }

  /**
   * Dials `peer` now (adding `addrs` to what libp2p knows of it) and opens the link; resolves
   * true when the link is open (never rejects). The overlay's own dials (neighbours, on-demand
   * links) go through here.
   */
  dialNow(peer: string, addrs: string[]): Promise<boolean> {
    return this.dial(peer, addrs)
  }

  /** Dials a peer and opens the link; resolves true when the link is open (never rejects). */
  private async dial(peer: string, addrs: string[]): Promise<boolean> {
    if (this.stopped || peer === this.host.libp2p.peerId.toString()) return false
    let id: PeerId
    try {
      id = peerIdFromString(peer)
    } catch {
      return false
    }
    const mas: Multiaddr[] = []
    for (const a of addrs) {
      try {
        mas.push(multiaddr(a))
      } catch {
        // skip malformed addresses
      }
    }
    try {
      if (mas.length > 0) await this.host.libp2p.peerStore.merge(id, { multiaddrs: mas })
      // Already connected (say, through a relay, which libp2p's dial would not reuse): the
      // link opens on that connection; transport/nat.ts looks for a direct one.
      if (!this.host.libp2p.getConnections(id).some((c) => c.status === 'open')) await this.connect(id, mas)
      await this.host.ensureLink(id)
    } catch (err) {
      this.host.count('dials.failed')
      if (!this.stopped) this.log.debug({ peer, addrs, ...errFields(err) }, 'dial failed')
      return false
    }
    return this.host.linked(peer)
  }

  /**
   * Connects to `id`. A peer announced with relayed (`/p2p-circuit`) addresses is behind a NAT:
   * its direct addresses get `CIRCUIT_RELAY.directFirstMs` (they work from its own LAN), then
   * its relays are dialled (libp2p would spend its whole budget on a blackholed private
   * address before reaching them); `transport/nat.ts` replaces a relayed connection with a
   * direct one when it can.
   */
  private async connect(id: PeerId, announced: Multiaddr[]): Promise<void> {
    const relayed = announced.filter((m) => isRelayed(m))
    if (relayed.length === 0) {
      await this.host.libp2p.dial(id, { signal: AbortSignal.timeout(LINK.openTimeout) })
      return
    }
    const direct = announced.filter((m) => !isRelayed(m) && m.getComponents().some((c) => c.name === 'p2p'))
    if (direct.length > 0) {
      try {
        await this.host.libp2p.dial(direct, { signal: AbortSignal.timeout(CIRCUIT_RELAY.directFirstMs) })
        return
      } catch {
        // behind a NAT: through a relay
      }
    }
    await this.host.libp2p.dial(relayed, { signal: AbortSignal.timeout(LINK.openTimeout) })
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.redial.stop()
    this.host.libp2p.removeEventListener('peer:discovery', this.onDiscovery as never)
    if (this.bootstrapTimer) clearInterval(this.bootstrapTimer)
    await this.local?.stop()
  }
}
