/**
 * Malformed and hostile version-2 frames (broadcast, pub/sub, tunnels) thrown at a relay:
 * bad values get a non-fatal ERROR, malformed bodies a fatal one, frames for unknown
 * tunnels are ignored, a client sending beyond its tunnel credit loses that tunnel, and
 * random bodies under every new opcode never crash the node.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { connectRelay } from '../../relay/index.js'
import { decodeError, Op } from '../../relay/wire/protocol.js'
import {
  decodeTunnelClose,
  decodeTunnelOpened,
  encodePublish,
  encodeSubscribe,
  encodeTunnelOpen,
} from '../../relay/wire/protocol-ext.js'
import { generateKey } from '../../src/index.js'
import { startNode, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const NEW_OPS = [0x30, 0x31, 0x32, 0x40, 0x41, 0x42, 0x43, 0x44, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55]

async function relayNode() {
  const network = uniqueNetwork('relayh')
  const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
  await a.join('echo', { key: generateKey(), onRequest: (d) => d })
  return { a, b }
}

async function stillServes(address: string): Promise<void> {
  const c = await connectRelay({ address })
  try {
    expect(new TextDecoder().decode(await c.request('echo', 'alive'))).toBe('alive')
  } finally {
    await c.close()
  }
}

async function welcomed(address: string): Promise<RawPeer> {
  const p = await RawPeer.open(address)
  p.hello()
  expect((await p.next()).opcode).toBe(Op.Welcome)
  return p
}

describe('relay v2 frames under hostile input', () => {
  it('bad values are per-call ERRORs; unknown tunnel ids are ignored', async () => {
    const { a } = await relayNode()
    const p = await welcomed(a.relayAddress!)
    p.send(Op.Subscribe, 1, (w) => encodeSubscribe(w, { subId: 5, pattern: 'a..b', maxPending: 0 }))
    const e1 = await p.next()
    expect(e1).toMatchObject({ opcode: Op.Error, id: 1 })
    expect(decodeError(e1.body).message).toMatch(/pattern/)
    p.send(Op.Subscribe, 2, (w) => encodeSubscribe(w, { subId: 0, pattern: 'a', maxPending: 0 }))
    expect(await p.next()).toMatchObject({ opcode: Op.Error, id: 2 })
    p.send(Op.Unsubscribe, 3, (w) => w.u32(77))
    expect(await p.next()).toMatchObject({ opcode: Op.Error, id: 3 })
    p.send(Op.Publish, 4, (w) =>
      encodePublish(w, { topic: 'x.*', ack: 'none', timeoutMs: 0, data: new Uint8Array() }),
    )
    expect(decodeError((await p.next()).body).name).toBe('InvalidArgumentError')
    p.send(Op.TunnelOpen, 5, (w) => encodeTunnelOpen(w, { cluster: 'echo', timeoutMs: 100, window: 10 }))
    expect(decodeError((await p.next()).body).message).toMatch(/window/)
    p.send(Op.Broadcast, 6, (w) => w.str('bad name').bytes(new Uint8Array(1)))
    expect(decodeError((await p.next()).body).message).toMatch(/cluster/)
    p.send(Op.TunnelData, 999, (w) => w.bytes(new Uint8Array(10)))
    p.send(Op.TunnelCredit, 999, (w) => w.u32(5))
    p.send(Op.TunnelClose, 999, (w) => w.u8(0).str('').str(''))
    p.send(Op.BroadcastAck, 999)
    p.send(Op.Ping, 7)
    expect(await p.next()).toMatchObject({ opcode: Op.Pong, id: 7 })
    p.destroy()
    await stillServes(a.relayAddress!)
  })

  it('malformed bodies are fatal for that connection only', async () => {
    const { a } = await relayNode()
    const bodies: Array<[number, (w: import('../../src/util/binary.js').BinaryWriter) => void]> = [
      [Op.Broadcast, (w) => w.str('echo')],
      [Op.Subscribe, (w) => w.u32(1)],
      [Op.Publish, (w) => w.str('t').u8(0x80).u8(0).u32(0).bytes(new Uint8Array())],
      [Op.Publish, (w) => w.str('t').u8(0).u8(9).u32(0).bytes(new Uint8Array())],
      [Op.TunnelClose, (w) => w.u8(9).str('').str('')],
      [Op.TunnelCredit, (w) => w.u16(1)],
      [Op.Join, (w) => w.str('c').u8(0).bytes(new Uint8Array(32)).u32(0).u32(0).u32(0).u32(0).u8(0x40)],
    ]
    for (const [op, body] of bodies) {
      const p = await welcomed(a.relayAddress!)
      p.send(op, 1, body)
      const f = await p.next()
      expect(f).toMatchObject({ opcode: Op.Error, id: 0 })
      expect(decodeError(f.body).message).toMatch(/^malformed frame/)
      await p.waitClosed()
    }
    await stillServes(a.relayAddress!)
  })

  it('a client sending beyond its tunnel credit loses the tunnel', async () => {
    const { a, b } = await relayNode()
    await b.join('sink', { key: generateKey(), onTunnel: () => {} })
    await waitForMembers(a, 'sink', 1)
    const p = await welcomed(a.relayAddress!)
    p.send(Op.TunnelOpen, 1, (w) =>
      encodeTunnelOpen(w, { cluster: 'sink', timeoutMs: 3000, window: 1 << 20 }),
    )
    const opened = await p.next()
    expect(opened.opcode).toBe(Op.TunnelOpened)
    const o = decodeTunnelOpened(opened.body)
    const chunk = new Uint8Array(512 * 1024)
    for (let sent = 0; sent <= 4 * o.window; sent += chunk.length)
      p.send(Op.TunnelData, o.tunnelId, (w) => w.bytes(chunk))
    for (;;) {
      const f = await p.next()
      if (f.opcode === Op.TunnelCredit) continue
      expect(f).toMatchObject({ opcode: Op.TunnelClose, id: o.tunnelId })
      const c = decodeTunnelClose(f.body)
      expect(c.kind).toBe(1)
      expect(c.message).toMatch(/flow control/)
      break
    }
    p.destroy()
    await stillServes(a.relayAddress!)
  })

  it('random bodies under every new opcode never crash the node', async () => {
    const { a } = await relayNode()
    for (let round = 0; round < 60; round++) {
      const p = await welcomed(a.relayAddress!)
      for (let i = 0; i < 5; i++) {
        const op = NEW_OPS[Math.floor(Math.random() * NEW_OPS.length)]!
        const body = randomBytes(Math.floor(Math.random() * 40))
        p.send(op, 1 + Math.floor(Math.random() * 4), (w) => w.raw(body))
      }
      await new Promise((r) => setTimeout(r, 5))
      p.destroy()
    }
    await stillServes(a.relayAddress!)
  })
})
