/**
 * The relay over WebSocket, from Node: the TypeScript client with its WebSocket transport
 * (Node 22's global WebSocket) does requests, serving, pub/sub, tunnels and streams; the
 * origin policy refuses browser origins that are not allowed (403) and admits the endpoint's
 * own, listed ones and clients without Origin; the same limits and refusals as TCP.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { connectRelay, type RelayClient, RelayUnavailableError } from '../../relay/index.js'
import { encodeHello, FrameDecoder, Op, PROTOCOL_VERSION, writeFrame } from '../../relay/wire/protocol.js'
import { generateKey, InvalidArgumentError, type PlexusNode } from '../../src/index.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { uniqueNetwork as cliNetwork, runCli, startNode as startCliNode } from '../cli/helpers.js'
import { startNode, startStreamCluster, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'

const text = (b: Uint8Array) => new TextDecoder().decode(b)
const clients: RelayClient[] = []
const dirs: string[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
})
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function wsClient(node: PlexusNode): Promise<RelayClient> {
  const c = await connectRelay({ url: `ws://${node.relayWsAddress}/` })
  clients.push(c)
  return c
}

/** Opens a raw `ws` socket with `origin` (or none); resolves 'open' or the HTTP status of a refusal. */
function tryOrigin(
  address: string,
  origin?: string,
): Promise<{ status: number; ws?: WebSocket; body?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${address}/`, origin === undefined ? {} : { origin })
    ws.on('open', () => resolve({ status: 101, ws }))
    ws.on('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (d: Buffer) => {
        body += d.toString()
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    ws.on('error', reject)
  })
}

/** Sends `bytes` on a raw socket and collects decoded frames until it closes. */
async function rawExchange(
  ws: WebSocket,
  chunks: Uint8Array[],
): Promise<{ ops: number[]; bodies: string[] }> {
  const dec = new FrameDecoder(16 * 1024 * 1024)
  const ops: number[] = []
  const bodies: string[] = []
  const closed = new Promise<void>((r) => ws.on('close', () => r()))
  ws.on('message', (d: Buffer) => {
    dec.push(new Uint8Array(d))
    for (let f = dec.next(); f; f = dec.next()) {
      ops.push(f.opcode)
      bodies.push(text(f.body.raw(f.body.remaining, 'body')))
    }
  })
  for (const c of chunks) ws.send(c)
  await closed
  return { ops, bodies }
}

function frame(op: number, id: number, body?: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter(64)
  writeFrame(w, op, id, body)
  return w.finish().slice()
}

describe('relay over WebSocket', () => {
  it('serves the same protocol: request, join, broadcast, pub/sub, tunnel', async () => {
    const network = uniqueNetwork('ws')
    const [a, b] = await Promise.all([
      startNode({ network, relay: { port: 0, wsPort: 0 } }),
      startNode({ network }),
    ])
    expect(a.relayWsAddress).toMatch(/^127\.0\.0\.1:\d+$/)
    const key = generateKey()
    await b.join('echo', {
      key,
      onRequest: (d) => `${text(d)}!`,
      onTunnel: async (t) => {
        for await (const m of t) await t.send(m)
      },
    })
    await waitForMembers(a, 'echo', 1)
    const c = await wsClient(a)
    expect(c.id).toBe(a.id)
    expect(text(await c.request('echo', 'hi'))).toBe('hi!')
    const many = await Promise.all(Array.from({ length: 30 }, (_, i) => c.request('echo', `m${i}`)))
    expect(many.map(text)).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}!`))
    // A large payload crosses several WebSocket messages' worth of bytes intact.
    const big = new Uint8Array(700_000).map((_, i) => i % 251)
    const t = await c.tunnel('echo')
    await t.send(big)
    const it = t[Symbol.asyncIterator]()
    const back = (await it.next()).value as Uint8Array
    expect(back.length).toBe(big.length)
    expect(back.every((v, i) => v === big[i])).toBe(true)
    await t.close()
    // The client serves a cluster that the other node requests and broadcasts to.
    const got: string[] = []
    await c.join('web', {
      key,
      onRequest: (d) => `web:${text(d)}`,
      onBroadcast: (d) => void got.push(text(d)),
    })
    await waitForMembers(b, 'web', 1)
    expect(text(await b.request('web', 'x'))).toBe('web:x')
    await b.broadcast('web', 'all')
    await expect.poll(() => got).toEqual(['all'])
    // pub/sub both ways
    const sub = c.subscribe('chat.*')
    await sub.ready
    const bSub = b.subscribe('chat.*')
    await bSub.ready
    await b.publish('chat.room', 'from b')
    await c.publish('chat.room', 'from ws')
    const seen: string[] = []
    for await (const m of sub) {
      seen.push(text(m.data))
      if (seen.length === 2) break
    }
    expect(seen.sort()).toEqual(['from b', 'from ws'])
    const bIt = bSub[Symbol.asyncIterator]()
    const bSeen = [text((await bIt.next()).value!.data), text((await bIt.next()).value!.data)]
    expect(bSeen.sort()).toEqual(['from b', 'from ws'])
    bSub.unsubscribe()
    expect(await c.broadcast('echo', 'x')).toBe(1)
    await expect(c.request('no-such', 'x', { timeout: 300 })).rejects.toThrow()
    await expect(c.request('bad name!', 'x')).rejects.toThrow(InvalidArgumentError)
  })

  it('consumes a stream from the earliest offset', async () => {
    const root = mkdtempSync(join(tmpdir(), 'plexus-ws-'))
    dirs.push(root)
    const { members } = await startStreamCluster(root, { options: { relay: { port: 0, wsPort: 0 } } })
    const o = members[0]!
    await o.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 3 })
    for (let i = 0; i < 3; i++) await o.publish('orders.eu', `o${i}`, { ack: 'all' })
    const c = await wsClient(o)
    const seen: Array<[number, string]> = []
    for await (const m of c.consume('orders', { from: 'earliest' })) {
      seen.push([m.offset, text(m.data)])
      if (seen.length === 3) break
    }
    expect(seen).toEqual([
      [0, 'o0'],
      [1, 'o1'],
      [2, 'o2'],
    ])
    const ack = await c.publish('orders.us', 'o3', { ack: 'all' })
    expect(ack?.offset).toBe(3)
  })

  it('refuses origins that are not allowed, admits its own, listed ones and no Origin', async () => {
    const web = mkdtempSync(join(tmpdir(), 'plexus-ws-static-'))
    dirs.push(web)
    writeFileSync(join(web, 'index.html'), '<p>hi</p>')
    const a = await startNode({
      network: uniqueNetwork('ws'),
      relay: { port: 0, wsPort: 0, wsOrigins: ['http://localhost:3000'], wsStatic: web },
    })
    const addr = a.relayWsAddress!
    const port = addr.split(':')[1]
    const evil = await tryOrigin(addr, 'https://evil.example')
    expect(evil.status).toBe(403)
    expect(evil.body).toContain('--relay-ws-origin https://evil.example')
    expect((await tryOrigin(addr, 'null')).status).toBe(403)
    expect((await tryOrigin(addr, `http://localhost:${Number(port) + 1}`)).status).toBe(403)
    for (const ok of [
      undefined,
      'http://localhost:3000',
      `http://127.0.0.1:${port}`,
      `http://localhost:${port}`,
    ]) {
      const r = await tryOrigin(addr, ok)
      expect(r.status, `origin ${ok}`).toBe(101)
      r.ws!.close()
    }
    // The page of its own origin is served; a foreign Host (DNS rebinding) is not.
    const page = await fetch(`http://${addr}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toBe('<p>hi</p>')
    expect((await fetch(`http://${addr}/../../etc/passwd`)).status).toBe(404)
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = httpGet(
        { host: '127.0.0.1', port: Number(port), path: '/', headers: { host: `evil.example:${port}` } },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
    })
    expect(rebound).toBe(403)
    // The TS client sees a refusal as RelayUnavailableError naming the cure.
    class EvilWebSocket extends WebSocket {
      constructor(url: string) {
        super(url, { origin: 'https://evil.example' })
      }
    }
    const err = await connectRelay({
      url: `ws://${addr}/`,
      WebSocket: EvilWebSocket as unknown as new (url: string) => globalThis.WebSocket,
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RelayUnavailableError)
    expect((err as Error).message).toContain('--relay-ws-origin')
  })

  it('applies the handshake, limits and errors of TCP', async () => {
    const a = await startNode({
      network: uniqueNetwork('ws'),
      relay: { port: 0, wsPort: 0, handshakeTimeoutMs: 300, maxConnections: 1 },
    })
    const addr = a.relayWsAddress!
    // A first frame that is not HELLO: REFUSE, then closed.
    const r1 = await tryOrigin(addr)
    const bad = await rawExchange(r1.ws!, [frame(Op.Ping, 1)])
    expect(bad.ops).toEqual([Op.Refuse])
    // A frame over the pre-handshake limit (4096), split over several messages: refused.
    const r2 = await tryOrigin(addr)
    const huge = frame(Op.Hello, 0, (w) => w.raw(new Uint8Array(5000)))
    const over = await rawExchange(r2.ws!, [huge.subarray(0, 3), huge.subarray(3, 10)])
    expect(over.ops).toEqual([Op.Refuse])
    expect(over.bodies[0]).toMatch(/frame|length|large/i)
    // HELLO split byte by byte over messages, then two frames in one message: both answered.
    const r3 = await tryOrigin(addr)
    const hello = frame(Op.Hello, 0, (w) => encodeHello(w, { version: PROTOCOL_VERSION, client: 'raw' }))
    const parts = Array.from(hello, (b) => Uint8Array.of(b))
    const twoPings = new Uint8Array([...frame(Op.Ping, 7), ...frame(Op.Ping, 8)])
    const ws3 = r3.ws!
    const dec = new FrameDecoder(1 << 20)
    const got: Array<[number, number]> = []
    ws3.on('message', (d: Buffer) => {
      dec.push(new Uint8Array(d))
      for (let f = dec.next(); f; f = dec.next()) got.push([f.opcode, f.id])
    })
    for (const p of parts) ws3.send(p)
    ws3.send(twoPings)
    await expect
      .poll(() => got)
      .toEqual([
        [Op.Welcome, 0],
        [Op.Pong, 7],
        [Op.Pong, 8],
      ])
    // The connection limit (1) holds across transports: a TCP client is refused now? No:
    // ws3 is idle, so it is evicted to make room.
    const tcp = await connectRelay({ address: a.relayAddress! })
    clients.push(tcp)
    await new Promise<void>((r) => (ws3.readyState === WebSocket.CLOSED ? r() : ws3.on('close', () => r())))
    // A text message is not part of the protocol: the socket is closed.
    const r4 = await tryOrigin(addr)
    const closed = new Promise<number>((r) => r4.ws!.on('close', (code) => r(code)))
    r4.ws!.send('hello')
    expect(await closed).toBeGreaterThan(1000)
    // A message larger than one largest frame (1 MiB + 65540 bytes): closed with 1009.
    const r6 = await tryOrigin(addr)
    const tooBig = new Promise<number>((r) => r6.ws!.on('close', (code) => r(code)))
    r6.ws!.send(new Uint8Array(1024 * 1024 + 65541))
    expect(await tooBig).toBe(1009)
    // No HELLO within the handshake timeout: REFUSE.
    await tcp.close()
    const r5 = await tryOrigin(addr)
    const silent = await rawExchange(r5.ws!, [])
    expect(silent.ops).toEqual([Op.Refuse])
    expect(silent.bodies[0]).toContain('no HELLO within 300 ms')
  })

  it('reconnects with backoff after the node restarts, restoring subscriptions and joins', async () => {
    const network = uniqueNetwork('ws')
    const [a, b] = await Promise.all([
      startNode({ network, relay: { port: 0, wsPort: 0 } }),
      startNode({ network }),
    ])
    const port = Number(a.relayWsAddress!.split(':')[1])
    const states: string[] = []
    const c = await connectRelay({
      url: `ws://${a.relayWsAddress}/`,
      timeout: 1000,
      reconnect: { minDelay: 50, maxDelay: 200, onState: (s) => void states.push(s) },
    })
    clients.push(c)
    const got: string[] = []
    await c.subscribe('news.*', (m) => void got.push(text(m.data))).ready
    const key = generateKey()
    await c.join('svc', { key, onRequest: (d) => `svc:${text(d)}` })
    await waitForMembers(b, 'svc', 1)
    expect(text(await b.request('svc', 'x'))).toBe('svc:x')
    await a.stop()
    await expect.poll(() => states).toEqual(['disconnected'])
    // While reconnecting a call waits up to the connect timeout, then says why.
    await expect(c.request('svc', 'x')).rejects.toThrow(RelayUnavailableError)
    await startNode({ network, relay: { port: 0, wsPort: port } })
    await expect.poll(() => states, { timeout: 10_000 }).toEqual(['disconnected', 'connected'])
    // The membership is back (through the new node) and so is the subscription.
    await waitForMembers(b, 'svc', 1, 10_000)
    await expect
      .poll(async () => text(await b.request('svc', 'y')).toString(), { timeout: 10_000 })
      .toBe('svc:y')
    await expect
      .poll(
        async () => {
          await b.publish('news.today', 'fresh')
          return got
        },
        { timeout: 10_000, interval: 200 },
      )
      .toContain('fresh')
    expect(c.id).not.toBe(a.id)
  })

  it('plexus node --relay-ws-port serves it, --relay-ws-origin allows an origin, a bad one exits 2', async () => {
    const web = mkdtempSync(join(tmpdir(), 'plexus-ws-cli-'))
    dirs.push(web)
    writeFileSync(join(web, 'index.html'), '<p>cli</p>')
    const n = await startCliNode(cliNetwork(), [
      '--relay-ws-port',
      '0',
      '--relay-ws-origin',
      'http://localhost:3000',
      '--relay-ws-static',
      web,
    ])
    const line = await n.waitLine(/^relay websocket ws:\/\/\S+\/$/)
    const addr = line.match(/ws:\/\/(\S+)\//)![1]!
    const c = await connectRelay({ url: `ws://${addr}/` })
    clients.push(c)
    expect(c.id).toBe(n.id)
    const ok = await tryOrigin(addr, 'http://localhost:3000')
    expect(ok.status).toBe(101)
    ok.ws!.close()
    expect((await tryOrigin(addr, 'https://evil.example')).status).toBe(403)
    expect(await (await fetch(`http://${addr}/`)).text()).toBe('<p>cli</p>')
    const bad = await runCli([
      'node',
      '--no-mdns',
      '--relay-ws-port',
      '0',
      '--relay-ws-origin',
      'evil.example',
    ])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--relay-ws-origin must be an origin')
  })

  it('validates the options', async () => {
    await expect(startNode({ relay: { port: 0, wsPort: 70000 } })).rejects.toThrow(/relay.wsPort/)
    await expect(startNode({ relay: { port: 0, wsPort: 0, wsOrigins: ['localhost:3000'] } })).rejects.toThrow(
      /relay.wsOrigins\[0\]/,
    )
    await expect(startNode({ relay: { port: 0, wsStatic: '/tmp' } })).rejects.toThrow(/needs relay.wsPort/)
    await expect(connectRelay({ url: 'http://x' })).rejects.toThrow(/options.url/)
  })
})
