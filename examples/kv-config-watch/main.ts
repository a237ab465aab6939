/**
 * A configuration watcher on a key-value bucket: three storing members of cluster `store`
 * hold bucket `config`; a service node watches `app.>` and applies each change as it comes
 * (first the current values, then live puts and deletes); an operator node changes settings
 * with compare-and-set, so two operators never overwrite each other blindly.
 *
 *   npm run build && node dist/examples/kv-config-watch/main.js
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, generateKey, type KvEntry, type PlexusNode } from '../../src/index.js'

async function main(): Promise<void> {
  const network = `kvcfg-${randomBytes(4).toString('hex')}`
  const listen = ['/ip4/127.0.0.1/tcp/0']
  const root = await mkdtemp(join(tmpdir(), 'plexus-kv-example-'))
  const key = generateKey()
  const nodes: PlexusNode[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const n = await createNode({ network, listen, dataDir: join(root, `m${i}`) })
      nodes.push(n)
      await n.join('store', { key })
    }
    const service = await createNode({ network, listen })
    const operator = await createNode({ network, listen, credentials: { clusterKeys: { store: key } } })
    nodes.push(service, operator)
    const end = Date.now() + 15_000
    while (nodes.some((n) => n.status().clusters.find((c) => c.name === 'store')?.members.length !== 3)) {
      if (Date.now() > end) throw new Error('members not seen')
      await new Promise((r) => setTimeout(r, 50))
    }

    const admin = await operator.kv('config', { cluster: 'store' })
    const rev = await admin.put('app.log-level', 'info')
    await admin.put('app.pool-size', '10')

    // The service: current values first, then every change, in revision order.
    const config = new Map<string, string>()
    const kv = await service.kv('config', { cluster: 'store' })
    const watch = kv.watch('app.>')
    const seen: KvEntry[] = []
    const applied = (async () => {
      for await (const e of watch) {
        if (e.operation === 'put') config.set(e.key, e.string())
        else config.delete(e.key)
        console.log(
          `service: ${e.key} ${e.operation}${e.operation === 'put' ? ` = ${e.string()}` : ''} (revision ${e.revision})`,
        )
        seen.push(e)
        if (seen.length === 5) break
      }
    })()

    await admin.update('app.log-level', 'debug', rev) // compare-and-set: still at `rev`
    try {
      await admin.update('app.log-level', 'warn', rev) // stale: someone changed it meanwhile
    } catch (err) {
      console.log(`operator: stale update refused: ${(err as Error).name}`)
    }
    await admin.delete('app.pool-size')
    await admin.create('app.feature-x', 'on')
    await applied
    console.log(`service config: ${JSON.stringify(Object.fromEntries(config))}`)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await rm(root, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
