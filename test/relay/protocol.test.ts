/**
 * The relay wire protocol against a real node: handshake, version refusal, ERROR frames
 * for bad input, and garbage, truncated and oversized frames thrown at the relay port —
 * the node never crashes and keeps serving afterwards.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { connectRelay, RelayUnavailableError } from '../../relay/index.js'
import {
  decodeError,
  decodeStrBody,
  decodeWelcome,
  encodeRequest,
  FrameDecoder,
  MAGIC,
  Op,
  opcodeName,
  writeFrame,
} from '../../relay/wire/protocol.js'
import { generateKey } from '../../src/index.js'
import { BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { startNode, uniqueNetwork } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const text = (b: Uint8Array) => new TextDecoder().decode(b)

async function relayNode() {
  const node = await startNode({ network: uniqueNetwork('relayp'), relay: { port: 0 } })
  await node.join('echo', { key: generateKey(), onRequest: (d) => d })
  return node
}

async function stillServes(address: string): Promise<void> {
  const c = await connectRelay({ address })
  try {
    expect(text(await c.request('echo', 'alive'))).toBe('alive')
  } finally {
    await c.close()
  }
}

describe('relay protocol', () => {
  it('decodes frames split at every byte and rejects bad lengths', () => {
    const w = new BinaryWriter()
    writeFrame(w, Op.Request, 7, (b) =>
      encodeRequest(b, { cluster: 'c', timeoutMs: 5, data: new Uint8Array([1, 2]) }),
    )
    writeFrame(w, Op.Ping, 8)
    const bytes = w.finish().slice()
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new FrameDecoder(1024)
      d.push(bytes.subarray(0, cut))
      const got = []
      for (let f = d.next(); f; f = d.next()) got.push(f)
      d.push(bytes.subarray(cut))
      for (let f = d.next(); f; f = d.next()) got.push(f)
      expect(got.map((f) => [f.opcode, f.id])).toEqual([
        [Op.Request, 7],
        [Op.Ping, 8],
      ])
    }
    const small = new FrameDecoder(1024)
    small.push(new Uint8Array([0, 0, 0, 2, 1, 1]))
    expect(() => small.next()).toThrow(DecodeError)
    const big = new FrameDecoder(1024)
    big.push(new Uint8Array([0, 1, 0, 0]))
    expect(() => big.next()).toThrow(/exceeds/)
    expect(opcodeName(Op.InvokeReply)).toBe('INVOKE_REPLY (0x21)')
    expect(opcodeName(0x31)).toBe('BROADCAST_DELIVER (0x31)')
    expect(opcodeName(0x3f)).toContain('broadcast')
  })

  it('welcomes versions 1 and 2 and refuses other versions with a reason', async () => {
    const node = await relayNode()
    const ok = await RawPeer.open(node.relayAddress!)
    ok.hello()
    const welcome = await ok.next()
    expect(welcome.opcode).toBe(Op.Welcome)
    const w = decodeWelcome(welcome.body)
    expect(w).toMatchObject({
      version: 2,
      nodeId: node.id,
      network: node.network,
      maxMessageSize: 1024 * 1024,
    })
    ok.send(Op.Ping, 42)
    expect(await ok.next()).toMatchObject({ opcode: Op.Pong, id: 42 })
    // A reserved opcode is answered with ERROR and the connection stays open.
    ok.send(0x3f, 43)
    const unsupported = await ok.next()
    expect(unsupported).toMatchObject({ opcode: Op.Error, id: 43 })
    expect(decodeError(unsupported.body)).toMatchObject({ name: 'InvalidArgumentError' })
    // A bad cluster name is an ERROR for that request only.
    ok.send(Op.Request, 44, (b) =>
      encodeRequest(b, { cluster: 'bad name', timeoutMs: 0, data: new Uint8Array() }),
    )
    const bad = await ok.next()
    expect(bad).toMatchObject({ opcode: Op.Error, id: 44 })
    const e = decodeError(bad.body)
    expect(e.name).toBe('InvalidArgumentError')
    expect(e.message).toContain('cluster')
    ok.send(Op.Request, 45, (b) =>
      encodeRequest(b, { cluster: 'echo', timeoutMs: 1000, data: new Uint8Array([9]) }),
    )
    const reply = await ok.next()
    expect(reply).toMatchObject({ opcode: Op.Reply, id: 45 })
    ok.destroy()

    const old = await RawPeer.open(node.relayAddress!)
    old.hello(99)
    const refuse = await old.next()
    expect(refuse.opcode).toBe(Op.Refuse)
    expect(decodeStrBody(refuse.body, 'REFUSE')).toMatch(/unsupported protocol version 99.*versions 1 and 2/)
    await old.waitClosed()

    // A version-1 client is still served, and WELCOME repeats its version.
    const v1 = await RawPeer.open(node.relayAddress!)
    v1.hello(1)
    const w1 = await v1.next()
    expect(decodeWelcome(w1.body).version).toBe(1)
    v1.send(Op.Request, 1, (b) =>
      encodeRequest(b, { cluster: 'echo', timeoutMs: 1000, data: new Uint8Array([7]) }),
    )
    expect((await v1.next()).opcode).toBe(Op.Reply)
    v1.destroy()
  })

  it('answers requests already sent by a client that half-closed, then closes', async () => {
    const node = await relayNode()
    const p = await RawPeer.open(node.relayAddress!)
    p.hello()
    for (let id = 1; id <= 3; id++) {
      p.send(Op.Request, id, (b) =>
        encodeRequest(b, { cluster: 'echo', timeoutMs: 2000, data: new Uint8Array([id]) }),
      )
    }
    p.socket.end()
    expect((await p.next()).opcode).toBe(Op.Welcome)
    const answers = [await p.next(), await p.next(), await p.next()]
    expect(answers.map((f) => [f.opcode, f.id]).sort()).toEqual([
      [Op.Reply, 1],
      [Op.Reply, 2],
      [Op.Reply, 3],
    ])
    await p.waitClosed()
  })

  it('answers malformed frames with a named error, closes, and keeps serving', async () => {
    const node = await relayNode()
    const addr = node.relayAddress!
    // A frame other than HELLO first.
    const first = await RawPeer.open(addr)
    first.send(Op.Status, 1)
    const r1 = await first.next()
    expect(r1.opcode).toBe(Op.Refuse)
    expect(decodeStrBody(r1.body, 'REFUSE')).toContain('expected HELLO')
    await first.waitClosed()
    // Bad magic.
    const magic = await RawPeer.open(addr)
    magic.send(Op.Hello, 0, (b) =>
      b
        .raw(new Uint8Array([1, 2, 3, 4]))
        .u16(1)
        .str('x'),
    )
    expect(decodeStrBody((await magic.next()).body, 'REFUSE')).toContain('bad magic')
    await magic.waitClosed()
    // A truncated REQUEST body after the handshake.
    const trunc = await RawPeer.open(addr)
    trunc.hello()
    await trunc.next()
    trunc.send(Op.Request, 5, (b) => b.str('echo').u32(0).u32(100).raw(new Uint8Array(3)))
    const r2 = await trunc.next()
    expect(r2.opcode).toBe(Op.Error)
    expect(r2.id).toBe(0)
    const e2 = decodeError(r2.body)
    expect(e2.name).toBe('InvalidArgumentError')
    expect(e2.message).toMatch(/malformed frame: truncated/)
    await trunc.waitClosed()
    // An oversized length prefix.
    const huge = await RawPeer.open(addr)
    huge.hello()
    await huge.next()
    huge.write(new Uint8Array([0x7f, 0xff, 0xff, 0xff, Op.Request]))
    expect(decodeError((await huge.next()).body).message).toMatch(/exceeds the relay's limit/)
    await huge.waitClosed()
    // An HTTP client by mistake.
    const http = await RawPeer.open(addr)
    http.write(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    expect((await http.next()).opcode).toBe(Op.Refuse)
    await http.waitClosed()
    await stillServes(addr)
  })

  it('survives random bytes, truncated frames and abrupt disconnects', async () => {
    const node = await relayNode()
    const addr = node.relayAddress!
    const peers: RawPeer[] = []
    for (let i = 0; i < 40; i++) {
      const p = await RawPeer.open(addr)
      peers.push(p)
      if (i % 2 === 0) p.hello()
      const junk = randomBytes(16 + Math.floor(Math.random() * 300))
      if (i % 4 === 1) junk.set(MAGIC, 9)
      p.write(junk)
      if (i % 3 === 0) p.destroy()
    }
    // Half frames left dangling, then the socket dropped mid-frame.
    const half = await RawPeer.open(addr)
    half.hello()
    const w = new BinaryWriter()
    writeFrame(w, Op.Request, 3, (b) =>
      encodeRequest(b, { cluster: 'echo', timeoutMs: 0, data: new Uint8Array(500) }),
    )
    half.write(w.finish().subarray(0, 100))
    half.destroy()
    for (const p of peers) p.destroy()
    await stillServes(addr)
    expect(node.status().id).toBe(node.id)
  })

  it('keeps serving others while a client does not read its replies', async () => {
    const node = await relayNode()
    const stuck = await RawPeer.open(node.relayAddress!)
    stuck.socket.pause() // never reads
    stuck.hello()
    const data = new Uint8Array(512 * 1024)
    for (let id = 1; id <= 48; id++) {
      stuck.send(Op.Request, id, (b) => encodeRequest(b, { cluster: 'echo', timeoutMs: 5000, data }))
    }
    await new Promise((r) => setTimeout(r, 300))
    await stillServes(node.relayAddress!)
    stuck.destroy()
    await stillServes(node.relayAddress!)
  })

  it('refuses a thin client through the TypeScript client with a clear error', async () => {
    const node = await relayNode()
    // A handshake that never completes: the client gives up with TimeoutError.
    const { createServer } = await import('node:net')
    const silent = createServer((s) => s.resume()) // reads, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const port = (silent.address() as { port: number }).port
    await expect(connectRelay({ port, timeout: 200 })).rejects.toThrow(/within 200 ms/)
    await new Promise((r) => silent.close(r))
    const c = await connectRelay({ address: node.relayAddress! })
    await c.close()
    await expect(c.request('echo', 'x')).rejects.toThrow(/closed/)
    expect(RelayUnavailableError.name).toBe('RelayUnavailableError')
  })
})
