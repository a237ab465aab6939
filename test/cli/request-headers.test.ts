/**
 * `plexus request --header`, `--json` and `--many N` as real processes: a gateway node and two
 * `--echo` members (echo replies with the request's data and headers).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { runCli, startNode, tempFile, uniqueNetwork, waitMembers } from './helpers.js'

describe('plexus request: headers and --many', () => {
  let key: string
  beforeAll(async () => {
    key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
  })

  it('sends headers, shows the reply headers with --json, and prints one line per member with --many', async () => {
    const network = uniqueNetwork()
    const echo = ['--join', 'echoes', '--cluster-key-file', key, '--echo']
    const [gateway, m1, m2] = await Promise.all([
      // Ready within 40 s, not 15: a node start was seen taking over 15 s at load 20.
      startNode(network, [], 40_000),
      startNode(
        network,
        [...echo, '--join', 'envs', '--cluster-key-file', key, '--exec', 'printf %s "$PLEXUS_HEADERS"'],
        40_000,
      ),
      startNode(network, echo, 40_000),
    ])
    await waitMembers(gateway.relay, 'echoes', 2)
    await waitMembers(gateway.relay, 'envs', 1)
    const env = { PLEXUS_RELAY: gateway.relay }
    // 45 s per run instead of runCli's 15 s: eight processes start at once on 2 shared cores.
    const run = (args: string[]) => runCli(args, { env, timeout: 45_000 })

    // One batch of runs in parallel: each CLI process takes seconds to start on a loaded machine.
    const [plain, json, many, one, exec, ...bad] = await Promise.all([
      run(['request', 'echoes', 'hi', '--header', 'a=1']),
      run(['request', 'echoes', 'hi', '--header', 'a=1', '--header', 'b=x=y', '--json']),
      run(['request', 'echoes', 'all', '--many', '5', '--json', '--header', 'k=v']),
      run(['request', 'echoes', 'first', '--many', '1']),
      run(['request', 'envs', 'x', '--header', 'h=1', '--header', 'q="quoted"']),
      run(['request', 'echoes', 'x', '--header', 'novalue']),
      run(['request', 'echoes', 'x', '--many', '0']),
      run(['request', 'nobody', 'x', '--many', '3']),
    ])
    expect(plain).toEqual({ code: 0, stdout: 'hi', stderr: '' })
    expect(json!.code).toBe(0)
    expect(JSON.parse(json!.stdout)).toEqual({ headers: { a: '1', b: 'x=y' }, data: 'hi' })

    expect(many!.code).toBe(0)
    const lines = many!.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines.map((l) => l.from).sort()).toEqual([m1.id, m2.id].sort())
    for (const l of lines) expect(l).toMatchObject({ headers: { k: 'v' }, data: 'all' })
    expect(one).toEqual({ code: 0, stdout: 'first\n', stderr: '' })
    // --exec gets the headers as PLEXUS_HEADERS (JSON).
    expect(exec!.code).toBe(0)
    expect(JSON.parse(exec!.stdout)).toEqual({ h: '1', q: '"quoted"' })

    // Usage errors name the flag (exit 2); a cluster nobody serves: NoMembersError (exit 5).
    expect(bad[0]!.code).toBe(2)
    expect(bad[0]!.stderr).toMatch(/--header must be name=value/)
    expect(bad[1]!.code).toBe(2)
    expect(bad[1]!.stderr).toMatch(/--many must be a positive integer/)
    expect(bad[2]!.code).toBe(5)
    expect(bad[2]!.stderr).toMatch(/^plexus: NoMembersError: /)
    // 120 s, not the 30 s default: three node processes and eight CLI runs, each CLI start
    // measured at 2.5-3.9 s alone on the shared 2-core machine at load 15-20 (27 s in all).
  }, 120_000)
})
