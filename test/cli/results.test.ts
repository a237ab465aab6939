/**
 * Clear CLI results (issue 13), through the built CLI: `plexus --version`; `--relay
 * HOST:PORT` on client commands (wins over PLEXUS_RELAY); `publish --ack` says where the
 * message went (on a terminal `stream S partition P offset O [duplicate]`, to a pipe the
 * offset alone as SPEC promises, `--json` the whole ack with `duplicate`); a request's reply
 * ends with a newline on a terminal and is byte-exact in a pipe; a `consume` that waits says
 * so on stderr after a few seconds when stderr is a terminal, and never in a pipe. Terminal
 * runs go through util-linux `script` (a pseudo-terminal); skipped, saying so, without it.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  CLI,
  type NodeProc,
  runCli,
  spawnCli,
  startNode,
  tempDir,
  tempFile,
  uniqueNetwork,
} from './helpers.js'

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0
if (!hasScript) console.warn('results.test: no util-linux script(1); the terminal cases are skipped')
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs `plexus ...args` on a pseudo-terminal for at most `ms`; everything it printed (CRLF made LF). */
function runTty(args: string[], ms = 15_000): Promise<{ code: number | null; out: string }> {
  const cmd = [process.execPath, CLI, ...args].map(quote).join(' ')
  return new Promise((res) => {
    const child = spawn('script', ['-qefc', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), ms)
    child.on('close', (code) => {
      clearTimeout(timer)
      res({ code, out: out.replace(/\r\n/g, '\n') })
    })
  })
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('plexus --version and --relay', () => {
  it('--version prints the package version', async () => {
    const version = JSON.parse(readFileSync(resolve('package.json'), 'utf8')).version
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag])
      expect(r).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
    }
  })

  it('client commands take --relay HOST:PORT, which wins over PLEXUS_RELAY', async () => {
    const node = await startNode(uniqueNetwork())
    const env = { PLEXUS_RELAY: '127.0.0.1:1' }
    const status = await runCli(['status', '--json', '--relay', node.relay], { env })
    expect(status.stderr).toBe('')
    expect(JSON.parse(status.stdout).id).toBe(node.id)
    const list = await runCli(['stream', 'list', '--relay', node.relay], { env })
    expect(list).toEqual({ code: 0, stdout: 'no streams\n', stderr: '' })
    const bad = await runCli(['status', '--relay', 'nowhere'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe(
      'plexus: InvalidArgumentError: --relay must be host:port (e.g. 127.0.0.1:55555), got "nowhere"\n',
    )
    const none = await runCli(['stream', 'list', '--relay', '127.0.0.1:1'])
    expect(none.code).toBe(3)
    expect(none.stderr).toBe(
      `plexus: RelayUnavailableError: no Plexus node's relay is listening at 127.0.0.1:1 (connection refused); start one with "plexus node", or name one with --relay HOST:PORT or PLEXUS_RELAY\n`,
    )
    const notClient = await runCli(['keygen', '--relay', node.relay])
    expect(notClient.code).toBe(2)
  })
})

/** One storage member of `db` serving requests with `tr a-z A-Z`, and a 2-partition stream `orders`. */
async function member(): Promise<{ node: NodeProc; relay: string }> {
  const key = tempFile('db.key', (await runCli(['keygen'])).stdout)
  const node = await startNode(uniqueNetwork(), [
    '--data-dir',
    join(tempDir(), 'm'),
    '--join',
    'db',
    '--cluster-key-file',
    key,
    '--exec',
    'tr a-z A-Z',
  ])
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
      '1',
      '--partitions',
      '2',
    ],
    { env: { PLEXUS_RELAY: node.relay } },
  )
  expect(created.stderr).toBe('')
  return { node, relay: node.relay }
}

describe('results of publish --ack, request and consume', () => {
  // The member lives for one test (helpers kill nodes after each), so each test is a sequence.
  it('publish --ack: the offset alone to a pipe, the whole ack with --json, a duplicate noted; on a terminal stream, partition, offset, duplicate', async () => {
    const { relay } = await member()
    const env = { PLEXUS_RELAY: relay }
    const first = await runCli(['publish', 'orders.eu', 'one', '--key', 'k1', '--ack', 'all'], { env })
    expect(first).toEqual({ code: 0, stdout: '0\n', stderr: '' })
    const json = await runCli(['publish', 'orders.eu', 'two', '--key', 'k1', '--ack', 'all', '--json'], {
      env,
    })
    const ack = JSON.parse(json.stdout)
    expect(ack).toEqual({ stream: 'orders', partition: ack.partition, offset: 1 })
    const args = ['publish', 'orders.eu', 'three', '--key', 'k1', '--ack', 'all', '--msg-id', 'm3']
    expect(await runCli(args, { env })).toEqual({ code: 0, stdout: '2\n', stderr: '' })
    expect(await runCli(args, { env })).toEqual({
      code: 0,
      stdout: '2\n',
      stderr: `plexus: duplicate: msg-id already stored at partition ${ack.partition} offset 2\n`,
    })
    const dupJson = await runCli([...args, '--json'], { env })
    expect(JSON.parse(dupJson.stdout)).toEqual({
      stream: 'orders',
      partition: ack.partition,
      offset: 2,
      duplicate: true,
    })

    if (!hasScript) return
    const ttyArgs = [
      'publish',
      'orders.us',
      'x',
      '--key',
      'tty',
      '--ack',
      'leader',
      '--msg-id',
      'tty-1',
      '--relay',
      relay,
    ]
    const onTty = await runTty(ttyArgs)
    expect(onTty.code).toBe(0)
    const m = /^stream orders partition (\d) offset (\d+)\n$/.exec(onTty.out)
    expect(m, onTty.out).not.toBeNull()
    expect(await runTty(ttyArgs)).toEqual({
      code: 0,
      out: `stream orders partition ${m![1]} offset ${m![2]} duplicate\n`,
    })
  }, 60_000)

  it('a reply ends with a newline on a terminal and is byte-exact in a pipe; a waiting consume says so on a terminal, never in a pipe', async () => {
    const { relay } = await member()
    expect(await runCli(['request', 'db', 'hello', '--relay', relay])).toEqual({
      code: 0,
      stdout: 'HELLO',
      stderr: '',
    })
    if (!hasScript) return
    expect(await runTty(['request', 'db', 'hello', '--relay', relay])).toEqual({ code: 0, out: 'HELLO\n' })

    const consume = ['consume', 'orders', '--from', 'new', '--relay', relay]
    const tty = spawn(
      'script',
      ['-qefc', [process.execPath, CLI, ...consume].map(quote).join(' '), '/dev/null'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    )
    let out = ''
    tty.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const piped = spawnCli(consume)
    const t0 = Date.now()
    try {
      await until(() => out.includes('waiting'), 10_000, 'the waiting line')
      expect(Date.now() - t0).toBeGreaterThan(2500)
      expect(out.replace(/\r\n/g, '\n')).toBe(
        'plexus: waiting for messages on stream orders (Ctrl-C to stop)\n',
      )
      expect(piped.stderr()).toBe('')
      expect(piped.stdout()).toBe('')
    } finally {
      tty.kill('SIGKILL')
    }
  }, 60_000)
})
