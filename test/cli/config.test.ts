/**
 * `plexus node --config FILE` and `PLEXUS_*` variables: every option has a file key (derived
 * from the commander options, so a new flag cannot miss one), precedence defaults < file <
 * flags < environment, relative paths from the file's directory, and bad files refused with
 * one line naming the file and the key. Runs the command in-process with a capturing runner
 * (no node is started), plus one real `--print-config` run.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Command } from 'commander'
import { describe, expect, it } from 'vitest'
import { type NodeFlags, registerNode } from '../../src/cli/commands/node.js'
import { configSchema, envName } from '../../src/cli/config.js'
import { JOIN_FLAGS, type JoinGroup } from '../../src/cli/join-groups.js'
import { runCli, tempDir } from './helpers.js'

interface Parsed {
  flags: NodeFlags & Record<string, unknown>
  joins: JoinGroup[]
}

/** Parses `plexus node ...args` with `env`, returning what the node would be started with. */
async function parse(args: string[], env: Record<string, string> = {}): Promise<Parsed> {
  let got: Parsed | undefined
  const program = new Command().exitOverride()
  registerNode(
    program,
    async (flags, joins) => {
      got = { flags: flags as Parsed['flags'], joins }
    },
    env,
  )
  for (const c of program.commands) c.exitOverride()
  await program.parseAsync(['node', ...args], { from: 'user' })
  if (!got) throw new Error('the runner was not called')
  return got
}

/** Writes a config file `name` with `text` into a new directory and returns its path. */
function configFile(name: string, text: string, dir = tempDir()): string {
  const f = join(dir, name)
  writeFileSync(f, text)
  return f
}

function nodeCommand(): Command {
  const program = new Command()
  registerNode(program, async () => {})
  return program.commands.find((c) => c.name() === 'node')!
}

describe('plexus node --config', () => {
  it('every option of plexus node has a config key that the file accepts', async () => {
    const cmd = nodeCommand()
    const schema = configSchema(cmd, JOIN_FLAGS)
    const keyed = new Set([...schema.top.values(), ...schema.join.values()])
    // A switch with both forms (--dht, --no-dht) has one key, held by the negative form.
    const paired = cmd.options.filter(
      (o) => !o.negate && cmd.options.some((n) => n.negate && n.attributeName() === o.attributeName()),
    )
    const missing = cmd.options.filter(
      (o) => !keyed.has(o) && !paired.includes(o) && !['--config', '--print-config'].includes(o.long!),
    )
    expect(missing.map((o) => o.long)).toEqual([])
    expect(schema.top.size + schema.join.size).toBe(cmd.options.length - 2 - paired.length)
    // Each key is known to the loader: a sample value is accepted or refused for its value,
    // never as an unknown key.
    const dir = tempDir()
    writeFileSync(join(dir, 'k'), `${'ab'.repeat(32)}\n`)
    for (const opt of cmd.options) {
      const long = opt.long!
      if (long === '--config' || long === '--print-config') continue
      const switchy = !opt.required && !opt.optional
      const sample = switchy ? 'true' : '1'
      const inJoin = JOIN_FLAGS.includes(long.slice(2) as (typeof JOIN_FLAGS)[number])
      const key = long === '--join' ? 'cluster' : opt.attributeName()
      const text = inJoin
        ? `join:\n  - cluster: ${key === 'cluster' ? 'a' : 'a'}\n    clusterKeyFile: k\n${key === 'cluster' || key === 'clusterKeyFile' ? '' : `    ${key}: ${sample}\n`}`
        : `${key}: ${sample}\n`
      const f = configFile('all.yaml', text, dir)
      try {
        await parse(['--config', f])
      } catch (err) {
        const msg = String((err as Error).message)
        expect(msg, long).not.toMatch(/unknown key|belongs in/)
        expect(msg, long).toContain(key)
      }
    }
  })

  it('takes values from the file; flags override the file; PLEXUS_* variables override both', async () => {
    const f = configFile(
      'node.yaml',
      'relayPort: 4001\nnetwork: fromfile\nmdns: false\ncipher: chacha20-poly1305\n',
    )
    const fileOnly = await parse(['--config', f])
    expect(fileOnly.flags.relayPort).toBe(4001)
    expect(fileOnly.flags.network).toBe('fromfile')
    expect(fileOnly.flags.mdns).toBe(false)
    expect(fileOnly.flags.cipher).toBe('chacha20-poly1305')
    expect(fileOnly.flags.local).toBe(true) // default kept
    const flag = await parse(['--config', f, '--relay-port', '4002', '--network', 'fromflag'])
    expect(flag.flags.relayPort).toBe(4002)
    expect(flag.flags.network).toBe('fromflag')
    expect(flag.flags.mdns).toBe(false)
    const env = await parse(['--config', f, '--relay-port', '4002'], {
      PLEXUS_RELAY_PORT: '4003',
      PLEXUS_MDNS: 'true',
      PLEXUS_LISTEN: '/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2',
    })
    expect(env.flags.relayPort).toBe(4003)
    expect(env.flags.mdns).toBe(true)
    expect(env.flags.listen).toEqual(['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/2'])
    expect(envName('relayWsOrigin')).toBe('PLEXUS_RELAY_WS_ORIGIN')
    // Without a file, variables still apply; an empty one counts as unset.
    const bare = await parse([], { PLEXUS_NETWORK: 'envnet', PLEXUS_RELAY_PORT: '' })
    expect(bare.flags.network).toBe('envnet')
    expect(bare.flags.relayPort).toBe(55555)
  })

  it('lists, relative paths from the file directory, JSON by extension or content, join entries', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'sub'))
    const f = configFile(
      'sub/node.yml',
      [
        'listen: [/ip4/127.0.0.1/tcp/0, /ip4/127.0.0.1/tcp/5]',
        'bootstrap: /ip4/127.0.0.1/tcp/7/p2p/12D3KooWJ6Kv4DXBcvqGzjgbDmTU5phg9BPASbDz4f3Zrbp6F2JP',
        'dataDir: data',
        'networkKeyFile: /abs/net.key',
        'join:',
        '  - { cluster: db, clusterKeyFile: keys/db.key, exec: cat, maxRequests: 8 }',
        '  - { cluster: web, clusterKeyFile: web.key, echo: true, tunnelEcho: true, maxTunnels: 3 }',
      ].join('\n'),
      dir,
    )
    const r = await parse(['--config', f])
    expect(r.flags.listen).toEqual(['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/5'])
    expect(r.flags.bootstrap).toHaveLength(1) // one value for a repeatable flag is a one-item list
    expect(r.flags.dataDir).toBe(join(dir, 'sub', 'data'))
    expect(r.flags.networkKeyFile).toBe('/abs/net.key')
    expect(r.joins).toEqual([
      { cluster: 'db', keyFile: join(dir, 'sub', 'keys/db.key'), exec: 'cat', maxRequests: 8 },
      { cluster: 'web', keyFile: join(dir, 'sub', 'web.key'), echo: true, tunnelEcho: true, maxTunnels: 3 },
    ])
    // A --join flag group replaces the file's group of the same cluster and adds to the rest.
    const merged = await parse(['--config', f, '--join', 'db', '--cluster-key-file', 'x.key', '--echo'])
    expect(merged.joins.map((g) => [g.cluster, g.keyFile, g.exec ?? g.echo])).toEqual([
      ['web', join(dir, 'sub', 'web.key'), true],
      ['db', 'x.key', true],
    ])
    const json = configFile('node.json', '{ "relayPort": 7, "local": false }')
    expect((await parse(['--config', json])).flags).toMatchObject({ relayPort: 7, local: false })
    const sniffed = configFile('noext', '{ "relayPort": 8 }')
    expect((await parse(['--config', sniffed])).flags.relayPort).toBe(8)
  })

  it('refuses bad files with an error naming the file and the key', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['c.yaml', 'relayPort: abc\n', /^c\.yaml: relayPort must be an integer port 0-65535, got "abc"$/],
      ['c.yaml', 'relayport: 1\n', /^c\.yaml: unknown key "relayport" \(did you mean relayPort\?\)$/],
      ['c.yaml', 'frobnicate: 1\n', /^c\.yaml: unknown key "frobnicate"$/],
      ['c.yaml', 'exec: cat\n', /^c\.yaml: exec belongs in a join entry/],
      ['c.yaml', 'mdns: "no"\n', /^c\.yaml: mdns must be true or false, got "no"$/],
      ['c.yaml', 'relayPort: [1, 2]\n', /^c\.yaml: relayPort takes one value, not a list$/],
      [
        'c.yaml',
        'listen: [{ a: 1 }]\n',
        /^c\.yaml: listen must be a list of text or a number, got an object$/,
      ],
      ['c.yaml', 'listen: nope\n', /^c\.yaml: listen must be a multiaddr/],
      ['c.yaml', 'cipher: rot13\n', /^c\.yaml: cipher must be one of auto, .*got "rot13"$/],
      ['c.yaml', 'dataDir: ""\n', /^c\.yaml: dataDir must not be empty$/],
      ['c.yaml', '- 1\n- 2\n', /^c\.yaml: must be a mapping of keys/],
      ['c.yaml', 'a: [1\n', /^c\.yaml: not valid YAML: /],
      ['c.json', '{ "relayPort": 1, }', /^c\.json: not valid JSON: /],
      [
        'c.yaml',
        'join: { cluster: db }\n',
        /^c\.yaml: join must be a list of \{ cluster, clusterKeyFile, exec/,
      ],
      ['c.yaml', 'join: [{ cluster: db }]\n', /^c\.yaml: join entry db needs clusterKeyFile/],
      [
        'c.yaml',
        'join: [{ cluster: db, clusterKeyFile: k, exek: cat }]\n',
        /^c\.yaml: join\[0\]: unknown key "exek"$/,
      ],
      [
        'c.yaml',
        'join: [{ cluster: db, clusterKeyFile: k, maxRequests: 0 }]\n',
        /^c\.yaml: join\[0\]\.maxRequests must be a positive integer, got "0"$/,
      ],
      ['c.yaml', 'join: [{ clusterKeyFile: k }]\n', /^c\.yaml: join\[0\]\.cluster must be a cluster name$/],
    ]
    const dir = tempDir()
    for (const [name, text, re] of cases) {
      configFile(name, text, dir)
      const prev = process.cwd()
      process.chdir(dir)
      try {
        await expect(parse(['--config', name]), text).rejects.toThrow(re)
      } finally {
        process.chdir(prev)
      }
    }
    await expect(parse(['--config', join(dir, 'missing.yaml')])).rejects.toThrow(
      /missing\.yaml: cannot read: no such file/,
    )
    await expect(parse([], { PLEXUS_RELAY_PORT: 'x' })).rejects.toThrow(
      /^PLEXUS_RELAY_PORT must be an integer port/,
    )
    await expect(parse([], { PLEXUS_GC_TUNNING: 'x', PLEXUS_RELAY: '1.2.3.4:5' })).resolves.toBeTruthy() // others ignored
  })

  it('--print-config prints the effective options as YAML that reads back the same (real process)', async () => {
    const dir = tempDir()
    const f = configFile(
      'n.yaml',
      'relayPort: 4100\ndataDir: d\njoin: [{ cluster: db, clusterKeyFile: db.key, echo: true }]\n',
      dir,
    )
    const r = await runCli(['node', '--config', f, '--network', 'printed', '--print-config'], {
      env: { PLEXUS_LOCAL: 'false' },
    })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('relayPort: 4100\n')
    expect(r.stdout).toContain(`dataDir: ${join(dir, 'd')}\n`)
    expect(r.stdout).toContain('network: printed\n')
    expect(r.stdout).toContain('local: false\n')
    const again = configFile('again.yaml', r.stdout, dir)
    const r2 = await runCli(['node', '--config', again, '--print-config'])
    expect(r2.code, r2.stderr).toBe(0)
    expect(r2.stdout).toBe(r.stdout)
    const bad = await runCli(['node', '--config', configFile('b.yaml', 'relayPort: abc\n', dir)])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(
      /^plexus: InvalidArgumentError: \S+b\.yaml: relayPort must be an integer port 0-65535, got "abc"\n$/,
    )
  })
})
