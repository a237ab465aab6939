/**
 * Builds the libp2p node under a Plexus node: TCP, noise (AES-256-GCM preferred when the
 * CPU has AES instructions, the libp2p spec's ChaCha20-Poly1305 always accepted; see
 * `encrypters.ts`), yamux (window capped so read buffers stay bounded), identify, ping,
 * optional pnet (network key), mDNS, kad-dht and bootstrap; inbound connections bounded per
 * remote host (`connection-guard.ts`) and streams per connection. Protocol names carry the network name, so nodes of two networks on one
 * machine never speak the same protocol.
 *
 * Nodes behind a NAT (`nat.ts`): the circuit relay v2 transport on every node (dials
 * `/p2p-circuit` addresses, reserves slots), the relay server (hop) when
 * `circuitRelay.server`, AutoNAT (under our own protocol id) when reservations are
 * `auto`, DCUtR hole punching, and the `nat` service. The relay, stop and DCUtR protocol
 * ids are fixed by libp2p (no prefix option): a relay serves only peers that speak our
 * network's link protocol (the gater below), and pnet keeps other networks out altogether.
 */
import { autoNAT } from '@libp2p/autonat'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { identify } from '@libp2p/identify'
import type { PeerDiscovery, PeerId, PrivateKey } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { CID } from 'multiformats/cid'
import { CIRCUIT_RELAY, CONNECTIONS, DEFAULT_CIPHER, DHT } from '../constants.js'
import type { FoundProvider } from '../discovery/dht.js'
import type { CircuitRelayConfig } from '../options.js'
import { ConnectionGuard } from './connection-guard.js'
import { type CipherChoice, connectionEncrypters } from './encrypters.js'
import { NatService } from './nat.js'
import './yamux-window.js'

/** Protocol ids of one network. */
export function protocols(network: string) {
  return {
    link: `/plexus/${network}/link/1.0.0`,
    kad: `/plexus/${network}/kad/1.0.0`,
    /** AutoNAT's prefix: its protocol is `/plexus/<network>/autonat/1.0.0`. */
    autonatPrefix: `plexus/${network}`,
    identify: `plexus-${network}`,
    mdnsTag: `plexus-${network}`,
  }
}

/** What `buildLibp2p` needs. */
export interface Libp2pConfig {
  network: string
  privateKey: PrivateKey
  listen: string[]
  bootstrap: string[]
  /** 32-byte network key, or undefined for an open network. */
  networkKey?: Uint8Array
  mdns: boolean
  dht: boolean
  /** Preferred noise AEAD; default `DEFAULT_CIPHER`. */
  cipher?: CipherChoice
  /** Counts refused connections (`connections.refused.<reason>`). */
  count?: (counter: string) => void
  /**
   * Told of every mDNS answer (libp2p's `peer:discovery` fires only for peers new to the
   * peer store, so a peer found again after a partition would go unnoticed).
   */
  mdnsFound?: (peer: { id: PeerId; multiaddrs: Multiaddr[] }) => void
  /** Circuit relay settings; default: client only, reservations `auto` (`CIRCUIT_RELAY`). */
  circuitRelay?: CircuitRelayConfig
  /** Our relayed addresses changed (a reservation was made or lost): re-announce. */
  addressesChanged?: () => void
  /** Bytes carried so far by the link to a peer (a relayed link moves when it is quiet). */
  linkActivity?: (peer: string) => number
  /** True while requests to or from a peer are unanswered (a relayed link moves after them). */
  linkBusy?: (peer: string) => boolean
  /** Opens the link to a peer now (after its relayed connection was replaced). */
  relink?: (peer: PeerId) => void
}

/** The libp2p node type Plexus runs on. */
export type PlexusLibp2p = Libp2p<Record<string, unknown>>

/** Formats a 32-byte key as the pnet swarm key file. */
export function swarmKey(key: Uint8Array): Uint8Array {
  const hex = Buffer.from(key).toString('hex')
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}`)
}

/** Creates and starts the libp2p node. */
export async function buildLibp2p(cfg: Libp2pConfig): Promise<PlexusLibp2p> {
  const p = protocols(cfg.network)
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  // mDNS and the DHT are off by default in the library: loaded only when asked for (the
  // DHT's modules alone add ~1.9 MB to every node's heap, which V8 marks on every cycle).
  if (cfg.mdns) {
    const { mdns } = await import('@libp2p/mdns')
    const make = mdns({ serviceTag: p.mdnsTag, interval: 2000 })
    peerDiscovery.push((components) => {
      const d = make(components)
      const found = cfg.mdnsFound
      if (found) d.addEventListener('peer', (evt) => found(evt.detail))
      return d
    })
  }
  if (cfg.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: cfg.bootstrap, timeout: 0 }))
  const relay: CircuitRelayConfig = cfg.circuitRelay ?? {
    server: false,
    reserve: CIRCUIT_RELAY.reserve,
    reservations: CIRCUIT_RELAY.reservations,
    maxReservations: CIRCUIT_RELAY.maxReservations,
    dataLimit: CIRCUIT_RELAY.dataLimit,
    durationLimitMs: CIRCUIT_RELAY.durationLimit,
  }
  let nat: NatService | undefined
  const services: Record<string, any> = {
    identify: identify({ protocolPrefix: p.identify }),
    ping: ping({ maxOutboundStreams: 8, maxInboundStreams: 8 }),
    dcutr: dcutr(),
    nat: (components: any) =>
      (nat = new NatService(components, {
        linkProtocol: p.link,
        reserve: relay.reserve,
        reservations: relay.reservations,
        server: relay.server,
        count: cfg.count,
        onAddressesChanged: cfg.addressesChanged,
        activity: cfg.linkActivity,
        busy: cfg.linkBusy,
        relink: cfg.relink,
      })),
  }
  if (relay.reserve === 'auto') services.autonat = autoNAT({ protocolPrefix: p.autonatPrefix })
  if (relay.server) {
    services.circuitRelay = circuitRelayServer({
      reservations: {
        maxReservations: relay.maxReservations,
        defaultDataLimit: BigInt(relay.dataLimit),
        defaultDurationLimit: relay.durationLimitMs,
      },
    })
  }
  const guard = new ConnectionGuard(CONNECTIONS, cfg.count ?? (() => {})).gater
  const foreign = (peer: PeerId) => nat?.foreign(peer) ?? true
  if (cfg.dht) {
    const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
    services.dht = kadDHT({
      protocol: p.kad,
      clientMode: false,
      peerInfoMapper: passthroughMapper,
      // Records we store for others live `DHT.recordTtl` (a crashed member is not listed
      // for 48 h); members re-advertise every `DHT.provideInterval` themselves
      // (discovery/dht.ts), kad-dht's own republisher only as a fallback.
      providers: { provideValidity: DHT.recordTtl / 1000 },
      reprovide: { validity: DHT.recordTtl, threshold: DHT.recordTtl / 2, interval: DHT.provideInterval },
    })
  }
  const node = await createLibp2p({
    privateKey: cfg.privateKey,
    addresses: { listen: cfg.listen },
    transports: [tcp(), circuitRelayTransport({ reservationCompletionTimeout: 5000 })],
    connectionEncrypters: connectionEncrypters(cfg.cipher ?? DEFAULT_CIPHER),
    streamMuxers: [
      yamux({
        maxInboundStreams: CONNECTIONS.inboundStreams,
        streamOptions: { maxStreamWindowSize: 2 * 1024 * 1024 },
      } as any),
    ],
    connectionProtector: cfg.networkKey ? preSharedKey({ psk: swarmKey(cfg.networkKey) }) : undefined,
    peerDiscovery,
    services,
    connectionManager: {
      inboundConnectionThreshold: CONNECTIONS.perHostPerSecond,
      maxIncomingPendingConnections: CONNECTIONS.maxPendingInbound,
      maxConnections: CONNECTIONS.maxConnections,
      dialTimeout: 5000,
    },
    connectionGater: {
      ...guard,
      // Our relay serves only peers of our network (see the module doc).
      denyInboundRelayReservation: async (source) => {
        const deny = await foreign(source)
        if (deny) cfg.count?.('nat.reservationsRefused')
        return deny
      },
      denyOutboundRelayedConnection: async (source, destination) =>
        (await foreign(source)) || (await foreign(destination)),
    },
    connectionMonitor: { enabled: false },
  })
  return node as unknown as PlexusLibp2p
}

/** The provider-record calls of the node's kad-dht service (discovery/dht.ts's host). */
export interface DhtRouting {
  /** True when the routing table holds a peer (a lookup can ask someone). */
  ready(): boolean
  provide(key: CID, signal: AbortSignal): Promise<number>
  withdraw(key: CID): Promise<void>
  findProviders(key: CID, signal: AbortSignal): AsyncIterable<FoundProvider>
}

/**
 * Provider records through the node's kad-dht, or undefined when it runs none. `peerAdded` is
 * told when the routing table gains a peer (calls waiting for a lookup can start one).
 */
export function dhtRouting(node: PlexusLibp2p, peerAdded: () => void): DhtRouting | undefined {
  const dht = node.services.dht as
    | {
        routingTable: EventTarget & { size: number }
        provide(key: CID, o: { signal: AbortSignal }): AsyncIterable<any>
        cancelReprovide(key: CID): Promise<void>
        findProviders(key: CID, o: { signal: AbortSignal }): AsyncIterable<any>
      }
    | undefined
  if (!dht) return undefined
  dht.routingTable.addEventListener('peer:add', peerAdded)
  return {
    ready: () => dht.routingTable.size > 0,
    /** Resolves with the number of peers that acknowledged our record. */
    async provide(key, signal) {
      const took = new Set<string>()
      for await (const ev of dht.provide(key, { signal })) {
        if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'ADD_PROVIDER') took.add(ev.from.toString())
      }
      return took.size
    },
    withdraw: (key) => dht.cancelReprovide(key),
    async *findProviders(key, signal) {
      for await (const ev of dht.findProviders(key, { signal })) {
        if (ev.name !== 'PROVIDER') continue
        for (const p of ev.providers as Array<{ id: PeerId; multiaddrs: Multiaddr[] }>)
          yield { id: p.id.toString(), addrs: p.multiaddrs.map((m) => m.toString()) }
      }
    },
  }
}
