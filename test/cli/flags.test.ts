/**
 * Bad input on every command and flag: exactly one stderr line naming the problem
 * (`plexus: <ErrorName>: ...`), a non-zero exit, never a stack trace.
 */
import { describe, expect, it } from 'vitest'
import { runCli, tempFile } from './helpers.js'

// A port nothing listens on, so client commands that pass validation would fail differently.
const NO_RELAY = { PLEXUS_RELAY: '127.0.0.1:9' }

function expectOneLine(
  r: { code: number | null; stdout: string; stderr: string },
  re: RegExp,
  code = 2,
): void {
  expect(r.code, r.stderr).toBe(code)
  const lines = r.stderr.split('\n').filter((l) => l !== '')
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^plexus: \w+: /)
  expect(lines[0]).toMatch(re)
  expect(r.stderr).not.toMatch(/\n\s+at /)
}

describe('CLI bad input', () => {
  const key = tempFile('good.key', `${'ab'.repeat(32)}\n`)
  const badKey = tempFile('bad.key', 'short\n')
  const emptyKey = tempFile('empty.key', '\n')

  const cases: Array<[string, string[], RegExp]> = [
    ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['keygen: unknown flag', ['keygen', '--bits', '8'], /unknown option '--bits'/],
    ['keygen: extra argument', ['keygen', 'extra'], /too many arguments|unknown command|excess/i],
    ['node: unknown flag', ['node', '--frob'], /unknown option '--frob'/],
    ['node: --network bad name', ['node', '--network', 'bad name!'], /--network must be/],
    [
      'node: --cipher unknown',
      ['node', '--cipher', 'rot13'],
      /--cipher <name>' argument 'rot13' is invalid. Allowed choices are auto, aes-256-gcm, chacha20-poly1305/,
    ],
    ['node: --network missing value', ['node', '--network'], /--network <name>.*argument missing/],
    [
      'node: --network-key-file missing',
      ['node', '--network-key-file', '/nonexistent/k'],
      /--network-key-file \/nonexistent\/k: cannot read key file: no such file/,
    ],
    [
      'node: --network-key-file not a key',
      ['node', '--network-key-file', badKey],
      /--network-key-file .*bad\.key: not a key/,
    ],
    ['node: --listen bad multiaddr', ['node', '--listen', 'nonsense'], /--listen must be a multiaddr/],
    [
      'node: --bootstrap bad multiaddr',
      ['node', '--bootstrap', 'tcp://x'],
      /--bootstrap must be a multiaddr/,
    ],
    ['node: --data-dir empty', ['node', '--data-dir', ''], /--data-dir must not be empty/],
    [
      'node: --log-level unknown',
      ['node', '--log-level', 'loud'],
      /^plexus: InvalidArgumentError: --log-level must be one of trace, debug, info, warn, error, silent, got "loud"$/,
    ],
    [
      'node: --log-format unknown',
      ['node', '--log-format', 'xml'],
      /^plexus: InvalidArgumentError: --log-format must be one of pretty, json, got "xml"$/,
    ],
    ['node: --log-level missing value', ['node', '--log-level'], /--log-level <level>.*argument missing/],
    [
      'node: --relay-port not a number',
      ['node', '--relay-port', 'abc'],
      /--relay-port must be an integer port/,
    ],
    [
      'node: --relay-port too large',
      ['node', '--relay-port', '70000'],
      /--relay-port must be an integer port/,
    ],
    ['node: --relay-port negative', ['node', '--relay-port', '-1'], /--relay-port must be an integer port/],
    ['node: --no-mdns takes no value', ['node', '--no-mdns=yes'], /--no-mdns/],
    [
      'node: --join bad cluster',
      ['node', '--join', 'no/slash', '--cluster-key-file', key],
      /--join must be a cluster name/,
    ],
    [
      'node: --join without key file',
      ['node', '--join', 'db', '--echo'],
      /--join db needs --cluster-key-file/,
    ],
    [
      'node: --cluster-key-file before --join',
      ['node', '--cluster-key-file', key],
      /--cluster-key-file must follow a --join/,
    ],
    [
      'node: --cluster-key-file unreadable',
      ['node', '--join', 'db', '--cluster-key-file', '/nonexistent/db.key'],
      /\/nonexistent\/db\.key: cannot read key file/,
    ],
    [
      'node: --cluster-key-file empty',
      ['node', '--join', 'db', '--cluster-key-file', emptyKey],
      /empty\.key: key file is empty/,
    ],
    [
      'node: --cluster-key-file twice',
      ['node', '--join', 'db', '--cluster-key-file', key, '--cluster-key-file', key],
      /given twice/,
    ],
    [
      'node: --exec and --echo',
      ['node', '--join', 'db', '--cluster-key-file', key, '--exec', 'cat', '--echo'],
      /--exec or --echo, not both/,
    ],
    [
      'node: --exec empty',
      ['node', '--join', 'db', '--cluster-key-file', key, '--exec', ' '],
      /--exec needs a command/,
    ],
    ['node: --echo before --join', ['node', '--echo'], /--echo must follow a --join/],
    ['node: --exec before --join', ['node', '--exec', 'cat'], /--exec must follow a --join/],
    [
      'node: same cluster twice',
      ['node', '--join', 'db', '--cluster-key-file', key, '--join', 'db', '--cluster-key-file', key],
      /--join db given twice/,
    ],
    [
      'node: --max-requests zero',
      ['node', '--join', 'db', '--cluster-key-file', key, '--max-requests', '0'],
      /--max-requests must be a positive integer/,
    ],
    ['request: missing cluster', ['request'], /missing required argument 'cluster'/],
    ['request: bad cluster', ['request', 'bad cluster', 'x'], /CLUSTER must be a cluster name/],
    [
      'request: --timeout not a number',
      ['request', 'db', 'x', '--timeout', 'soon'],
      /--timeout must be a positive whole number/,
    ],
    [
      'request: --timeout zero',
      ['request', 'db', 'x', '--timeout', '0'],
      /--timeout must be a positive whole number/,
    ],
    ['request: unknown flag', ['request', 'db', 'x', '--retry'], /unknown option '--retry'/],
    ['request: too many arguments', ['request', 'db', 'x', 'y'], /too many arguments/],
    [
      'node: --tunnel-exec before --join',
      ['node', '--tunnel-exec', 'cat'],
      /--tunnel-exec must follow a --join/,
    ],
    ['node: --tunnel-echo before --join', ['node', '--tunnel-echo'], /--tunnel-echo must follow a --join/],
    [
      'node: --on-broadcast before --join',
      ['node', '--on-broadcast', 'cat'],
      /--on-broadcast must follow a --join/,
    ],
    [
      'node: --tunnel-exec and --tunnel-echo',
      ['node', '--join', 'db', '--cluster-key-file', key, '--tunnel-exec', 'cat', '--tunnel-echo'],
      /--tunnel-exec or --tunnel-echo, not both/,
    ],
    [
      'node: --tunnel-exec empty',
      ['node', '--join', 'db', '--cluster-key-file', key, '--tunnel-exec', ''],
      /--tunnel-exec needs a command/,
    ],
    [
      'node: --tunnel-exec twice',
      ['node', '--join', 'db', '--cluster-key-file', key, '--tunnel-exec', 'cat', '--tunnel-exec', 'cat'],
      /--tunnel-exec given twice/,
    ],
    [
      'node: --tunnel-exec missing value',
      ['node', '--join', 'db', '--cluster-key-file', key, '--tunnel-exec'],
      /--tunnel-exec <cmd>.*argument missing/,
    ],
    [
      'node: --max-tunnels zero',
      ['node', '--join', 'db', '--cluster-key-file', key, '--tunnel-echo', '--max-tunnels', '0'],
      /--max-tunnels must be a positive integer/,
    ],
    [
      'node: --max-tunnels without a tunnel handler',
      ['node', '--join', 'db', '--cluster-key-file', key, '--max-tunnels', '4'],
      /--max-tunnels needs --tunnel-exec or --tunnel-echo/,
    ],
    [
      'node: --on-broadcast empty',
      ['node', '--join', 'db', '--cluster-key-file', key, '--on-broadcast', '  '],
      /--on-broadcast needs a command/,
    ],
    [
      'node: --on-broadcast twice',
      ['node', '--join', 'db', '--cluster-key-file', key, '--on-broadcast', 'cat', '--on-broadcast', 'cat'],
      /--on-broadcast given twice/,
    ],
    ['broadcast: missing data', ['broadcast', 'chat'], /missing required argument 'data'/],
    ['broadcast: bad cluster', ['broadcast', 'a.b', 'x'], /CLUSTER must be a cluster name/],
    ['broadcast: unknown flag', ['broadcast', 'chat', 'x', '--ack', 'all'], /unknown option '--ack'/],
    ['broadcast: too many arguments', ['broadcast', 'chat', 'x', 'y'], /too many arguments/],
    ['publish: missing data', ['publish', 'orders.eu'], /missing required argument 'data'/],
    ['publish: wildcard topic', ['publish', 'orders.*', 'x'], /TOPIC must not contain wildcards/],
    ['publish: empty token', ['publish', 'orders..eu', 'x'], /TOPIC has an empty token/],
    ['publish: whitespace', ['publish', 'orders eu', 'x'], /TOPIC must not contain whitespace/],
    ['publish: --ack bad', ['publish', 'a', 'x', '--ack', 'some'], /--ack must be leader or all/],
    ['publish: --ack none', ['publish', 'a', 'x', '--ack', 'none'], /--ack must be leader or all/],
    [
      'publish: --timeout zero',
      ['publish', 'a', 'x', '--ack', 'all', '--timeout', '0'],
      /--timeout must be a positive whole number/,
    ],
    ['publish: --msg-id empty', ['publish', 'a', 'x', '--msg-id', ''], /--msg-id must be a non-empty string/],
    ['publish: --key empty', ['publish', 'a', 'x', '--key', ''], /--key must be a non-empty string/],
    [
      'publish: --header without =',
      ['publish', 'a', 'x', '--header', 'novalue'],
      /--header must be name=value/,
    ],
    [
      'publish: --header without name',
      ['publish', 'a', 'x', '--header', '=v'],
      /--header must be name=value/,
    ],
    [
      'publish: --header twice',
      ['publish', 'a', 'x', '--header', 'h=1', '--header', 'h=2'],
      /--header h given twice/,
    ],
    ['subscribe: missing pattern', ['subscribe'], /missing required argument 'pattern'/],
    ['subscribe: > not last', ['subscribe', 'orders.>.eu'], /PATTERN: '>' may only be the last token/],
    ['subscribe: partial wildcard', ['subscribe', 'orders.e*'], /PATTERN: wildcards must be whole tokens/],
    ['subscribe: --count zero', ['subscribe', 'a.*', '--count', '0'], /--count must be a positive integer/],
    [
      'subscribe: --count text',
      ['subscribe', 'a.*', '--count', 'many'],
      /--count must be a positive integer/,
    ],
    ['subscribe: unknown flag', ['subscribe', 'a.*', '--durable', 'x'], /unknown option '--durable'/],
    ['tunnel: missing cluster', ['tunnel'], /missing required argument 'cluster'/],
    ['tunnel: bad cluster', ['tunnel', 'files!'], /CLUSTER must be a cluster name/],
    [
      'tunnel: --timeout bad',
      ['tunnel', 'files', '--timeout', '1.5'],
      /--timeout must be a positive whole number/,
    ],
    ['tunnel: too many arguments', ['tunnel', 'files', 'extra'], /too many arguments/],
    ['status: unknown flag', ['status', '--jsn'], /unknown option '--jsn'/],
    ['status: extra argument', ['status', 'now'], /too many arguments/],
  ]

  it.concurrent.each(cases)('%s', async (_name, args, re) => {
    // Should validation ever let a `node` case through, it must still not multicast.
    const safe =
      args[0] === 'node' && !args.includes('--no-mdns=yes') ? ['node', '--no-mdns', ...args.slice(1)] : args
    expectOneLine(await runCli(safe, { env: NO_RELAY, timeout: 10_000 }), re)
  })

  it.concurrent('a bad PLEXUS_RELAY is named', async () => {
    const r = await runCli(['status'], { env: { PLEXUS_RELAY: 'nowhere' } })
    expectOneLine(r, /PLEXUS_RELAY must be host:port/)
  })

  it.concurrent('a bad PLEXUS_LOG_LEVEL or PLEXUS_LOG_FORMAT is named (they override the flags)', async () => {
    const node = ['node', '--no-mdns', '--relay-port', '0', '--log-level', 'info']
    const level = await runCli(node, { env: { PLEXUS_LOG_LEVEL: 'chatty' }, timeout: 10_000 })
    expectOneLine(
      level,
      /PLEXUS_LOG_LEVEL must be one of trace, debug, info, warn, error, silent, got "chatty"/,
    )
    const format = await runCli(node, { env: { PLEXUS_LOG_FORMAT: 'yaml' }, timeout: 10_000 })
    expectOneLine(format, /PLEXUS_LOG_FORMAT must be one of pretty, json, got "yaml"/)
  })

  it.concurrent('no node to attach to: RelayUnavailableError, exit 3', async () => {
    const r = await runCli(['request', 'db', 'x'], { env: NO_RELAY })
    expectOneLine(r, /^plexus: RelayUnavailableError: .*127\.0\.0\.1:9/, 3)
  })
})

describe('plexus bench', () => {
  it('passes options through and refuses bad ones with one line and exit 2', async () => {
    const { spawnSync } = await import('node:child_process')
    for (const args of [['--only', 'nope'], ['--bogus']]) {
      const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'bench', ...args], { encoding: 'utf8' })
      expect(r.status, args.join(' ')).toBe(2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    }
  })
})
