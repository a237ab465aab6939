/**
 * Tunnels through the relay with real nodes: a thin client opening to a library member and
 * a library node opening to a thin-client member, byte-exact over several MB with random
 * message sizes, half-close in both orders, credit flow control on the relay hop (a slow
 * thin reader slows the remote writer; the relay's per-tunnel buffers stay within the
 * window), and a client disconnect ending the remote ends with TunnelClosedError.
 */
import { createHash, randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import {
  connectRelay,
  type RelayClient,
  type RelayServer,
  type RelayTunnel,
  startRelay,
} from '../../relay/index.js'
import { generateKey, type PlexusNode, type Tunnel, TunnelClosedError } from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)
const clients: RelayClient[] = []
const relays: RelayServer[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await Promise.all(relays.splice(0).map((r) => r.close()))
})

/** Node `a` with a relay we can inspect, node `b` on the same network, a thin client on `a`. */
async function setup(): Promise<{ a: PlexusNode; b: PlexusNode; relay: RelayServer; client: RelayClient }> {
  const network = uniqueNetwork('relayt')
  const [a, b] = await Promise.all([startNode({ network }), startNode({ network })])
  const relay = await startRelay(a, { host: '127.0.0.1', port: 0 })
  relays.push(relay)
  const client = await connectRelay({ address: relay.address })
  clients.push(client)
  return { a, b, relay, client }
}

/** Random messages (1 B to 256 KiB) adding up to about `total` bytes. */
function messages(total: number, rand: () => number): Uint8Array[] {
  const out: Uint8Array[] = []
  let n = 0
  while (n < total) {
    const size = rand() < 0.2 ? 1 + Math.floor(rand() * 16) : 1 + Math.floor(rand() * 256 * 1024)
    out.push(randomBytes(size))
    n += size
  }
  return out
}

const sha = (parts: Uint8Array[]) => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

/** Echoes every message back, then half-closes when the other side did. */
async function echo(t: Tunnel | RelayTunnel): Promise<void> {
  for await (const m of t) await t.send(m)
  await t.close()
}

/** Sends `msgs`, half-closes, and collects what comes back until the other side closes. */
async function roundTrip(t: Tunnel | RelayTunnel, msgs: Uint8Array[]): Promise<Uint8Array[]> {
  const reading = (async () => {
    const got: Uint8Array[] = []
    for await (const m of t) got.push(m)
    return got
  })()
  for (const m of msgs) await t.send(m)
  await t.close()
  return reading
}

describe('relay tunnels', () => {
  it('thin client → library member and library node → thin member, byte-exact over MBs', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    try {
      const { a, b, relay, client } = await setup()
      const key = generateKey()
      await b.join('lib', { key, onTunnel: (t) => echo(t) })
      let thinFrom = ''
      await client.join('thin', {
        key,
        onTunnel: (t, ctx) => {
          thinFrom = ctx.from
          expect(ctx.cluster).toBe('thin')
          return echo(t)
        },
      })
      await waitForMembers(a, 'lib', 1)
      await waitForMembers(b, 'thin', 1)

      const out1 = messages(6 * 1024 * 1024, rand)
      const t1 = await client.tunnel('lib', { timeout: 5000 })
      expect(t1.peer).toBe(b.id)
      expect(t1.cluster).toBe('lib')
      const back1 = await roundTrip(t1, out1)
      expect(back1.length).toBe(out1.length)
      expect(sha(back1)).toBe(sha(out1))
      expect(back1.map((m) => m.length)).toEqual(out1.map((m) => m.length))

      const out2 = messages(4 * 1024 * 1024, rand)
      const t2 = await b.tunnel('thin', { timeout: 5000 })
      const back2 = await roundTrip(t2, out2)
      expect(thinFrom).toBe(b.id)
      expect(sha(back2)).toBe(sha(out2))
      expect(back2.length).toBe(out2.length)
      // Both tunnels finished on every side.
      await waitFor(() => relay.stats().tunnels.length === 0, 3000, 'relay tunnels finished')
      await waitFor(
        () => a.status().counters['tunnels.open'] === 0 && b.status().counters['tunnels.open'] === 0,
      )
    } catch (err) {
      console.error(`relay tunnel seed ${seed} (TEST_SEED=${seed})`)
      throw err
    }
  })

  it('half-close in either order: the other side reads what was sent, then its iteration ends', async () => {
    const { a, b, client } = await setup()
    const key = generateKey()
    await b.join('late', {
      key,
      onTunnel: async (t) => {
        const got: string[] = []
        for await (const m of t) got.push(dec(m))
        await t.send(`got ${got.join(',')}`)
        await t.close()
      },
    })
    await waitForMembers(a, 'late', 1)
    const t = await client.tunnel('late')
    await t.send('one')
    await t.send('two')
    await t.close()
    expect(t.closed).toBe(true)
    await expect(t.send('three')).rejects.toBeInstanceOf(TunnelClosedError)
    const replies: string[] = []
    for await (const m of t) replies.push(dec(m))
    expect(replies).toEqual(['got one,two'])

    // The thin member closes first; the library opener keeps sending after that.
    let memberGot: string[] = []
    await client.join('first', {
      key,
      onTunnel: async (t2) => {
        await t2.send('bye')
        await t2.close()
        for await (const m of t2) memberGot.push(dec(m))
      },
    })
    await waitForMembers(b, 'first', 1)
    const t2 = await b.tunnel('first')
    const got: string[] = []
    for await (const m of t2) got.push(dec(m))
    expect(got).toEqual(['bye'])
    await t2.send('after')
    await t2.close()
    await waitFor(() => memberGot.length === 1)
    expect(memberGot).toEqual(['after'])
    memberGot = []
  })

  it('a slow thin reader slows the remote writer; the relay buffers at most a window per tunnel', async () => {
    const { a, b, relay, client } = await setup()
    const key = generateKey()
    let accepted: RelayTunnel | undefined
    await client.join('slow', { key, onTunnel: (t) => void (accepted = t) })
    let libReader: Tunnel | undefined
    await b.join('sink', { key, onTunnel: (t) => void (libReader = t) })
    await waitForMembers(b, 'slow', 1)
    await waitForMembers(a, 'sink', 1)
    let maxToClient = 0
    let maxToNode = 0
    let window = 0
    const sampler = setInterval(() => {
      for (const t of relay.stats().tunnels) {
        window = t.window
        maxToClient = Math.max(maxToClient, t.bufferedToClient)
        maxToNode = Math.max(maxToNode, t.bufferedToNode)
      }
    }, 5)
    try {
      // Library writer → thin reader that does not read yet.
      const t = await b.tunnel('slow')
      const chunk = randomBytes(64 * 1024)
      const count = 250 // 16 MB
      let sent = 0
      const writer = (async () => {
        for (let i = 0; i < count; i++) {
          await t.send(chunk)
          sent++
        }
        await t.close()
      })()
      await waitFor(() => accepted !== undefined)
      await new Promise((r) => setTimeout(r, 400))
      // Windows on the way: thin client 2 MiB + relay one message + library 1 MiB (+ a chunk each).
      expect(sent).toBeLessThan(70)
      const stalledAt = sent
      await new Promise((r) => setTimeout(r, 200))
      expect(sent).toBe(stalledAt)
      let read = 0
      const h = createHash('sha256')
      for await (const m of accepted!) {
        h.update(m)
        if (++read % 25 === 0) await new Promise((r) => setTimeout(r, 10))
      }
      await writer
      expect(read).toBe(count)
      expect(h.digest('hex')).toBe(
        createHash('sha256')
          .update(Buffer.concat(Array(count).fill(chunk)))
          .digest('hex'),
      )
      await accepted!.close()

      // Thin writer → library reader that does not read yet.
      const up = await client.tunnel('sink')
      let upSent = 0
      const upWriter = (async () => {
        for (let i = 0; i < count; i++) {
          await up.send(chunk)
          upSent++
        }
        await up.close()
      })()
      await waitFor(() => libReader !== undefined)
      await new Promise((r) => setTimeout(r, 400))
      expect(upSent).toBeLessThan(70)
      let upRead = 0
      for await (const _ of libReader!) {
        if (++upRead % 25 === 0) await new Promise((r) => setTimeout(r, 10))
      }
      await upWriter
      expect(upRead).toBe(count)
    } finally {
      clearInterval(sampler)
    }
    expect(window).toBeGreaterThan(0)
    expect(maxToClient).toBeLessThanOrEqual(window)
    expect(maxToNode).toBeLessThanOrEqual(window)
    expect(maxToNode).toBeGreaterThan(0)
  })

  it('a client disconnect ends the remote ends with TunnelClosedError, both directions', async () => {
    const { a, b, relay, client } = await setup()
    const key = generateKey()
    let memberEnd: Promise<unknown> | undefined
    await b.join('victim', {
      key,
      onTunnel: (t) => {
        memberEnd = (async () => {
          for await (const _ of t) {
          }
        })().catch((e) => e)
      },
    })
    await client.join('thinm', { key, onTunnel: () => {} })
    await waitForMembers(a, 'victim', 1)
    await waitForMembers(b, 'thinm', 1)
    const opened = await client.tunnel('victim')
    await opened.send('hello')
    const toThin = await b.tunnel('thinm')
    const reading = (async () => {
      for await (const _ of toThin) {
      }
    })().catch((e) => e)
    await waitFor(() => memberEnd !== undefined && relay.stats().tunnels.length === 2)
    await client.close()
    expect(await memberEnd).toBeInstanceOf(TunnelClosedError)
    expect(await reading).toBeInstanceOf(TunnelClosedError)
    await expect(toThin.send('x')).rejects.toBeInstanceOf(TunnelClosedError)
    // The thin side's own tunnel fails too.
    await expect(opened.send('x')).rejects.toBeInstanceOf(TunnelClosedError)
    await waitFor(() => relay.stats().tunnels.length === 0)
  })

  it('setup errors cross the wire by name, and bad input is named', async () => {
    const { a, b, client } = await setup()
    await b.join('noh', { key: generateKey(), onRequest: () => 'x' })
    await waitForMembers(a, 'noh', 1)
    const err = await client.tunnel('noh', { timeout: 500 }).catch((e) => e)
    expect(err.name).toMatch(/OverloadedError|NoMembersError|TimeoutError/)
    await expect(client.tunnel('bad name')).rejects.toThrow(/cluster/)
    await expect(client.tunnel('ok', { timeout: 0 })).rejects.toThrow(/options.timeout/)
    await expect(client.join('ok', { key: generateKey(), onTunnel: 'x' as never })).rejects.toThrow(
      /onTunnel/,
    )
    const ac = new AbortController()
    const p = client.tunnel('nobody-yet', { timeout: 5000, signal: ac.signal })
    setTimeout(() => ac.abort(), 50)
    await expect(p).rejects.toThrow(/abort/i)
    expect((await client.status()).id).toBe(a.id)
  })
})
