/**
 * Request headers and requestMany through the relay: the TS client as caller and as member,
 * the frames as a raw peer sees them (INVOKE vs INVOKE_HEADERS by JOIN flag, limits answered
 * with the field named), and the client's fallback to REQUEST against a relay without
 * REQUEST_HEADERS.
 */
import { createServer, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient } from '../../relay/index.js'
import { decodeError, encodeJoin, FrameDecoder, JoinFlag, Op, writeFrame } from '../../relay/wire/protocol.js'
import {
  decodeInvokeHeaders,
  encodeReplyHeaders,
  encodeRequestHeaders,
} from '../../relay/wire/protocol-requests.js'
import {
  generateKey,
  InvalidArgumentError,
  type ManyReply,
  RemoteError,
  type RequestContext,
} from '../../src/index.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { startNode, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'
import { RawPeer } from './helpers.js'

const text = (b: Uint8Array) => new TextDecoder().decode(b)
const clients: RelayClient[] = []
const peers: RawPeer[] = []
afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy()
  await Promise.all(clients.splice(0).map((c) => c.close()))
})

async function relayed() {
  const network = uniqueNetwork('rqh')
  const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
  const client = await connectRelay({ address: a.relayAddress! })
  clients.push(client)
  return { a, b, client }
}

const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })

describe('request headers through the relay', () => {
  it('client → library member and library caller → thin-client member, headers both ways', async () => {
    const { a, b, client } = await relayed()
    await b.join('lib', {
      key: generateKey(),
      onRequest: (d, ctx) => ({ data: `lib:${text(d)}`, headers: { seen: ctx.headers?.q ?? 'none' } }),
    })
    await waitForMembers(a, 'lib', 1)
    const r = await client.request('lib', 'x', { headers: { q: 'one' } })
    expect(text(r)).toBe('lib:x')
    expect(r.headers).toEqual({ seen: 'one' })
    const plain = await client.request('lib', 'y')
    expect(plain.headers).toEqual({ seen: 'none' })

    let ctxSeen: RequestContext | undefined
    await client.join('thin', {
      key: generateKey(),
      onRequest: (d, ctx) => {
        ctxSeen = ctx
        return text(d) === 'bytes' ? 'only bytes' : { data: `thin:${text(d)}`, headers: { back: 'yes' } }
      },
    })
    await waitForMembers(b, 'thin', 1)
    const t = await b.request('thin', 'z', { headers: { h1: 'v1', h2: '' } })
    expect(text(t)).toBe('thin:z')
    expect(t.headers).toEqual({ back: 'yes' })
    expect(ctxSeen?.headers).toEqual({ h1: 'v1', h2: '' })
    const t2 = await b.request('thin', 'bytes')
    expect(text(t2)).toBe('only bytes')
    expect(t2.headers).toBeUndefined()
    expect(ctxSeen?.headers).toBeUndefined()
  })

  it('limits: refused by the client and by the relay naming the field; bad reply headers → RemoteError', async () => {
    const { a, b, client } = await relayed()
    await client.join('thin', {
      key: generateKey(),
      onRequest: () => ({ data: 'x', headers: { ['n'.repeat(300)]: 'v' } }),
    })
    await waitForMembers(b, 'thin', 1)
    const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v']))
    await expect(client.request('thin', 'x', { headers: tooMany })).rejects.toThrow(/options\.headers/)
    expect(() => client.requestMany('thin', 'x', { headers: tooMany })).toThrow(InvalidArgumentError)
    const err = await b.request('thin', 'x').catch((e: Error) => e)
    expect(err).toBeInstanceOf(RemoteError)
    expect((err as Error).message).toMatch(/reply\.headers/)

    // A raw peer skipping the client's checks: the node answers ERROR naming the field.
    const raw = await RawPeer.open(a.relayAddress!)
    peers.push(raw)
    raw.hello()
    expect((await raw.next()).opcode).toBe(Op.Welcome)
    raw.send(Op.RequestHeaders, 7, (w) =>
      encodeRequestHeaders(w, { cluster: 'thin', timeoutMs: 0, headers: tooMany, data: new Uint8Array(1) }),
    )
    const f = await raw.next()
    expect(f.opcode).toBe(Op.Error)
    expect(decodeError(f.body)).toMatchObject({ name: 'InvalidArgumentError', message: /options\.headers/ })
  })

  it('INVOKE_HEADERS only to clients that joined with the Headers flag', async () => {
    const { a, b } = await relayed()
    const key = generateKey()
    const join = async (cluster: string, flags: number) => {
      const raw = await RawPeer.open(a.relayAddress!)
      peers.push(raw)
      raw.hello()
      await raw.next()
      raw.send(Op.Join, 1, (w) =>
        encodeJoin(w, {
          cluster,
          key,
          limits: { requests: 0, broadcasts: 0, tunnels: 0, queueBytes: 0 },
          flags,
        }),
      )
      expect((await raw.next()).opcode).toBe(Op.Ok)
      return raw
    }
    const old = await join('old', JoinFlag.Requests)
    const cur = await join('cur', JoinFlag.Requests | JoinFlag.Headers)
    await waitForMembers(b, 'old', 1)
    await waitForMembers(b, 'cur', 1)

    const p1 = b.request('old', 'a', { headers: { k: 'v' } })
    const inv1 = await old.next()
    expect(inv1.opcode).toBe(Op.Invoke)
    old.send(Op.InvokeReply, inv1.id, (w) => w.bytes(new Uint8Array([1])))
    expect([...(await p1)]).toEqual([1])

    const p2 = b.request('cur', 'a', { headers: { k: 'v' } })
    const inv2 = await cur.next()
    expect(inv2.opcode).toBe(Op.InvokeHeaders)
    expect(decodeInvokeHeaders(inv2.body, 100)).toMatchObject({ cluster: 'cur', headers: { k: 'v' } })
    cur.send(Op.InvokeReplyHeaders, inv2.id, (w) =>
      encodeReplyHeaders(w, { headers: { r: '1' }, data: new Uint8Array([2]) }),
    )
    const r2 = await p2
    expect([...r2]).toEqual([2])
    expect(r2.headers).toEqual({ r: '1' })
  })

  it('falls back to REQUEST against a relay that predates REQUEST_HEADERS', async () => {
    const seen: number[] = []
    const server = createServer((s: Socket) => {
      const dec = new FrameDecoder(1 << 20)
      const send = (op: number, id: number, body?: (w: BinaryWriter) => void) => {
        const w = new BinaryWriter()
        writeFrame(w, op, id, body)
        s.write(w.finish())
      }
      s.on('data', (chunk) => {
        dec.push(chunk)
        for (let f = dec.next(); f; f = dec.next()) {
          seen.push(f.opcode)
          if (f.opcode === Op.Hello)
            send(Op.Welcome, 0, (w) =>
              w
                .u16(2)
                .str('old-node')
                .str('net')
                .u32(1 << 20),
            )
          else if (f.opcode === Op.Request) send(Op.Reply, f.id, (w) => w.bytes(new Uint8Array([42])))
          else
            send(Op.Error, f.id, (w) =>
              w.str('InvalidArgumentError').str(`unsupported opcode 0x${f.opcode.toString(16)} (unassigned)`),
            )
        }
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    try {
      const port = (server.address() as { port: number }).port
      const client = await connectRelay({ address: `127.0.0.1:${port}` })
      clients.push(client)
      expect([...(await client.request('c', 'x'))]).toEqual([42])
      expect([...(await client.request('c', 'y'))]).toEqual([42])
      // REQUEST_HEADERS once, then plain REQUESTs; headers cannot be sent to such a relay.
      expect(seen.filter((o) => o !== Op.Ping)).toEqual([Op.Hello, Op.RequestHeaders, Op.Request, Op.Request])
      await expect(client.request('c', 'x', { headers: { a: 'b' } })).rejects.toThrow(/options\.headers/)
    } finally {
      await Promise.all(clients.splice(0).map((c) => c.close()))
      server.close()
    }
  })
})

describe('requestMany through the relay', () => {
  it('three members: replies with headers, a failing member as an error item, maxReplies', async () => {
    const { a, b, client } = await relayed()
    const network = a.network
    const c = await startNode({ network })
    const key = generateKey()
    await b.join('many', {
      key,
      onRequest: (_d, ctx) => ({ data: 'b', headers: { q: ctx.headers?.q ?? '' } }),
    })
    await c.join('many', {
      key,
      onRequest: () => {
        throw new Error('c is broken')
      },
    })
    const thin = await connectRelay({ address: a.relayAddress! })
    clients.push(thin)
    await thin.join('many', {
      key,
      onRequest: (_d, ctx) => ({ data: 'thin', headers: { q: ctx.headers?.q ?? '' } }),
    })
    await waitForMembers(a, 'many', 3)

    const all: ManyReply[] = []
    for await (const r of client.requestMany('many', 'x', { headers: { q: 'Q' }, timeout: 5000 })) all.push(r)
    expect(all).toHaveLength(3)
    const ok = all.filter((r) => !r.error)
    expect(ok.map((r) => r.string()).sort()).toEqual(['b', 'thin'])
    for (const r of ok) expect(r.headers).toEqual({ q: 'Q' })
    const bad = all.find((r) => r.error)!
    expect(bad.from).toBe(c.id)
    expect(bad.error).toBeInstanceOf(RemoteError)
    expect(bad.error!.message).toMatch(/c is broken/)

    const one: string[] = []
    for await (const r of client.requestMany('many', 'x', { maxReplies: 1 }))
      if (!r.error) one.push(r.string())
    expect(one).toHaveLength(1)
  })

  it('breaking out sends CANCEL: the members still working see ctx.signal abort', async () => {
    const { a, b, client } = await relayed()
    const c = await startNode({ network: a.network })
    const key = generateKey()
    const cancelled: string[] = []
    const slow = (name: string) => async (_d: Uint8Array, ctx: RequestContext) => {
      await aborted(ctx.signal)
      cancelled.push(name)
      return 'late'
    }
    await b.join('many', { key, onRequest: slow('b') })
    await c.join('many', { key, onRequest: slow('c') })
    await a.join('many', { key, onRequest: () => 'quick' })
    await waitForMembers(a, 'many', 3)
    for await (const r of client.requestMany('many', 'x', { timeout: 20_000 })) {
      expect(r.string()).toBe('quick')
      break
    }
    await expect.poll(() => [...cancelled].sort(), { timeout: 3000 }).toEqual(['b', 'c'])
    // The connection still serves calls after the cancelled one.
    expect((await client.status()).id).toBe(a.id)
  })
})
