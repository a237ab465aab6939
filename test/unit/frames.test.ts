import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_TIMEOUT } from '../../src/constants.js'
import {
  decodeReply,
  decodeRequest,
  encodeReplyError,
  encodeReplyOk,
  encodeRequest,
  FRAME_HEADER_BYTES,
  FrameType,
  ReplyStatus,
} from '../../src/link/frames.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../src/util/binary.js'

function body(bytes: Uint8Array, type: number): BinaryReader {
  const r = new BinaryReader(bytes)
  expect(r.u32()).toBe(bytes.length - FRAME_HEADER_BYTES)
  expect(r.u8()).toBe(type)
  return r
}

describe('link frames', () => {
  it('round-trips requests (property)', () => {
    fc.assert(
      fc.property(
        fc.nat(0xffffffff),
        fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
        fc.nat(MAX_TIMEOUT),
        fc.uint8Array({ maxLength: 2048 }),
        (id, cluster, remainingMs, data) => {
          const w = new BinaryWriter()
          encodeRequest(w, { id, cluster, remainingMs, flags: 0, data })
          const f = decodeRequest(body(w.finish(), FrameType.Request), 1 << 20)
          expect(f).toEqual({ id, cluster, remainingMs, flags: 0, data })
        },
      ),
    )
  })

  it('round-trips ok and error replies', () => {
    const w = new BinaryWriter()
    encodeReplyOk(w, 7, new Uint8Array([1, 2]))
    expect(decodeReply(body(w.finish(), FrameType.Reply), 100)).toEqual({
      id: 7,
      status: ReplyStatus.Ok,
      data: new Uint8Array([1, 2]),
    })
    const e = new BinaryWriter()
    encodeReplyError(e, 9, ReplyStatus.Error, 'RemoteError', 'boom')
    expect(decodeReply(body(e.finish(), FrameType.Reply), 100)).toEqual({
      id: 9,
      status: ReplyStatus.Error,
      name: 'RemoteError',
      message: 'boom',
    })
  })

  it('refuses truncated bodies, trailing bytes and oversized data', () => {
    const w = new BinaryWriter()
    encodeRequest(w, { id: 1, cluster: 'c', remainingMs: 5, flags: 0, data: new Uint8Array(100) })
    const full = w.finish()
    for (let n = FRAME_HEADER_BYTES + 1; n < full.length; n++) {
      expect(() => decodeRequest(body2(full.subarray(0, n)), 1000)).toThrow(DecodeError)
    }
    const extra = new Uint8Array([...full, 0])
    expect(() => decodeRequest(body2(extra), 1000)).toThrow(DecodeError)
    expect(() => decodeRequest(body2(full), 10)).toThrow(DecodeError)
  })
})

function body2(bytes: Uint8Array): BinaryReader {
  const r = new BinaryReader(bytes)
  r.u32()
  r.u8()
  return r
}
