/**
 * `plexus node` serving clusters with --echo and --exec, reached through `plexus request`
 * and inspected with `plexus status`, all as real processes on one fresh network.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { hasAesInstructions } from '../../src/transport/encrypters.js'
import {
  exited,
  runCli,
  startNode,
  statusOf,
  tempDir,
  tempFile,
  uniqueNetwork,
  waitMembers,
} from './helpers.js'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('plexus node + request + status', () => {
  let key: string
  beforeAll(async () => {
    const r = await runCli(['keygen'])
    key = tempFile('cluster.key', r.stdout)
  })

  it('serves --echo through a gateway: DATA argument, stdin, and -', async () => {
    const network = uniqueNetwork()
    const [gateway, member] = await Promise.all([
      startNode(network),
      startNode(network, ['--join', 'echoes', '--cluster-key-file', key, '--echo']),
    ])
    expect(member.lines).toContain('joined echoes (echo)')
    await waitMembers(gateway.relay, 'echoes', 1)
    const env = { PLEXUS_RELAY: gateway.relay }
    const [arg, stdin, dash] = await Promise.all([
      runCli(['request', 'echoes', 'hello world'], { env }),
      runCli(['request', 'echoes'], { env, input: 'from stdin\n\u00e9' }),
      runCli(['request', 'echoes', '-', '--timeout', '5000'], { env, input: 'dash' }),
    ])
    expect(arg).toEqual({ code: 0, stdout: 'hello world', stderr: '' })
    expect(stdin).toEqual({ code: 0, stdout: 'from stdin\n\u00e9', stderr: '' })
    expect(dash).toEqual({ code: 0, stdout: 'dash', stderr: '' })

    // status --json parses and lists the cluster with the member.
    const s = await statusOf(gateway.relay)
    expect(s.id).toBe(gateway.id)
    expect(s.network).toBe(network)
    const c = s.clusters.find((x) => x.name === 'echoes')
    expect(c?.members.map((m) => m.id)).toEqual([member.id])
    // The failure detector's counters (docs/overlay.md): nobody suspected, nobody dead.
    expect(s.counters['overlay.suspects']).toBe(0)
    expect(s.counters['overlay.declaredDead']).toBe(0)
    // The human table names the same things.
    const human = await runCli(['status'], { env })
    expect(human.code).toBe(0)
    expect(human.stdout).toContain(gateway.id)
    expect(human.stdout).toMatch(/echoes: 1 member/)
    expect(human.stdout).toContain(member.id)
    // The peer line names the cipher the two nodes negotiated.
    const peerLine = human.stdout.split('\n').find((l) => l.trimStart().startsWith(member.id))
    expect(peerLine).toMatch(hasAesInstructions() ? / aes-256-gcm / : / chacha20-poly1305 /)

    // A cluster nobody serves: NoMembersError, exit 5.
    const none = await runCli(['request', 'nobody', 'x'], { env })
    expect(none.code).toBe(5)
    expect(none.stderr).toMatch(/^plexus: NoMembersError: .+\n$/)
  })

  it('serves --exec: stdin in, stdout out; failures carry stderr; abandoned commands are killed', async () => {
    const network = uniqueNetwork()
    const pidFile = join(tempDir(), 'slow.pid')
    const member = await startNode(network, [
      '--join',
      'upper',
      '--cluster-key-file',
      key,
      '--exec',
      `printf 'up: '; tr a-z A-Z`,
      '--join',
      'broken',
      '--cluster-key-file',
      key,
      '--exec',
      'cat >/dev/null; echo "disk on fire" >&2; exit 3',
      '--join',
      'slow',
      '--cluster-key-file',
      key,
      '--exec',
      `echo $$ > '${pidFile}'; exec sleep 30`,
      '--join',
      'single',
      '--cluster-key-file',
      key,
      '--exec',
      'sleep 2; cat',
      '--max-requests',
      '1',
    ])
    const env = { PLEXUS_RELAY: member.relay }
    const [up, broken, slow, single1, single2] = await Promise.all([
      runCli(['request', 'upper', 'hello'], { env }),
      runCli(['request', 'broken', 'x'], { env }),
      runCli(['request', 'slow', 'x', '--timeout', '1500'], { env }),
      runCli(['request', 'single', 'one'], { env }),
      runCli(['request', 'single', 'two'], { env }),
    ])
    // --max-requests 1: one runs, the other is refused rather than queued.
    const singles = [single1, single2].sort((x, y) => (x.code ?? -1) - (y.code ?? -1))
    expect(singles[0]!.code).toBe(0)
    expect(singles[0]!.stdout).toMatch(/^(one|two)$/)
    expect(singles[1]!.code).toBe(1)
    expect(singles[1]!.stderr).toMatch(/^plexus: OverloadedError: .+\n$/)
    expect(up).toEqual({ code: 0, stdout: 'up: HELLO', stderr: '' })
    expect(broken.code).toBe(1)
    expect(broken.stderr).toBe('plexus: RemoteError: disk on fire\n')
    expect(slow.code).toBe(4)
    expect(slow.stderr).toMatch(/^plexus: TimeoutError: .+\n$/)
    // The caller gave up, so the member killed the command.
    const started = Date.now() + 3000
    while (!existsSync(pidFile) && Date.now() < started) await new Promise((r) => setTimeout(r, 50))
    expect(existsSync(pidFile)).toBe(true)
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    const end = Date.now() + 3000
    while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
    expect(alive(pid)).toBe(false)
  })

  it('stops cleanly on SIGTERM and SIGINT with exit 0', async () => {
    const network = uniqueNetwork()
    const [a, b] = await Promise.all([
      startNode(network, ['--join', 'x', '--cluster-key-file', key, '--echo']),
      startNode(network),
    ])
    a.child.kill('SIGTERM')
    b.child.kill('SIGINT')
    await Promise.all([exited(a.child), exited(b.child)])
    expect(a.child.exitCode).toBe(0)
    expect(b.child.exitCode).toBe(0)
    expect(a.lines.at(-1)).toBe('stopped')
    // stderr holds only the JSON log (stderr is not a terminal), and nothing at warn or above.
    const records = a.stderr
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { level: number; msg: string })
    expect(records.filter((r) => r.level >= 40)).toEqual([])
    expect(records.map((r) => r.msg)).toContain('node stopped')
  })

  it('a relay port in use is one clear error', async () => {
    const network = uniqueNetwork()
    const first = await startNode(network)
    const port = first.relay.split(':')[1]!
    const r = await runCli([
      'node',
      '--network',
      network,
      '--no-mdns',
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--relay-port',
      port,
      // Links may come up (and go down) before the relay fails: those info lines are not errors.
      '--log-level',
      'warn',
    ])
    expect(r.code).not.toBe(0)
    const lines = r.stderr.split('\n').filter((l) => l !== '')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^plexus: \w+: .*(in use|EADDRINUSE)/i)
  })
})
