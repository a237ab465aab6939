import { describe, expect, it } from 'vitest'
import {
  decodeBatch,
  decodePosition,
  encodeBatch,
  encodePosition,
  messageSize,
  TOPIC_HEADER,
} from '../../src/streams/partition/batch.js'

describe('partition batch codec', () => {
  it('round-trips messages with and without keys and headers; sizes add up', () => {
    const enc = new TextEncoder()
    const msgs = [
      { value: enc.encode('plain'), timestamp: 1 },
      { key: enc.encode('k'), value: enc.encode('keyed'), timestamp: 2 ** 40 },
      {
        value: new Uint8Array(0),
        timestamp: 3,
        headers: { a: enc.encode('1'), [TOPIC_HEADER]: enc.encode('t.x') },
      },
    ]
    const data = encodeBatch(msgs)
    expect(data.length).toBe(5 + msgs.reduce((n, m) => n + messageSize(m), 0))
    expect(decodeBatch(data)).toEqual(msgs)
  })

  it('position headers round-trip, large raft indexes included', () => {
    for (const p of [
      { index: 1, pos: 0, count: 1 },
      { index: 2 ** 32 + 5, pos: 7, count: 9 },
      { index: Number.MAX_SAFE_INTEGER, pos: 65_535, count: 65_536 },
    ]) {
      const b = encodePosition(p)
      expect(b.length).toBe(16)
      expect(decodePosition(b)).toEqual(p)
    }
    expect(decodePosition(new Uint8Array(15))).toBeUndefined()
  })
})
