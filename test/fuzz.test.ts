import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { Broadcaster } from '../src/broadcast/broadcast.js'
import { AnnounceKind, decodeAnnouncement } from '../src/cluster/proof.js'
import { MAX_TIMEOUT } from '../src/constants.js'
import { generateKey, type PlexusNode } from '../src/index.js'
import { decodeReply, decodeRequest, FrameType, writeFrame } from '../src/link/frames.js'
import {
  InterestMode,
  type PubMessage,
  readInterest,
  writeInterest,
  writePublish,
} from '../src/pubsub/frames.js'
import { PubSub } from '../src/pubsub/pubsub.js'
import { checkPattern } from '../src/pubsub/subject.js'
import { decodeEntry, decodeMessage, encodeEntry } from '../src/raft/codec.js'
import {
  decodeConsumerCall,
  decodeLeaderReply,
  decodeSeek,
  encodeConsumerCall,
  encodeLeaderReply,
  encodeSeek,
  readLease,
  writeLease,
} from '../src/streams/consumer/consumer-wire.js'
import { decodePurgeCall, encodePurgeCall } from '../src/streams/host/purge.js'
import { StreamDirectory } from '../src/streams/meta/directory.js'
import { checkStreamName, validateStreamConfig } from '../src/streams/meta/metadata-codec.js'
import {
  decodeCopyCall,
  decodeCopyReply,
  encodeCopyCall,
  encodeCopyReply,
} from '../src/streams/partition/partition-copy.js'
import { decodeGetCall, decodeGetReply, encodeGetCall, encodeGetReply } from '../src/streams/read-wire.js'
import {
  decodeFetchCall,
  decodeFetchReply,
  decodeLoad,
  decodeMetaCall,
  decodeMetaReply,
  decodeOffsetReply,
  decodePubCall,
  decodePubReply,
  decodeRef,
  decodeStateReply,
  encodeFetchCall,
  encodeFetchReply,
  encodeLoad,
  encodeMetaCall,
  encodeMetaReply,
  encodeOffsetReply,
  encodePubReply,
  encodeRef,
  encodeStateReply,
  writePubHead,
  writePubMessage,
} from '../src/streams/wire.js'
import { protocols } from '../src/transport/libp2p.js'
import { BinaryReader, BinaryWriter } from '../src/util/binary.js'
import { checkClusterName } from '../src/util/validate.js'
import {
  body,
  checkMessage,
  directoryHost,
  enc,
  FUZZ_RUNS,
  fuzz,
  MAX,
  msg,
  mutate,
  raftMsg,
  ref,
  signer,
  spec,
  table,
} from './helpers/fuzz.js'
import { keylessLibp2p } from './helpers/keyless-libp2p.js'
import { startNodes, waitForMembers } from './helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from './helpers/rng.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** Frames that are well-framed but carry hostile bodies. */
function hostileFrame(rand: () => number): Uint8Array {
  const types = Object.values(FrameType)
  const type = rand() < 0.8 ? types[Math.floor(rand() * types.length)]! : Math.floor(rand() * 256)
  const body = randomBytesFrom(rand, Math.floor(rand() * 64))
  const w = new BinaryWriter()
  const mode = rand()
  if (mode < 0.1)
    w.u32(0xfffffff0) // absurd length
  else if (mode < 0.2)
    w.u32(0) // empty frame
  else w.u32(body.length + 1)
  w.u8(type).raw(body)
  const bytes = w.finish().slice()
  return rand() < 0.2 ? bytes.subarray(0, Math.floor(rand() * bytes.length)) : bytes
}

/**
 * A keyless peer that speaks the link protocol (so `target` links back) but ignores what it
 * is sent; `dial()` opens a new link stream to `target`.
 */
async function linkAttacker(target: PlexusNode) {
  const attacker = await keylessLibp2p(target.network)
  await attacker.handle(protocols(target.network).link, () => {})
  const dial = () => attacker.dialProtocol(multiaddr(target.addresses[0]!), protocols(target.network).link)
  return { attacker, dial }
}

describe('hostile peers', () => {
  it('random, truncated and malformed frames reset the stream and never crash the node', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    try {
      const [target, client] = await startNodes(2)
      await target.join('db', { key: generateKey(), onRequest: () => 'alive' })
      await waitForMembers(client, 'db', 1)
      const { attacker, dial } = await linkAttacker(target)
      try {
        let resets = 0
        for (let round = 0; round < 60; round++) {
          const stream = await dial()
          const closed = new Promise<void>((resolve) => stream.addEventListener('close', () => resolve()))
          const n = 1 + Math.floor(rand() * 4)
          for (let i = 0; i < n; i++) {
            const frame =
              rand() < 0.3 ? randomBytesFrom(rand, 1 + Math.floor(rand() * 300)) : hostileFrame(rand)
            stream.send(frame)
          }
          await stream.close().catch(() => {})
          await Promise.race([closed, new Promise((r) => setTimeout(r, 200))])
          if (stream.status === 'reset' || stream.status === 'aborted') resets++
        }
        expect(resets).toBeGreaterThan(0)
        // The node still serves everyone else.
        expect(dec(await client.request('db', 'x'))).toBe('alive')
      } finally {
        await attacker.stop()
      }
    } catch (err) {
      console.error(`fuzz seed ${seed} (replay with TEST_SEED=${seed})`)
      throw err
    }
  })
})

describe('fuzzed link frames: only DecodeError, never an invalid value delivered', () => {
  fuzz(
    'Request',
    [body(FrameType.Request, (w) => w.u32(1).str('db').u32(1000).u8(0).bytes(enc.encode('q')))],
    (b) => decodeRequest(new BinaryReader(b), MAX),
    (f) => {
      checkClusterName(f.cluster)
      expect(f.remainingMs).toBeLessThanOrEqual(MAX_TIMEOUT)
      expect(f.data.length).toBeLessThanOrEqual(MAX)
    },
  )
  fuzz(
    'Reply',
    [
      body(FrameType.Reply, (w) => w.u32(1).u8(0).bytes(enc.encode('r'))),
      body(FrameType.Reply, (w) => w.u32(1).u8(1).str('RemoteError').str('boom')),
    ],
    (b) => decodeReply(new BinaryReader(b), MAX),
    (f) => {
      if ('data' in f) expect(f.data.length).toBeLessThanOrEqual(MAX)
    },
  )
  fuzz(
    'Interest',
    [body(FrameType.Interest, (w) => writeInterest(w, InterestMode.Add, ['orders.*', 'a.>']))],
    (b) => readInterest(new BinaryReader(b)),
    (x) => {
      for (const p of x.patterns) checkPattern(p)
    },
  )
  // Publish: through PubSub.onPublish, to a subscription of every topic.
  const delivered: PubMessage[] = []
  const pubsub = new PubSub({
    self: 'me',
    links: () => [],
    link: () => undefined,
    count: () => {},
    sync: async () => {},
  })
  pubsub.subscribe('>', (m) => void delivered.push(m as unknown as PubMessage))
  fuzz(
    'Publish',
    [
      body(FrameType.Publish, (w) =>
        writePublish(w, 'orders.eu', enc.encode('d'), enc.encode('k'), { a: 'b' }),
      ),
      body(FrameType.Publish, (w) => writePublish(w, 'orders.eu', enc.encode('d'), undefined, undefined)),
    ],
    (b) => {
      delivered.length = 0
      pubsub.onPublish('peer', new BinaryReader(b), MAX)
      return delivered.slice()
    },
    (ms) => {
      for (const m of ms) checkMessage(m)
    },
  )
  // Broadcast: through Broadcaster.onFrame (a fresh one per input: no de-duplication), to a member of 'db'.
  fuzz(
    'Broadcast',
    [
      body(FrameType.Broadcast, (w) =>
        w.str('origin').u32(1).str('db').u16(1).str('d1').bytes(enc.encode('b')),
      ),
    ],
    (b) => {
      const got: Array<{ cluster: string; data: Uint8Array }> = []
      const bc = new Broadcaster({
        self: 'me',
        members: () => [],
        isMember: () => true,
        linkQueueBytes: 1 << 20,
        link: () => undefined,
        count: () => {},
      })
      bc.serve('db', (data, ctx) => void got.push({ cluster: ctx.cluster, data }), 1 << 30)
      bc.onFrame('peer', new BinaryReader(b), MAX)
      return got
    },
    (got) => {
      for (const x of got) {
        checkClusterName(x.cluster)
        expect(x.data.length).toBeLessThanOrEqual(MAX)
      }
    },
  )
  fuzz(
    'Announce',
    [signer.announce(AnnounceKind.Join, 'peer', Date.now(), ['/ip4/127.0.0.1/tcp/1'])],
    decodeAnnouncement,
    (a) => checkClusterName(a.cluster),
  )
  const directory = new StreamDirectory(directoryHost)
  fuzz('StreamTable', [table], (b) => directory.receive(b, 'peer'))
  fuzz('Raft message', [raftMsg], decodeMessage)
  fuzz('Raft entry', [encodeEntry({ index: 1, term: 1, type: 'normal', data: enc.encode('x') })], decodeEntry)
})

describe('fuzzed internal call bodies: only DecodeError, never an invalid value', () => {
  const proof = new Uint8Array(100).fill(3)
  fuzz(
    's.meta call',
    [
      encodeMetaCall({ op: 'create', cluster: 'db', requestId: 'r1', spec, proof }),
      encodeMetaCall({ op: 'delete', cluster: 'db', requestId: 'r2', name: 'orders', proof }),
      encodeMetaCall({ op: 'table', cluster: 'db' }),
      encodeMetaCall({
        op: 'consumer-delete',
        cluster: 'db',
        requestId: 'r3',
        name: 'o',
        durable: 'b',
        proof,
      }),
      encodeMetaCall({
        op: 'purge',
        cluster: 'db',
        requestId: 'r4',
        name: 'o',
        partition: 1,
        before: 9,
        proof,
      }),
      encodeMetaCall({
        op: 'update',
        cluster: 'db',
        requestId: 'r5',
        name: 'o',
        retention: { maxAge: 5 },
        proof,
      }),
      encodeMetaCall({ op: 'update', cluster: 'db', requestId: 'r6', name: 'o', replicas: 3, proof }),
    ],
    decodeMetaCall,
    (c) => {
      checkClusterName(c.cluster)
      if (c.op !== 'table' && c.op !== 'create') checkStreamName(c.name)
      if (c.op === 'consumer-delete') checkStreamName(c.durable)
      if (c.op === 'update') {
        for (const v of Object.values(c.retention ?? {})) if (!(v! > 0)) throw new Error(`retention ${v}`)
        if (c.replicas !== undefined && !(c.replicas >= 1 && c.replicas <= 7))
          throw new Error(`replicas ${c.replicas}`)
      }
      if (c.op === 'create')
        validateStreamConfig(c.spec.name, { subject: c.spec.subject, cluster: c.cluster })
    },
  )
  fuzz(
    's.meta reply',
    [
      encodeMetaReply({ status: 'ok', table: new Uint8Array(4) }),
      encodeMetaReply({ status: 'notLeader', hint: 'x' }),
    ],
    decodeMetaReply,
  )
  fuzz(
    's.pub call',
    [
      writePubMessage(writePubHead(new BinaryWriter(64), ref, 'all', 1), msg)
        .finish()
        .slice(),
    ],
    decodePubCall,
    (c) => checkStreamName(c.stream),
  )
  fuzz(
    's.pub reply',
    [
      encodePubReply({
        status: 'ok',
        value: [{ offset: 1, duplicate: false }, 'retry', { error: { name: 'X', message: 'y' } }],
      }),
    ],
    decodePubReply,
  )
  fuzz(
    's.fetch call',
    [encodeFetchCall({ ...ref, offset: 3, maxBytes: 100, waitMs: 10 })],
    decodeFetchCall,
    (c) => checkStreamName(c.stream),
  )
  const rec = { key: enc.encode('k'), headers: { h: enc.encode('v') }, value: enc.encode('v') }
  fuzz(
    's.fetch reply',
    [
      encodeFetchReply({
        status: 'ok',
        value: {
          firstOffset: 0,
          nextOffset: 2,
          messages: [{ offset: 1, timestamp: 5, topic: 'orders.eu', ...rec }],
        },
      }),
    ],
    decodeFetchReply,
  )
  fuzz('s.pstat call', [encodeRef(ref)], decodeRef, (c) => checkStreamName(c.stream))
  fuzz(
    's.pstat reply',
    [
      encodeStateReply({
        status: 'ok',
        value: { role: 'leader', leader: 'a', firstOffset: 0, nextOffset: 1, inSync: ['a'] },
      }),
    ],
    decodeStateReply,
  )
  fuzz('s.seek call', [encodeSeek(ref, 'end'), encodeSeek(ref, { time: 5 })], decodeSeek, (c) =>
    checkStreamName(c.stream),
  )
  fuzz('s.seek reply', [encodeOffsetReply({ status: 'ok', value: 9 })], decodeOffsetReply)
  fuzz(
    's.pub call (conditional)',
    [
      writePubMessage(writePubHead(new BinaryWriter(64), ref, 'all', 1), { ...msg, expectedRevision: 7 })
        .finish()
        .slice(),
    ],
    decodePubCall,
    (c) => {
      checkStreamName(c.stream)
      for (const m of c.messages)
        if (m.expectedRevision !== undefined && !(m.expectedRevision >= -1)) throw new Error('bad revision')
    },
  )
  fuzz(
    's.get call',
    [
      encodeGetCall({ ...ref, op: 'offset', offset: 4 }),
      encodeGetCall({ ...ref, op: 'key', key: enc.encode('k'), auth: new Uint8Array(16) }),
    ],
    decodeGetCall,
    (c) => checkStreamName(c.stream),
  )
  fuzz(
    's.get reply',
    [
      encodeGetReply({
        status: 'ok',
        value: {
          message: {
            offset: 1,
            timestamp: 5,
            topic: 't',
            key: enc.encode('k'),
            headers: undefined,
            value: enc.encode('v'),
          },
          dropped: true,
        },
      }),
      encodeGetReply({ status: 'notLeader', hint: 'x' }),
    ],
    decodeGetReply,
  )
  const cref = { cluster: 'db', stream: 'orders', createdIndex: 2, durable: 'billing' }
  fuzz(
    's.cons call',
    [
      encodeConsumerCall({ ...cref, op: 'commit', offsets: [[0, 5]] }),
      encodeConsumerCall({ ...cref, op: 'positions' }),
      encodeConsumerCall({ ...cref, op: 'lease', partition: 0, holder: 'h', ttlMs: 5000 }),
      encodeConsumerCall({ ...cref, op: 'commit', offsets: [[0, 5]], holder: 'h' }),
      encodeConsumerCall({ ...cref, durable: '', op: 'list' }),
      encodeConsumerCall({ ...cref, op: 'describe' }),
    ],
    decodeConsumerCall,
    (c) => {
      checkClusterName(c.cluster)
      checkStreamName(c.stream)
      if (c.op !== 'list') checkStreamName(c.durable) // a list names no durable
    },
  )
  fuzz(
    's.purge call',
    [
      encodePurgeCall({
        ...ref,
        call: encodeMetaCall({ op: 'purge', cluster: 'db', requestId: 'r', name: 'o' }),
      }),
    ],
    decodePurgeCall,
    (c) => checkStreamName(c.stream),
  )
  fuzz(
    's.cons reply',
    [encodeLeaderReply({ status: 'ok', value: { granted: true, holder: 'h', consumers: 1 } }, writeLease)],
    (b) => decodeLeaderReply(b, readLease),
  )
  fuzz('s.copy call', [encodeCopyCall({ ...ref, fromOffset: 0, maxBytes: 1000 })], decodeCopyCall, (c) =>
    checkStreamName(c.stream),
  )
  fuzz(
    's.copy reply',
    [encodeCopyReply({ earliest: 0, end: 2, records: [{ offset: 1, timestamp: 2, term: 1, ...rec }] })],
    decodeCopyReply,
  )
  fuzz('s.load reply', [encodeLoad(true, 3)], decodeLoad)
})

describe('hostile peers: mutated valid frames of every type', () => {
  it('never crash the node and never deliver an invalid value to a handler or subscriber', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const ops = (): Array<[number, number, number]> =>
      Array.from({ length: 1 + Math.floor(rand() * 4) }, () => [
        Math.floor(rand() * 1e6),
        Math.floor(rand() * 256),
        Math.floor(rand() * 4),
      ])
    try {
      const [target, client] = await startNodes(2, { maxMessageSize: MAX })
      const seen: Array<() => void> = []
      target.subscribe('>', (m) => void seen.push(() => checkMessage(m)))
      await target.join('db', {
        key: generateKey(),
        onRequest: (data) => {
          seen.push(() => expect(data.length).toBeLessThanOrEqual(MAX))
          return 'alive'
        },
        onBroadcast: (data, ctx) => {
          seen.push(() => {
            checkClusterName(ctx.cluster)
            expect(data.length).toBeLessThanOrEqual(MAX)
          })
        },
        onTunnel: (_t, ctx) => void seen.push(() => checkClusterName(ctx.cluster)),
      })
      await waitForMembers(client, 'db', 1)
      const raftGroup = (w: BinaryWriter) => w.str('meta/db').bytes(raftMsg)
      const pubCall = writePubMessage(writePubHead(new BinaryWriter(64), ref, 'all', 1), msg)
        .finish()
        .slice()
      const samples: Array<[number, Uint8Array]> = [
        [FrameType.Ping, body(FrameType.Ping, (w) => w.u64(1))],
        [FrameType.Pong, body(FrameType.Pong, (w) => w.u64(Date.now()))],
        [
          FrameType.Announce,
          body(FrameType.Announce, (w) => w.bytes(signer.announce(AnnounceKind.Join, 'p', Date.now(), []))),
        ],
        [
          FrameType.Request,
          body(FrameType.Request, (w) => w.u32(1).str('db').u32(1000).u8(0).bytes(enc.encode('q'))),
        ],
        [FrameType.Reply, body(FrameType.Reply, (w) => w.u32(1).u8(0).bytes(enc.encode('r')))],
        [FrameType.Cancel, body(FrameType.Cancel, (w) => w.u32(1))],
        [
          FrameType.Interest,
          body(FrameType.Interest, (w) => writeInterest(w, InterestMode.Replace, ['orders.*'])),
        ],
        [
          FrameType.Publish,
          body(FrameType.Publish, (w) =>
            writePublish(w, 'orders.eu', enc.encode('d'), enc.encode('k'), { a: 'b' }),
          ),
        ],
        [
          FrameType.Broadcast,
          body(FrameType.Broadcast, (w) => w.str('o').u32(1).str('db').u16(0).bytes(enc.encode('b'))),
        ],
        [
          FrameType.TunnelOpen,
          body(FrameType.TunnelOpen, (w) =>
            w
              .u32(1)
              .u8(0)
              .str('db')
              .u32(1000)
              .u32(1 << 20),
          ),
        ],
        [
          FrameType.TunnelAccept,
          body(FrameType.TunnelAccept, (w) =>
            w
              .u32(1)
              .u8(1)
              .u32(1 << 20),
          ),
        ],
        [
          FrameType.TunnelData,
          body(FrameType.TunnelData, (w) => w.u32(1).u8(0).u8(0).bytes(enc.encode('t'))),
        ],
        [FrameType.TunnelCredit, body(FrameType.TunnelCredit, (w) => w.u32(1).u8(0).u32(100))],
        [FrameType.TunnelClose, body(FrameType.TunnelClose, (w) => w.u32(1).u8(0).u8(0).str('bye'))],
        [FrameType.Raft, body(FrameType.Raft, raftGroup)],
        [
          FrameType.RpcCall,
          body(FrameType.RpcCall, (w) => w.u32(1).str('s.pub').u32(1000).u8(0).bytes(pubCall)),
        ],
        [FrameType.RpcReply, body(FrameType.RpcReply, (w) => w.u32(1).u8(0).bytes(new Uint8Array(3)))],
        [FrameType.StreamTable, body(FrameType.StreamTable, (w) => w.bytes(table))],
      ]
      const { attacker, dial } = await linkAttacker(target)
      try {
        const rounds = Math.max(20, Math.floor(FUZZ_RUNS / 10))
        for (let round = 0; round < rounds; round++) {
          const stream = await dial()
          for (let i = 0; i < 8; i++) {
            const [type, valid] = samples[Math.floor(rand() * samples.length)]!
            const b = rand() < 0.3 ? valid : mutate(valid, ops())
            const w = new BinaryWriter(64)
            writeFrame(w, type, (x) => x.raw(b))
            stream.send(w.finish().slice())
          }
          await new Promise((r) => setTimeout(r, 20))
          await stream.close().catch(() => {})
        }
        await new Promise((r) => setTimeout(r, 200))
        for (const check of seen) check()
        // The node still serves everyone else.
        expect(dec(await client.request('db', 'x'))).toBe('alive')
      } finally {
        await attacker.stop()
      }
    } catch (err) {
      console.error(`fuzz seed ${seed} (replay with TEST_SEED=${seed})`)
      throw err
    }
  })
})
