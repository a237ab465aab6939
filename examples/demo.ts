/**
 * `npm run demo`: a small Plexus overlay as separate processes, driven through the CLI.
 *
 * It starts a gateway node and two members serving the `databases` cluster with `--exec`
 * (each reply names the member that produced it), sends requests through the gateway's relay
 * and shows them spread over both members, kills one member with SIGKILL, shows requests
 * still answered by the survivor, then stops everything it started. A fresh network name and
 * a cluster key generated on the fly keep it apart from anything else on the machine; mDNS
 * stays off so nothing is multicast on the machine's interfaces.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { connectRelay, type RelayClient } from '../relay/client/client.js'
import { generateKey } from '../src/index.js'

const CLI = join(dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js')
const CLUSTER = 'databases'
const MEMBERS = ['db-1', 'db-2']
/** The whole demo must finish within this (ms), or it fails and cleans up. */
const DEADLINE = 50_000

interface Proc {
  name: string
  child: ChildProcess
  lines: string[]
  waiters: Array<() => void>
  exited: Promise<void>
}

const procs: Proc[] = []
const say = (line = '') => process.stdout.write(`${line}\n`)

/** Starts `plexus node ...` as a child process and collects its stdout lines. */
function startNode(name: string, args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, 'node', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const p: Proc = {
    name,
    child,
    lines: [],
    waiters: [],
    exited: new Promise((resolve) => child.once('exit', () => resolve())),
  }
  createInterface({ input: child.stdout! }).on('line', (line) => {
    p.lines.push(line)
    for (const w of p.waiters.splice(0)) w()
  })
  createInterface({ input: child.stderr! }).on('line', (line) => say(`  [${name} stderr] ${line}`))
  child.once('exit', () => {
    for (const w of p.waiters.splice(0)) w()
  })
  procs.push(p)
  return p
}

/** Waits until `p` printed a line matching `re`; fails if it exits first or time runs out. */
async function waitLine(p: Proc, re: RegExp, ms = 15_000): Promise<RegExpMatchArray> {
  const end = Date.now() + ms
  for (;;) {
    for (const l of p.lines) {
      const m = l.match(re)
      if (m) return m
    }
    if (p.child.exitCode !== null || p.child.signalCode !== null) {
      throw new Error(
        `${p.name} exited (code ${p.child.exitCode ?? p.child.signalCode}) before printing ${re}`,
      )
    }
    if (Date.now() > end) throw new Error(`${p.name} did not print ${re} within ${ms} ms`)
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 200)
      p.waiters.push(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }
}

/** Polls the gateway until it sees `count` connected members of the cluster. */
async function waitMembers(client: RelayClient, count: number, ms = 15_000): Promise<number> {
  const start = Date.now()
  for (;;) {
    const status = await client.status()
    const c = status.clusters.find((x) => x.name === CLUSTER)
    const n = c?.members.filter((m) => m.connected).length ?? 0
    if (n === count) return Date.now() - start
    if (Date.now() - start > ms) throw new Error(`gateway sees ${n} members of ${CLUSTER}, expected ${count}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Sends one request and returns the reply text, or the error as `<name>: message`. */
async function ask(client: RelayClient, n: number): Promise<{ ok: boolean; text: string }> {
  try {
    const reply = await client.request(CLUSTER, `request ${n}`, { timeout: 3000 })
    return { ok: true, text: new TextDecoder().decode(reply) }
  } catch (err) {
    const e = err as Error
    return { ok: false, text: `${e.name}: ${e.message}` }
  }
}

/** The member a reply came from (`db-1 got: ...` → `db-1`). */
function memberOf(text: string): string {
  return text.split(' ')[0] ?? '?'
}

/** SIGTERM every child still running, wait for them, SIGKILL stragglers. */
async function stopAll(): Promise<void> {
  const alive = procs.filter((p) => p.child.exitCode === null && p.child.signalCode === null)
  for (const p of alive) p.child.kill('SIGTERM')
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000).unref())
  await Promise.race([Promise.all(alive.map((p) => p.exited)), timeout])
  for (const p of alive) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      say(`  ${p.name} did not stop in time: SIGKILL`)
      p.child.kill('SIGKILL')
    }
  }
  await Promise.race([
    Promise.all(alive.map((p) => p.exited)),
    new Promise((r) => setTimeout(r, 2000).unref()),
  ])
}

async function run(): Promise<void> {
  const network = `demo-${randomBytes(4).toString('hex')}`
  const dir = await mkdtemp(join(tmpdir(), 'plexus-demo-'))
  let client: RelayClient | undefined
  try {
    const keyFile = join(dir, `${CLUSTER}.key`)
    await writeFile(keyFile, `${generateKey()}\n`, { mode: 0o600 })
    say(`Plexus demo: network ${network}, cluster key for '${CLUSTER}' generated in ${keyFile}`)
    const common = [
      '--network',
      network,
      '--no-mdns',
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--relay-port',
      '0',
    ]

    say('\n1. Starting 3 nodes as separate processes: a gateway and two members of databases')
    const gateway = startNode('gateway', common)
    const members = MEMBERS.map((name) =>
      startNode(name, [
        ...common,
        '--join',
        CLUSTER,
        '--cluster-key-file',
        keyFile,
        '--exec',
        `printf '${name} got: '; cat`,
      ]),
    )
    const ready = await waitLine(gateway, /^plexus node (\S+) network \S+ relay (\S+)/)
    const relayAddress = ready[2]!
    say(`   gateway  ${ready[1]}  relay ${relayAddress}`)
    for (const m of members) {
      const r = await waitLine(m, /^plexus node (\S+)/)
      await waitLine(m, new RegExp(`^joined ${CLUSTER}\\b`))
      say(`   ${m.name}     ${r[1]}  serving ${CLUSTER} with --exec "printf '${m.name} got: '; cat"`)
    }

    client = await connectRelay({ address: relayAddress, timeout: 5000 })
    const took = await waitMembers(client, 2)
    say(`   the gateway found both members with no configuration (same-host discovery, ${took} ms)`)

    say(`\n2. Sending 10 requests to '${CLUSTER}' through the gateway's relay, all in flight at once`)
    say('   (the gateway picks a member per request: fewest outstanding requests, then latency)')
    const counts = new Map<string, number>(MEMBERS.map((m) => [m, 0]))
    const first = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(client!, i + 1)))
    first.forEach((r, i) => {
      if (!r.ok) throw new Error(`request ${i + 1} failed: ${r.text}`)
      counts.set(memberOf(r.text), (counts.get(memberOf(r.text)) ?? 0) + 1)
      say(`   request ${String(i + 1).padStart(2)} -> ${r.text}`)
    })
    say(`   answered by: ${MEMBERS.map((m) => `${m} ${counts.get(m)}`).join(', ')}`)
    if (MEMBERS.some((m) => (counts.get(m) ?? 0) === 0))
      throw new Error('requests were not spread over both members')

    const victim = members[0]!
    say(`\n3. Killing ${victim.name} with SIGKILL (no goodbye) and sending more requests`)
    const killedAt = Date.now()
    victim.child.kill('SIGKILL')
    await victim.exited
    const after = new Map<string, number>()
    let ok = 0
    let failed = 0
    for (let i = 11; ok < 6; i++) {
      if (Date.now() - killedAt > 15_000) throw new Error('requests were not answered after the kill')
      const r = await ask(client, i)
      if (r.ok) {
        ok++
        after.set(memberOf(r.text), (after.get(memberOf(r.text)) ?? 0) + 1)
        say(`   request ${String(i).padStart(2)} -> ${r.text}`)
      } else {
        failed++
        say(`   request ${String(i).padStart(2)} -> failed (${r.text}); at-most-once: not resent`)
      }
    }
    await waitMembers(client, 1, 10_000)
    say(
      `   the gateway's member list now holds only ${MEMBERS[1]} (checked ${Date.now() - killedAt} ms after the kill)`,
    )
    say(
      `   after the kill: ${[...after].map(([m, n]) => `${m} ${n}`).join(', ')}` +
        (failed > 0 ? `, ${failed} failed while the death was being noticed` : ''),
    )
    if (after.has(victim.name)) throw new Error(`${victim.name} answered after being killed`)

    say('\n4. Stopping everything')
    await client.close()
    client = undefined
    await stopAll()
    say('   all nodes stopped. Demo done.')
  } finally {
    await client?.close().catch(() => {})
    await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
}

const deadline = setTimeout(() => {
  void abort(new Error(`demo did not finish within ${DEADLINE / 1000} s`))
}, DEADLINE)
deadline.unref()

let aborting = false
async function abort(err: unknown): Promise<void> {
  if (aborting) return
  aborting = true
  const e = err as Error
  process.stderr.write(`demo failed: ${e?.name ?? 'Error'}: ${e?.message ?? String(err)}\n`)
  for (const p of procs) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
  }
  process.exit(1)
}

process.once('SIGINT', () => void abort(new Error('interrupted')))
process.once('SIGTERM', () => void abort(new Error('terminated')))

try {
  await run()
  clearTimeout(deadline)
  process.exit(0)
} catch (err) {
  await abort(err)
}
