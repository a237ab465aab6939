/**
 * How the metrics and readiness read a node: `NodeParts` is the narrow view of its layers
 * they need, and the two functions below turn it into the `MetricsSource` (metrics.ts) and
 * `HealthSource` (health.ts). Everything here runs at scrape or check time only.
 */
import type { Broadcaster } from '../broadcast/broadcast.js'
import type { MemberDirectory } from '../cluster/membership.js'
import type { LinkManager } from '../link/manager.js'
import type { PubSub } from '../pubsub/pubsub.js'
import type { StreamService } from '../streams/service.js'
import type { TunnelManager } from '../tunnel/manager.js'
import type { PlexusNode } from '../types.js'
import type { HealthSource } from './health.js'
import type { MetricsSource, PartitionStats } from './metrics.js'

/** The layers of a running node that observation reads. */
export interface NodeParts {
  self: string
  /** False once the node is stopping. */
  running: boolean
  /** Bootstrap addresses configured (peers known from the start). */
  bootstrap: number
  links: LinkManager
  directory: MemberDirectory
  pubsub: PubSub
  broadcaster: Broadcaster
  tunnels: TunnelManager
  streams: StreamService
}

/** Hosted partition replicas as the metrics report them. */
export function partitionStats(streams: StreamService, self: string): PartitionStats[] {
  const out: PartitionStats[] = []
  for (const h of streams.hosted.values()) {
    const r = h.replica
    const p: PartitionStats = {
      cluster: h.cluster,
      stream: h.meta.name,
      partition: h.partition,
      leader: false,
      hasLeader: r.leader !== null,
      term: 0,
      commitIndex: 0,
      appliedIndex: 0,
      logBytes: 0,
      logMessages: 0,
      followerLag: 0,
    }
    try {
      const s = r.status()
      p.leader = s.raft.role === 'leader'
      p.term = s.raft.term
      p.commitIndex = s.raft.commit
      p.appliedIndex = s.appliedIndex
      p.logMessages = Math.max(0, s.nextOffset - r.earliest())
      p.logBytes = r.raft?.storage?.diskBytes() ?? 0
      if (p.leader)
        for (const [id, pr] of Object.entries(s.raft.progress))
          if (id !== self) p.followerLag = Math.max(p.followerLag, s.raft.lastIndex - pr.match)
    } catch {
      // not started yet, or stopped: reported with zeros
    }
    out.push(p)
  }
  return out
}

/** The metrics' view of a node. */
export function nodeMetricsSource(node: PlexusNode, parts: () => NodeParts): MetricsSource {
  return {
    status: () => node.status(),
    links: () =>
      parts()
        .links.all()
        .map((l) => ({
          peer: l.peer,
          latencyMs: l.latencyMs,
          queuedBytes: l.queuedBytes,
          bytesSent: l.sentBytes,
          bytesReceived: l.bytesReceived,
        })),
    partitions: () => {
      const p = parts()
      return partitionStats(p.streams, p.self)
    },
    consumers: () => parts().streams.durableStats(),
    traffic: () => {
      const p = parts()
      return {
        pubsubPublished: p.pubsub.published,
        pubsubSentToPeers: p.pubsub.sentToPeers,
        pubsubReceived: p.pubsub.received,
        broadcastsSent: p.broadcaster.sent,
        tunnelBytesSent: p.tunnels.bytes.sent,
        tunnelBytesReceived: p.tunnels.bytes.received,
      }
    },
  }
}

/** Readiness's view of a node. */
export function nodeHealthSource(node: PlexusNode, parts: () => NodeParts): HealthSource {
  return {
    get self() {
      return parts().self
    },
    running: () => parts().running,
    addresses: () => node.addresses,
    linkCount: () => parts().links.all().length,
    linked: (peer) => parts().links.get(peer) !== undefined,
    peersKnown: () => {
      const p = parts()
      if (p.bootstrap > 0) return true
      for (const c of p.directory.clusterNames())
        if (p.directory.members(c).some((m) => m.peer !== p.self)) return true
      return false
    },
    joined: () => {
      const d = parts().directory
      return d.clusterNames().filter((c) => d.joined(c))
    },
    storageMembers: (c) => parts().directory.servers(c, 'storage'),
    metaLeader: (c) => parts().streams.metaLeader(c),
    table: (c) => parts().streams.directory.tableInfo(c),
    partitions: () =>
      [...parts().streams.hosted.entries()].map(([key, h]) => ({
        key,
        stream: h.meta.name,
        partition: h.partition,
        hasLeader: h.replica.leader !== null,
      })),
    now: () => Date.now(),
  }
}
