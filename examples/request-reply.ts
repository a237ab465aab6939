/**
 * Request-reply in one process: two nodes find each other on this machine, one serves the
 * `databases` cluster, the other sends it requests by name.
 *
 *   npm run build && node dist/examples/request-reply.js
 */
import { createNode, generateKey, RemoteError } from '../src/index.js'

const network = `example-${process.pid}`
const key = generateKey() // share this with every member of the cluster

const server = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'] })
const membership = await server.join('databases', {
  key,
  onRequest: async (data, ctx) => {
    const query = new TextDecoder().decode(data)
    if (query === 'DROP TABLE') throw new Error('refused')
    return `result of "${query}" (from ${ctx.from.slice(-6)}, ${ctx.deadline - Date.now()} ms left)`
  },
})

const client = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'] })
for (const q of ['SELECT 1', 'SELECT 2']) {
  const reply = await client.request('databases', q, { timeout: 5000 })
  console.log(new TextDecoder().decode(reply))
}
try {
  await client.request('databases', 'DROP TABLE')
} catch (err) {
  if (err instanceof RemoteError) console.log(`handler error came back as ${err.name}: ${err.message}`)
}

await membership.leave()
await Promise.all([client.stop(), server.stop()])
