/**
 * `msg.string()` and `msg.json()` (issue 16, as nats.js messages have them) on every received
 * message type: pub/sub messages from a peer and from this node, stream messages, and the
 * relay client's messages and stream messages.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { connectRelay, startRelay } from '../relay/index.js'
import { generateKey, type Message, type MessageData, type StreamMessage } from '../src/index.js'
import { cleanedAfterEach } from './helpers/cleanup.js'
import { startNode, startNodes, waitFor } from './helpers/nodes.js'

const { dirs, mine, relays, clients } = cleanedAfterEach()

const order = { id: 7, item: 'tea', note: 'grüner Tee ✓' }

/** Checks the helpers on a message whose data is `JSON.stringify(order)`. */
function checkHelpers(m: MessageData): void {
  expect(m.string()).toBe(JSON.stringify(order))
  expect(m.json()).toEqual(order)
  expect(m.json<typeof order>().item).toBe('tea')
}

/** The first message of an async iterable. */
async function first<T>(it: AsyncIterable<T>): Promise<T> {
  for await (const m of it) return m
  throw new Error('ended without a message')
}

describe('message helpers', () => {
  it('pub/sub messages from a peer and from this node: string() and json(); json() of non-JSON throws', async () => {
    const [a, b] = await startNodes(2)
    await waitFor(() => a!.status().peers.length === 1 && b!.status().peers.length === 1, 10_000, 'the link')
    const sub = b!.subscribe('orders.>')
    const local = a!.subscribe('orders.>')
    await Promise.all([sub.ready, local.ready])
    await a!.publish('orders.eu', JSON.stringify(order))
    const [remote, own] = await Promise.all([first<Message>(sub), first<Message>(local)])
    checkHelpers(remote)
    checkHelpers(own)
    const got: Message[] = []
    b!.subscribe('plain', (m) => {
      got.push(m)
    })
    await b!.flush()
    await a!.publish('plain', 'not json')
    await waitFor(() => got.length === 1, 5000, 'the plain message')
    expect(got[0]!.string()).toBe('not json')
    expect(() => got[0]!.json()).toThrow(SyntaxError)
  })

  it('stream messages, and the relay client messages and stream messages', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-msg-'))
    dirs.push(root)
    const node = await startNode({ dataDir: join(root, 'a') })
    mine.push(node)
    await node.join('db', { key: generateKey() })
    await node.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 1 })
    const relay = await startRelay(node, { host: '127.0.0.1', port: 0 })
    relays.push(relay)
    const client = await connectRelay({ address: relay.address })
    clients.push(client)
    const relaySub = client.subscribe('orders.>')
    await relaySub.ready
    await node.publish('orders.eu', JSON.stringify(order), { ack: 'all' })
    checkHelpers(await first<Message>(relaySub))
    const c = node.consume('orders', { from: 'earliest' })
    const sm: StreamMessage = await first(c)
    await c.close()
    checkHelpers(sm)
    const rc = client.consume('orders', { from: 'earliest' })
    const rm: StreamMessage = await first(rc)
    await rc.close()
    checkHelpers(rm)
    expect(rm.offset).toBe(0)
  })
})
