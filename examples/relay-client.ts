/**
 * Thin-client example: attach to a local node's relay (no libp2p in this process), serve a
 * cluster from here and send it a request.
 *
 *   plexus node &                          # a node with its relay on 127.0.0.1:55555
 *   node dist/examples/relay-client.js     # or PLEXUS_RELAY=host:port node dist/...
 *
 * With no node running it prints one clear line ("no Plexus node's relay is listening at
 * 127.0.0.1:55555 ...") and exits 1.
 */
import { connectRelay } from '../relay/index.js'
import { generateKey } from '../src/index.js'

async function main(): Promise<void> {
  const client = await connectRelay() // PLEXUS_RELAY, else 127.0.0.1:55555
  console.log(`attached to node ${client.id} (network ${client.network})`)
  try {
    // Serve a cluster through the relay: the node joins it on our behalf and forwards
    // each request here; leaving (or disconnecting) withdraws the membership.
    const membership = await client.join('relay-example', {
      key: generateKey(),
      onRequest: (data, ctx) => `hello ${new TextDecoder().decode(data)} (from ${ctx.from.slice(-8)})`,
    })
    const reply = await client.request('relay-example', 'world', { timeout: 5000 })
    console.log(new TextDecoder().decode(reply))
    const status = await client.status()
    console.log(`${status.peers.length} peer(s), ${status.clusters.length} cluster(s) known`)
    await membership.leave()
  } finally {
    await client.close()
  }
}

main().catch((err: Error) => {
  console.error(`${err.name}: ${err.message}`)
  process.exit(1)
})
