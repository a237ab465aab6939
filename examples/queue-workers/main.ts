/**
 * A work queue: three worker nodes subscribe to `jobs.>` in queue group `workers`, so each
 * job published goes to exactly one of them; an audit subscription (no group) sees every
 * job. Prints how the jobs were shared.
 *
 *   npm run build && node dist/examples/queue-workers/main.js
 */
import { randomBytes } from 'node:crypto'
import { createNode, type PlexusNode } from '../../src/index.js'

const JOBS = 30

async function main(): Promise<void> {
  const network = `queue-${randomBytes(4).toString('hex')}`
  const listen = ['/ip4/127.0.0.1/tcp/0']
  const nodes: PlexusNode[] = [await createNode({ network, listen })]
  try {
    for (let i = 0; i < 2; i++)
      nodes.push(await createNode({ network, listen, bootstrap: nodes[0]!.addresses }))
    const done = nodes.map((): string[] => [])
    const subs = nodes.map((n, i) =>
      n.subscribe('jobs.>', (m) => void done[i]!.push(m.string()), { queue: 'workers' }),
    )
    let audited = 0
    subs.push(nodes[0]!.subscribe('jobs.>', () => void audited++))
    // Linked, then `ready`: a publish from any node now reaches the group.
    const end = Date.now() + 10_000
    while (nodes.some((n) => n.status().peers.length < nodes.length - 1)) {
      if (Date.now() > end) throw new Error('nodes did not link')
      await new Promise((r) => setTimeout(r, 50))
    }
    await Promise.all(subs.map((s) => s.ready))
    for (let j = 1; j <= JOBS; j++) await nodes[j % 3]!.publish(`jobs.resize.${j}`, `job ${j}`)
    while (audited < JOBS || done.flat().length < JOBS) {
      if (Date.now() > end) throw new Error('jobs did not arrive')
      await new Promise((r) => setTimeout(r, 20))
    }
    for (const [i, jobs] of done.entries()) console.log(`worker ${i + 1}: ${jobs.length} jobs`)
    console.log(`audit saw ${audited} of ${JOBS}; every job done once: ${new Set(done.flat()).size === JOBS}`)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
