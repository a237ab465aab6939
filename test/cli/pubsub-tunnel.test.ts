/**
 * `plexus publish`/`subscribe` (wildcards, --count, --json) across two nodes' relays,
 * `plexus broadcast` to `plexus node --on-broadcast` members, and `plexus tunnel` moving a
 * 5 MB binary file byte-exact through `plexus node --tunnel-exec`, all as real processes.
 */
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { connectRelay } from '../../relay/client/client.js'
import { runCli, spawnCli, startNode, tempDir, tempFile, uniqueNetwork, waitMembers } from './helpers.js'

/** Waits until the node behind `relay` has a link to `peer`. */
async function waitPeer(relay: string, peer: string, ms = 10_000): Promise<void> {
  const client = await connectRelay({ address: relay })
  try {
    const end = Date.now() + ms
    while (!(await client.status()).peers.some((p) => p.id === peer)) {
      if (Date.now() > end) throw new Error(`${relay} does not see ${peer}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  } finally {
    await client.close()
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

describe('plexus publish/subscribe, broadcast and tunnel', () => {
  let key: string
  beforeAll(async () => {
    key = tempFile('cluster.key', (await runCli(['keygen'])).stdout)
  })

  it('publish reaches wildcard subscribers on both nodes; --count ends them; --json parses', async () => {
    const network = uniqueNetwork()
    const [a, b] = await Promise.all([startNode(network), startNode(network)])
    await waitPeer(a.relay, b.id)
    const onA = { PLEXUS_RELAY: a.relay }
    const onB = { PLEXUS_RELAY: b.relay }
    const star = spawnCli(['subscribe', 'orders.*', '--count', '2'], { env: onA })
    const rest = spawnCli(['subscribe', 'orders.>', '--count', '3', '--json'], { env: onB })
    const invoices = spawnCli(['subscribe', 'invoices.*', '--count', '1', '--json'], { env: onA })
    const subs = [star, rest, invoices]
    const exitedAll = () => subs.every((s) => s.child.exitCode !== null)

    // Interest takes a moment to reach the publisher's node: publish until all are done.
    const topics = ['orders.eu', 'orders.eu.de', 'invoices.x']
    const end = Date.now() + 15_000
    for (let i = 0; !exitedAll() && Date.now() < end; i++) {
      const r = await runCli(
        ['publish', topics[i % 3]!, `m${i}`, '--key', `k${i}`, '--header', `seq=${i}`, '--header', 'x=a=b'],
        { env: onB },
      )
      expect(r, r.stderr).toEqual({ code: 0, stdout: '', stderr: '' })
    }
    const codes = await Promise.all(subs.map((s) => s.done))
    expect(codes, subs.map((s) => s.stderr()).join('')).toEqual([0, 0, 0])
    for (const s of subs) expect(s.stderr()).toBe('')

    // orders.* matches orders.eu only; lines are the data, in publish order.
    const starLines = star.stdout().split('\n')
    expect(starLines.pop()).toBe('')
    expect(starLines).toHaveLength(2)
    const starSeq = starLines.map((l) => Number(l.match(/^m(\d+)$/)![1]))
    for (const n of starSeq) expect(n % 3).toBe(0)
    expect(starSeq[1]).toBeGreaterThan(starSeq[0]!)

    // orders.> matches orders.eu and orders.eu.de, never invoices.x.
    const restMsgs = rest
      .stdout()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(restMsgs).toHaveLength(3)
    let last = -1
    for (const m of restMsgs) {
      const n = Number(m.data.slice(1))
      expect(m).toEqual({
        topic: topics[n % 3],
        key: `k${n}`,
        headers: { seq: String(n), x: 'a=b' },
        data: `m${n}`,
        from: b.id,
      })
      expect(m.topic).not.toBe('invoices.x')
      expect(n).toBeGreaterThan(last)
      last = n
    }

    const inv = JSON.parse(invoices.stdout())
    expect(inv.topic).toBe('invoices.x')
    expect(inv.from).toBe(b.id)
    expect(Number(inv.data.slice(1)) % 3).toBe(2)

    // --ack needs a durable stream capturing the topic; there is none yet.
    const acked = await runCli(['publish', 'orders.eu', 'x', '--ack', 'leader', '--msg-id', 'id1'], {
      env: onB,
    })
    expect(acked.code).toBe(1)
    expect(acked.stdout).toBe('')
    expect(acked.stderr).toMatch(/^plexus: StreamNotFoundError: .+\n$/)

    // Without --count it runs until Ctrl-C, which closes it cleanly with exit 130.
    const idle = spawnCli(['subscribe', 'idle.>'], { env: onA })
    for (let i = 0; idle.stdout() === '' && i < 50; i++) {
      await runCli(['publish', 'idle.x', 'tick'], { env: onA })
    }
    expect(idle.stdout()).toMatch(/^tick\n/)
    idle.child.kill('SIGINT')
    expect(await idle.done).toBe(130)
    expect(idle.stderr()).toBe('')
  })

  it('broadcast reaches every member running --on-broadcast', async () => {
    const network = uniqueNetwork()
    const out = join(tempDir(), 'm2.txt')
    const [gateway, m1, m2] = await Promise.all([
      startNode(network),
      startNode(network, [
        '--join',
        'chat',
        '--cluster-key-file',
        key,
        '--on-broadcast',
        'printf "m1 got from %s: " "$PLEXUS_FROM"; cat; echo',
      ]),
      startNode(network, ['--join', 'chat', '--cluster-key-file', key, '--on-broadcast', `cat >> '${out}'`]),
    ])
    for (const m of [m1, m2]) expect(m.lines).toContain('joined chat (no request handler, on-broadcast)')
    await waitMembers(gateway.relay, 'chat', 2)
    const env = { PLEXUS_RELAY: gateway.relay }
    expect(await runCli(['broadcast', 'chat', 'hello all'], { env })).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    })
    await m1.waitLine(new RegExp(`^m1 got from ${gateway.id}: hello all$`), 5000)
    expect(await runCli(['broadcast', 'chat', '-'], { env, input: '|from stdin' })).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    })
    await m1.waitLine(/^m1 got from \S+: \|from stdin$/, 5000)
    await until(() => existsSync(out) && readFileSync(out, 'utf8') === 'hello all|from stdin', 5000, out)
    // Nobody serves this cluster: handed to no one, still exit 0.
    expect(await runCli(['broadcast', 'nobody', 'x'], { env })).toEqual({ code: 0, stdout: '', stderr: '' })
  })

  it('tunnel moves a 5 MB binary file byte-exact; --tunnel-echo; limits; caller death kills the command', async () => {
    const network = uniqueNetwork()
    const dir = tempDir()
    const pidFile = join(dir, 'slow.pid')
    const [gateway, member] = await Promise.all([
      startNode(network),
      startNode(network, [
        '--join',
        'files',
        '--cluster-key-file',
        key,
        '--tunnel-exec',
        'cat',
        '--join',
        'hash',
        '--cluster-key-file',
        key,
        '--tunnel-exec',
        "sha256sum | cut -d' ' -f1",
        '--join',
        'echoes',
        '--cluster-key-file',
        key,
        '--tunnel-echo',
        '--join',
        'slow',
        '--cluster-key-file',
        key,
        '--tunnel-exec',
        `echo $$ > '${pidFile}'; exec sleep 30`,
        '--max-tunnels',
        '1',
      ]),
    ])
    expect(member.lines).toContain('joined files (no request handler, tunnel-exec)')
    expect(member.lines).toContain('joined echoes (no request handler, tunnel-echo)')
    await waitMembers(gateway.relay, 'slow', 1)
    const env = { PLEXUS_RELAY: gateway.relay }

    const data = randomBytes(5 * 1024 * 1024)
    const input = join(dir, 'big.bin')
    const output = join(dir, 'out.bin')
    writeFileSync(input, data)
    const inFd = openSync(input, 'r')
    const outFd = openSync(output, 'w')
    const inFd2 = openSync(input, 'r')
    // `plexus tunnel files < big.bin > out.bin` and `plexus tunnel hash < big.bin`, together.
    const copy = spawnCli(['tunnel', 'files'], { env, stdin: inFd, stdout: outFd })
    const hashed = spawnCli(['tunnel', 'hash', '--timeout', '5000'], { env, stdin: inFd2 })
    const echoed = runCli(['tunnel', 'echoes'], { env, input: 'ping\npong' })
    const codes = await Promise.all([copy.done, hashed.done])
    for (const fd of [inFd, outFd, inFd2]) closeSync(fd)
    expect(codes, copy.stderr() + hashed.stderr()).toEqual([0, 0])
    expect(sha256(readFileSync(output))).toBe(sha256(data))
    expect(hashed.stdout()).toBe(`${sha256(data)}\n`)
    expect(await echoed).toEqual({ code: 0, stdout: 'ping\npong', stderr: '' })

    // One tunnel open to `slow` (stdin left open); --max-tunnels 1 refuses a second.
    const first = spawnCli(['tunnel', 'slow'], { env })
    await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 10_000, pidFile)
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    expect(alive(pid)).toBe(true)
    const second = await runCli(['tunnel', 'slow', '--timeout', '3000'], { env })
    expect(second.code).not.toBe(0)
    expect(second.stderr.trim().split('\n')).toHaveLength(1)
    expect(second.stderr).toMatch(/^plexus: OverloadedError: .*refused the tunnel/)
    // The caller dies: the member kills the command's process group.
    first.child.kill('SIGKILL')
    await until(() => !alive(pid), 8000, `pid ${pid} to be killed`)

    const none = await runCli(['tunnel', 'nobody'], { env })
    expect(none.code).toBe(5)
    expect(none.stderr).toMatch(/^plexus: NoMembersError: .+\n$/)
  })
})
