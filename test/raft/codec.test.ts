/**
 * The Raft wire codec: round trips, and hostile input (random bytes, truncation, bit flips,
 * semantically impossible messages) that must throw DecodeError and nothing else.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  decodeConfChange,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeMessage,
  type Entry,
  encodeConfChange,
  encodeConfState,
  encodeEntry,
  encodeHardState,
  encodeMessage,
  MESSAGE_TYPES,
  type Message,
  message,
} from '../../src/raft/index.js'
import { DecodeError } from '../../src/util/binary.js'
import { Sim } from './sim.js'

const id = fc.string({ minLength: 1, maxLength: 20 })
const u = fc.integer({ min: 1, max: 2 ** 40 })

const msgArb: fc.Arbitrary<Message> = fc
  .record({
    type: fc.constantFrom(
      ...MESSAGE_TYPES.filter((t) => t !== 'MsgApp' && t !== 'MsgProp' && t !== 'MsgSnap'),
    ),
    from: id,
    to: id,
    term: u,
    logTerm: fc.nat(),
    index: fc.nat(),
    commit: fc.nat(),
    reject: fc.boolean(),
    recovering: fc.boolean(),
    rejectHint: fc.nat(),
    transfer: fc.boolean(),
  })
  .map((r) => ({ ...r, entries: [] }))

const appArb: fc.Arbitrary<Message> = fc
  .record({
    from: id,
    to: id,
    term: fc.integer({ min: 3, max: 1000 }),
    index: fc.nat({ max: 1e6 }),
    commit: fc.nat(),
    datas: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }),
  })
  .map((r) => {
    const entries: Entry[] = r.datas.map((data, i) => ({
      index: r.index + 1 + i,
      term: r.term,
      type: 'normal',
      data,
    }))
    return message({
      type: 'MsgApp',
      from: r.from,
      to: r.to,
      term: r.term,
      logTerm: r.index === 0 ? 0 : 1,
      index: r.index,
      commit: r.commit,
      entries,
    })
  })

const snapArb: fc.Arbitrary<Message> = fc
  .record({
    from: id,
    to: id,
    term: fc.integer({ min: 1, max: 1000 }),
    index: fc.integer({ min: 1, max: 1e9 }),
    voters: fc.array(id, { minLength: 1, maxLength: 5 }),
    data: fc.uint8Array({ maxLength: 64 }),
  })
  .map((r) =>
    message({
      type: 'MsgSnap',
      from: r.from,
      to: r.to,
      term: r.term,
      snapshot: { index: r.index, term: r.term, confState: { voters: r.voters }, data: r.data },
    }),
  )

function onlyDecodeErrors(f: () => unknown): void {
  try {
    f()
  } catch (err) {
    expect(err).toBeInstanceOf(DecodeError)
  }
}

describe('raft codec', () => {
  it('round-trips every message shape', () => {
    fc.assert(
      fc.property(fc.oneof(msgArb, appArb, snapArb), (m) => {
        expect(decodeMessage(encodeMessage(m))).toEqual(m)
      }),
    )
    const prop = message({
      type: 'MsgProp',
      from: 'a',
      to: 'b',
      entries: [
        { index: 0, term: 0, type: 'confChange', data: encodeConfChange({ type: 'addNode', nodeId: 'z' }) },
      ],
    })
    expect(decodeMessage(encodeMessage(prop))).toEqual(prop)
  })

  it('round-trips entries and durable state', () => {
    const e: Entry = { index: 7, term: 3, type: 'normal', data: new Uint8Array([1, 2, 3]) }
    expect(decodeEntry(encodeEntry(e))).toEqual(e)
    expect(decodeHardState(encodeHardState({ term: 4, vote: 'peer', commit: 9 }))).toEqual({
      term: 4,
      vote: 'peer',
      commit: 9,
    })
    expect(decodeHardState(encodeHardState({ term: 0, vote: null, commit: 0 }))).toEqual({
      term: 0,
      vote: null,
      commit: 0,
    })
    expect(decodeConfState(encodeConfState({ voters: ['a', 'b'] }))).toEqual({ voters: ['a', 'b'] })
    expect(decodeConfChange(encodeConfChange({ type: 'removeNode', nodeId: 'q' }))).toEqual({
      type: 'removeNode',
      nodeId: 'q',
    })
  })

  it('throws only DecodeError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        onlyDecodeErrors(() => decodeMessage(b))
        onlyDecodeErrors(() => decodeEntry(b))
        onlyDecodeErrors(() => decodeHardState(b))
        onlyDecodeErrors(() => decodeConfState(b))
        onlyDecodeErrors(() => decodeConfChange(b))
      }),
      { numRuns: 2000 },
    )
  })

  it('throws only DecodeError on truncated or bit-flipped messages', () => {
    fc.assert(
      fc.property(fc.oneof(msgArb, appArb, snapArb), fc.nat(), fc.nat(7), (m, pos, bit) => {
        const b = encodeMessage(m)
        expect(() => decodeMessage(b.subarray(0, pos % b.length))).toThrow(DecodeError)
        const flipped = b.slice()
        flipped[pos % b.length]! ^= 1 << bit
        onlyDecodeErrors(() => decodeMessage(flipped))
      }),
      { numRuns: 2000 },
    )
  })

  it('rejects semantically impossible messages', () => {
    const ok = message({
      type: 'MsgApp',
      from: 'a',
      to: 'b',
      term: 5,
      logTerm: 4,
      index: 10,
      entries: [
        { index: 11, term: 4, type: 'normal', data: new Uint8Array() },
        { index: 12, term: 5, type: 'normal', data: new Uint8Array() },
      ],
    })
    expect(() => decodeMessage(encodeMessage(ok))).not.toThrow()
    const bad = (patch: Partial<Message>) => () => decodeMessage(encodeMessage({ ...ok, ...patch }))
    expect(bad({ entries: [ok.entries[1]!, ok.entries[0]!] })).toThrow(DecodeError) // not consecutive
    expect(bad({ entries: [{ ...ok.entries[0]!, term: 6 }] })).toThrow(DecodeError) // above term
    expect(bad({ entries: [{ ...ok.entries[0]!, term: 3 }] })).toThrow(DecodeError) // below logTerm
    expect(bad({ logTerm: 9 })).toThrow(DecodeError)
    expect(bad({ term: 0 })).toThrow(DecodeError)
    expect(bad({ type: 'MsgHeartbeat' })).toThrow(DecodeError) // entries on a heartbeat
    expect(bad({ from: '' })).toThrow(DecodeError)
    expect(bad({ type: 'MsgProp', term: 0, entries: [] })).toThrow(DecodeError)
    // A conf change entry whose payload is garbage is refused at the wire, not at apply time.
    expect(
      bad({ entries: [{ index: 11, term: 5, type: 'confChange', data: new Uint8Array([9, 9]) }] }),
    ).toThrow(DecodeError)
    // Unknown type code and version.
    const b = encodeMessage(ok)
    const t = b.slice()
    t[1] = 200
    expect(() => decodeMessage(t)).toThrow(DecodeError)
    const v = b.slice()
    v[0] = 2
    expect(() => decodeMessage(v)).toThrow(DecodeError)
    // Trailing bytes.
    expect(() => decodeMessage(new Uint8Array([...b, 0]))).toThrow(DecodeError)
  })

  it('hostile but well-formed messages never make a node throw', () => {
    const ids = ['a', 'b', 'c']
    const s = new Sim({ ids, seed: 3, fifo: true })
    s.rn('a').campaign()
    s.stabilize()
    for (let i = 0; i < 5; i++) s.propose('a', `v${i}`)
    s.stabilize()
    const hostile = fc
      .oneof(msgArb, appArb, snapArb)
      .map((m) => ({ ...m, from: m.from.length % 2 ? 'b' : m.from, to: 'x' }))
    fc.assert(
      fc.property(fc.array(hostile, { maxLength: 20 }), fc.constantFrom(...ids), (msgs, target) => {
        const rn = s.rn(target)
        for (const m of msgs) {
          rn.step(decodeMessage(encodeMessage({ ...m, to: target })))
          rn.tick()
        }
        if (rn.hasReady()) {
          const rd = rn.ready()
          s.n(target).storage.append(rd.entries)
          if (rd.hardState) s.n(target).storage.setHardState(rd.hardState)
          rn.advance(rd)
        }
      }),
      { numRuns: 300 },
    )
  })
})
