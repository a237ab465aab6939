/**
 * A Plexus member process for the durable publish benchmark: one real libp2p node on TCP
 * loopback (same-host discovery, no mDNS) with its own data directory, joined to the
 * cluster that owns the benchmark stream, so it hosts a replica of the stream's partition.
 *
 * Usage: node dist/bench/durable-member.js --network N --key K --cluster C --data-dir D
 * Prints `READY <peer id> <pid>` once joined. A line `status` on stdin prints one line
 * `STATUS <json>` (the node's status: hosted partitions, counters), for diagnosis. Stops
 * cleanly on SIGTERM/SIGINT or when stdin ends (the parent died), so `--cpu-prof` profiles
 * get written.
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { createNode } from '../src/index.js'

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      network: { type: 'string' },
      key: { type: 'string' },
      cluster: { type: 'string' },
      'data-dir': { type: 'string' },
    },
  })
  if (!values.network || !values.key || !values.cluster || !values['data-dir']) {
    throw new Error('usage: durable-member.js --network N --key K --cluster C --data-dir D')
  }
  const node = await createNode({
    // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
    gcTuning: true,
    network: values.network,
    dataDir: values['data-dir'],
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
  })
  let stopping = false
  const stop = async (code: number) => {
    if (stopping) return
    stopping = true
    const force = setTimeout(() => process.exit(code), 5000)
    force.unref()
    await node.stop().catch(() => {})
    process.exit(code)
  }
  process.on('SIGTERM', () => void stop(0))
  process.on('SIGINT', () => void stop(0))
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    if (line.trim() === 'status') console.log(`STATUS ${JSON.stringify(node.status())}`)
  })
  lines.on('close', () => void stop(0))
  await node.join(values.cluster, { key: values.key })
  console.log(`READY ${node.id} ${process.pid}`)
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
  process.exit(1)
})
