/**
 * Peer input is checked like local input (issue 13): a peer speaking raw frames sends
 * fields the public API would refuse; the target refuses each one where it arrives, counts
 * it under `frames.refused.<reason>` and never delivers or stores it. Each case failed
 * before the checks (the value was delivered, stored, or not counted).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { AnnounceKind, ClusterSigner } from '../src/cluster/proof.js'
import { MAX_KEY_BYTES, MAX_TIMEOUT } from '../src/constants.js'
import { generateKey, type Message, type PlexusNode } from '../src/index.js'
import { FrameType, writeFrame } from '../src/link/frames.js'
import { readFrames } from '../src/link/link.js'
import { InterestMode, writeInterest, writePublish } from '../src/pubsub/frames.js'
import {
  decodePubReply,
  encodeMetaCall,
  type PubMessage,
  writePubHead,
  writePubMessage,
} from '../src/streams/wire.js'
import { type PlexusLibp2p, protocols } from '../src/transport/libp2p.js'
import { BinaryWriter } from '../src/util/binary.js'
import { parseKey } from '../src/util/keys.js'
import { keylessLibp2p } from './helpers/keyless-libp2p.js'
import { startNode, startNodes, uniqueNetwork, waitFor } from './helpers/nodes.js'

const enc = new TextEncoder()

/** A keyless libp2p node that writes hand-made frames on its link to a target. */
class RawPeer {
  /** Replies to our `RpcCall`s, by id: the ok body, or the error name. */
  readonly replies = new Map<number, { body?: Uint8Array; error?: string }>()
  private stream!: Stream
  private nextId = 1

  private constructor(readonly libp2p: PlexusLibp2p) {}

  static async attach(target: PlexusNode): Promise<RawPeer> {
    const libp2p = await keylessLibp2p(target.network)
    const peer = new RawPeer(libp2p)
    const protocol = protocols(target.network).link
    await libp2p.handle(protocol, (stream) => {
      readFrames(stream, 'target', 64 * 1024 * 1024, (_from, type, r) => {
        if (type === FrameType.Ping) {
          const token = r.u64()
          peer.frame(FrameType.Pong, (w) => w.u64(token))
        } else if (type === FrameType.RpcReply) {
          const id = r.u32()
          if (r.u8() === 0) peer.replies.set(id, { body: r.bytes() })
          else peer.replies.set(id, { error: r.str() })
        }
      })
    })
    peer.stream = await libp2p.dialProtocol(multiaddr(target.addresses[0]!), protocol)
    return peer
  }

  get id(): string {
    return this.libp2p.peerId.toString()
  }

  frame(type: number, body: (w: BinaryWriter) => void): void {
    const w = new BinaryWriter(256)
    writeFrame(w, type, body)
    this.stream.send(w.finish().slice())
  }

  publish(topic: string, data: string, key?: Uint8Array, headers?: Record<string, string>): void {
    this.frame(FrameType.Publish, (w) => writePublish(w, topic, enc.encode(data), key, headers))
  }

  call(method: string, body: Uint8Array, timeoutMs = 5000): number {
    const id = this.nextId++
    this.frame(FrameType.RpcCall, (w) => w.u32(id).str(method).u32(timeoutMs).u8(0).bytes(body))
    return id
  }

  async reply(id: number): Promise<{ body?: Uint8Array; error?: string }> {
    await waitFor(() => this.replies.has(id), 5000, `reply ${id}`)
    return this.replies.get(id)!
  }
}

const raws: RawPeer[] = []
afterEach(async () => {
  await Promise.all(raws.splice(0).map((r) => r.libp2p.stop()))
})

async function attach(target: PlexusNode): Promise<RawPeer> {
  const raw = await RawPeer.attach(target)
  raws.push(raw)
  return raw
}

const refused = (n: PlexusNode, reason: string) => n.status().counters[`frames.refused.${reason}`] ?? 0

describe('peer input is checked like local input', () => {
  it('publish frames: wildcard or empty-token topics, big keys, bad headers, oversized data are refused and counted', async () => {
    const target = await startNode({ network: uniqueNetwork(), maxMessageSize: 4096 })
    const got: Message[] = []
    target.subscribe('orders.*', (m) => void got.push(m))
    target.subscribe('orders.*.eu', (m) => void got.push(m))
    target.subscribe('>', (m) => void got.push(m))
    const raw = await attach(target)
    raw.publish('orders.*', 'wildcard')
    raw.publish('orders.>', 'rest')
    raw.publish('orders..eu', 'empty token')
    raw.publish('orders.a b', 'whitespace')
    raw.publish('orders.big', 'key', new Uint8Array(MAX_KEY_BYTES + 1))
    raw.publish('orders.hdr', 'empty name', undefined, { '': 'x' })
    raw.publish('orders.hdr', 'huge headers', undefined, { a: 'x'.repeat(20_000) })
    raw.publish('orders.size', 'x'.repeat(5000))
    raw.publish('orders.ok', 'valid') // the link stays: later valid frames are delivered
    await waitFor(() => got.length >= 2, 5000, 'the valid publish')
    await new Promise((r) => setTimeout(r, 100))
    expect(got.map((m) => m.topic)).toEqual(['orders.ok', 'orders.ok'])
    expect(refused(target, 'topic')).toBe(4)
    expect(refused(target, 'key')).toBe(1)
    expect(refused(target, 'headers')).toBe(2)
    expect(refused(target, 'size')).toBe(1)
  })

  it('interest frames with malformed patterns are refused and counted, the link stays', async () => {
    const target = await startNode({ network: uniqueNetwork() })
    const raw = await attach(target)
    raw.frame(FrameType.Interest, (w) => writeInterest(w, InterestMode.Add, ['a.>.b']))
    raw.frame(FrameType.Interest, (w) => writeInterest(w, InterestMode.Add, ['a..b']))
    raw.frame(FrameType.Interest, (w) => writeInterest(w, InterestMode.Add, ['ok.*']))
    await waitFor(() => target.status().counters['pubsub.peerPatterns'] === 1, 5000, 'the valid pattern')
    expect(refused(target, 'pattern')).toBe(2)
  })

  it('requests: a bad cluster name or a deadline over MAX_TIMEOUT are refused before any handler runs', async () => {
    const target = await startNode({ network: uniqueNetwork() })
    let ran = 0
    await target.join('db', {
      key: generateKey(),
      onRequest: () => {
        ran++
        return 'x'
      },
    })
    const raw = await attach(target)
    const request = (cluster: string, ms: number) =>
      raw.frame(FrameType.Request, (w) => w.u32(1).str(cluster).u32(ms).u8(0).bytes(enc.encode('q')))
    request('no such/cluster', 1000)
    request('db', MAX_TIMEOUT + 1)
    request('db', 0xffffffff)
    await waitFor(() => refused(target, 'timeout') === 2, 5000, 'refusals')
    expect(refused(target, 'cluster')).toBe(1)
    expect(ran).toBe(0)
  })

  it('broadcast and tunnel-open frames naming an invalid cluster are refused and counted', async () => {
    const target = await startNode({ network: uniqueNetwork() })
    const raw = await attach(target)
    raw.frame(FrameType.Broadcast, (w) =>
      w.str(raw.id).u32(1).str('bad cluster').u16(0).bytes(enc.encode('b')),
    )
    // TunnelOpen: tid | dir (from opener) | cluster | timeout | window (tunnel/frames.ts)
    raw.frame(FrameType.TunnelOpen, (w) =>
      w
        .u32(1)
        .u8(0)
        .str('../etc')
        .u32(1000)
        .u32(1 << 20),
    )
    await waitFor(() => refused(target, 'cluster') === 2, 5000, 'refusals')
  })

  it('announcements of a cluster name join would refuse are not accepted', async () => {
    const target = await startNode({ network: uniqueNetwork() })
    const raw = await attach(target)
    const signer = new ClusterSigner(parseKey(generateKey(), 'key'), 'bad cluster!', target.network)
    const ann = signer.announce(AnnounceKind.Join, raw.id, Date.now(), [])
    raw.frame(FrameType.Announce, (w) => w.bytes(ann))
    const good = new ClusterSigner(parseKey(generateKey(), 'key'), 'good', target.network)
    raw.frame(FrameType.Announce, (w) => w.bytes(good.announce(AnnounceKind.Join, raw.id, Date.now(), [])))
    await waitFor(() => target.status().clusters.some((c) => c.name === 'good'), 5000, 'the valid one')
    expect(target.status().clusters.map((c) => c.name)).toEqual(['good'])
    expect(refused(target, 'cluster')).toBe(1)
  })

  it("s.pub: the partition leader refuses a message whose topic the stream's subject does not capture", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plexus-peer-input-'))
    try {
      const key = generateKey()
      const [leader] = await startNodes(1, { dataDir: dir })
      await leader!.join('db', { key })
      await leader!.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
      await waitFor(
        async () => (await leader!.streams.info('orders')).partitions[0]?.leader === leader!.id,
        10_000,
      )
      const createdIndex = (leader as any).streamService.directory.get('orders').meta.createdIndex as number
      const raw = await attach(leader!)
      const pub = (topic: string) => {
        const m: PubMessage = {
          topic,
          msgId: undefined,
          key: undefined,
          headers: undefined,
          data: enc.encode('x'),
        }
        const b = writePubHead(
          new BinaryWriter(64),
          { stream: 'orders', createdIndex, partition: 0 },
          'all',
          1,
        )
        return raw.call('s.pub', writePubMessage(b, m).finish().slice())
      }
      const results = async (id: number) => {
        const r = decodePubReply((await raw.reply(id)).body!)
        return r.status === 'ok' ? r.value : r
      }
      expect(await results(pub('payments.eu'))).toMatchObject([{ error: { name: 'InvalidArgumentError' } }])
      expect(await results(pub('orders.*'))).toMatchObject([{ error: { name: 'InvalidArgumentError' } }])
      expect(await results(pub('orders.eu'))).toEqual([{ offset: 0, duplicate: false }])
      expect(refused(leader!, 'subject')).toBe(1)
      expect(refused(leader!, 'topic')).toBe(1)
      // Stream names and cluster names in calls are checked too.
      const meta = raw.call('s.meta', encodeMetaCall({ op: 'table', cluster: 'no/such' }))
      expect((await raw.reply(meta)).error).toBe('InvalidArgumentError')
      expect(refused(leader!, 'cluster')).toBe(1)
      const bad = writePubHead(new BinaryWriter(64), { stream: 'a b', createdIndex, partition: 0 }, 'all', 1)
      const m: PubMessage = {
        topic: 'orders.x',
        msgId: undefined,
        key: undefined,
        headers: undefined,
        data: enc.encode('x'),
      }
      const id = raw.call('s.pub', writePubMessage(bad, m).finish().slice())
      expect((await raw.reply(id)).error).toBe('InvalidArgumentError')
      expect(refused(leader!, 'stream')).toBe(1)
      expect((await leader!.streams.info('orders')).partitions[0]!.nextOffset).toBe(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
