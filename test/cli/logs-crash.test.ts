/**
 * The logs tell the story of a kill -9 of a partition leader (issue 14): three `plexus node`
 * members with data directories and `--log-format json` host a stream with three replicas;
 * the leader is killed with SIGKILL and restarted on its data directory. The survivors' and
 * the restarted member's JSON logs (stderr) must say, in order: the link to the dead member
 * went down → a new partition leader was chosen → (after the restart) the replica started
 * catching up → it caught up (the leader counts it in sync again).
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { exited, type NodeProc, runCli, startNode, tempDir, tempFile, uniqueNetwork } from './helpers.js'

/** One JSON log line of a member. */
interface Rec {
  level: number
  time: number
  msg: string
  component?: string
  [field: string]: unknown
}

/** Parses the member's stderr so far: every line must be a JSON log record. */
function records(n: NodeProc): Rec[] {
  return n.stderr
    .join('')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Rec
      } catch {
        throw new Error(`not a JSON log line on stderr: ${l}`)
      }
    })
}

const matches = (r: Rec, msg: string, fields: Record<string, unknown>) =>
  r.msg === msg && Object.entries(fields).every(([k, v]) => r[k] === v)

/** The first record of `n` matching, with its position in the log (waits up to `ms`). */
async function waitRec(
  n: NodeProc,
  msg: string,
  fields: Record<string, unknown> = {},
  pred: (r: Rec) => boolean = () => true,
  ms = 30_000,
): Promise<Rec & { at: number }> {
  const end = Date.now() + ms
  for (;;) {
    const all = records(n)
    const at = all.findIndex((r) => matches(r, msg, fields) && pred(r))
    if (at >= 0) return { ...all[at]!, at }
    if (Date.now() > end) {
      const tail = records(n)
        .slice(-30)
        .map((r) => `${r.msg} ${JSON.stringify(r)}`)
      throw new Error(
        `no "${msg}" ${JSON.stringify(fields)} within ${ms} ms; last records:\n${tail.join('\n')}`,
      )
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('logs of a leader crash', () => {
  it('link down → leader change → catch-up start → caught up, in order', async () => {
    const key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
    const network = uniqueNetwork()
    const root = tempDir()
    const args = (i: number) => [
      '--data-dir',
      join(root, `m${i}`),
      '--join',
      'db',
      '--cluster-key-file',
      key,
      '--log-format',
      'json',
    ]
    // A loaded machine can take more than the usual 15 s to start three nodes at once.
    const nodes = await Promise.all([0, 1, 2].map((i) => startNode(network, args(i), 45_000)))
    const ids = nodes.map((n) => n.id)
    for (const n of nodes)
      for (const id of ids) await waitRec(n, 'member joined', { cluster: 'db', peer: id })
    const env = { PLEXUS_RELAY: nodes[0]!.relay }
    const create = ['stream', 'create', 'orders', '--cluster', 'db', '--subject', 'orders.>']
    const created = await runCli([...create, '--replicas', '3', '--partitions', '1'], {
      env,
      timeout: 30_000,
    })
    expect(created.code, created.stderr).toBe(0)

    // Every replica agrees that the preferred replica (placed first) leads: leadership stays
    // there (a leader elsewhere would hand it over to the preferred one later).
    const createdRec = await Promise.any(nodes.map((n) => waitRec(n, 'stream created', { stream: 'orders' })))
    const leader = (createdRec.placement as string[][])[0]![0]!
    const end = Date.now() + 30_000
    for (;;) {
      const seen = nodes.map(
        (n) =>
          records(n)
            .filter((r) => matches(r, 'partition leader changed', { stream: 'orders', partition: 0 }))
            .at(-1)?.leader,
      )
      if (seen.every((l) => l === leader)) break
      if (Date.now() > end)
        throw new Error(`replicas do not agree on leader ${leader}: ${JSON.stringify(seen)}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['publish', `orders.${i}`, `before${i}`, '--ack', 'all'], {
        env,
        timeout: 30_000,
      })
      expect(r.code, r.stderr).toBe(0)
    }

    // kill -9 of the leader.
    const victimAt = ids.indexOf(leader)
    const victim = nodes[victimAt]!
    const survivors = nodes.filter((n) => n !== victim)
    const killedAt = Date.now()
    victim.child.kill('SIGKILL')
    await exited(victim.child)

    // Each survivor: link down with the dead member, then a new leader (not the dead one).
    const newLeaders = await Promise.all(
      survivors.map(async (s) => {
        const down = await waitRec(s, 'link down', { peer: leader }, (r) => r.time >= killedAt - 50)
        const change = await waitRec(
          s,
          'partition leader changed',
          { stream: 'orders', partition: 0 },
          (r) => r.time >= killedAt - 50 && r.leader !== leader,
        )
        expect(down.at, 'link down before the leader change').toBeLessThan(change.at)
        expect(change).toMatchObject({ component: 'streams', cluster: 'db', previous: leader })
        return change.leader as string
      }),
    )
    expect(newLeaders[0]).toBe(newLeaders[1])
    const survivorEnv = { PLEXUS_RELAY: survivors[0]!.relay }
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['publish', `orders.${i}`, `after${i}`, '--ack', 'all'], {
        env: survivorEnv,
        timeout: 30_000,
      })
      expect(r.code, r.stderr).toBe(0)
    }

    // Restart on the same data directory: it catches up, and says so when the leader counts
    // it in sync again.
    const back = await startNode(network, args(victimAt), 45_000)
    nodes[victimAt] = back
    expect(back.id).toBe(leader)
    const start = await waitRec(back, 'replica catching up', { stream: 'orders', partition: 0 })
    const done = await waitRec(back, 'replica caught up', { stream: 'orders', partition: 0 })
    expect(start.at).toBeLessThan(done.at)
    expect(done).toMatchObject({ component: 'streams', cluster: 'db', ms: expect.any(Number) })
    expect(done.nextOffset).toBeGreaterThanOrEqual(4)
    // The new leader saw it come back in sync.
    const newLeader = nodes[ids.indexOf(newLeaders[0]!)]!
    await waitRec(newLeader, 'replica back in sync', { stream: 'orders', replica: leader })

    // No error-level records anywhere (warn is fine: the dead member is out of sync a while).
    for (const n of nodes) expect(records(n).filter((r) => r.level >= 50)).toEqual([])
    for (const n of nodes) n.child.kill('SIGKILL')
  }, 120_000)
})
