/**
 * One node process of the overlay benchmark (bench/overlay.ts): a real libp2p node on TCP
 * loopback (same-host discovery, no mDNS) with `--max-links`, joined to one cluster.
 *
 * Usage: node dist/bench/overlay-node.js --network N --key K --max-links L --expect M
 * Prints `READY <peer id>` once joined and `ALL <ms>` when it knows M members (ms since its
 * start). Each `s` line on stdin is answered with `LINKS <neighbours> <on-demand>`, each `m`
 * line with `MEMBERS <n>`. Stops on
 * SIGTERM/SIGINT or when stdin ends (the parent died).
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { createNode } from '../src/index.js'

async function main(): Promise<void> {
  const t0 = performance.now()
  const { values } = parseArgs({
    options: {
      network: { type: 'string' },
      key: { type: 'string' },
      'max-links': { type: 'string' },
      expect: { type: 'string' },
    },
  })
  if (!values.network || !values.key || !values['max-links'] || !values.expect) {
    throw new Error('usage: overlay-node.js --network N --key K --max-links L --expect M')
  }
  const expect = Number(values.expect)
  const node = await createNode({
    gcTuning: true,
    network: values.network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
    maxLinks: Number(values['max-links']),
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
  const input = createInterface({ input: process.stdin })
  input.on('line', (line) => {
    const cmd = line.trim()
    if (cmd === 's') {
      const c = node.status().counters
      console.log(`LINKS ${c['links.neighbours'] ?? 0} ${c['links.onDemand'] ?? 0}`)
    } else if (cmd === 'm') {
      console.log(`MEMBERS ${node.status().clusters.find((c) => c.name === 'overlay')?.members.length ?? 0}`)
    }
  })
  input.on('close', () => void stop(0))
  await node.join('overlay', { key: values.key, onRequest: (data) => data })
  console.log(`READY ${node.id}`)
  // Until every member is known: the time is the figure (a poll every 50 ms, then none).
  const poll = setInterval(() => {
    const n = node.status().clusters.find((c) => c.name === 'overlay')?.members.length ?? 0
    if (n >= expect) {
      clearInterval(poll)
      console.log(`ALL ${Math.round(performance.now() - t0)}`)
    }
  }, 50)
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
  process.exit(1)
})
