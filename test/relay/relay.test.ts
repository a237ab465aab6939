/**
 * Relay end to end with real nodes: requests through the relay to a member on another
 * node, a thin client serving a cluster through the relay, errors crossing the wire as the
 * same classes, and memberships left when a client disconnects.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { connectRelay, type RelayClient, RelayUnavailableError } from '../../relay/index.js'
import {
  AbortedError,
  generateKey,
  InvalidArgumentError,
  NoMembersError,
  RemoteError,
  TimeoutError,
} from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'

const text = (b: Uint8Array) => new TextDecoder().decode(b)
const clients: RelayClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
})

async function pair() {
  const network = uniqueNetwork('relay')
  const [a, b] = await Promise.all([startNode({ network, relay: { port: 0 } }), startNode({ network })])
  const client = await connectRelay({ address: a.relayAddress! })
  clients.push(client)
  return { a, b, client }
}

describe('relay', () => {
  it('forwards a request to a member on another node', async () => {
    const { a, b, client } = await pair()
    expect(a.relayAddress).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(a.relayAddress).not.toBe('127.0.0.1:0')
    expect(client.id).toBe(a.id)
    expect(client.network).toBe(a.network)
    const key = generateKey()
    await b.join('echo', { key, onRequest: (d, ctx) => `${text(d)} from ${ctx.from === a.id ? 'A' : '?'}` })
    await waitForMembers(a, 'echo', 1)
    expect(text(await client.request('echo', 'hi'))).toBe('hi from A')
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => client.request('echo', `m${i}`)))
    expect(many.map(text)).toEqual(Array.from({ length: 50 }, (_, i) => `m${i} from A`))
    const st = await client.status()
    expect(st.id).toBe(a.id)
    expect(st.clusters.find((c) => c.name === 'echo')?.members.length).toBe(1)
  })

  it('lets a thin client serve a cluster that another node requests', async () => {
    const { a, b, client } = await pair()
    const key = generateKey()
    const m = await client.join('thin', {
      key,
      onRequest: async (d, ctx) => {
        expect(ctx.cluster).toBe('thin')
        expect(ctx.deadline).toBeGreaterThan(Date.now())
        return `thin:${text(d)}:${ctx.from === b.id}`
      },
    })
    expect(m.cluster).toBe('thin')
    await waitForMembers(b, 'thin', 1)
    expect(text(await b.request('thin', 'x'))).toBe('thin:x:true')
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => b.request('thin', `${i}`)))
    expect(many.map(text)).toEqual(Array.from({ length: 20 }, (_, i) => `thin:${i}:true`))
    // The relay's own node reaches it too.
    expect(text(await a.request('thin', 'y'))).toMatch(/^thin:y:/)
    await m.leave()
    await waitFor(() => (b.status().clusters.find((c) => c.name === 'thin')?.members.length ?? 0) === 0)
  })

  it('carries errors across the wire as the same classes', async () => {
    const { a, b, client } = await pair()
    const key = generateKey()
    await b.join('boom', {
      key,
      onRequest: () => {
        throw new Error('handler exploded')
      },
    })
    await b.join('slow', { key, onRequest: () => new Promise(() => {}) })
    await waitForMembers(a, 'boom', 1)
    await waitForMembers(a, 'slow', 1)
    const remote = await client.request('boom', 'x').catch((e) => e)
    expect(remote).toBeInstanceOf(RemoteError)
    expect(remote.name).toBe('RemoteError')
    expect(remote.message).toContain('handler exploded')
    const slow = await client.request('slow', 'x', { timeout: 200 }).catch((e) => e)
    expect(slow).toBeInstanceOf(TimeoutError)
    // A thin handler that throws reaches the caller as RemoteError with its message.
    await client.join('thinboom', {
      key,
      onRequest: () => {
        throw new Error('thin handler failed')
      },
    })
    await waitForMembers(b, 'thinboom', 1)
    const thin = await b.request('thinboom', 'x').catch((e) => e)
    expect(thin).toBeInstanceOf(RemoteError)
    expect(thin.message).toContain('thin handler failed')
    // Bad input is named, locally and on the wire (JOIN with a short key reaches the node).
    await expect(client.request('bad name!', 'x')).rejects.toThrow(InvalidArgumentError)
    await expect(client.request('ok', 'x', { timeout: -1 })).rejects.toThrow(/options.timeout/)
    await expect(client.join('k', { key: 'short' })).rejects.toThrow(/options.key/)
    await expect(client.join('thinboom', { key })).rejects.toThrow(InvalidArgumentError)
    // No members: after the discovery grace of the node.
    const none = await client.request('nobody', 'x', { timeout: 8000 }).catch((e) => e)
    expect(none).toBeInstanceOf(NoMembersError)
  })

  it('leaves memberships and fails pending invocations when the client disconnects', async () => {
    const { a, b, client } = await pair()
    const key = generateKey()
    let started = 0
    await client.join('gone', {
      key,
      onRequest: () => {
        started++
        return new Promise(() => {})
      },
    })
    await waitForMembers(b, 'gone', 1)
    const pending = b.request('gone', 'x', { timeout: 5000 }).catch((e) => e)
    await waitFor(() => started === 1)
    await client.close()
    const err = await pending
    expect(err).toBeInstanceOf(RemoteError)
    await waitFor(() => (b.status().clusters.find((c) => c.name === 'gone')?.members.length ?? 0) === 0, 3000)
    await waitFor(() => a.status().clusters.find((c) => c.name === 'gone')?.joined !== true, 3000)
    // The cluster can be joined again through a new connection.
    const again = await connectRelay(a.relayAddress!) // the shorthand
    clients.push(again)
    await again.join('gone', { key, onRequest: () => 'back' })
    await waitForMembers(b, 'gone', 1)
    expect(text(await b.request('gone', 'x'))).toBe('back')
  })

  it('cancels: a caller signal aborts the request, a caller deadline aborts the thin handler', async () => {
    const { a, b, client } = await pair()
    const key = generateKey()
    let handlerAborted = false
    await client.join('hang', {
      key,
      onRequest: (_d, ctx) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener('abort', () => {
            handlerAborted = true
            reject(new Error('aborted'))
          }),
        ),
    })
    await b.join('hang2', { key, onRequest: () => new Promise(() => {}) })
    await waitForMembers(b, 'hang', 1)
    await waitForMembers(a, 'hang2', 1)
    await expect(b.request('hang', 'x', { timeout: 300 })).rejects.toThrow(TimeoutError)
    await waitFor(() => handlerAborted, 2000, 'thin handler aborted')
    const ac = new AbortController()
    const p = client.request('hang2', 'x', { signal: ac.signal, timeout: 5000 })
    setTimeout(() => ac.abort(), 100)
    await expect(p).rejects.toThrow(AbortedError)
    // Payloads over the node's maxMessageSize are refused naming the limit.
    await expect(client.request('hang2', new Uint8Array(client.maxMessageSize + 1))).rejects.toThrow(
      /maxMessageSize/,
    )
    // The connection is still usable.
    expect((await client.status()).id).toBe(a.id)
  })

  it('names the address when no relay listens, and validates options', async () => {
    const node = await startNode({ network: uniqueNetwork('relay'), relay: { port: 0 } })
    const addr = node.relayAddress!
    await node.stop()
    const err = await connectRelay({ address: addr }).catch((e) => e)
    expect(err).toBeInstanceOf(RelayUnavailableError)
    expect(err.message).toContain(addr)
    expect(err.message).toContain('no Plexus node')
    await expect(connectRelay({ address: 'nope' })).rejects.toThrow(/options.address/)
    // The shorthand: the address alone.
    const e1 = await connectRelay(addr).catch((e) => e)
    expect(e1).toBeInstanceOf(RelayUnavailableError)
    expect(e1.message).toContain(addr)
    await expect(connectRelay('nope')).rejects.toThrow(/options.address/)
    await expect(connectRelay({ port: 70000 })).rejects.toThrow(/options.port/)
    const prev = process.env.PLEXUS_RELAY
    process.env.PLEXUS_RELAY = addr
    try {
      const e2 = await connectRelay().catch((e) => e)
      expect(e2.message).toContain(addr)
    } finally {
      if (prev === undefined) delete process.env.PLEXUS_RELAY
      else process.env.PLEXUS_RELAY = prev
    }
  })

  it('reports a port in use by naming it', async () => {
    const a = await startNode({ network: uniqueNetwork('relay'), relay: { port: 0 } })
    const port = Number(a.relayAddress!.split(':')[1])
    const err = await startNode({ network: uniqueNetwork('relay'), relay: { port } }).catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toContain(String(port))
    expect(err.message).toMatch(/in use/)
  })
})
