/**
 * A Plexus member process for the request benchmark: one real libp2p node on TCP loopback
 * (same-host discovery, no mDNS) that joins the given clusters with an echo handler.
 *
 * Usage: node dist/bench/member.js --network N --key K --cluster bench [--cluster bench1]
 * Prints `READY <peer id>` once joined; stops cleanly on SIGTERM/SIGINT or when stdin ends
 * (the parent died), so `--cpu-prof` profiles get written.
 */
import { parseArgs } from 'node:util'
import { createNode } from '../src/index.js'

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      network: { type: 'string' },
      key: { type: 'string' },
      cluster: { type: 'string', multiple: true },
    },
  })
  if (!values.network || !values.key || !values.cluster?.length) {
    throw new Error('usage: member.js --network N --key K --cluster C [--cluster C2]')
  }
  const node = await createNode({
    // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
    gcTuning: true,
    network: values.network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
  })
  let stopping = false
  const stop = async (code: number) => {
    if (stopping) return
    stopping = true
    const force = setTimeout(() => process.exit(code), 3000)
    force.unref()
    await node.stop().catch(() => {})
    process.exit(code)
  }
  process.on('SIGTERM', () => void stop(0))
  process.on('SIGINT', () => void stop(0))
  process.stdin.on('end', () => void stop(0))
  process.stdin.resume()
  for (const cluster of values.cluster) {
    await node.join(cluster, { key: values.key, onRequest: (data) => data })
  }
  console.log(`READY ${node.id}`)
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
  process.exit(1)
})
