/**
 * Topic wildcards as in NATS: `orders.*` matches exactly one token after `orders`,
 * `orders.>` one or more. A subscriber node holds both subscriptions, a publisher node
 * publishes a few topics, and the example prints which subscription got which message.
 *
 *   node dist/examples/pubsub-wildcards.js
 */
import { randomBytes } from 'node:crypto'
import { createNode, type PlexusNode } from '../src/index.js'

const TOPICS = [
  'orders.created',
  'orders.eu.created',
  'orders.eu.shipped.express',
  'orders',
  'billing.created',
]
const PATTERNS = ['orders.*', 'orders.>']

async function main(): Promise<void> {
  const network = `wildcards-${randomBytes(4).toString('hex')}`
  const subscriber = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'] })
  let publisher: PlexusNode | undefined
  try {
    publisher = await createNode({
      network,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: subscriber.addresses,
    })
    const got = new Map<string, string[]>(PATTERNS.map((p) => [p, []]))
    for (const p of PATTERNS) subscriber.subscribe(p, (m) => void got.get(p)!.push(m.topic))
    // Interest takes a moment to reach the publisher: ping until both subscriptions hear it.
    const end = Date.now() + 10_000
    while (PATTERNS.some((p) => !got.get(p)!.includes('orders.ping'))) {
      if (Date.now() > end) throw new Error('subscriptions never reached the publisher')
      await publisher.publish('orders.ping', 'ping')
      await new Promise((r) => setTimeout(r, 50))
    }
    for (const p of PATTERNS) got.set(p, [])
    for (const t of TOPICS) await publisher.publish(t, `a message on ${t}`)
    await publisher.publish('orders.done', 'done') // matched by both: marks the end
    while (PATTERNS.some((p) => !got.get(p)!.includes('orders.done'))) {
      if (Date.now() > end) throw new Error('messages did not arrive')
      await new Promise((r) => setTimeout(r, 20))
    }
    for (const t of TOPICS) {
      const who = PATTERNS.filter((p) => got.get(p)!.includes(t))
      console.log(`${t.padEnd(26)} -> ${who.length ? who.join(', ') : '(no subscriber)'}`)
    }
    for (const p of PATTERNS) {
      console.log(
        `${p} received: ${got
          .get(p)!
          .filter((t) => t !== 'orders.done')
          .join(' ')}`,
      )
    }
  } finally {
    await publisher?.stop()
    await subscriber.stop()
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`${err.name}: ${err.message}`)
    process.exit(1)
  },
)
