/**
 * One limit everywhere (issue 19), through the library with real nodes over loopback: a
 * message key, headers, msgId and topic at their limits (src/constants.ts) reach remote
 * subscribers and a durable stream whole; one byte over is refused at publish with
 * `InvalidArgumentError` naming the field, plain and durable, before anything is sent or
 * stored. `createNode` refuses unknown options and absurd sizes; every timeout of 2^31 ms or
 * more is refused (Node's timers would fire at once) and 2^31 - 1 is honoured.
 * test/relay/limits.test.ts covers the same limits through the relay.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  FRAME_OVERHEAD,
  MAX_KEY_BYTES,
  MAX_MAX_MESSAGE_SIZE,
  MAX_MSG_ID_BYTES,
  MAX_RAFT_LOG_BYTES,
  MAX_TIMEOUT,
  MAX_TOPIC_LENGTH,
} from '../src/constants.js'
import { createNode, generateKey, type Message, type NodeOptions } from '../src/index.js'
import { FrameType, writeFrame as writeLinkFrame } from '../src/link/frames.js'
import { writePublish } from '../src/pubsub/frames.js'
import { writePubHead, writePubMessage } from '../src/streams/wire.js'
import { BinaryWriter } from '../src/util/binary.js'
import { headersAtLimit, overLimits, refused } from './helpers/limits.js'
import {
  startNode,
  startNodes,
  stopStartedNodes,
  uniqueNetwork,
  waitFor,
  waitForMembers,
} from './helpers/nodes.js'

const dirs: string[] = []
afterEach(async () => {
  await stopStartedNodes() // before their directories go
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

describe('message limits through the library', () => {
  it('a message at every limit reaches a remote subscriber and a stream; one over is refused at publish', async () => {
    const network = uniqueNetwork('limits')
    const root = await mkdtemp(join(tmpdir(), 'plexus-limits-'))
    dirs.push(root)
    const member = await startNode({ network, dataDir: join(root, 'm') })
    const [pub, sub] = await startNodes(2, { network })
    await member.join('db', { key: generateKey() })
    await waitForMembers(pub!, 'db', 1, 10_000)
    await member.streams.create('lim', { cluster: 'db', subject: 'lim.>', replicas: 1 })
    const got: Message[] = []
    sub!.subscribe('lim.>', (m) => void got.push(m))
    await waitFor(() => pub!.status().counters['pubsub.peerPatterns']! >= 1, 5000, 'interest')

    const topic = `lim.${'€'.repeat(MAX_TOPIC_LENGTH - 4)}` // 3 bytes a character: the longest in UTF-8
    const key = new Uint8Array(MAX_KEY_BYTES).fill(7)
    const headers = headersAtLimit()
    const msgId = 'i'.repeat(MAX_MSG_ID_BYTES)
    const data = new Uint8Array(DEFAULT_MAX_MESSAGE_SIZE).fill(1)
    const ack = await pub!.publish(topic, data, { key, headers, msgId, ack: 'all' })
    expect(ack).toMatchObject({ stream: 'lim', offset: 0 })
    await waitFor(() => got.length === 1, 5000, 'the message at every limit')
    expect(got[0]!.key).toEqual(key)
    expect(got[0]!.headers).toEqual(headers)
    expect(got[0]!.data.length).toBe(data.length)

    for (const [what, opts, re] of overLimits()) {
      await refused(pub!.publish('lim.x', 'over', opts), re).catch((e) => {
        throw new Error(`${what} (plain): ${e.message}`)
      })
      await refused(pub!.publish('lim.x', 'over', { ...opts, ack: 'all' }), re).catch((e) => {
        throw new Error(`${what} (durable): ${e.message}`)
      })
    }
    await refused(pub!.publish(`lim.${'t'.repeat(MAX_TOPIC_LENGTH - 3)}`, 'x'), /topic.*1024/)

    // Nothing refused went out or was stored, and the links still carry messages.
    await pub!.publish('lim.after', 'after', { ack: 'all' })
    await waitFor(() => got.length === 2, 5000, 'the message after the refusals')
    expect(got[1]!.topic).toBe('lim.after')
    const read: number[] = []
    for await (const m of pub!.consume('lim', { from: 'earliest' })) {
      read.push(m.offset)
      if (m.offset === 0) {
        expect(m.key).toEqual(key)
        expect(m.headers).toEqual(headers)
        expect(m.topic).toBe(topic)
      }
      if (read.length === 2) break
    }
    expect(read).toEqual([0, 1])
    expect((await pub!.streams.info('lim')).partitions[0]!.nextOffset).toBe(2)
  }, 60_000)
})

describe('the limits fit in a frame', () => {
  it('a message at every limit, without data, fits in FRAME_OVERHEAD on a link and in a stream publish call', () => {
    const worst = {
      topic: '€'.repeat(MAX_TOPIC_LENGTH), // 3 bytes a character: the longest topic in UTF-8
      key: new Uint8Array(MAX_KEY_BYTES),
      headers: headersAtLimit(),
      msgId: 'é'.repeat(MAX_MSG_ID_BYTES / 2),
      data: new Uint8Array(0),
    }
    const link = new BinaryWriter()
    writeLinkFrame(link, FrameType.Publish, (b) =>
      writePublish(b, worst.topic, worst.data, worst.key, worst.headers),
    )
    expect(link.finish().length).toBeLessThanOrEqual(FRAME_OVERHEAD)
    // One message alone in an s.pub call (a larger one always goes alone), inside an RpcCall frame.
    const ref = { stream: 's'.repeat(64), createdIndex: 2 ** 40, partition: 1023 }
    const call = writePubMessage(writePubHead(new BinaryWriter(), ref, 'all', 1), worst).finish()
    const rpc = new BinaryWriter()
    writeLinkFrame(rpc, FrameType.RpcCall, (b) => b.u32(1).str('s.pub').u32(MAX_TIMEOUT).u8(0).bytes(call))
    expect(rpc.finish().length).toBeLessThanOrEqual(FRAME_OVERHEAD)
  })
})

describe('createNode options', () => {
  it('refuses unknown options (nested ones too) and absurd sizes, naming them', async () => {
    const bad: Array<[NodeOptions, RegExp]> = [
      [{ bogus: 1 } as NodeOptions, /unknown option bogus/],
      [{ maxMesageSize: 10 } as NodeOptions, /unknown option maxMesageSize/],
      [{ streams: { bogus: 1 } } as NodeOptions, /unknown option streams\.bogus/],
      [{ relay: { prot: 1 } } as NodeOptions, /unknown option relay\.prot/],
      [{ discovery: { mnds: true } } as NodeOptions, /unknown option discovery\.mnds/],
      [{ discovery: { mdns: { iface: 'eth0' } } } as NodeOptions, /unknown option discovery\.mdns\.iface/],
      [{ maxMessageSize: 1e12 }, /maxMessageSize must be at most 8388608/],
      [{ maxMessageSize: MAX_MAX_MESSAGE_SIZE + 1 }, /maxMessageSize must be at most/],
      [{ streams: { raftLogBytes: MAX_RAFT_LOG_BYTES + 1 } }, /streams\.raftLogBytes must be at most/],
      [
        { streams: { replaceReplicaAfter: 2 ** 31 } },
        /streams\.replaceReplicaAfter must be at most 2147483647/,
      ],
    ]
    for (const [opts, re] of bad) await refused(createNode(opts), re)
    // At the bounds, and keys left undefined, are accepted.
    const node = await startNode({
      maxMessageSize: MAX_MAX_MESSAGE_SIZE,
      streams: { replaceReplicaAfter: MAX_TIMEOUT, raftLogBytes: MAX_RAFT_LOG_BYTES },
      bootstrap: undefined,
    })
    expect(node.maxMessageSize).toBe(MAX_MAX_MESSAGE_SIZE)
    await refused(
      node.join('c', { key: generateKey(), limits: { request: 1 } as never }),
      /options\.limits\.request/,
    )
  })
})

describe('timeouts', () => {
  it('2^31 ms or more is refused everywhere, naming the field; 2^31 - 1 is honoured', async () => {
    const [a, b] = await startNodes(2)
    const key = generateKey()
    await b!.join('c', {
      key,
      onRequest: async (d) => {
        await new Promise((r) => setTimeout(r, 100))
        return d
      },
      onTunnel: () => {},
    })
    await waitForMembers(a!, 'c', 1)
    const over = MAX_TIMEOUT + 1
    const re = /options\.timeout must be at most 2147483647 ms/
    await refused(a!.request('c', 'x', { timeout: over }), re)
    await refused(a!.request('c', 'x', { timeout: 1e300 }), re)
    await refused(a!.tunnel('c', { timeout: over }), re)
    await refused(a!.publish('t.x', 'x', { timeout: over }), re)
    await refused(a!.publish('t.x', 'x', { ack: 'all', timeout: over }), re)
    await refused(a!.streams.info('s', { timeout: over }), re)
    await refused(a!.streams.create('s', { cluster: 'c', subject: 's.>' }, { timeout: over }), re)
    await refused(() => a!.consume('s', { durable: 'd', ackWait: over }), /options\.ackWait must be at most/)
    // The longest timeout does not fire at once: the reply after 100 ms arrives.
    const reply = await a!.request('c', 'late', { timeout: MAX_TIMEOUT })
    expect(new TextDecoder().decode(reply)).toBe('late')
    const t = await a!.tunnel('c', { timeout: MAX_TIMEOUT })
    await t.close()
  })
})
