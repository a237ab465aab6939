/**
 * `plexus stream create|info|list|delete`, `plexus publish --ack`, `plexus consume` and the
 * streams section of `plexus status`, as real processes against three `plexus node`
 * members of one cluster, each with its own --data-dir. Errors print one line naming the
 * class (StreamNotFoundError, NotEnoughReplicasError) or the bad flag, with the documented
 * exit codes; Ctrl-C ends a tailing `consume` with 130 and the node drops its consumer.
 */
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type NodeProc,
  runCli,
  spawnCli,
  startNode,
  tempDir,
  tempFile,
  uniqueNetwork,
  waitMembers,
} from './helpers.js'

/** Three members of `db` with data directories; returns them and the env for client commands. */
async function cluster(key: string): Promise<{ nodes: NodeProc[]; env: Record<string, string> }> {
  const network = uniqueNetwork()
  const root = tempDir()
  const nodes = await Promise.all(
    [0, 1, 2].map((i) =>
      startNode(network, ['--data-dir', join(root, `m${i}`), '--join', 'db', '--cluster-key-file', key]),
    ),
  )
  for (const n of nodes) await waitMembers(n.relay, 'db', 3)
  return { nodes, env: { PLEXUS_RELAY: nodes[0]!.relay } }
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('plexus stream, publish --ack, consume, status', () => {
  let key: string
  beforeAll(async () => {
    key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
  })

  it('creates, inspects, publishes with acks, consumes, shows status, deletes', async () => {
    const { nodes, env } = await cluster(key)
    const ids = nodes.map((n) => n.id)

    const created = await runCli(
      [
        'stream',
        'create',
        'orders',
        '--cluster',
        'db',
        '--subject',
        'orders.>',
        '--replicas',
        '3',
        '--partitions',
        '1',
      ],
      { env },
    )
    expect(created.stderr).toBe('')
    expect(created.code).toBe(0)
    expect(created.stdout).toMatch(/^stream +orders$/m)
    expect(created.stdout).toMatch(/^subject +orders\.>$/m)
    expect(created.stdout).toMatch(/^partition 0$/m)

    const again = await runCli(
      ['stream', 'create', 'orders', '--cluster', 'db', '--subject', 'orders.>', '--json'],
      {
        env,
      },
    )
    expect(again.code).toBe(0)
    const info0 = JSON.parse(again.stdout)
    expect(info0).toMatchObject({ name: 'orders', cluster: 'db', subject: 'orders.>', replicas: 3 })
    expect(new Set(info0.partitions[0].replicas)).toEqual(new Set(ids))

    const offsets: string[] = []
    for (let i = 0; i < 3; i++) {
      const r = await runCli(['publish', `orders.eu.${i}`, `m${i}`, '--ack', 'all', '--key', `k${i}`], {
        env,
      })
      expect(r.stderr).toBe('')
      offsets.push(r.stdout)
    }
    expect(offsets).toEqual(['0\n', '1\n', '2\n'])
    const leader = await runCli(
      [
        'publish',
        'orders.us',
        'last',
        '--ack',
        'leader',
        '--msg-id',
        'x1',
        '--timeout',
        '10000',
        '--header',
        'h=v',
        '--json',
      ],
      { env },
    )
    expect(JSON.parse(leader.stdout)).toEqual({ stream: 'orders', partition: 0, offset: 3 })

    const text = await runCli(['consume', 'orders', '--count', '4'], { env })
    expect(text.code).toBe(0)
    expect(text.stdout).toBe('m0\nm1\nm2\nlast\n')
    const json = await runCli(
      ['consume', 'orders', '--from', '1', '--partition', '0', '--count', '3', '--json'],
      { env },
    )
    expect(json.code).toBe(0)
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines.map((l) => l.offset)).toEqual([1, 2, 3])
    expect(lines[0]).toMatchObject({
      stream: 'orders',
      topic: 'orders.eu.1',
      partition: 0,
      key: 'k1',
      headers: {},
      data: 'm1',
    })
    expect(lines[2]).toMatchObject({ topic: 'orders.us', key: null, headers: { h: 'v' }, data: 'last' })
    expect(typeof lines[0].timestamp).toBe('number')
    const latest = await runCli(['consume', 'orders', '--from', 'latest', '--count', '1'], { env })
    expect(latest.stdout).toBe('last\n')
    // Consumer options: only orders.us, for a durable that acknowledges nothing explicitly.
    const filtered = await runCli(
      [
        'consume',
        'orders',
        '--durable',
        'us',
        '--filter',
        'orders.us',
        '--ack-policy',
        'none',
        '--count',
        '1',
      ],
      { env },
    )
    expect({ code: filtered.code, stdout: filtered.stdout }).toEqual({ code: 0, stdout: 'last\n' })

    const info = await runCli(['stream', 'info', 'orders'], { env })
    expect(info.code).toBe(0)
    expect(info.stdout).toMatch(/offsets +first 0, next 4/)
    const infoJson = JSON.parse((await runCli(['stream', 'info', 'orders', '--json'], { env })).stdout)
    expect(infoJson.partitions[0].nextOffset).toBe(4)
    expect(ids).toContain(infoJson.partitions[0].leader)
    const list = await runCli(['stream', 'list'], { env })
    expect(list.stdout).toMatch(/^NAME +CLUSTER +SUBJECT +PARTITIONS +REPLICAS +RETENTION +ACCESS +LEADERS$/m)
    expect(list.stdout).toMatch(/^orders +db +orders\.> +1 +3 +none +open +(\?|…\S{6})$/m)
    const listed = JSON.parse((await runCli(['stream', 'ls', '--json'], { env })).stdout)
    expect(listed).toMatchObject([
      { name: 'orders', cluster: 'db', subject: 'orders.>', partitions: 1, replicas: 3, retention: {} },
    ])
    expect(listed[0].placement[0].replicas.sort()).toEqual([...ids].sort())

    // status: the stream with partitions, leader and in-sync replicas asked through the relay.
    const status = await runCli(['status'], { env })
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/^streams \(1\)$/m)
    expect(status.stdout).toMatch(
      /^ {2}orders: cluster db, subject orders\.>, 1 partition\(s\), 3 replica\(s\)$/m,
    )
    expect(status.stdout).toMatch(/PARTITION +LEADER +NEXT +HERE +IN-SYNC +RAFT LOG HERE/)
    expect(status.stdout).toMatch(/ \d+\.\d MB, snapshot \d+$/m)
    const sj = JSON.parse((await runCli(['status', '--json'], { env })).stdout)
    expect(sj.streams).toHaveLength(1)
    expect(sj.streams[0]).toMatchObject({
      name: 'orders',
      cluster: 'db',
      partitions: 1,
      replicas: 3,
      infoError: null,
    })
    expect(sj.streams[0].info.partitions[0].nextOffset).toBe(4)
    expect(sj.streams[0].hosted[0]).toMatchObject({ partition: 0 })

    const del = await runCli(['stream', 'delete', 'orders'], { env })
    expect(del).toMatchObject({ code: 0, stdout: '', stderr: '' })
    const gone = await runCli(['stream', 'info', 'orders', '--timeout', '3000'], { env })
    expect(gone.code).toBe(1)
    expect(gone.stderr).toMatch(/^plexus: StreamNotFoundError: .*orders/)
    expect(gone.stderr.trim().split('\n')).toHaveLength(1)
  }, 120_000)

  it('consume tails live and Ctrl-C exits 130, closing the consumer on the node', async () => {
    const { env } = await cluster(key)
    expect(
      (
        await runCli(
          ['stream', 'create', 'ev', '--cluster', 'db', '--subject', 'ev.*', '--partitions', '2'],
          { env },
        )
      ).code,
    ).toBe(0)
    const tail = spawnCli(['consume', 'ev', '--from', 'new', '--json'], { env })
    // Publish until the tailing consumer prints (it starts after what existed: no sleeping).
    let n = 0
    await until(
      async () => {
        if (tail.stdout().includes('\n')) return true
        const r = await runCli(['publish', 'ev.a', `live${n++}`, '--ack', 'all', '--key', String(n)], { env })
        expect(r.stderr).toBe('')
        return tail.stdout().includes('\n')
      },
      30_000,
      'consume to print a message',
    )
    const first = JSON.parse(tail.stdout().split('\n')[0]!)
    expect(first).toMatchObject({ stream: 'ev', topic: 'ev.a' })
    expect(first.data).toMatch(/^live\d+$/)
    const connections = async () => {
      const r = await runCli(['status', '--json'], { env })
      return JSON.parse(r.stdout).counters['relay.connections'] as number
    }
    expect(await connections()).toBe(2) // the consumer and this status call
    tail.child.kill('SIGINT')
    expect(await tail.done).toBe(130)
    expect(tail.stderr()).toBe('')
    await until(async () => (await connections()) === 1, 10_000, 'the relay to drop the consumer')
  }, 120_000)

  it('errors name the class or the flag, with the documented exit codes', async () => {
    const { env } = await cluster(key)
    const cases: Array<[string[], number, RegExp]> = [
      [['stream', 'create', 'x', '--subject', 'x'], 2, /--cluster is required/],
      [['stream', 'create', 'x', '--cluster', 'db'], 2, /--subject is required/],
      [['stream', 'create', 'x', '--cluster', 'bad name', '--subject', 'x'], 2, /--cluster/],
      [['stream', 'create', 'x', '--cluster', 'db', '--subject', 'a..b'], 2, /--subject/],
      [['stream', 'create', 'x', '--cluster', 'db', '--subject', 'x', '--replicas', '0'], 2, /--replicas/],
      [
        ['stream', 'create', 'x', '--cluster', 'db', '--subject', 'x', '--partitions', 'two'],
        2,
        /--partitions/,
      ],
      [['stream', 'create', 'x', '--cluster', 'db', '--subject', 'x', '--max-age', '-1'], 2, /--max-age/],
      [['stream', 'create', 'bad!', '--cluster', 'db', '--subject', 'x'], 2, /NAME/],
      [['stream', 'info', 'bad!'], 2, /NAME/],
      [['stream', 'info', 'x', '--timeout', 'soon'], 2, /--timeout/],
      [['stream', 'frobnicate'], 2, /frobnicate/],
      [['consume', 'bad!'], 2, /STREAM/],
      [['consume', 'x', '--from', 'yesterday'], 2, /--from/],
      [['consume', 'x', '--partition', '-1'], 2, /--partition/],
      [['consume', 'x', '--count', '0'], 2, /--count/],
      [['consume', 'x', '--ack-wait', '100'], 2, /--ack-wait needs --durable/],
      [['consume', 'x', '--max-deliver', '3'], 2, /--max-deliver needs --durable/],
      [['consume', 'x', '--durable', 'd', '--backoff', '1s'], 2, /--backoff/],
      [['consume', 'x', '--durable', 'd', '--ack-policy', 'all'], 2, /--ack-policy/],
      [['consume', 'x', '--filter', 'a..b'], 2, /--filter/],
      [['publish', 'x.y', 'z', '--ack', 'most'], 2, /--ack/],
      [['publish', 'x.y', 'z', '--json'], 2, /--json needs --ack/],
      [['publish', 'x.y', 'z', '--ack', 'all', '--timeout', '0'], 2, /--timeout/],
      [
        ['stream', 'create', 'big', '--cluster', 'db', '--subject', 'big', '--replicas', '5'],
        1,
        /NotEnoughReplicasError/,
      ],
      [['stream', 'info', 'nope', '--timeout', '3000'], 1, /StreamNotFoundError/],
      [['stream', 'delete', 'nope', '--timeout', '3000'], 1, /StreamNotFoundError/],
      [['publish', 'not.captured', 'x', '--ack', 'all', '--timeout', '3000'], 1, /StreamNotFoundError/],
      [['consume', 'nope'], 1, /StreamNotFoundError/],
    ]
    // Four at a time: two dozen CLI start-ups at once on a 2-core machine take longer than
    // runCli's deadline.
    const results: Awaited<ReturnType<typeof runCli>>[] = []
    for (let i = 0; i < cases.length; i += 4)
      results.push(...(await Promise.all(cases.slice(i, i + 4).map(([args]) => runCli(args, { env })))))
    results.forEach((r, i) => {
      const [args, code, re] = cases[i]!
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code, stdout: '' })
      expect(r.stderr).toMatch(/^plexus: \w+Error: /)
      expect(r.stderr).toMatch(re)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    })
    // Without a node to attach to: exit 3.
    const none = await runCli(['stream', 'list'], { env: { PLEXUS_RELAY: '127.0.0.1:1' } })
    expect(none.code).toBe(3)
    expect(none.stderr).toMatch(/^plexus: RelayUnavailableError: /)
  }, 120_000)
})
