/**
 * Stream administration from the command line (docs/security.md, "Who may do what"): three
 * `plexus node` members of `db` with data directories and a fourth node that never joined
 * it. Through the fourth node's relay, `stream create|delete` are refused with
 * `UnauthorizedError` (exit 1) unless the command passes `--cluster-key-file` or a
 * `--capability` from `plexus keygen --capability`, which the relay carries to that node;
 * a capability only covers its operations and streams. Through a member's relay the member's
 * own key proves the call. Bad flags exit 2 naming the flag. A stream created with
 * `--publish-access capability --consume-access capability` refuses `publish` and `consume`
 * through the fourth node's relay unless the command passes `--capability`; another client of
 * that relay cannot ride on it.
 */
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { runCli, startNode, tempDir, tempFile, uniqueNetwork, waitMembers } from './helpers.js'

describe('plexus stream create|delete authorization', () => {
  let key: string
  beforeAll(async () => {
    key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
  })

  it('a node without the key is refused; a key file or a capability passed through the relay proves the call', async () => {
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
    const create = (name: string, ...extra: string[]) =>
      runCli(
        [
          'stream',
          'create',
          name,
          '--cluster',
          'db',
          '--subject',
          `${name}.>`,
          '--timeout',
          '5000',
          ...extra,
        ],
        {
          env,
        },
      )
    const unauthorized = (r: { code: number | null; stderr: string }, why: RegExp) => {
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/^plexus: UnauthorizedError: /)
      expect(r.stderr).toMatch(why)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    }

    unauthorized(await create('orders'), /create of stream "orders" in cluster db needs the cluster key/)
    const ok = await create('orders', '--cluster-key-file', key)
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    unauthorized(
      await runCli(['stream', 'delete', 'orders', '--timeout', '5000'], { env }),
      /needs the cluster key/,
    )

    // A capability for deleting "orders" only, valid for an hour in this network.
    const issued = await runCli([
      'keygen',
      '--capability',
      'delete',
      '--cluster',
      'db',
      '--cluster-key-file',
      key,
      '--stream',
      'orders',
      '--expires',
      '1h',
      '--network',
      network,
    ])
    expect(issued.stderr).toBe('')
    expect(issued.stdout).toMatch(/^pxc1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/)
    const capFile = tempFile('orders.cap', issued.stdout)
    unauthorized(await create('other', '--capability', capFile), /does not grant create/)
    const del = await runCli(['stream', 'delete', 'orders', '--capability', issued.stdout.trim()], { env })
    expect(del.stderr).toBe('')
    expect(del.code).toBe(0)
    const list = await runCli(['stream', 'list', '--json'], { env: { PLEXUS_RELAY: members[0]!.relay } })
    expect(JSON.parse(list.stdout)).toEqual([])

    // Through a member's relay its own key proves the call.
    const byMember = await runCli(['stream', 'create', 'm', '--cluster', 'db', '--subject', 'm.>'], {
      env: { PLEXUS_RELAY: members[1]!.relay },
    })
    expect(byMember.code).toBe(0)
  })

  it('publish and consume on a capability stream: --capability passes through the relay, per client', async () => {
    const network = uniqueNetwork()
    const root = tempDir()
    const members = await Promise.all(
      [0, 1, 2].map((i) =>
        startNode(network, ['--data-dir', join(root, `m${i}`), '--join', 'db', '--cluster-key-file', key]),
      ),
    )
    const outside = await startNode(network)
    await waitMembers(outside.relay, 'db', 3)
    const byMember = { env: { PLEXUS_RELAY: members[0]!.relay } }
    const env = { env: { PLEXUS_RELAY: outside.relay } }
    const created = await runCli(
      [
        'stream',
        'create',
        'locked',
        '--cluster',
        'db',
        '--subject',
        'locked.>',
        '--publish-access',
        'capability',
        '--consume-access',
        'capability',
        '--json',
      ],
      byMember,
    )
    expect(created.stderr).toBe('')
    expect(JSON.parse(created.stdout).access).toEqual({ publish: 'capability', consume: 'capability' })
    const info = await runCli(['stream', 'info', 'locked'], env)
    expect(info.stdout).toMatch(/access\s+publish capability, consume capability/)

    const unauthorized = (r: { code: number | null; stderr: string }, why: RegExp) => {
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/^plexus: UnauthorizedError: /)
      expect(r.stderr).toMatch(why)
    }
    const publish = (...extra: string[]) =>
      runCli(['publish', 'locked.a', 'hello', '--ack', 'all', '--timeout', '4000', ...extra], env)
    unauthorized(await publish(), /needs a capability granting publish/)
    unauthorized(
      await runCli(['consume', 'locked', '--count', '1'], env),
      /needs a capability granting consume/,
    )

    const issued = await runCli([
      'keygen',
      '--capability',
      'publish,consume',
      '--cluster',
      'db',
      '--cluster-key-file',
      key,
      '--stream',
      'locked',
      '--expires',
      '1h',
      '--network',
      network,
    ])
    const cap = tempFile('locked.cap', issued.stdout)
    const ok = await publish('--capability', cap)
    expect(ok.stderr).toBe('')
    expect(ok.stdout.trim()).toBe('0')
    // Another client of the same relay node, without the capability: refused (no ride-along).
    unauthorized(await publish(), /needs a capability granting publish/)
    const read = await runCli(
      ['consume', 'locked', '--count', '1', '--capability', issued.stdout.trim()],
      env,
    )
    expect(read.stderr).toBe('')
    expect(read.stdout).toBe('hello\n')
    unauthorized(
      await runCli(['consume', 'locked', '--count', '1'], env),
      /needs a capability granting consume/,
    )
  }, 120_000) // four node processes and nine CLI runs

  it('bad credential flags exit 2 naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['stream', 'delete', 'x', '--capability', 'pxc1.bad.bad'], /--capability must be a capability/],
      [
        ['stream', 'delete', 'x', '--capability', '/nonexistent/cap'],
        /--capability \/nonexistent\/cap: neither/,
      ],
      [['stream', 'delete', 'x', '--cluster-key-file', '/nonexistent/key'], /--cluster-key-file/],
      [['publish', 'a', 'x', '--capability', 'pxc1.bad.bad'], /--capability must be a capability/],
      [
        ['stream', 'create', 'x', '--publish-access', 'closed'],
        /--publish-access must be open or capability/,
      ],
      [['keygen', '--capability', 'create'], /--capability needs --cluster C/],
      [['keygen', '--capability', 'fly', '--cluster', 'db'], /--capability takes operations among/],
      [
        [
          'keygen',
          '--capability',
          'create',
          '--cluster',
          'db',
          '--cluster-key-file',
          key,
          '--expires',
          'soon',
        ],
        /--expires must be a duration/,
      ],
      [['keygen', '--cluster', 'db'], /--cluster is for --capability only/],
    ]
    for (const [args, why] of cases) {
      const r = await runCli(args, { env: { PLEXUS_RELAY: '127.0.0.1:1' } })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(why)
    }
  })
})
