/**
 * examples/deploy: the three member configurations start a storage cluster as real
 * `plexus node --config FILE` processes (their paths rewritten into a temp directory,
 * addresses to free loopback ports, relative key and data paths to exercise resolution from
 * the file's directory), form the cluster over bootstrap alone (mDNS and the same-host
 * registry are off, as in the files), and host a stream with 3 replicas; SIGTERM (the
 * unit's stop signal) stops each member with exit 0. The systemd unit is checked for the
 * directives docs/operations.md relies on.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { CLI, exited, runCli, tempDir, waitMembers } from './cli/helpers.js'

const DEPLOY = join(import.meta.dirname, '..', 'examples', 'deploy')
const procs: ChildProcess[] = []

afterEach(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  await Promise.all(procs.splice(0).map((p) => exited(p)))
})

/** A TCP port free on 127.0.0.1 right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

/** Starts `plexus node --config file`; resolves with its relay address once it joined. */
function startMember(
  file: string,
): Promise<{ child: ChildProcess; relay: string; http: string; out: string[] }> {
  const child = spawn(process.execPath, [CLI, 'node', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  procs.push(child)
  const out: string[] = []
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  return new Promise((resolve, reject) => {
    let relay = ''
    let http = ''
    const timer = setTimeout(
      () => reject(new Error(`${file}: not joined in 40 s: ${out.join('|')} ${err}`)),
      40_000,
    )
    child.once('exit', (code) => reject(new Error(`${file}: exited ${code}: ${err}`)))
    createInterface({ input: child.stdout! }).on('line', (l) => {
      out.push(l)
      const m = l.match(/^plexus node \S+ network \S+ relay (\S+)/)
      if (m) relay = m[1]!
      const h = l.match(/^http (\S+)/)
      if (h) http = h[1]!
      if (l.startsWith('joined storage ')) {
        clearTimeout(timer)
        resolve({ child, relay, http, out })
      }
    })
  })
}

describe('examples/deploy', () => {
  it('the systemd unit runs plexus node --config with a state directory, a file limit and a clean stop', () => {
    const unit = readFileSync(join(DEPLOY, 'plexus@.service'), 'utf8')
    for (const line of [
      /^ExecStart=.*plexus node --config \/etc\/plexus\/%i\.yaml$/m,
      /^StateDirectory=plexus\/%i$/m,
      /^User=plexus$/m,
      /^Restart=on-failure$/m,
      /^LimitNOFILE=\d+$/m,
      /^KillSignal=SIG(TERM|INT)$/m,
      /^TimeoutStopSec=/m,
    ])
      expect(unit).toMatch(line)
    // systemd's own check of every directive, where systemd is installed.
    if (spawnSync('systemd-analyze', ['--version']).status === 0) {
      const dir = tempDir()
      const instance = join(dir, 'plexus@member-1.service')
      writeFileSync(instance, unit)
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', instance], { encoding: 'utf8' })
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/Unknown (key|section)|Failed to parse|Invalid/i)
    }
  })

  it('three members from the example configs form the cluster and serve a stream with 3 replicas', async () => {
    const dir = tempDir()
    const network = `deploy-${randomBytes(4).toString('hex')}`
    writeFileSync(join(dir, 'network.key'), `${randomBytes(32).toString('hex')}\n`)
    writeFileSync(join(dir, 'storage.key'), `${randomBytes(32).toString('hex')}\n`)
    const ports = [await freePort(), await freePort(), await freePort()]
    const files: string[] = []
    for (let i = 0; i < 3; i++) {
      const cfg = parse(readFileSync(join(DEPLOY, `member-${i + 1}.yaml`), 'utf8'))
      expect(cfg.join[0].cluster).toBe('storage')
      expect(cfg.bootstrap).toHaveLength(2)
      expect(cfg.dataDir).toBe(`/var/lib/plexus/member-${i + 1}`)
      cfg.network = network
      cfg.networkKeyFile = join(dir, 'network.key') // absolute stays absolute
      cfg.listen = [`/ip4/127.0.0.1/tcp/${ports[i]}`]
      cfg.bootstrap = ports.filter((_, j) => j !== i).map((p) => `/ip4/127.0.0.1/tcp/${p}`)
      cfg.dataDir = `member-${i + 1}` // relative: from the file's directory
      expect(cfg.httpPort).toBe(9464)
      cfg.relayPort = 0
      cfg.httpPort = 0
      cfg.join[0].clusterKeyFile = 'storage.key'
      const f = join(dir, `member-${i + 1}.yaml`)
      writeFileSync(f, stringify(cfg))
      files.push(f)
    }
    const members = await Promise.all(files.map((f) => startMember(f)))
    const env = { PLEXUS_RELAY: members[0]!.relay }
    await waitMembers(members[0]!.relay, 'storage', 3, 20_000)
    // Every member is ready (linked, the cluster's metadata group reachable) on its HTTP port.
    for (const m of members) {
      const end = Date.now() + 30_000
      for (;;) {
        const res = await fetch(new URL('readyz', m.http))
        const body = await res.text()
        if (res.status === 200 || Date.now() > end) {
          expect(res.status, body).toBe(200)
          break
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    }

    const created = await runCli(
      [
        'stream',
        'create',
        'orders',
        '--cluster',
        'storage',
        '--subject',
        'orders.>',
        '--replicas',
        '3',
        '--json',
        '--timeout',
        '20000',
      ],
      { env, timeout: 40_000 },
    )
    expect(created.code, created.stderr).toBe(0)
    const info = JSON.parse(created.stdout)
    expect(info.partitions[0].replicas).toHaveLength(3)
    // Published through member 2, read through member 3.
    const r = await runCli(['publish', 'orders.eu', 'order 0', '--ack', 'all', '--timeout', '20000'], {
      env: { PLEXUS_RELAY: members[1]!.relay },
      timeout: 40_000,
    })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('0\n')
    const read = await runCli(['consume', 'orders', '--from', 'earliest', '--count', '1'], {
      env: { PLEXUS_RELAY: members[2]!.relay },
      timeout: 40_000,
    })
    expect(read.code, read.stderr).toBe(0)
    expect(read.stdout).toBe('order 0\n')
    // The data directories are where the files say, relative to the file.
    for (let i = 0; i < 3; i++)
      expect(readFileSync(join(dir, `member-${i + 1}`, 'plexus.lock'), 'utf8')).toBeTruthy()

    for (const m of members) m.child.kill('SIGTERM')
    for (const m of members) {
      await exited(m.child)
      expect(m.child.exitCode).toBe(0)
      expect(m.out.at(-1)).toBe('stopped')
    }
  }, 180_000)
})
