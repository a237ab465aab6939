/**
 * Relay bounds with real nodes and real TCP sockets over loopback:
 * - stream consumers whose clients never read their socket keep the node's memory under
 *   the documented bound (the relay's byte counters, and loosely arrayBuffers/RSS), whether
 *   the client's credit runs out first (a 2 MiB window) or the socket's write buffer does
 *   (a 256 MiB window), and a client that starts reading again gets every message;
 * - a connection that never says HELLO is closed after the handshake timeout; a handshaken
 *   one with nothing open after the idle timeout, unless it pings or holds a subscription;
 * - at the connection limit a new client takes the place of the oldest idle connection,
 *   and is refused with a REFUSE naming the limit when every connection is busy.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CONSUMER_LIMITS,
  connectRelay,
  type RelayClient,
  type RelayServer,
  RelayUnavailableError,
  startRelay,
} from '../../relay/index.js'
import { decodeError, FRAME_OVERHEAD, type Frame, Op } from '../../relay/wire/protocol.js'
import { encodeSubscribe } from '../../relay/wire/protocol-ext.js'
import { encodeConsume } from '../../relay/wire/protocol-streams.js'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../../src/constants.js'
import { InvalidArgumentError, type PlexusNode } from '../../src/index.js'
import { startNode, startStreamCluster, uniqueNetwork, waitFor } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const dirs: string[] = []
const peers: RawPeer[] = []
const clients: RelayClient[] = []
const relays: RelayServer[] = []
afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy()
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await Promise.all(relays.splice(0).map((r) => r.close()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

const MAX_FRAME = DEFAULT_MAX_MESSAGE_SIZE + FRAME_OVERHEAD
const MSG = 64 * 1024
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** CONSUME_MESSAGE frames each raw peer received, by consumer id. */
const received = new WeakMap<RawPeer, Map<number, number>>()

/** A raw peer that completed the handshake. */
async function welcomed(address: string): Promise<RawPeer> {
  const p = await RawPeer.open(address)
  peers.push(p)
  const counts = new Map<number, number>()
  received.set(p, counts)
  const push = p.frames.push.bind(p.frames)
  p.frames.push = (...fs: Frame[]) => {
    for (const f of fs) if (f.opcode === Op.ConsumeMessage) counts.set(f.id, (counts.get(f.id) ?? 0) + 1)
    return push(...fs)
  }
  p.hello()
  expect((await p.next()).opcode).toBe(Op.Welcome)
  return p
}

/** The next frame of `p` that is not a CONSUME_MESSAGE. */
async function answer(p: RawPeer): Promise<Frame> {
  for (;;) {
    const f = await p.next(10_000)
    if (f.opcode !== Op.ConsumeMessage) return f
  }
}

async function streamNode(messages: number): Promise<PlexusNode> {
  const root = await mkdtemp(join(tmpdir(), 'plexus-relay-bounds-'))
  dirs.push(root)
  const { members } = await startStreamCluster(root, { members: 1, outside: 0 })
  const node = members[0]!
  await node.streams.create('big', { cluster: 'db', subject: 'big.>', replicas: 1 })
  const data = new Uint8Array(MSG).fill(7)
  for (let i = 0; i < messages; i += 64) {
    await Promise.all(Array.from({ length: 64 }, () => node.publish('big.x', data, { ack: 'leader' })))
  }
  return node
}

describe('relay consumers that never read', () => {
  it('hold at most the documented bytes per consumer and connection; reading again gets everything', async () => {
    const total = 512 // 32 MiB of 64 KiB messages
    const node = await streamNode(total)
    const relay = await startRelay(node, { host: '127.0.0.1', port: 0 })
    relays.push(relay)
    const before = process.memoryUsage()
    const windows = [2 * 1024 * 1024, 2 * 1024 * 1024, 256 * 1024 * 1024, 256 * 1024 * 1024]
    const stuck: RawPeer[] = []
    for (const window of windows) {
      const p = await welcomed(relay.address)
      p.send(Op.Consume, 2, (w) =>
        encodeConsume(w, { consumerId: 1, stream: 'big', from: 'earliest', window }),
      )
      // A second, durable consumer on the same connection.
      p.send(Op.Consume, 3, (w) =>
        encodeConsume(w, {
          consumerId: 2,
          stream: 'big',
          from: 'earliest',
          durable: `d${stuck.length}`,
          window,
        }),
      )
      const oks = [await answer(p), await answer(p)]
      expect(oks.map((f) => f.opcode)).toEqual([Op.Ok, Op.Ok])
      p.socket.pause() // never reads again
      stuck.push(p)
    }
    // Let every consumer run into its bound (credit, socket buffer, budget).
    let last = -1
    await waitFor(
      async () => {
        const sent = relay.stats().consumers.reduce((n, c) => n + c.sent, 0)
        const still = sent === last
        last = sent
        await sleep(500)
        return still && sent > 0
      },
      30_000,
      'the consumers to stop sending',
    )
    const st = relay.stats()
    const after = process.memoryUsage()
    expect(st.connections).toBe(4) // nobody was dropped
    expect(st.consumers).toHaveLength(8)
    for (const c of st.consumers) {
      expect(c.held).toBeLessThanOrEqual(MAX_FRAME)
      const budget = c.id === 2 ? CONSUMER_LIMITS.durablePrefetchBytes : CONSUMER_LIMITS.prefetchBytes
      expect(c.inFlight).toBeLessThanOrEqual(budget + MSG + 1024)
    }
    // The consumers' share of each connection's outbound buffer: the high-water mark plus one frame.
    expect(st.maxOutboundBytes).toBeLessThanOrEqual(CONSUMER_LIMITS.socketHighWater + MAX_FRAME)
    const bound = 4 * (CONSUMER_LIMITS.prefetchBytes + CONSUMER_LIMITS.durablePrefetchBytes + 4 * MAX_FRAME)
    expect(st.consumerBytes).toBeLessThanOrEqual(bound)
    const grown = {
      rss: after.rss - before.rss,
      arrayBuffers: after.arrayBuffers - before.arrayBuffers,
    }
    console.log(
      `never-reading relay consumers: 8 consumers on a 32 MiB stream; relay consumerBytes ${(st.consumerBytes / 2 ** 20).toFixed(1)} MiB, max outbound ${(st.maxOutboundBytes / 2 ** 20).toFixed(2)} MiB; arrayBuffers +${(grown.arrayBuffers / 2 ** 20).toFixed(1)} MiB, rss +${(grown.rss / 2 ** 20).toFixed(1)} MiB`,
    )
    // Before the byte budgets every consumer buffered the whole stream: 8 x 32 MiB.
    expect(grown.arrayBuffers).toBeLessThan(bound + 16 * 1024 * 1024)
    expect(grown.rss).toBeLessThan(bound + 64 * 1024 * 1024)

    // A client with a large window that reads again receives every message of consumer 1.
    const p = stuck[2]!
    const counts = received.get(p)!
    expect(counts.get(1) ?? 0).toBeLessThan(total)
    p.socket.resume()
    await waitFor(() => counts.get(1) === total, 30_000, `all ${total} messages of consumer 1`)
  }, 120_000)
})

describe('relay connections', () => {
  it('a connection that sends no HELLO is refused and closed after the handshake timeout', async () => {
    const node = await startNode({ network: uniqueNetwork('rbound') })
    const relay = await startRelay(node, { host: '127.0.0.1', port: 0, handshakeTimeoutMs: 300 })
    relays.push(relay)
    const p = await RawPeer.open(relay.address)
    peers.push(p)
    const t0 = Date.now()
    const f = await p.next(3000)
    expect(f.opcode).toBe(Op.Refuse)
    expect(f.body.str('reason')).toMatch(/no HELLO within 300 ms/)
    await p.waitClosed(3000)
    expect(Date.now() - t0).toBeLessThan(2500)
    await waitFor(() => relay.stats().connections === 0, 2000, 'the slot to be free')
    expect(relay.stats().idleClosed).toBe(1)
  })

  it('closes a connection with nothing open after the idle timeout; pings and subscriptions keep one open', async () => {
    const node = await startNode({ network: uniqueNetwork('rbound') })
    const relay = await startRelay(node, { host: '127.0.0.1', port: 0, idleTimeoutMs: 400 })
    relays.push(relay)
    const quiet = await welcomed(relay.address)
    const pinging = await welcomed(relay.address)
    const subscribed = await welcomed(relay.address)
    subscribed.send(Op.Subscribe, 1, (w) => encodeSubscribe(w, { subId: 1, pattern: 'a.>', maxPending: 0 }))
    expect((await subscribed.next()).opcode).toBe(Op.Ok)
    const timer = setInterval(() => pinging.send(Op.Ping, 7), 100)
    try {
      const f = await quiet.next(3000)
      expect(f.opcode).toBe(Op.Error)
      expect(f.id).toBe(0)
      const e = decodeError(f.body)
      expect(e.name).toBe('TimeoutError')
      expect(e.message).toMatch(/idle/)
      await quiet.waitClosed(2000)
      await sleep(1000)
      expect(pinging.closed).toBe(false)
      expect(subscribed.closed).toBe(false)
      expect(relay.stats().connections).toBe(2)
      expect(relay.stats().idleClosed).toBe(1)
    } finally {
      clearInterval(timer)
    }
  })

  it('at the limit, a new client takes the place of the oldest idle connection', async () => {
    const node = await startNode({ network: uniqueNetwork('rbound') })
    const relay = await startRelay(node, { host: '127.0.0.1', port: 0, maxConnections: 4 })
    relays.push(relay)
    const idle: RawPeer[] = []
    for (let i = 0; i < 4; i++) {
      idle.push(await welcomed(relay.address))
      await sleep(20)
    }
    // The first one shows activity now: the second is the oldest idle one.
    idle[0]!.send(Op.Ping, 1)
    expect((await idle[0]!.next()).opcode).toBe(Op.Pong)
    const client = await connectRelay({ address: relay.address })
    clients.push(client)
    expect((await client.status()).id).toBe(node.id)
    const f = await idle[1]!.next(3000)
    expect(f.opcode).toBe(Op.Error)
    expect(f.id).toBe(0)
    const e = decodeError(f.body)
    expect(e.name).toBe('OverloadedError')
    expect(e.message).toMatch(/connection limit \(4\)/)
    await idle[1]!.waitClosed(2000)
    expect([idle[0]!, idle[2]!, idle[3]!].map((p) => p.closed)).toEqual([false, false, false])
    expect(relay.stats()).toMatchObject({ connections: 4, evicted: 1, refused: 0 })
  })

  it('at the limit with every connection busy, a new client is refused with a REFUSE naming the limit', async () => {
    const node = await startNode({
      network: uniqueNetwork('rbound'),
      relay: { port: 0, maxConnections: 4, idleTimeoutMs: 60_000, handshakeTimeoutMs: 2000 },
    })
    const address = node.relayAddress!
    const busy: RawPeer[] = []
    for (let i = 0; i < 4; i++) {
      const p = await welcomed(address)
      p.send(Op.Subscribe, 1, (w) => encodeSubscribe(w, { subId: 1, pattern: `t${i}.>`, maxPending: 0 }))
      expect((await p.next()).opcode).toBe(Op.Ok)
      busy.push(p)
    }
    const err = await connectRelay({ address }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(RelayUnavailableError)
    expect((err as Error).message).toMatch(/connection limit reached: 4 connections open and none idle/)
    await sleep(200)
    expect(busy.map((p) => p.closed)).toEqual([false, false, false, false])
    expect(node.status().counters).toMatchObject({
      'relay.connections': 4,
      'relay.refused': 1,
      'relay.evicted': 0,
    })
    // A busy client that lets go of its subscription becomes idle: the next client takes its place.
    busy[2]!.send(Op.Unsubscribe, 2, (w) => w.u32(1))
    expect((await busy[2]!.next()).opcode).toBe(Op.Ok)
    const client = await connectRelay({ address })
    clients.push(client)
    await busy[2]!.waitClosed(2000)
  })

  it('refuses bad relay limits at createNode', async () => {
    for (const relay of [{ maxConnections: 0 }, { idleTimeoutMs: -1 }, { handshakeTimeoutMs: 1.5 }]) {
      await expect(
        startNode({ network: uniqueNetwork('rbound'), relay: { port: 0, ...relay } }),
      ).rejects.toThrow(InvalidArgumentError)
    }
  })
})
