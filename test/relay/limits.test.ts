/**
 * One limit everywhere (issue 19), through the relay with real nodes over loopback: a
 * message at every limit of src/constants.ts, published through the library or the thin
 * client, reaches relay subscribers and relay consumers (its frames fit); one over is refused
 * by the thin client before anything is sent, and a raw PUBLISH carrying it is answered
 * `ERROR InvalidArgumentError` naming the field, the connection staying open, nothing stored.
 * Timeouts of 2^31 ms or more are refused by the client and by the relay; `connectRelay`
 * refuses unknown options; a node at the largest `maxMessageSize` serves its largest frames.
 * test/limits.test.ts covers the same limits through the library.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient, type RelayServer, startRelay } from '../../relay/index.js'
import { decodeError, encodeRequest, Op, writeFrame } from '../../relay/wire/protocol.js'
import { encodeMessage, encodePublish, type PublishBody } from '../../relay/wire/protocol-ext.js'
import { encodeConsumeMessage, encodeStreamName } from '../../relay/wire/protocol-streams.js'
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  FRAME_OVERHEAD,
  MAX_KEY_BYTES,
  MAX_MAX_MESSAGE_SIZE,
  MAX_MSG_ID_BYTES,
  MAX_TIMEOUT,
  MAX_TOPIC_LENGTH,
} from '../../src/constants.js'
import { generateKey, type Message, type PlexusNode } from '../../src/index.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { headersAtLimit, overLimits, refused } from '../helpers/limits.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const dirs: string[] = []
const clients: RelayClient[] = []
const relays: RelayServer[] = []
const raws: RawPeer[] = []
afterEach(async () => {
  for (const r of raws.splice(0)) r.destroy()
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await Promise.all(relays.splice(0).map((r) => r.close()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** A member of `db` with a data directory and stream `lim` (`lim.>`), a publisher node, a relay on the member and a client. */
async function setup(): Promise<{
  member: PlexusNode
  pub: PlexusNode
  relay: RelayServer
  client: RelayClient
}> {
  const network = uniqueNetwork('rlimits')
  const root = await mkdtemp(join(tmpdir(), 'plexus-relay-limits-'))
  dirs.push(root)
  const member = await startNode({ network, dataDir: join(root, 'm') })
  const pub = await startNode({ network })
  await member.join('db', {
    key: generateKey(),
    onRequest: async (d) => {
      await new Promise((r) => setTimeout(r, 100))
      return d
    },
  })
  await waitForMembers(pub, 'db', 1, 10_000)
  await member.streams.create('lim', { cluster: 'db', subject: 'lim.>', replicas: 1 })
  const relay = await startRelay(member, { host: '127.0.0.1', port: 0 })
  relays.push(relay)
  const client = await connectRelay({ address: relay.address })
  clients.push(client)
  return { member, pub, relay, client }
}

/** A raw peer past the handshake. */
async function rawPeer(relay: RelayServer): Promise<RawPeer> {
  const raw = await RawPeer.open(relay.address)
  raws.push(raw)
  raw.hello()
  expect((await raw.next()).opcode).toBe(Op.Welcome)
  return raw
}

/** The ERROR answering call `id` on `raw`, as { name, message }. */
async function errorOf(raw: RawPeer, id: number): Promise<{ name: string; message: string }> {
  const f = await raw.next()
  expect(f.opcode, `answer to call ${id}`).toBe(Op.Error)
  expect(f.id).toBe(id)
  return decodeError(f.body)
}

describe('the limits fit in a relay frame', () => {
  it('MESSAGE, CONSUME_MESSAGE and PUBLISH at every limit, without data, fit in FRAME_OVERHEAD', () => {
    const topic = '€'.repeat(MAX_TOPIC_LENGTH) // 3 bytes a character: the longest topic in UTF-8
    const key = new Uint8Array(MAX_KEY_BYTES)
    const headers = headersAtLimit()
    const data = new Uint8Array(0)
    const frames: Array<[string, (w: BinaryWriter) => void, number]> = [
      [
        'MESSAGE',
        (w) => encodeMessage(w, { topic, from: 'p'.repeat(64), key, headers, dropped: 1, data }),
        Op.Message,
      ],
      [
        'CONSUME_MESSAGE',
        (w) =>
          encodeConsumeMessage(w, {
            topic,
            partition: 1,
            offset: 2 ** 52,
            timestamp: Date.now(),
            deliveryCount: 2,
            key,
            headers,
            data,
          }),
        Op.ConsumeMessage,
      ],
      [
        'PUBLISH',
        (w) =>
          encodePublish(w, {
            topic,
            key,
            headers,
            msgId: 'é'.repeat(MAX_MSG_ID_BYTES / 2),
            ack: 'all',
            timeoutMs: MAX_TIMEOUT,
            data,
          }),
        Op.Publish,
      ],
    ]
    for (const [name, body, op] of frames) {
      const w = new BinaryWriter()
      writeFrame(w, op, 1, body)
      // The length field counts the bytes after itself; the limit is maxMessageSize + FRAME_OVERHEAD.
      expect(w.finish().length - 4, name).toBeLessThanOrEqual(FRAME_OVERHEAD)
    }
  })
})

describe('message limits through the relay', () => {
  it('a message at every limit reaches relay subscribers and consumers, from the library and from the client', async () => {
    const { pub, client } = await setup()
    const got: Message[] = []
    const sub = client.subscribe('lim.>', (m) => void got.push(m))
    await sub.ready
    await waitFor(() => pub.status().counters['pubsub.peerPatterns']! >= 1, 5000, 'interest')

    const topic = `lim.${'€'.repeat(MAX_TOPIC_LENGTH - 4)}` // 3 bytes a character: the longest in UTF-8
    const key = new Uint8Array(MAX_KEY_BYTES).fill(7)
    const headers = headersAtLimit()
    const data = new Uint8Array(DEFAULT_MAX_MESSAGE_SIZE).fill(1)
    const fromLibrary = await pub.publish(topic, data, {
      key,
      headers,
      msgId: 'l'.repeat(MAX_MSG_ID_BYTES),
      ack: 'all',
    })
    const fromClient = await client.publish(topic, data, {
      key,
      headers,
      msgId: 'c'.repeat(MAX_MSG_ID_BYTES),
      ack: 'all',
    })
    expect([fromLibrary?.offset, fromClient?.offset]).toEqual([0, 1])
    await waitFor(() => got.length === 2, 5000, 'both messages at the relay subscriber')
    for (const m of got) {
      expect(m.topic).toBe(topic)
      expect(m.key).toEqual(key)
      expect(m.headers).toEqual(headers)
      expect(m.data.length).toBe(data.length)
    }
    const read: number[] = []
    for await (const m of client.consume('lim', { from: 'earliest' })) {
      expect(m.key).toEqual(key)
      expect(m.headers).toEqual(headers)
      read.push(m.offset)
      if (read.length === 2) break
    }
    expect(read).toEqual([0, 1])
    expect(await client.status()).toMatchObject({ id: expect.any(String) })
  }, 60_000)

  it('the client refuses what the library refuses; a raw PUBLISH with it gets ERROR InvalidArgumentError', async () => {
    const { pub, relay, client } = await setup()
    const got: Message[] = []
    const sub = client.subscribe('lim.>', (m) => void got.push(m))
    await sub.ready
    for (const [what, opts, re] of overLimits()) {
      await refused(client.publish('lim.x', 'over', opts), re).catch((e) => {
        throw new Error(`${what} (client): ${e.message}`)
      })
      await refused(client.publish('lim.x', 'over', { ...opts, ack: 'all' }), re).catch((e) => {
        throw new Error(`${what} (client, durable): ${e.message}`)
      })
    }
    await refused(client.publish(`lim.${'t'.repeat(MAX_TOPIC_LENGTH - 3)}`, 'x'), /topic.*1024/)

    // The same fields from a raw peer: answered ERROR InvalidArgumentError, connection open.
    const raw = await rawPeer(relay)
    const enc = new TextEncoder()
    const rawCases: Array<[Partial<PublishBody>, RegExp]> = [
      [{ key: new Uint8Array(MAX_KEY_BYTES + 1) }, /options\.key.*32768/],
      [{ key: new Uint8Array(70 * 1024), ack: 'all' }, /options\.key/],
      [{ msgId: 'm'.repeat(MAX_MSG_ID_BYTES + 1), ack: 'all' }, /options\.msgId/],
      [{ headers: { '': 'v' } }, /options\.headers.*empty/],
      [
        { headers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
        /options\.headers/,
      ],
      [{ headers: { big: 'v'.repeat(20_000) } }, /options\.headers.*16384/],
      [{ ack: 'all', timeoutMs: MAX_TIMEOUT + 1 }, /options\.timeout must be at most 2147483647/],
      [{ topic: `lim.${'t'.repeat(MAX_TOPIC_LENGTH)}` }, /topic/],
    ]
    let id = 1
    for (const [fields, re] of rawCases) {
      const body: PublishBody = {
        topic: 'lim.x',
        ack: 'none',
        timeoutMs: 0,
        data: enc.encode('raw'),
        ...fields,
      }
      raw.send(Op.Publish, id, (w) => encodePublish(w, body))
      const e = await errorOf(raw, id)
      expect(e.name).toBe('InvalidArgumentError')
      expect(e.message).toMatch(re)
      id++
    }
    raw.send(Op.Ping, id)
    expect((await raw.next()).opcode).toBe(Op.Pong)

    // Nothing refused was delivered or stored; the client's connection is intact.
    await client.publish('lim.after', 'after', { ack: 'all' })
    await waitFor(() => got.length === 1, 5000, 'the message after the refusals')
    expect(got[0]!.topic).toBe('lim.after')
    expect((await pub.streams.info('lim')).partitions[0]!.nextOffset).toBe(1)
  }, 60_000)

  it('timeouts of 2^31 ms or more are refused by the client and by the relay; 2^31 - 1 is honoured', async () => {
    const { relay, client } = await setup()
    const over = MAX_TIMEOUT + 1
    const re = /options\.timeout must be at most 2147483647 ms/
    await refused(client.request('db', 'x', { timeout: over }), re)
    await refused(client.publish('lim.x', 'x', { ack: 'all', timeout: over }), re)
    await refused(client.tunnel('db', { timeout: over }), re)
    await refused(client.streams.info('lim', { timeout: over }), re)
    await refused(
      () => client.consume('lim', { durable: 'd', ackWait: over }),
      /options\.ackWait must be at most/,
    )
    await refused(connectRelay({ address: relay.address, timeout: over }), re)

    const raw = await rawPeer(relay)
    raw.send(Op.Request, 1, (w) =>
      encodeRequest(w, { cluster: 'db', timeoutMs: over, data: new Uint8Array(1) }),
    )
    expect(await errorOf(raw, 1)).toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(re),
    })
    raw.send(Op.StreamInfo, 2, (w) => encodeStreamName(w, { name: 'lim', timeoutMs: 0xffffffff }))
    expect(await errorOf(raw, 2)).toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(re),
    })

    // The longest timeout does not fire at once: the reply after 100 ms arrives.
    const reply = await client.request('db', 'late', { timeout: MAX_TIMEOUT })
    expect(new TextDecoder().decode(reply)).toBe('late')
  }, 30_000)

  it('connectRelay refuses unknown options; a node at the largest maxMessageSize serves its largest frames', async () => {
    const node = await startNode({ maxMessageSize: MAX_MAX_MESSAGE_SIZE })
    const relay = await startRelay(node, { host: '127.0.0.1', port: 0 })
    relays.push(relay)
    await refused(connectRelay({ adress: relay.address } as never), /unknown option options\.adress/)
    const client = await connectRelay({ address: relay.address })
    clients.push(client)
    expect(client.maxMessageSize).toBe(MAX_MAX_MESSAGE_SIZE)
    const got: Message[] = []
    const sub = client.subscribe('big.>', (m) => void got.push(m))
    await sub.ready
    const key = new Uint8Array(MAX_KEY_BYTES)
    const headers = headersAtLimit()
    const topic = `big.${'€'.repeat(MAX_TOPIC_LENGTH - 4)}`
    await client.publish(topic, new Uint8Array(MAX_MAX_MESSAGE_SIZE), { key, headers })
    await waitFor(() => got.length === 1, 10_000, 'the largest message')
    expect(got[0]!.data.length).toBe(MAX_MAX_MESSAGE_SIZE)
    expect(got[0]!.headers).toEqual(headers)
    await refused(client.publish('big.x', new Uint8Array(MAX_MAX_MESSAGE_SIZE + 1)), /data.*8388608/)
  }, 30_000)
})
