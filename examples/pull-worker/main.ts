/**
 * Pull workers on a durable stream: three member nodes (each with a data directory) store
 * the stream `tasks`; a worker node fetches batches with `consumer.fetch({ max, expires })`,
 * acknowledges what it handled, hands back (`nak`) what it cannot do yet, and gives up
 * (`term`) on a bad task. A task that keeps failing is dropped after `maxDeliver`
 * deliveries, with an advisory on `$plexus.advisory.max_deliveries.tasks.workers`.
 *
 *   npm run build && node dist/examples/pull-worker/main.js
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, generateKey, type PlexusNode } from '../../src/index.js'

const TASKS = 20

async function main(): Promise<void> {
  const network = `pull-${randomBytes(4).toString('hex')}`
  const listen = ['/ip4/127.0.0.1/tcp/0']
  const root = await mkdtemp(join(tmpdir(), 'plexus-pull-worker-'))
  const key = generateKey()
  const nodes: PlexusNode[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const bootstrap = nodes[0]?.addresses
      const member = await createNode({ network, listen, bootstrap, dataDir: join(root, `m${i}`) })
      nodes.push(member)
      await member.join('store', { key })
    }
    const worker = await createNode({
      network,
      listen,
      bootstrap: nodes[0]!.addresses,
      credentials: { clusterKeys: { store: key } },
    })
    nodes.push(worker)
    const end = Date.now() + 20_000
    while (worker.status().clusters.find((c) => c.name === 'store')?.members.length !== 3) {
      if (Date.now() > end) throw new Error('members not seen')
      await new Promise((r) => setTimeout(r, 50))
    }
    await worker.streams.create('tasks', { cluster: 'store', subject: 'tasks.>', replicas: 3 })
    const advisories = worker.subscribe('$plexus.advisory.max_deliveries.tasks.workers')
    await advisories.ready
    for (let i = 1; i <= TASKS; i++) {
      const kind = i === 7 ? 'poison' : i === 13 ? 'bad' : 'resize'
      await worker.publish(`tasks.${kind}`, `task ${i}`, { ack: 'all' })
    }

    const c = worker.consume('tasks', { durable: 'workers', maxDeliver: 3, backoff: [100, 200] })
    const done = new Set<string>()
    let naked = 0
    let terminated = 0
    while (done.size + terminated < TASKS - 1) {
      if (Date.now() > end + 10_000) throw new Error('tasks not done in time')
      for (const m of await c.fetch({ max: 8, expires: 1000 })) {
        if (m.topic === 'tasks.poison') continue // never acknowledged: back after each backoff, then dropped
        if (m.topic === 'tasks.bad') {
          terminated++
          await m.term() // never again
        } else if (m.deliveryCount === 1 && Number(m.string().split(' ')[1]) % 5 === 0) {
          naked++
          await m.nak(50) // not yet: again in 50 ms
        } else {
          done.add(m.string())
          await m.ack()
        }
      }
    }
    const [advisory] = await Promise.race([
      (async () => {
        for await (const a of advisories) return [a.json<{ offset: number; deliveries: number }>()]
        return []
      })(),
      new Promise<[]>((r) => setTimeout(() => r([]), 5000)),
    ])
    c.close()
    console.log(`done ${done.size}, nak'ed once ${naked}, terminated ${terminated}`)
    console.log(
      advisory
        ? `dropped after ${advisory.deliveries} deliveries: offset ${advisory.offset}`
        : 'no advisory within 5 s',
    )
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await rm(root, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
