/**
 * A Plexus member process for the request benchmark: one real libp2p node on TCP loopback
 * (same-host discovery, no mDNS) that joins the given clusters with an echo handler.
 *
 * Usage: node dist/bench/member.js --network N --key K --cluster bench [--cluster bench1]
 * Prints `READY <peer id>` once joined; stops cleanly on SIGTERM/SIGINT or when stdin ends
 * (the parent died), so `--cpu-prof` profiles get written.
 */
import { parseArgs } from 'node:util'
import { benchMain, runUntilStopped, startBenchNode } from './node-process.js'

benchMain(async () => {
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
  const node = await startBenchNode(values.network)
  runUntilStopped([node])
  for (const cluster of values.cluster) {
    await node.join(cluster, { key: values.key, onRequest: (data) => data })
  }
  console.log(`READY ${node.id}`)
})
