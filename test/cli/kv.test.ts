/**
 * `plexus kv put|get|del|keys|history|watch` and `plexus stream get|last` through a node's
 * relay: one `plexus node` member of `db` with a data directory (buckets of one replica).
 * Outputs as docs/kv.md states them; conflicts exit 1 naming the error class; bad flags exit 2.
 */
import { join } from 'node:path'
import { beforeAll, expect, it } from 'vitest'
import { runCli, spawnCli, startNode, tempDir, tempFile, uniqueNetwork, waitMembers } from './helpers.js'

let key: string
beforeAll(async () => {
  key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
})

it('puts, gets, deletes, lists, watches and reads stream messages from the command line', async () => {
  const network = uniqueNetwork()
  const node = await startNode(network, [
    '--data-dir',
    join(tempDir(), 'm0'),
    '--join',
    'db',
    '--cluster-key-file',
    key,
  ])
  await waitMembers(node.relay, 'db', 1)
  const env = { PLEXUS_RELAY: node.relay }
  const cli = (...args: string[]) => runCli(args, { env })

  const put = await cli('kv', 'put', 'cfg', 'app.mode', 'blue', '--cluster', 'db', '--replicas', '1')
  expect(put.stderr).toBe('')
  expect(put.code).toBe(0)
  const rev = Number(put.stdout.trim())
  const json = JSON.parse((await cli('kv', 'get', 'cfg', 'app.mode', '--json')).stdout)
  expect(json).toMatchObject({ key: 'app.mode', revision: rev, operation: 'put', value: 'blue' })

  const [exists, stale] = await Promise.all([
    cli('kv', 'put', 'cfg', 'app.mode', 'x', '--create'),
    cli('kv', 'put', 'cfg', 'app.mode', 'x', '--revision', String(rev + 5)),
  ])
  expect(exists.code).toBe(1)
  expect(exists.stderr).toMatch(/^plexus: KeyExistsError: /)
  expect(stale.code).toBe(1)
  expect(stale.stderr).toMatch(/^plexus: WrongRevisionError: .*current revision 0/)
  const upd = await cli('kv', 'put', 'cfg', 'app.mode', 'green', '--revision', String(rev))
  expect(upd.code).toBe(0)

  const watch = spawnCli(['kv', 'watch', 'cfg', 'app.>', '--count', '3'], { env })
  await expect.poll(() => watch.stdout(), { timeout: 10_000 }).toContain('app.mode')
  const del = await cli('kv', 'del', 'cfg', 'app.mode')
  const put2 = await cli('kv', 'put', 'cfg', 'app.size', 'L')
  expect(await watch.done).toBe(0)
  expect(watch.stdout()).toBe(
    `app.mode ${upd.stdout.trim()} put green\napp.mode ${del.stdout.trim()} delete\napp.size ${put2.stdout.trim()} put L\n`,
  )
  const [missing, keys] = await Promise.all([cli('kv', 'get', 'cfg', 'app.mode'), cli('kv', 'keys', 'cfg')])
  expect(missing.code).toBe(1)
  expect(missing.stderr).toMatch(/^plexus: MessageNotFoundError: /)
  expect(keys.stdout).toBe('app.size\n')

  const [last, got] = await Promise.all([
    cli('stream', 'last', 'KV_cfg', '--key', 'app.size', '--json'),
    cli('stream', 'get', 'KV_cfg', '--offset', String(rev)),
  ])
  expect(JSON.parse(last.stdout)).toMatchObject({ stream: 'KV_cfg', topic: '$kv.cfg.app.size', data: 'L' })
  expect(got.stdout).toBe('blue\n')

  const [bad, noOffset] = await Promise.all([
    cli('kv', 'put', 'cfg', 'bad key', 'v'),
    cli('stream', 'get', 'KV_cfg'),
  ])
  expect(bad.code).not.toBe(0)
  expect(bad.stderr).toMatch(/key/)
  expect(noOffset.code).toBe(2)
}, 60_000)
