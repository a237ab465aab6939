/**
 * Request headers on the link wire: a request without headers keeps the layout every version
 * reads, reply headers go only to callers that set `ReplyHeaders`, and headers from a peer
 * are checked like the public API checks them.
 */
import { describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS } from '../../src/constants.js'
import {
  decodeReply,
  decodeRequest,
  encodeReplyOk,
  encodeRequest,
  FRAME_HEADER_BYTES,
  FrameType,
  ReplyStatus,
  RequestFlag,
  writeFrame,
  writeHeaders,
} from '../../src/link/frames.js'
import { RequestServer } from '../../src/request/server.js'
import { BinaryReader, BinaryWriter } from '../../src/util/binary.js'
import { PeerInputError } from '../../src/util/peer-input.js'

function body(bytes: Uint8Array, type: number): BinaryReader {
  const r = new BinaryReader(bytes)
  expect(r.u32()).toBe(bytes.length - FRAME_HEADER_BYTES)
  expect(r.u8()).toBe(type)
  return r
}

/** A request frame as versions before headers wrote it. */
function legacyRequest(id: number, cluster: string, remainingMs: number, data: Uint8Array): Uint8Array {
  const w = new BinaryWriter()
  writeFrame(w, FrameType.Request, (b) => b.u32(id).str(cluster).u32(remainingMs).u8(0).bytes(data))
  return w.finish()
}

/** Runs one request through a RequestServer whose handler replies with headers; returns the reply frame. */
async function serveOnce(flags: number, headers?: Record<string, string>) {
  let sent: Uint8Array | undefined
  let seen: Record<string, string> | undefined
  const server = new RequestServer({
    now: Date.now,
    sendTo: (_peer, enc) => {
      const w = new BinaryWriter()
      enc(w)
      sent = w.finish()
    },
    count: () => {},
  })
  server.serve(
    'c',
    (d, ctx) => {
      seen = ctx.headers
      return { data: d, headers: { reply: 'h' } }
    },
    { ...DEFAULT_LIMITS },
  )
  server.onRequest('peer', {
    id: 5,
    cluster: 'c',
    remainingMs: 1000,
    flags,
    headers,
    data: new Uint8Array([9]),
  })
  await new Promise((r) => setImmediate(r))
  return { reply: decodeReply(body(sent!, FrameType.Reply), 100), seen }
}

describe('request headers on the link', () => {
  it('a request without headers is byte for byte the layout older versions read', () => {
    const data = new Uint8Array([1, 2, 3])
    const w = new BinaryWriter()
    encodeRequest(w, { id: 42, cluster: 'db', remainingMs: 900, flags: 0, data })
    expect(w.finish()).toEqual(legacyRequest(42, 'db', 900, data))
    expect(decodeRequest(body(legacyRequest(42, 'db', 900, data), FrameType.Request), 100)).toEqual({
      id: 42,
      cluster: 'db',
      remainingMs: 900,
      flags: 0,
      data,
    })
  })

  it('round-trips headers in requests and replies', () => {
    const w = new BinaryWriter()
    const headers = { a: '1', 'x-ü': 'ß' }
    encodeRequest(w, {
      id: 1,
      cluster: 'db',
      remainingMs: 5,
      flags: RequestFlag.ReplyHeaders,
      headers,
      data: new Uint8Array([7]),
    })
    const f = decodeRequest(body(w.finish(), FrameType.Request), 100)
    expect(f.flags).toBe(RequestFlag.ReplyHeaders | RequestFlag.Headers)
    expect(f.headers).toEqual(headers)
    const r = new BinaryWriter()
    encodeReplyOk(r, 3, new Uint8Array([8]), { z: '' })
    expect(decodeReply(body(r.finish(), FrameType.Reply), 100)).toEqual({
      id: 3,
      status: ReplyStatus.Ok,
      data: new Uint8Array([8]),
      headers: { z: '' },
    })
  })

  it('sends reply headers only to a caller that reads them', async () => {
    const old = await serveOnce(0)
    expect(old.reply).toEqual({ id: 5, status: ReplyStatus.Ok, data: new Uint8Array([9]) })
    expect(old.seen).toBeUndefined()
    const cur = await serveOnce(RequestFlag.ReplyHeaders | RequestFlag.Headers, { q: '1' })
    expect(cur.reply).toEqual({
      id: 5,
      status: ReplyStatus.Ok,
      data: new Uint8Array([9]),
      headers: { reply: 'h' },
    })
    expect(cur.seen).toEqual({ q: '1' })
  })

  it('refuses peer headers the API would refuse (count, repeats, empty name, size)', () => {
    const frame = (write: (w: BinaryWriter) => void) => {
      const w = new BinaryWriter()
      writeFrame(w, FrameType.Request, (b) => {
        b.u32(1).str('db').u32(100).u8(RequestFlag.Headers)
        write(b)
        b.bytes(new Uint8Array(0))
      })
      return body(w.finish(), FrameType.Request)
    }
    const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, '']))
    expect(() =>
      decodeRequest(
        frame((w) => writeHeaders(w, tooMany)),
        100,
      ),
    ).toThrow(PeerInputError)
    expect(() =>
      decodeRequest(
        frame((w) => w.u16(2).str('a').str('1').str('a').str('2')),
        100,
      ),
    ).toThrow(/repeated/)
    expect(() =>
      decodeRequest(
        frame((w) => writeHeaders(w, { '': 'v' })),
        100,
      ),
    ).toThrow(PeerInputError)
    expect(() =>
      decodeRequest(
        frame((w) => writeHeaders(w, { big: 'v'.repeat(17_000) })),
        100,
      ),
    ).toThrow(PeerInputError)
  })
})
