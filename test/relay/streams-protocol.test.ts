/**
 * The durable-stream relay frames (0x60–0x6C): every body round-trips through its codec,
 * a CONSUME_MESSAGE's credit cost is exactly its frame's length field, malformed bodies
 * are refused by the decoders and are fatal for that connection only, frames for unknown
 * consumers are ignored, and random bodies under every stream opcode never crash the node.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { connectRelay } from '../../relay/index.js'
import { decodeError, FrameDecoder, Op, opcodeName, writeFrame } from '../../relay/wire/protocol.js'
import {
  type ConsumeBody,
  type ConsumeMessageBody,
  consumeMessageCost,
  decodeConsume,
  decodeConsumeAck,
  decodeConsumeClose,
  decodeConsumeMessage,
  decodeStreamCreate,
  decodeStreamInfo,
  decodeStreamList,
  decodeStreamName,
  encodeConsume,
  encodeConsumeAck,
  encodeConsumeClose,
  encodeConsumeMessage,
  encodeStreamCreate,
  encodeStreamInfo,
  encodeStreamList,
  encodeStreamName,
} from '../../relay/wire/protocol-streams.js'
import { generateKey, type StreamInfo, type StreamSummary } from '../../src/index.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { startNode, uniqueNetwork } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const STREAM_OPS = [0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x68, 0x69, 0x6a, 0x6b, 0x6c]

function roundTrip<T>(encode: (w: BinaryWriter) => void, decode: (r: BinaryReader) => T): T {
  const w = new BinaryWriter()
  encode(w)
  return decode(new BinaryReader(w.finish()))
}

/** The frame as the peer sees it: opcode, id, and the body with its length field. */
function frameOf(opcode: number, id: number, encode: (w: BinaryWriter) => void) {
  const w = new BinaryWriter()
  writeFrame(w, opcode, id, encode)
  const bytes = w.finish()
  const d = new FrameDecoder(1 << 24)
  d.push(bytes)
  return { length: bytes.length - 4, frame: d.next()! }
}

describe('stream frame codecs', () => {
  it('round-trip every body', () => {
    const create = {
      name: 'orders',
      cluster: 'db',
      subject: 'orders.>',
      replicas: 3,
      partitions: 70_000,
      retention: { maxAge: 60_000, maxMessages: 2 ** 40 },
      compact: true,
      duplicateWindow: 5000,
      timeoutMs: 1234,
    }
    expect(roundTrip((w) => encodeStreamCreate(w, create), decodeStreamCreate)).toEqual(create)
    const locked = { ...create, access: { publish: 'capability', consume: 'open' } as const }
    expect(roundTrip((w) => encodeStreamCreate(w, locked), decodeStreamCreate)).toEqual(locked)
    const bare = {
      ...create,
      replicas: 0,
      partitions: 0,
      retention: {},
      compact: false,
      duplicateWindow: 0,
      timeoutMs: 0,
    }
    expect(roundTrip((w) => encodeStreamCreate(w, bare), decodeStreamCreate)).toEqual(bare)
    const name = { name: 'x', timeoutMs: 5 }
    expect(
      roundTrip(
        (w) => encodeStreamName(w, name),
        (r) => decodeStreamName(r, 'STREAM_INFO'),
      ),
    ).toEqual(name)

    const info: StreamInfo = {
      name: 'orders',
      cluster: 'db',
      duplicateWindow: 120_000,
      subject: 'orders.*',
      replicas: 2,
      retention: { maxBytes: 1 << 30 },
      compact: false,
      access: { publish: 'open', consume: 'capability' },
      partitions: [
        {
          partition: 0,
          leader: 'A',
          replicas: ['A', 'B'],
          inSync: ['A'],
          firstOffset: 5,
          nextOffset: 2 ** 50,
        },
        { partition: 1, leader: null, replicas: ['B', 'A'], inSync: [], firstOffset: 0, nextOffset: 0 },
      ],
    }
    expect(roundTrip((w) => encodeStreamInfo(w, info), decodeStreamInfo)).toEqual(info)
    const base = { retention: {}, compact: false, duplicateWindow: 120_000 }
    const list: StreamSummary[] = [
      {
        name: 'a',
        cluster: 'c',
        subject: 'a.>',
        partitions: 2,
        replicas: 2,
        ...base,
        retention: { maxAge: 1000 },
        access: { publish: 'capability', consume: 'open' },
        metadataLeader: 'M',
        placement: [
          { partition: 0, replicas: ['A', 'B'], leader: 'A' },
          { partition: 1, replicas: ['B', 'A'], leader: null },
        ],
      },
      {
        name: 'b',
        cluster: 'c',
        subject: 'b',
        partitions: 1,
        replicas: 1,
        ...base,
        compact: true,
        access: { publish: 'open', consume: 'open' },
        metadataLeader: null,
        placement: [{ partition: 0, replicas: ['A'], leader: null }],
      },
    ]
    expect(roundTrip((w) => encodeStreamList(w, list, true), decodeStreamList)).toEqual(list)
    expect(roundTrip((w) => encodeStreamList(w, [], true), decodeStreamList)).toEqual([])
    // Without details (an older client's empty STREAM_LIST): the five base fields only.
    const w = new BinaryWriter(64)
    encodeStreamList(w, list.slice(1), false)
    const r = new BinaryReader(w.finish())
    expect([r.u32(), r.str(), r.str(), r.str(), r.u32(), r.u16(), r.remaining]).toEqual([
      1,
      'b',
      'c',
      'b',
      1,
      1,
      0,
    ])

    const consumes: ConsumeBody[] = [
      { consumerId: 1, stream: 's', from: 'earliest', window: 1 << 21 },
      { consumerId: 2, stream: 's', from: 'latest', partition: 3, window: 5 },
      { consumerId: 3, stream: 's', from: 'new', durable: 'billing', ackWait: 30_000, window: 5 },
      { consumerId: 4, stream: 's', from: { offset: 2 ** 45 }, window: 5 },
      { consumerId: 5, stream: 's', from: { time: new Date(1_700_000_000_123) }, window: 5 },
    ]
    for (const c of consumes) expect(roundTrip((w) => encodeConsume(w, c), decodeConsume)).toEqual(c)
    const ack = { consumerId: 9, partition: 2, offset: 77 }
    expect(roundTrip((w) => encodeConsumeAck(w, ack), decodeConsumeAck)).toEqual(ack)
    const close = { kind: 1, name: 'StreamNotFoundError', message: 'gone' }
    expect(roundTrip((w) => encodeConsumeClose(w, close), decodeConsumeClose)).toEqual(close)
  })

  it('a CONSUME_MESSAGE costs exactly its frame length', () => {
    const messages: ConsumeMessageBody[] = [
      { topic: 'a', partition: 0, offset: 0, timestamp: 1, deliveryCount: 1, data: new Uint8Array() },
      {
        topic: 'orders.ü.€',
        partition: 7,
        offset: 2 ** 40,
        deliveryCount: 3,
        timestamp: Date.now(),
        key: new Uint8Array(300),
        headers: { 'content-type': 'text/plain', é: 'ß'.repeat(100) },
        data: new Uint8Array(randomBytes(4096)),
      },
    ]
    for (const m of messages) {
      const { length, frame } = frameOf(Op.ConsumeMessage, 3, (w) => encodeConsumeMessage(w, m))
      expect(consumeMessageCost(m)).toBe(length)
      expect(5 + frame.body.remaining).toBe(length)
      const back = decodeConsumeMessage(frame.body, 1 << 20)
      expect({ ...back, headers: back.headers && { ...back.headers } }).toEqual(m)
    }
  })

  it('decoders refuse malformed bodies', () => {
    const bad: Array<[(w: BinaryWriter) => void, (r: BinaryReader) => unknown]> = [
      [(w) => w.str('n').str('c').str('s').u16(1).u32(1).u8(8).u8(0).u32(0), decodeStreamCreate],
      [(w) => w.str('n').str('c').str('s').u16(1).u32(1).u8(0).u8(2).u32(0), decodeStreamCreate],
      [(w) => w.str('n').str('c').str('s').u16(1).u32(1).u8(0).u8(0), decodeStreamCreate],
      [(w) => w.str('n').u32(0).u8(0), (r) => decodeStreamName(r, 'STREAM_INFO')],
      [(w) => w.u32(1).str('s').u8(9).u8(0).u32(1), decodeConsume],
      [(w) => w.u32(1).str('s').u8(0).u8(8).u32(1), decodeConsume],
      [(w) => w.u32(1).str('s').u8(0).u8(1).u32(1), decodeConsume],
      [(w) => w.u32(1).u32(1).u32(0xffffffff).u32(0), decodeConsumeAck],
      [(w) => w.u8(2).str('').str(''), decodeConsumeClose],
      [(w) => w.u32(70_000), decodeStreamList],
      [
        (w) => w.str('t').u32(0).u64(0).u64(0).u8(4).bytes(new Uint8Array()),
        (r) => decodeConsumeMessage(r, 10),
      ],
      [
        (w) => w.str('t').u32(0).u64(0).u64(0).u8(0).bytes(new Uint8Array(11)),
        (r) => decodeConsumeMessage(r, 10),
      ],
    ]
    for (const [encode, decode] of bad) {
      expect(() => roundTrip(encode, decode)).toThrow(DecodeError)
    }
  })

  it('names the stream opcodes', () => {
    expect(opcodeName(Op.StreamCreate)).toBe('STREAM_CREATE (0x60)')
    expect(opcodeName(Op.ConsumeMessage)).toBe('CONSUME_MESSAGE (0x69)')
    expect(opcodeName(0x6f)).toBe('CONSUME_WORKING (0x6f)')
    expect(opcodeName(0x72)).toMatch(/^0x72 \(reserved for durable streams, continued/)
  })
})

describe('stream frames under hostile input', () => {
  async function relayNode() {
    const network = uniqueNetwork('relays')
    const a = await startNode({ network, relay: { port: 0 } })
    await a.join('echo', { key: generateKey(), onRequest: (d) => d })
    return a
  }

  async function welcomed(address: string): Promise<RawPeer> {
    const p = await RawPeer.open(address)
    p.hello()
    expect((await p.next()).opcode).toBe(Op.Welcome)
    return p
  }

  async function stillServes(address: string): Promise<void> {
    const c = await connectRelay({ address })
    try {
      expect(new TextDecoder().decode(await c.request('echo', 'alive'))).toBe('alive')
    } finally {
      await c.close()
    }
  }

  it('malformed bodies are fatal for that connection only; unknown consumer ids are ignored', async () => {
    const a = await relayNode()
    const bodies: Array<[number, (w: BinaryWriter) => void]> = [
      [Op.StreamCreate, (w) => w.str('n')],
      [Op.StreamInfo, (w) => w.str('n')],
      [Op.StreamDelete, (w) => w.str('n').u32(0).u8(1)],
      [Op.StreamList, (w) => w.u8(2)],
      [Op.StreamList, (w) => w.u8(1).u8(0)],
      [
        Op.Consume,
        (w) =>
          w
            .u32(1)
            .str('s')
            .u8(7)
            .u8(0)
            .u32(1 << 22),
      ],
      [Op.ConsumeCredit, (w) => w.u16(1)],
      [Op.ConsumeClose, (w) => w.u8(5).str('').str('')],
      [Op.ConsumeAck, (w) => w.u32(1)],
    ]
    for (const [op, body] of bodies) {
      const p = await welcomed(a.relayAddress!)
      p.send(op, 1, body)
      const f = await p.next()
      expect(f).toMatchObject({ opcode: Op.Error, id: 0 })
      expect(decodeError(f.body).message).toMatch(/^malformed frame/)
      await p.waitClosed()
    }
    const p = await welcomed(a.relayAddress!)
    p.send(Op.ConsumeCredit, 999, (w) => w.u32(5))
    p.send(Op.ConsumeClose, 999, (w) => w.u8(0).str('').str(''))
    p.send(Op.ConsumeAck, 2, (w) => encodeConsumeAck(w, { consumerId: 999, partition: 0, offset: 0 }))
    const e = await p.next()
    expect(e).toMatchObject({ opcode: Op.Error, id: 2 })
    expect(decodeError(e.body).message).toMatch(/consumer id 999/)
    // Server-to-client opcodes sent by a client are unsupported, not fatal.
    p.send(Op.StreamInfoReply, 3)
    expect(decodeError((await p.next()).body).message).toMatch(/unsupported opcode STREAM_INFO_REPLY/)
    p.send(Op.Ping, 4)
    expect(await p.next()).toMatchObject({ opcode: Op.Pong, id: 4 })
    p.destroy()
    await stillServes(a.relayAddress!)
  })

  it('random bodies under every stream opcode never crash the node', async () => {
    const a = await relayNode()
    for (let round = 0; round < 60; round++) {
      const p = await welcomed(a.relayAddress!)
      for (let i = 0; i < 5; i++) {
        const op = STREAM_OPS[Math.floor(Math.random() * STREAM_OPS.length)]!
        const body = randomBytes(Math.floor(Math.random() * 40))
        p.send(op, 1 + Math.floor(Math.random() * 4), (w) => w.raw(body))
      }
      await new Promise((r) => setTimeout(r, 5))
      p.destroy()
    }
    await stillServes(a.relayAddress!)
  })
})
