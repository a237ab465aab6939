/**
 * `StreamDirectory`: every node's view of the network's durable streams, so that any node
 * (member of the owning cluster or not) finds a stream by name or by topic.
 *
 * Each cluster's metadata leader signs its catalog as a *stream table* with the cluster's
 * signing key (the one membership announcements use, cluster/proof.ts) and floods it on
 * every change and every `refreshMs`. A node accepts a table when the signature verifies
 * under the cluster's public key (derived from our key when we are a member, else pinned on
 * first use by the member directory) and it is newer than the table it holds: a higher
 * catalog index, or the same index with a higher signer counter (a refresh). Accepted tables
 * are flooded to every other link once; a node that links up receives every table held.
 *
 * Ordering: a node never goes back to an older catalog index, except after holding a table
 * for `maxAgeMs` without a refresh (the metadata group was wiped and recreated). Durability:
 * none (soft state rebuilt from floods after restart).
 *
 * Layout (util/binary): `u8 version (2) | str cluster | str leader | u64 index | u64 counter |
 * u32 n | n × (spec | u64 createdIndex | placement | initial placement) (metadata-codec.ts) | u32 k | k × (str name |
 * u64 createdIndex) (tombstones) | 64 signature`; the
 * signature covers everything before it under domain `plexus-streams/1`.
 */
import { type ClusterSigner, SIGNATURE_BYTES, verifyClusterSignature } from '../../cluster/proof.js'
import { SubjectIndex } from '../../pubsub/subject.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import { peerCluster } from '../../util/peer-input.js'
import { peerStream } from '../wire.js'
import type { Tombstone } from './metadata.js'
import { readPlacement, readSpec, type StreamMeta, writePlacement, writeSpec } from './metadata-codec.js'

const TABLE_VERSION = 2
const DOMAIN = 'plexus-streams/1'
/** Topics whose capturing stream `forTopic` remembers. */
const TOPIC_CACHE_SIZE = 4096
/** Largest encoded table accepted (bytes). */
export const MAX_TABLE_BYTES = 1024 * 1024

/** One cluster's streams as its metadata leader signed them. */
export interface StreamTable {
  cluster: string
  /** The metadata leader that signed it (a hint for metadata calls). */
  leader: string
  /** The catalog's last applied raft index. */
  index: number
  /** The signer's clock (ms), bumped when equal: orders refreshes of one index. */
  counter: number
  streams: StreamMeta[]
  /** Recently deleted stream incarnations: the only data replicas may delete. */
  tombstones: Tombstone[]
  /** The encoded, signed table (flooded as is). */
  bytes: Uint8Array
}

/** What the directory needs from its node. */
export interface StreamDirectoryHost {
  network: string
  now(): number
  /** The cluster's public key (undefined: unknown yet, tables refused). */
  publicKey(cluster: string): Uint8Array | undefined
  /** Sends an encoded table to every linked peer except `except`. */
  flood(bytes: Uint8Array, except?: string): void
  /** A cluster's table was replaced (streams may have appeared, changed or gone). */
  changed(cluster: string, table: StreamTable): void
}

/** A stream found in the directory. */
export interface KnownStream {
  cluster: string
  meta: StreamMeta
}

/** Why a table was refused (counted). */
export type TableRefusal = 'malformed' | 'signature' | 'unknownKey' | 'stale' | 'conflict'

/** The network-wide stream directory; see the module doc. */
export class StreamDirectory {
  private readonly tables = new Map<string, { table: StreamTable; receivedAt: number }>()
  private byName = new Map<string, KnownStream>()
  private bySubject = new SubjectIndex<string>()
  /** `forTopic` answers by topic (undefined: no stream), cleared when the tables change. */
  private readonly topicCache = new Map<string, KnownStream | undefined>()
  private counter = 0
  /** Refused tables by reason. */
  readonly refused: Record<TableRefusal, number> = {
    malformed: 0,
    signature: 0,
    unknownKey: 0,
    stale: 0,
    conflict: 0,
  }

  constructor(
    private readonly host: StreamDirectoryHost,
    private readonly opts: { maxAgeMs?: number } = {},
  ) {}

  /**
   * Signs and installs our cluster's table (we lead its metadata group), then floods it.
   * Returns the encoded table.
   */
  publish(
    signer: ClusterSigner,
    leader: string,
    index: number,
    streams: readonly StreamMeta[],
    tombstones: readonly Tombstone[],
  ): Uint8Array {
    this.counter = Math.max(this.counter + 1, this.host.now())
    const w = new BinaryWriter(256)
    w.u8(TABLE_VERSION).str(signer.cluster).str(leader).u64(index).u64(this.counter).u32(streams.length)
    for (const m of streams) {
      writeSpec(w, m)
      w.u64(m.createdIndex)
      writePlacement(w, m.placement)
      writePlacement(w, m.initialPlacement)
    }
    w.u32(tombstones.length)
    for (const t of tombstones) w.str(t.name).u64(t.createdIndex)
    const signed = w.finish().slice()
    const sig = signer.sign(DOMAIN, signed)
    const bytes = new BinaryWriter(signed.length + SIGNATURE_BYTES).raw(signed).raw(sig).finish().slice()
    this.receive(bytes, undefined)
    return bytes
  }

  /**
   * A table from `from` (undefined: ours). Returns true when accepted (then flooded to the
   * other links and `changed` is called). Never throws.
   */
  receive(bytes: Uint8Array, from: string | undefined): boolean {
    let table: StreamTable
    let signed: Uint8Array
    let signature: Uint8Array
    try {
      if (bytes.length > MAX_TABLE_BYTES) throw new DecodeError('table too large')
      ;({ table, signed, signature } = decodeTable(bytes))
    } catch {
      this.refused.malformed++
      return false
    }
    const key = this.host.publicKey(table.cluster)
    if (key === undefined) {
      this.refused.unknownKey++
      return false
    }
    if (!verifyClusterSignature(DOMAIN, this.host.network, key, signed, signature)) {
      this.refused.signature++
      return false
    }
    const now = this.host.now()
    const held = this.tables.get(table.cluster)
    if (held) {
      const h = held.table
      const expired = now - held.receivedAt > (this.opts.maxAgeMs ?? 60_000)
      if (table.index === h.index && table.leader !== h.leader && !expired) {
        // Two leaders at one catalog index: two metadata groups (split bootstrap). Keep ours.
        this.refused.conflict++
        return false
      }
      const newer = table.index > h.index || (table.index === h.index && table.counter > h.counter)
      if (!newer && !(expired && table.counter > h.counter)) {
        if (table.index !== h.index || table.counter !== h.counter) this.refused.stale++
        return false
      }
    }
    this.tables.set(table.cluster, { table, receivedAt: now })
    this.reindex()
    this.host.flood(bytes, from)
    this.host.changed(table.cluster, table)
    return true
  }

  /** The stream named `name`, if any cluster's table lists it. */
  get(name: string): KnownStream | undefined {
    return this.byName.get(name)
  }

  /**
   * The stream capturing a published topic. Subjects never overlap within a cluster; across
   * clusters the first stream by name wins.
   */
  forTopic(topic: string): KnownStream | undefined {
    // Called on every publish: nothing to match (no durable streams) costs nothing, and
    // answers per topic are kept until the tables change.
    if (this.bySubject.size === 0) return undefined
    const cached = this.topicCache.get(topic)
    if (cached !== undefined || this.topicCache.has(topic)) return cached
    const names = [...this.bySubject.match(topic)].sort()
    const found = names.length === 0 ? undefined : this.byName.get(names[0]!)
    if (this.topicCache.size >= TOPIC_CACHE_SIZE) this.topicCache.clear()
    this.topicCache.set(topic, found)
    return found
  }

  /** The table held for a cluster. */
  table(cluster: string): StreamTable | undefined {
    return this.tables.get(cluster)?.table
  }

  /** The leader that signed a cluster's table and when the table arrived (ms; readiness). */
  tableInfo(cluster: string): { leader: string; receivedAt: number } | undefined {
    const held = this.tables.get(cluster)
    return held && { leader: held.table.leader, receivedAt: held.receivedAt }
  }

  /** Every known stream, sorted by name. */
  list(): KnownStream[] {
    return [...this.byName.values()].sort((a, b) => (a.meta.name < b.meta.name ? -1 : 1))
  }

  /** Every held table's bytes (sent to a peer that links up). */
  snapshot(): Uint8Array[] {
    return [...this.tables.values()].map((t) => t.table.bytes)
  }

  private reindex(): void {
    const byName = new Map<string, KnownStream>()
    const bySubject = new SubjectIndex<string>()
    const clusters = [...this.tables.keys()].sort()
    for (const cluster of clusters) {
      for (const meta of this.tables.get(cluster)!.table.streams) {
        if (byName.has(meta.name)) continue // same name in two clusters: the first cluster by name
        byName.set(meta.name, { cluster, meta })
        bySubject.add(meta.subject, meta.name)
      }
    }
    this.byName = byName
    this.bySubject = bySubject
    this.topicCache.clear()
  }
}

function decodeTable(bytes: Uint8Array): { table: StreamTable; signed: Uint8Array; signature: Uint8Array } {
  const r = new BinaryReader(bytes)
  const v = r.u8('table version')
  if (v !== TABLE_VERSION) throw new DecodeError(`unknown stream table version ${v}`)
  // Names checked as the public API checks them (specs in readSpec): refused as malformed.
  const cluster = peerCluster(r.str('cluster'))
  const leader = r.str('leader')
  const index = r.u64('index')
  const counter = r.u64('counter')
  const n = r.u32('stream count')
  if (n > r.remaining) throw new DecodeError(`implausible stream count ${n}`)
  const streams: StreamMeta[] = []
  for (let i = 0; i < n; i++) {
    const spec = readSpec(r)
    const createdIndex = r.u64('createdIndex')
    const placement = readPlacement(r, spec)
    const initialPlacement = readPlacement(r, spec)
    streams.push({ ...spec, placement, initialPlacement, createdIndex })
  }
  const k = r.u32('tombstone count')
  if (k > r.remaining) throw new DecodeError(`implausible tombstone count ${k}`)
  const tombstones: Tombstone[] = []
  for (let i = 0; i < k; i++)
    tombstones.push({
      name: peerStream(r.str('tombstone name'), 'tombstone'),
      createdIndex: r.u64('createdIndex'),
    })
  const signedEnd = r.pos
  const signature = r.raw(SIGNATURE_BYTES, 'signature')
  r.end('stream table')
  return {
    table: { cluster, leader, index, counter, streams, tombstones, bytes },
    signed: bytes.subarray(0, signedEnd),
    signature,
  }
}
