/**
 * The README is tested (issue 13): every ```sh block of README.md's "Use it from the command
 * line" section (the first walk-through, "Broadcast, pub/sub and tunnels", "Durable
 * streams") runs here, in order, as written: the commands are read from README.md, never
 * copied into this file, so a README command that stops working fails this test.
 *
 * How a block becomes runs:
 * - Each line (a trailing `\` continues it) is run by `/bin/sh -c` exactly as written,
 *   comments, quotes, `;`, redirections and `PLEXUS_RELAY=…` prefixes included, in a fresh
 *   working directory (so `db.key`, `data/a` land there), with TMPDIR set to a fresh
 *   directory (the same-host registry lives there: nodes of other tests are not found) and
 *   PATH starting with a directory where `npx` and `plexus` are shims that exec the built CLI
 *   (dist/src/cli/main.js) on this Node 22. PLEXUS_* variables of the caller are removed.
 * - A `plexus node …` line is started in the background, as a terminal of its own would
 *   run it; the test waits for its ready line and its `joined` lines. A line whose comment
 *   says "(another terminal)" is a background client. Both get Ctrl-C (SIGINT to their
 *   process group) at the end: nodes must exit 0 after `stopped`, clients 130.
 * - Every other line runs to completion and must exit 0 with an empty stderr; its output is
 *   checked against what the README documents (its trailing comment and the text around):
 *   see `check` below, keyed by the plexus subcommands of the line. A line this file has no
 *   check for fails the test (add one).
 * - Before each client line the test waits until every running node sees every member of
 *   every joined cluster (a person needs a few seconds to switch terminals too), and after
 *   a background `subscribe` until the relay counts the subscription. These waits are
 *   reported (`settled in …`).
 * - A file a line reads that is not in the README (`big.bin`) is created before the line
 *   runs: 2 MiB of random bytes.
 * After the blocks, the README's `request` and `status` lines run again: the storage-only
 * members joined `databases` without `--exec`, and requests must still reach only the
 * `--exec` member ("These members join databases without --exec: they only store"), and
 * `status` must show every member's ROLES.
 *
 * The README names fixed relay ports (55555, 55556, …): the test waits (up to 2 minutes)
 * until they are free, and fails saying which is taken otherwise.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { connectRelay } from '../relay/index.js'

const CLI = resolve('dist/src/cli/main.js')
const README = resolve('README.md')
const SECTION = '## Use it from the command line'
/** The relay port `plexus node` and the client commands use unless told otherwise. */
const DEFAULT_RELAY = '127.0.0.1:55555'
/** Size of a file the README reads but does not create (`big.bin`). */
const MADE_UP_FILE_BYTES = 2 * 1024 * 1024

// ---------------------------------------------------------------------------------------
// Reading the README

/** One simple command of a line: `NAME=value … npx plexus ARGS… [< in] [> out]`. */
interface SimpleCommand {
  env: Record<string, string>
  /** Arguments after `plexus` (`npx plexus` or `plexus`). */
  args: string[]
  stdin?: string
  stdout?: string
}

/** One command line of a README block. */
interface Step {
  /** 1-based number of the ```sh block in the section. */
  block: number
  /** The line as written (continuation lines included). */
  text: string
  /** Its trailing comment, without `#` ('' when none). */
  comment: string
  commands: SimpleCommand[]
  /** `stream create; stream list`: the plexus subcommands, what `check` is keyed by. */
  signature: string
}

/** The ```sh blocks of the README's command-line section, in order. */
function cliBlocks(readme: string): string[] {
  const start = readme.indexOf(`\n${SECTION}\n`)
  if (start < 0) throw new Error(`README.md has no "${SECTION}" section`)
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end < 0 ? undefined : end)
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)
}

type Token = { word: string } | { op: string }

/** Splits a shell line into words and operators, POSIX quoting; stops at a comment. */
function tokenize(line: string): { tokens: Token[]; comment: string } {
  const tokens: Token[] = []
  const special = ' \t\n;<>|&'
  let i = 0
  while (i < line.length) {
    const c = line[i]!
    if (c === ' ' || c === '\t' || c === '\n') {
      i++
    } else if (c === '#') {
      return { tokens, comment: line.slice(i + 1).trim() }
    } else if (';<>|&'.includes(c)) {
      let op = ''
      while (i < line.length && ';<>|&'.includes(line[i]!)) op += line[i++]
      tokens.push({ op })
    } else {
      let word = ''
      while (i < line.length && !special.includes(line[i]!)) {
        const d = line[i]!
        if (d === "'") {
          const j = line.indexOf("'", i + 1)
          if (j < 0) throw new Error(`unterminated ' in: ${line}`)
          word += line.slice(i + 1, j)
          i = j + 1
        } else if (d === '"') {
          i++
          while (i < line.length && line[i] !== '"') {
            if (line[i] === '\\' && '"\\$`'.includes(line[i + 1] ?? '')) i++
            word += line[i++]
          }
          if (i >= line.length) throw new Error(`unterminated " in: ${line}`)
          i++
        } else if (d === '\\') {
          word += line[i + 1] ?? ''
          i += 2
        } else {
          word += d
          i++
        }
      }
      tokens.push({ word })
    }
  }
  return { tokens, comment: '' }
}

/** Parses one line into its simple commands (`;`-separated), each a plexus invocation. */
function parseLine(line: string): { commands: SimpleCommand[]; comment: string } {
  const { tokens, comment } = tokenize(line.replace(/\\\n/g, ' '))
  const commands: SimpleCommand[] = []
  let words: string[] = []
  let cmd: SimpleCommand = { env: {}, args: [] }
  const finish = () => {
    const start = words[0] === 'npx' && words[1] === 'plexus' ? 2 : words[0] === 'plexus' ? 1 : -1
    if (start < 0) throw new Error(`README line runs something other than plexus: ${line}`)
    cmd.args = words.slice(start)
    commands.push(cmd)
    words = []
    cmd = { env: {}, args: [] }
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    if ('word' in t) {
      const assign = words.length === 0 ? t.word.match(/^([A-Za-z_]\w*)=(.*)$/) : null
      if (assign) cmd.env[assign[1]!] = assign[2]!
      else words.push(t.word)
      continue
    }
    const next = tokens[i + 1]
    if ((t.op === '<' || t.op === '>') && next && 'word' in next) {
      cmd[t.op === '<' ? 'stdin' : 'stdout'] = next.word
      i++
    } else if (t.op === ';') {
      finish()
    } else {
      throw new Error(`README line uses "${t.op}", which this test does not understand yet: ${line}`)
    }
  }
  if (words.length > 0) finish()
  return { commands, comment }
}

/** The command lines of every block of the section, in order. */
function readmeSteps(): Step[] {
  const steps: Step[] = []
  for (const [b, block] of cliBlocks(readFileSync(README, 'utf8')).entries()) {
    const lines = block.split('\n')
    for (let i = 0; i < lines.length; i++) {
      let text = lines[i]!
      while (text.endsWith('\\') && i + 1 < lines.length) text += `\n${lines[++i]}`
      if (text.trim() === '' || text.trim().startsWith('#')) continue
      const { commands, comment } = parseLine(text)
      const signature = commands
        .map((c) => (c.args[0] === 'stream' ? `stream ${c.args[1]}` : (c.args[0] ?? '')))
        .join('; ')
      steps.push({ block: b + 1, text, comment, commands, signature })
    }
  }
  return steps
}

/** The value after `flag` in `args` (the first one), or undefined. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}

/** Every value given to a repeatable flag. */
function flags(args: string[], name: string): string[] {
  return args.flatMap((a, i) => (a === name && args[i + 1] !== undefined ? [args[i + 1]!] : []))
}

/** Positional arguments after the subcommand(s), skipping flags and their values. */
function positional(args: string[], skip: number, valueless: string[] = ['--json']): string[] {
  const out: string[] = []
  for (let i = skip; i < args.length; i++) {
    if (args[i]!.startsWith('--')) {
      if (!valueless.includes(args[i]!)) i++
    } else out.push(args[i]!)
  }
  return out
}

/** The relay a client command attaches to, as the CLI picks it. */
function relayOf(cmd: SimpleCommand): string {
  return flag(cmd.args, '--relay') ?? cmd.env.PLEXUS_RELAY ?? DEFAULT_RELAY
}

/** NATS-style topic match: `*` one token, `>` the rest. */
function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split('.')
  const t = topic.split('.')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false
  }
  return p.length === t.length
}

// ---------------------------------------------------------------------------------------
// Running lines

/** A line run in the background (a node, or a client "in another terminal"). */
interface Background {
  step: Step
  child: ChildProcess
  lines: string[]
  stderr: string[]
  exit: Promise<{ code: number | null; signal: string | null }>
  waitLine(re: RegExp | string, ms?: number): Promise<string>
}

/** A background `plexus node`, once ready. */
interface RunningNode extends Background {
  id: string
  relay: string
  /** Its `--join` groups: cluster and the flags that follow it. */
  joins: Array<{ cluster: string; args: string[] }>
  dataDir?: string
}

let work = ''
let temp = ''
let env: NodeJS.ProcessEnv = {}
const background: Background[] = []
const roots: string[] = []

function setUp(): void {
  const root = mkdtempSync(join(tmpdir(), 'plexus-readme-'))
  roots.push(root)
  work = join(root, 'work')
  temp = join(root, 'tmp')
  const bin = join(root, 'bin')
  for (const d of [work, temp, bin]) mkdirSync(d)
  const run = `exec '${process.execPath}' '${CLI}' "$@"\n`
  writeFileSync(
    join(bin, 'npx'),
    `#!/bin/sh\n[ "$1" = plexus ] || { echo "readme test: this npx only runs plexus, not: $*" >&2; exit 127; }\nshift\n${run}`,
    { mode: 0o755 },
  )
  writeFileSync(join(bin, 'plexus'), `#!/bin/sh\n${run}`, { mode: 0o755 })
  env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PLEXUS_')))
  env.PATH = `${bin}:${process.env.PATH ?? ''}`
  env.TMPDIR = temp
}

/**
 * `/bin/sh -c` on the line as written, in its own process group (so Ctrl-C reaches the
 * command as in a terminal; `trap : INT` keeps the shell alive to report the exit code).
 */
function shell(text: string): ChildProcess {
  return spawn('/bin/sh', ['-c', `trap : INT\n${text}`], {
    cwd: work,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal)
  } catch {
    // already gone
  }
}

/** Runs a line to completion (its process group killed after `ms`). */
async function runLine(
  step: Step,
  ms = 90_000,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now()
  const child = shell(step.text)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const timer = setTimeout(() => {
    stderr += `\n[readme test: killed after ${ms} ms]`
    killGroup(child, 'SIGKILL')
  }, ms)
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)))
  clearTimeout(timer)
  return { code, stdout, stderr, ms: Date.now() - started }
}

function startBackground(step: Step): Background {
  const child = shell(step.text)
  const lines: string[] = []
  const stderr: string[] = []
  const waiters = new Set<() => void>()
  let partial = ''
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n')
    partial = parts.pop()!
    lines.push(...parts)
    for (const w of waiters) w()
  })
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()))
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.on('close', (code, signal) => {
      if (partial !== '') lines.push(partial)
      for (const w of waiters) w()
      r({ code, signal })
    }),
  )
  const waitLine = (re: RegExp | string, ms = 60_000) =>
    new Promise<string>((res, rej) => {
      const hit = (l: string) => (typeof re === 'string' ? l === re : re.test(l))
      const check = () => {
        const found = lines.find(hit)
        if (found !== undefined) return done(() => res(found))
        if (child.exitCode !== null || child.signalCode !== null) {
          done(() =>
            rej(new Error(`"${step.text}" exited before printing ${re}; stderr: ${stderr.join('')}`)),
          )
        }
      }
      const timer = setTimeout(
        () =>
          done(() =>
            rej(
              new Error(`"${step.text}" printed no line ${re} within ${ms} ms; got ${JSON.stringify(lines)}`),
            ),
          ),
        ms,
      )
      const done = (fn: () => void) => {
        clearTimeout(timer)
        waiters.delete(check)
        fn()
      }
      waiters.add(check)
      check()
    })
  const bg: Background = { step, child, lines, stderr, exit, waitLine }
  background.push(bg)
  return bg
}

/** Ctrl-C: SIGINT to the process group; SIGKILL if it has not exited after `ms`. */
async function interrupt(
  bg: Background,
  ms = 20_000,
): Promise<{ code: number | null; signal: string | null }> {
  if (bg.child.exitCode === null && bg.child.signalCode === null) killGroup(bg.child, 'SIGINT')
  const timer = setTimeout(() => killGroup(bg.child, 'SIGKILL'), ms)
  const r = await bg.exit
  clearTimeout(timer)
  return r
}

afterAll(async () => {
  await Promise.all(background.map((bg) => interrupt(bg, 5000)))
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

function portFree(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = createServer()
    s.once('error', () => r(false))
    s.listen(port, '127.0.0.1', () => s.close(() => r(true)))
  })
}

/** Waits until the README's fixed relay ports are free (another run may be finishing). */
async function waitPortsFree(ports: number[], ms = 120_000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const taken: number[] = []
    for (const p of ports) if (!(await portFree(p))) taken.push(p)
    if (taken.length === 0) return
    if (Date.now() > end) {
      throw new Error(
        `the README's relay ports ${taken.join(', ')} are in use on 127.0.0.1: stop what holds them`,
      )
    }
    await new Promise((r) => setTimeout(r, 500))
  }
}

type Status = Awaited<ReturnType<Awaited<ReturnType<typeof connectRelay>>['status']>>

async function statusAt(relay: string): Promise<Status> {
  const client = await connectRelay({ address: relay })
  try {
    return await client.status()
  } finally {
    await client.close()
  }
}

// ---------------------------------------------------------------------------------------
// The walk-through

interface Published {
  topic: string
  key: string | null
  headers: Record<string, string>
  data: string
  from: string
  offset?: number
}

interface Walk {
  nodes: RunningNode[]
  clients: Background[]
  published: Published[]
  /** Streams created: name → cluster, subject, replicas, partitions. */
  streams: Map<string, { cluster: string; subject: string; replicas: number; partitions: number }>
}

/** Cluster → ids of the running nodes that joined it. */
function membersByCluster(walk: Walk): Map<string, RunningNode[]> {
  const m = new Map<string, RunningNode[]>()
  for (const n of walk.nodes) for (const j of n.joins) m.set(j.cluster, [...(m.get(j.cluster) ?? []), n])
  return m
}

/** The ROLES `plexus status` shows for `node` in `cluster`, from its command line. */
function rolesOf(node: RunningNode, cluster: string): string {
  const a = node.joins.find((j) => j.cluster === cluster)!.args
  const roles: string[] = []
  if (a.includes('--exec') || a.includes('--echo')) roles.push('request')
  if (a.includes('--on-broadcast')) roles.push('broadcast')
  if (a.includes('--tunnel-exec') || a.includes('--tunnel-echo')) roles.push('tunnel')
  if (node.dataDir !== undefined) roles.push('storage')
  return roles.length > 0 ? roles.join(',') : '-'
}

/** Waits until every running node sees every member of every joined cluster, connected. */
async function settle(walk: Walk, ms = 60_000): Promise<number> {
  const started = Date.now()
  const clusters = membersByCluster(walk)
  let last = ''
  for (;;) {
    last = ''
    for (const n of walk.nodes) {
      const s = await statusAt(n.relay)
      for (const [c, members] of clusters) {
        const seen = s.clusters.find((x) => x.name === c)?.members ?? []
        for (const m of members) {
          if (!seen.some((x) => x.id === m.id && x.connected && x.roles !== undefined)) {
            last ||= `node ${n.relay} does not see ${m.relay}'s membership of ${c}`
          }
        }
      }
    }
    if (last === '') return Date.now() - started
    if (Date.now() - started > ms) throw new Error(`the nodes did not settle within ${ms} ms: ${last}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

async function startNodeStep(step: Step, walk: Walk): Promise<void> {
  const args = step.commands[0]!.args
  const bg = startBackground(step)
  const ready = await bg.waitLine(/^plexus node \S+ network \S+ relay \S+ listening /)
  const m = ready.match(/^plexus node (\S+) network (\S+) relay (\S+) /)!
  expect(m[3], `${step.text}: relay address`).toBe(`127.0.0.1:${flag(args, '--relay-port') ?? '55555'}`)
  expect(m[2], `${step.text}: network`).toBe(flag(args, '--network') ?? 'plexus')
  const joins: RunningNode['joins'] = []
  args.forEach((a, i) => {
    if (a !== '--join') return
    const next = args.indexOf('--join', i + 1)
    joins.push({ cluster: args[i + 1]!, args: args.slice(i + 2, next < 0 ? undefined : next) })
  })
  for (const j of joins) await bg.waitLine(new RegExp(`^joined ${j.cluster} `))
  const dataDir = flag(args, '--data-dir')
  if (dataDir !== undefined) expect(existsSync(join(work, dataDir)), `${dataDir} created`).toBe(true)
  walk.nodes.push(Object.assign(bg, { id: m[1]!, relay: m[3]!, joins, dataDir }))
}

function nodeAt(walk: Walk, relay: string): RunningNode {
  const n = walk.nodes.find((x) => x.relay === relay)
  if (!n) throw new Error(`no node of the README listens at ${relay}`)
  return n
}

/** The partitions in `stream create` / `stream info` output. */
function partitionsOf(out: string): Array<{
  partition: number
  leader: string
  replicas: string[]
  inSync: string[]
  inSyncCount: string
  first: number
  next: number
}> {
  return [...out.matchAll(/^partition (\d+)\n((?: {2}.*\n?)*)/gm)].map((m) => {
    const field = (name: string) => m[2]!.match(new RegExp(`^ {2}${name}\\s+(.*)$`, 'm'))?.[1] ?? ''
    const inSync = field('in-sync').match(/^(.*) \((\d+\/\d+)\)$/)
    const offsets = field('offsets').match(/^first (\d+), next (\d+)$/)
    return {
      partition: Number(m[1]),
      leader: field('leader'),
      replicas: field('replicas').split(', '),
      inSync: inSync?.[1] === '-' ? [] : (inSync?.[1]?.split(', ') ?? []),
      inSyncCount: inSync?.[2] ?? '',
      first: Number(offsets?.[1] ?? Number.NaN),
      next: Number(offsets?.[2] ?? Number.NaN),
    }
  })
}

/** Checks `plexus status` output against the running nodes. */
function checkStatus(walk: Walk, relay: string, out: string): void {
  const self = nodeAt(walk, relay)
  expect(out).toMatch(new RegExp(`^node\\s+${self.id}$`, 'm'))
  for (const [c, members] of membersByCluster(walk)) {
    const joined = members.includes(self) ? ' \\(joined by this node\\)' : ''
    expect(out).toMatch(new RegExp(`^ {2}${c}${joined}: ${members.length} member\\(s\\)$`, 'm'))
    for (const m of members) {
      const me = m === self ? ' \\(self\\)' : ''
      expect(out, `status: ${c} member ${m.relay}`).toMatch(
        new RegExp(`^ {4}${m.id}${me}\\s+yes\\s+.*\\s${rolesOf(m, c)}$`, 'm'),
      )
    }
  }
}

/** Creates a file the README reads but never makes (`tunnel files < big.bin`). */
function provideInput(step: Step): void {
  for (const c of step.commands) {
    if (c.stdin !== undefined && !existsSync(join(work, c.stdin))) {
      writeFileSync(join(work, c.stdin), randomBytes(MADE_UP_FILE_BYTES))
    }
  }
}

/**
 * Checks what one finished line printed against what the README documents for it. `r` is
 * the line's result; throws for a line it has no check for.
 */
async function check(step: Step, walk: Walk, r: { stdout: string; stderr: string }): Promise<void> {
  const what = `README block ${step.block}: ${step.text}`
  const [c] = step.commands as [SimpleCommand]
  const args = c.args
  switch (step.signature) {
    case 'keygen':
    case 'keygen; keygen': {
      expect(r.stdout, what).toBe('')
      for (const k of step.commands) {
        expect(k.stdout, `${what}: keygen writes to a file`).toBeDefined()
        expect(readFileSync(join(work, k.stdout!), 'utf8'), `${what}: ${k.stdout}`).toMatch(
          /^[0-9a-f]{64}\n$/,
        )
      }
      return
    }
    case 'request': {
      // The comment is the reply the README promises (`# HELLO`); pipes get it without a
      // newline, a terminal with one.
      expect(step.comment, `${what}: the reply is documented`).not.toBe('')
      expect(r.stdout.trimEnd(), what).toBe(step.comment)
      return
    }
    case 'status':
      checkStatus(walk, relayOf(c), r.stdout)
      return
    case 'broadcast': {
      expect(step.comment, what).toMatch(/prints nothing, exit 0/)
      expect(r.stdout, what).toBe('')
      const [cluster, data] = positional(args, 1)
      const hearers = walk.nodes.filter((n) =>
        n.joins.some((j) => j.cluster === cluster && j.args.includes('--on-broadcast')),
      )
      expect(hearers.length, `${what}: a member with --on-broadcast`).toBeGreaterThan(0)
      // `--on-broadcast 'cat; echo'` prints each broadcast on the member's stdout.
      for (const n of hearers) await n.waitLine(data!, 30_000)
      return
    }
    case 'publish': {
      const [topic, data] = positional(args, 1)
      const headers = Object.fromEntries(flags(args, '--header').map((h) => h.split(/=(.*)/s).slice(0, 2)))
      const p: Published = {
        topic: topic!,
        key: flag(args, '--key') ?? null,
        headers,
        data: data!,
        from: nodeAt(walk, relayOf(c)).id,
      }
      if (flag(args, '--ack') !== undefined) {
        expect(step.comment, what).toMatch(/prints the offset/)
        // To a pipe, the offset alone (README: "to a pipe or file, the offset alone").
        expect(r.stdout, what).toMatch(/^\d+\n$/)
        p.offset = Number(r.stdout)
      } else {
        expect(r.stdout, what).toBe('')
      }
      walk.published.push(p)
      return
    }
    case 'tunnel': {
      expect(step.comment, what).toMatch(/prints the member's (\S+) output/)
      const cluster = positional(args, 1)[0]!
      const server = walk.nodes
        .flatMap((n) => n.joins)
        .find((j) => j.cluster === cluster && j.args.includes('--tunnel-exec'))
      expect(server, `${what}: a member with --tunnel-exec`).toBeDefined()
      // What the member's command prints for that input when run here.
      const cmd = flag(server!.args, '--tunnel-exec')!
      expect(step.comment).toContain(cmd.split(' ')[0])
      const expected = spawnSync('/bin/sh', ['-c', cmd], {
        input: readFileSync(join(work, c.stdin!)),
        encoding: 'utf8',
      })
      expect(expected.stdout).not.toBe('')
      expect(r.stdout, what).toBe(expected.stdout)
      return
    }
    case 'stream create': {
      const name = positional(args, 2)[0]!
      const spec = {
        cluster: flag(args, '--cluster')!,
        subject: flag(args, '--subject')!,
        replicas: Number(flag(args, '--replicas') ?? 3),
        partitions: Number(flag(args, '--partitions') ?? 1),
      }
      walk.streams.set(name, spec)
      expect(r.stdout, what).toMatch(new RegExp(`^stream\\s+${name}$`, 'm'))
      expect(r.stdout, what).toMatch(new RegExp(`^cluster\\s+${spec.cluster}$`, 'm'))
      checkPlacement(walk, spec, partitionsOf(r.stdout), what)
      return
    }
    case 'stream info': {
      expect(step.comment, what).toMatch(/leaders, replicas, in-sync set, offsets/)
      const name = positional(args, 2)[0]!
      const spec = walk.streams.get(name)!
      const parts = partitionsOf(r.stdout)
      checkPlacement(walk, spec, parts, what)
      const majority = Math.floor(spec.replicas / 2) + 1
      for (const p of parts) {
        expect(p.replicas, `${what}: partition ${p.partition} leader`).toContain(p.leader)
        expect(p.inSync.length, `${what}: partition ${p.partition} in-sync`).toBeGreaterThanOrEqual(majority)
        expect(p.inSyncCount).toBe(`${p.inSync.length}/${spec.replicas}`)
        for (const id of p.inSync) expect(p.replicas).toContain(id)
        expect(p.first).toBe(0)
      }
      const stored = walk.published.filter(
        (m) => m.offset !== undefined && topicMatches(spec.subject, m.topic),
      )
      expect(
        parts.reduce((n, p) => n + p.next, 0),
        `${what}: offsets count the stored messages`,
      ).toBe(stored.length)
      return
    }
    case 'consume': {
      expect(step.comment, what).toMatch(/one JSON object per line/)
      const name = positional(args, 1)[0]!
      const spec = walk.streams.get(name)!
      const lines = r.stdout.split('\n').filter((l) => l !== '')
      const count = Number(flag(args, '--count'))
      expect(lines.length, `${what}: --count`).toBe(count)
      const got = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
      for (const g of got) {
        expect(Object.keys(g).sort()).toEqual([
          'data',
          'headers',
          'key',
          'offset',
          'partition',
          'stream',
          'timestamp',
          'topic',
        ])
      }
      const stored = walk.published.filter(
        (m) => m.offset !== undefined && topicMatches(spec.subject, m.topic),
      )
      expect(stored.length, `${what}: messages to consume`).toBeGreaterThanOrEqual(count)
      for (const m of stored.slice(0, count)) {
        expect(got, what).toContainEqual(
          expect.objectContaining({
            stream: name,
            topic: m.topic,
            key: m.key,
            headers: m.headers,
            data: m.data,
            offset: m.offset,
          }),
        )
      }
      return
    }
    case 'stream list; stream delete': {
      for (const [name, s] of walk.streams) {
        expect(r.stdout, what).toMatch(
          new RegExp(
            `^${name}\\s+${s.cluster}\\s+${s.subject.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+${s.partitions}\\s+${s.replicas}\\s`,
            'm',
          ),
        )
      }
      walk.streams.delete(positional(step.commands[1]!.args, 2)[0]!)
      return
    }
  }
  throw new Error(
    `no check for the README line "${step.text}" (block ${step.block}): add one to test/readme.test.ts`,
  )
}

/** Replicas: `replicas` distinct members of the cluster, all with a data directory. */
function checkPlacement(
  walk: Walk,
  spec: { cluster: string; replicas: number; partitions: number },
  parts: ReturnType<typeof partitionsOf>,
  what: string,
): void {
  const storage = (membersByCluster(walk).get(spec.cluster) ?? [])
    .filter((n) => n.dataDir !== undefined)
    .map((n) => n.id)
  expect(
    parts.map((p) => p.partition),
    `${what}: partitions`,
  ).toEqual([...Array(spec.partitions).keys()])
  for (const p of parts) {
    expect(new Set(p.replicas).size, `${what}: partition ${p.partition} replicas`).toBe(spec.replicas)
    for (const id of p.replicas)
      expect(storage, `${what}: replicas only on members with --data-dir`).toContain(id)
  }
}

describe('README', () => {
  it('the command-line walk-through works as written', { timeout: 400_000 }, async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`)
    const steps = readmeSteps()
    expect(new Set(steps.map((s) => s.block)).size, 'the sh blocks of the section').toBeGreaterThanOrEqual(3)
    const isNode = (s: Step) => s.commands.length === 1 && s.commands[0]!.args[0] === 'node'
    const isBackgroundClient = (s: Step) => s.comment.includes('(another terminal)')
    const ports = steps.filter(isNode).map((s) => Number(flag(s.commands[0]!.args, '--relay-port') ?? 55555))
    await waitPortsFree(ports)
    setUp()

    const walk: Walk = { nodes: [], clients: [], published: [], streams: new Map() }
    // What ran and how long it took, printed once at the end (passed or failed).
    const notes: string[] = []
    const log = (s: Step, note: string) =>
      notes.push(`block ${s.block}: ${s.text.replace(/\s*\\\n\s*/g, ' ')}  (${note})`)
    const runAndCheck = async (step: Step) => {
      if (step.signature !== 'keygen' && step.signature !== 'keygen; keygen') {
        const waited = await settle(walk)
        if (waited > 1000) log(step, `nodes settled in ${waited} ms first`)
      }
      provideInput(step)
      const r = await runLine(step)
      log(step, `exit ${r.code}, ${r.ms} ms`)
      expect(
        { code: r.code, stderr: r.stderr },
        `README block ${step.block}: ${step.text}\nstdout: ${r.stdout}`,
      ).toEqual({
        code: 0,
        stderr: '',
      })
      await check(step, walk, r)
    }

    try {
      await walkThrough()
    } finally {
      console.log(`README walk-through:\n${notes.join('\n')}`)
    }

    async function walkThrough(): Promise<void> {
      for (const step of steps) {
        if (isNode(step)) {
          const t = Date.now()
          await startNodeStep(step, walk)
          log(step, `ready in ${Date.now() - t} ms`)
        } else if (isBackgroundClient(step)) {
          const c = step.commands[0]!
          expect(c.args[0], `${step.text}: only subscribe runs in another terminal`).toBe('subscribe')
          const relay = relayOf(c)
          const before = (await statusAt(relay)).counters['relay.subscriptions'] ?? 0
          walk.clients.push(startBackground(step))
          const end = Date.now() + 60_000
          while (((await statusAt(relay)).counters['relay.subscriptions'] ?? 0) <= before) {
            if (Date.now() > end) throw new Error(`${step.text}: the subscription never reached ${relay}`)
            await new Promise((res) => setTimeout(res, 100))
          }
          log(step, 'subscribed, left running')
        } else {
          await runAndCheck(step)
        }
      }

      // "These members join databases without --exec: they only store. plexus request
      // databases … still reaches only the members started with --exec." Requests are spread
      // by load, so a few of them would meet a storage member.
      const byCluster = membersByCluster(walk)
      const mixed = [...byCluster.entries()].filter(
        ([c, ms]) =>
          ms.some((n) => rolesOf(n, c) === 'storage') && ms.some((n) => rolesOf(n, c).includes('request')),
      )
      expect(mixed.length, 'a cluster with storage-only members and a request member').toBeGreaterThan(0)
      const request = steps.find((s) => s.signature === 'request')!
      for (let i = 0; i < 6; i++) await runAndCheck(request)
      // `plexus status` shows every member's roles (storage for the --data-dir members).
      const status = steps.find((s) => s.signature === 'status')
      if (status) await runAndCheck(status)

      // Ctrl-C in each terminal: `subscribe` exits 130, nodes stop cleanly and exit 0.
      for (const c of walk.clients) {
        const r = await interrupt(c)
        expect(r, `${c.step.text}: Ctrl-C`).toEqual({ code: 130, signal: null })
        const spec = c.step.commands[0]!
        const pattern = positional(spec.args, 1)[0]!
        const got = c.lines.filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
        for (const g of got)
          expect(Object.keys(g).sort()).toEqual(['data', 'from', 'headers', 'key', 'topic'])
        const expected = walk.published.filter((p) => topicMatches(pattern, p.topic))
        expect(expected.length, `${c.step.text}: something to receive`).toBeGreaterThan(0)
        expect(got, `${c.step.text}: one JSON object per message`).toEqual(
          expected.map(({ topic, key, headers, data, from }) => ({ topic, key, headers, data, from })),
        )
      }
      const stops = await Promise.all(walk.nodes.map((n) => interrupt(n)))
      walk.nodes.forEach((n, i) => {
        expect(stops[i], `${n.step.text}: Ctrl-C; stderr: ${n.stderr.join('')}`).toEqual({
          code: 0,
          signal: null,
        })
        expect(n.lines.at(-1)).toBe('stopped')
      })
    }
  })
})
