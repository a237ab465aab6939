/**
 * Stream administration from the command line through a relay: three `plexus node` members of
 * `db` and a fourth node that never joined it. Through the fourth node's relay, `stream
 * purge|update` and `consumer rm` are refused with `UnauthorizedError` (exit 1) without a
 * credential, and succeed with `--cluster-key-file` or a `--capability` for the operation;
 * `consumer ls|info` read without one. Bad flags exit 2 naming the flag. (Each CLI run is a
 * process start: about a second each on an idle machine, several under load.)
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { issueCapability } from '../../src/index.js'
import { runCli, startNode, tempDir, tempFile, uniqueNetwork, waitMembers } from './helpers.js'

describe('plexus stream purge|update and plexus consumer ls|info|rm', () => {
  it('work through the relay with a credential and are refused without one', async () => {
    const key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
    const network = uniqueNetwork()
    const root = tempDir()
    const members = await Promise.all(
      [0, 1, 2].map((i) =>
        startNode(network, ['--data-dir', join(root, `m${i}`), '--join', 'db', '--cluster-key-file', key]),
      ),
    )
    const outside = await startNode(network)
    await waitMembers(outside.relay, 'db', 3)
    const env = { PLEXUS_RELAY: outside.relay }
    const byMember = { env: { PLEXUS_RELAY: members[0]!.relay } }
    const cli = (args: string[], opts = { env }) => runCli([...args], opts)
    const ok = async (args: string[], opts = { env }) => {
      const t0 = Date.now()
      const r = await cli(args, opts)
      if (process.env.ADMIN_TRACE) console.log(Date.now() - t0, args.join(' '))
      expect(r.stderr, args.join(' ')).toBe('')
      expect(r.code, args.join(' ')).toBe(0)
      return r.stdout
    }
    const refused = async (args: string[]) => {
      const t0 = Date.now()
      const r = await cli([...args, '--timeout', '5000'])
      if (process.env.ADMIN_TRACE) console.log(Date.now() - t0, args.join(' '))
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr).toMatch(/^plexus: UnauthorizedError: .*needs the cluster key/)
    }

    await ok(['stream', 'create', 'jobs', '--cluster', 'db', '--subject', 'jobs.>'], byMember)
    for (let i = 0; i < 3; i++) await ok(['publish', 'jobs.x', `j${i}`, '--ack', 'all'], byMember)
    await ok(['consume', 'jobs', '--durable', 'billing', '--count', '1'])

    const ls = JSON.parse(await ok(['consumer', 'ls', 'jobs', '--json']))
    expect(ls).toMatchObject([{ name: 'billing', positions: [{ partition: 0, position: 1 }] }])
    const info = await ok(['consumer', 'info', 'jobs', 'billing'])
    expect(info).toMatch(
      /^consumer billing of stream jobs, last active 20.*\nredelivered 0, terminated 0, dropped after maxDeliver 0\n +PARTITION +POSITION +END +PENDING +HOLDER\n +0 +1 +3 +2 +- *\n$/,
    )
    const missing = await cli(['consumer', 'info', 'jobs', 'nobody'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^plexus: ConsumerNotFoundError: /)

    await refused(['consumer', 'rm', 'jobs', 'billing'])
    await refused(['stream', 'purge', 'jobs', '--before', '3'])
    await refused(['stream', 'update', 'jobs', '--max-messages', '100'])

    const purged = JSON.parse(
      await ok(['stream', 'purge', 'jobs', '--before', '2', '--cluster-key-file', key, '--json']),
    )
    expect(purged).toEqual([{ partition: 0, firstOffset: 2 }])
    // --key: only that key's messages go (here above the start offset).
    await ok(['publish', 'jobs.x', 'keyed', '--key', 'k1', '--ack', 'all'], byMember)
    expect((await ok(['stream', 'last', 'jobs', '--key', 'k1'])).trim()).toBe('keyed')
    expect(
      JSON.parse(await ok(['stream', 'purge', 'jobs', '--key', 'k1', '--cluster-key-file', key, '--json'])),
    ).toEqual([{ partition: 0, firstOffset: 2 }])
    const lastGone = await cli(['stream', 'last', 'jobs', '--key', 'k1'])
    expect(lastGone.code).toBe(1)
    expect(lastGone.stderr).toMatch(/^plexus: MessageNotFoundError: /)
    const emptyKey = await cli(['stream', 'purge', 'jobs', '--key', '', '--cluster-key-file', key])
    expect(emptyKey.code).toBe(2)
    expect(emptyKey.stderr).toMatch(/--key must not be empty/)
    // Pull: one batch (j2 is all that is left), acknowledged; the next batch is empty.
    expect(await ok(['consume', 'jobs', '--durable', 'puller', '--fetch', '5', '--expires', '1000'])).toBe(
      'j2\n',
    )
    expect(await ok(['consume', 'jobs', '--durable', 'puller', '--fetch', '5', '--expires', '300'])).toBe('')
    const noDurable = await cli(['consume', 'jobs', '--fetch', '5'])
    expect(noDurable.code).toBe(2)
    expect(noDurable.stderr).toMatch(/--fetch needs --durable NAME/)
    await ok(['consumer', 'rm', 'jobs', 'puller', '--cluster-key-file', key])
    const cap = issueCapability(
      readFileSync(key, 'utf8').trim(),
      { cluster: 'db', ops: ['update', 'consumer-delete'], stream: 'jobs', expires: Date.now() + 3_600_000 },
      network,
    )
    const updated = JSON.parse(
      await ok(['stream', 'update', 'jobs', '--max-messages', '100', '--capability', cap, '--json']),
    )
    expect(updated.retention).toEqual({ maxMessages: 100 })
    // --replicas alone keeps the retention limits.
    const fewer = JSON.parse(
      await ok(['stream', 'update', 'jobs', '--replicas', '2', '--capability', cap, '--json']),
    )
    expect(fewer).toMatchObject({ replicas: 2, retention: { maxMessages: 100 } })
    const noPurge = await cli(['stream', 'purge', 'jobs', '--capability', cap, '--timeout', '5000'])
    expect(noPurge.code).toBe(1)
    expect(noPurge.stderr).toMatch(/UnauthorizedError: .*does not grant purge/)
    await ok(['consumer', 'rm', 'jobs', 'billing', '--capability', cap])
    expect(JSON.parse(await ok(['consumer', 'ls', 'jobs', '--json']))).toEqual([])
  }, 120_000)

  it('bad flags exit 2 naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['stream', 'purge', 'x', '--before', '-1'], /--before/],
      [['stream', 'purge', 'x', '--partition', 'a'], /--partition/],
      [['stream', 'update', 'x', '--max-bytes', '0'], /--max-bytes/],
      [['stream', 'update', 'x', '--replicas', '0'], /--replicas/],
      [['consumer', 'info', 'x'], /missing required argument 'name'/],
      [['consumer', 'rm', 'x', 'bad name'], /NAME/],
    ]
    for (const [args, why] of cases) {
      const r = await runCli(args, { env: { PLEXUS_RELAY: '127.0.0.1:1' } })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(why)
    }
  })
})
