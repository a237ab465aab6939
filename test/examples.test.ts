/**
 * The examples run to completion: chat over broadcast (--demo), pub/sub wildcards, and a
 * file transfer over a tunnel whose SHA-256 matches at both ends. They run from dist/, so
 * the project is compiled first when dist/ is missing or older than an example.
 */
import { execFile, spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const EXAMPLES = [
  'chat',
  'pubsub-wildcards',
  'file-transfer',
  'queue-workers/main',
  'pull-worker/main',
  'kv-config-watch/main',
]

beforeAll(() => {
  const stale = EXAMPLES.some((e) => {
    const js = `${root}dist/examples/${e}.js`
    return !existsSync(js) || statSync(js).mtimeMs < statSync(`${root}examples/${e}.ts`).mtimeMs
  })
  // tsc emits even when unrelated files have type errors; the examples' presence is what counts.
  if (stale)
    spawnSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', root], { stdio: 'ignore' })
}, 120_000)

function run(name: string, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [`${root}dist/examples/${name}.js`, ...args],
      { timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

describe('examples', () => {
  it('chat --demo: three participants each hear every line', async () => {
    const r = await run('chat', ['--demo'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('demo ok: 3 participants each heard 6 lines')
    for (const who of ['alice', 'bob', 'carol']) {
      expect(r.stdout).toContain(`[${who}] alice: message 1 from alice`)
      expect(r.stdout).toContain(`[${who}] carol: message 2 from carol`)
    }
  })

  it('pubsub-wildcards: orders.* gets one token, orders.> one or more', async () => {
    const r = await run('pubsub-wildcards')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^orders\.created +-> orders\.\*, orders\.>$/m)
    expect(r.stdout).toMatch(/^orders\.eu\.created +-> orders\.>$/m)
    expect(r.stdout).toMatch(/^orders +-> \(no subscriber\)$/m)
    expect(r.stdout).toContain('orders.* received: orders.created\n')
    expect(r.stdout).toContain(
      'orders.> received: orders.created orders.eu.created orders.eu.shipped.express\n',
    )
  })

  it('queue-workers: each job done by one of three workers, the audit sees all', async () => {
    const r = await run('queue-workers/main')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('audit saw 30 of 30; every job done once: true')
    expect(r.stdout.match(/^worker \d: \d+ jobs$/gm)).toHaveLength(3)
  })

  it('pull-worker: fetched batches acked, nak-ed, terminated; the poison task dropped with an advisory', async () => {
    const r = await run('pull-worker/main')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("done 18, nak'ed once 4, terminated 1")
    expect(r.stdout).toContain('dropped after 3 deliveries: offset 6')
  })

  it('kv-config-watch: the service sees current values, then changes; a stale update is refused', async () => {
    const r = await run('kv-config-watch/main')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('operator: stale update refused: WrongRevisionError')
    expect(r.stdout).toContain('service config: {"app.log-level":"debug","app.feature-x":"on"}')
  })

  it('file-transfer: 20 MB over a tunnel, the same SHA-256 at both ends', async () => {
    const r = await run('file-transfer')
    expect(r.code).toBe(0)
    const sent = /sender: +sha256 ([0-9a-f]{64}) \(20971520 bytes sent\)/.exec(r.stdout)
    const got = /receiver: sha256 ([0-9a-f]{64}) \(20971520 bytes written\)/.exec(r.stdout)
    expect(sent?.[1]).toBeDefined()
    expect(got?.[1]).toBe(sent?.[1])
    expect(r.stdout).toMatch(/^match: /m)
  })
})
