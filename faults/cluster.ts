/**
 * The three member processes of a schedule (test/fixtures/stream-member.mjs, each with its
 * own data directory, optionally in its own network namespace and with the power-loss
 * shim), and the faults applied to them: kill -9, SIGSTOP/SIGCONT, a network cut, power loss.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Netns } from './netns.js'
import { applyPowerLoss, type PowerLossReport, shimEnv } from './powerloss.js'

/** Repository root (from dist/faults/ or faults/). */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  return here.endsWith(join('dist', 'faults')) ? join(here, '..', '..') : join(here, '..')
}

/** What a cluster of member processes needs. */
export interface ClusterOptions {
  root: string
  network: string
  cluster: string
  key: string
  raftLogBytes: number | undefined
  /** `maxMessageSize` of the members (undefined: the library default). */
  maxMessageSize?: number
  netns: Netns | undefined
  /** The power-loss shim (.so); undefined: members run without it. */
  shim: string | undefined
  log: (line: string) => void
}

/** The hosted partition in a member's `status` reply. */
export interface HostedStatus {
  partition: number
  role: string
  leader: string | null
  nextOffset: number
  snapshotIndex: number
}

/** One member; `child` changes on every restart, `dir` and `id` do not. */
export interface Member {
  index: number
  name: string
  dir: string
  journal: string
  id: string
  child: ChildProcess | undefined
  /** Stdout lines waiting for a matching line. */
  waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }>
  paused: boolean
}

/** Three (or `n`) member processes and what can be done to them. */
export class Cluster {
  readonly members: Member[]

  constructor(
    private readonly o: ClusterOptions,
    n = 3,
  ) {
    this.members = Array.from({ length: n }, (_, index) => ({
      index,
      name: String.fromCharCode(97 + index),
      dir: join(o.root, `m${index}`),
      journal: join(o.root, `m${index}.journal`),
      id: '',
      child: undefined,
      waiters: [],
      paused: false,
    }))
  }

  /** Starts (or restarts on the same data directory) member `m`; resolves once it joined. */
  async launch(m: Member, ms = 30_000): Promise<void> {
    const o = this.o
    const fixture = join(repoRoot(), 'test', 'fixtures', 'stream-member.mjs')
    const env: NodeJS.ProcessEnv = { ...process.env }
    if (o.raftLogBytes !== undefined) env.RAFT_LOG_BYTES = String(o.raftLogBytes)
    if (o.maxMessageSize !== undefined) env.MAX_MESSAGE_SIZE = String(o.maxMessageSize)
    if (o.netns) env.LISTEN_ADDR = `/ip4/${o.netns.memberAddr(m.index)}/tcp/0`
    if (o.shim) Object.assign(env, shimEnv(o.shim, m.journal))
    const args = [fixture, o.network, o.cluster, o.key, m.dir]
    const [cmd, ...pre] = o.netns ? [...o.netns.exec(m.index), process.execPath] : [process.execPath]
    const child = spawn(cmd!, [...pre, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    m.child = child
    m.paused = false
    m.waiters = []
    const tag = `[${m.name} pid ${child.pid}]`
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('status ') && !line.startsWith('raft ')) o.log(`${tag} ${clip(line)}`)
      for (const w of m.waiters.slice()) {
        const hit = line.match(w.re)
        if (hit) {
          m.waiters.splice(m.waiters.indexOf(w), 1)
          w.resolve(hit)
        }
      }
    })
    createInterface({ input: child.stderr! }).on('line', (line) => o.log(`${tag} err: ${clip(line)}`))
    child.stdin!.on('error', () => {})
    child.on('exit', (code, sig) => o.log(`${tag} exited (${code ?? sig})`))
    const id = (await this.line(m, /^ready (\S+)/, ms))[1]!
    if (m.id !== '' && id !== m.id) throw new Error(`${m.name} restarted as ${id}, was ${m.id}`)
    m.id = id
    o.log(`${tag} ready as ${id}`)
  }

  /** Next stdout line of `m`'s current process matching `re` (rejects on exit or timeout). */
  line(m: Member, re: RegExp, ms: number): Promise<RegExpMatchArray> {
    const child = m.child!
    return new Promise((resolve, reject) => {
      const w = {
        re,
        resolve: (hit: RegExpMatchArray) => {
          done()
          resolve(hit)
        },
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${m.name}: no line matching ${re} within ${ms} ms`))
      }, ms)
      const onExit = () => {
        done()
        reject(new Error(`${m.name}: process exited before a line matching ${re}`))
      }
      const done = () => {
        clearTimeout(timer)
        child.off('exit', onExit)
        const k = m.waiters.indexOf(w)
        if (k >= 0) m.waiters.splice(k, 1)
      }
      if (!alive(child)) return onExit()
      child.on('exit', onExit)
      m.waiters.push(w)
    })
  }

  /** The member's hosted partition `partition` of `stream` (its own status), if any. */
  async hosted(m: Member, stream: string, partition = 0, ms = 5000): Promise<HostedStatus | undefined> {
    const reply = this.line(m, /^status (.*)$/, ms)
    m.child!.stdin!.write('status\n')
    const s = JSON.parse((await reply)[1]!) as { streams: Array<{ name: string; hosted: HostedStatus[] }> }
    return s.streams.find((x) => x.name === stream)?.hosted.find((h) => h.partition === partition)
  }

  /** The local replica's raft status line (diagnostics; raw JSON). */
  async raft(m: Member, stream: string, partition = 0, ms = 5000): Promise<string> {
    const reply = this.line(m, /^raft (.*)$/, ms)
    m.child!.stdin!.write(`raft ${stream} ${partition}\n`)
    return (await reply)[1]!
  }

  /**
   * Has the member read its own replica of the partition from its local log and returns
   * the records (offset, msgId, length, digest) and the offsets it could not read.
   */
  async dump(m: Member, stream: string, partition = 0, ms = 30_000): Promise<ReplicaDump> {
    const file = join(this.o.root, `dump-${m.name}.tsv`)
    const reply = this.line(m, /^dumped (-?\d+) (\d+) (\d+)(.*)$/, ms)
    m.child!.stdin!.write(`dump ${stream} ${partition} ${file}\n`)
    const [, count, errors, next, why] = await reply
    if (Number(count) < 0)
      return { records: [], unreadable: [], nextOffset: 0, error: why?.trim() || 'no replica hosted' }
    const dump: ReplicaDump = { records: [], unreadable: [], nextOffset: Number(next) }
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      if (line === '') continue
      const f = line.split('\t')
      if (f[0] === 'E') dump.unreadable.push(Number(f[1]))
      else dump.records.push({ offset: Number(f[0]), msgId: f[1]!, length: Number(f[2]), digest: f[3]! })
    }
    if (Number(errors) !== dump.unreadable.length) dump.error = `dump reported ${errors} errors`
    return dump
  }

  /** kill -9, and wait until the process is gone. */
  async kill9(m: Member): Promise<void> {
    const c = m.child
    if (c === undefined || !alive(c)) return
    const gone = exited(c)
    c.kill('SIGKILL')
    await gone
    m.paused = false
  }

  /** Power loss: kill -9, then every file cut back to what was durable. */
  async powerLoss(m: Member): Promise<PowerLossReport> {
    if (!this.o.shim) throw new Error('power loss needs the shim')
    await this.kill9(m)
    return applyPowerLoss(m.journal, m.dir)
  }

  /** SIGSTOP. */
  pause(m: Member): void {
    m.child?.kill('SIGSTOP')
    m.paused = true
  }

  /** SIGCONT. */
  resume(m: Member): void {
    m.child?.kill('SIGCONT')
    m.paused = false
  }

  /** Cuts `m` off the network (needs namespaces). */
  async cut(m: Member): Promise<void> {
    await this.o.netns!.cut(m.index)
  }

  /** Reconnects `m`. */
  async heal(m: Member): Promise<void> {
    await this.o.netns!.heal(m.index)
  }

  /** Is `m`'s current process running (and not paused)? */
  up(m: Member): boolean {
    return m.child !== undefined && alive(m.child) && !m.paused
  }

  /** Resumes paused members, reconnects all, restarts dead ones. */
  async healAll(): Promise<void> {
    for (const m of this.members) if (m.paused) this.resume(m)
    await this.o.netns?.healAll()
    for (const m of this.members) if (m.child === undefined || !alive(m.child)) await this.launch(m)
  }

  /** Kills every member process (SIGCONT first for paused ones) and waits for them. */
  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        if (m.paused) this.resume(m)
        await this.kill9(m)
      }),
    )
  }
}

/** One member's read of its own replica. */
export interface ReplicaDump {
  records: Array<{ offset: number; msgId: string; length: number; digest: string }>
  unreadable: number[]
  nextOffset: number
  error?: string
}

function alive(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null
}

function exited(c: ChildProcess): Promise<void> {
  if (!alive(c)) return Promise.resolve()
  return new Promise((resolve) => c.once('exit', () => resolve()))
}

function clip(line: string): string {
  return line.length > 300 ? `${line.slice(0, 300)}…` : line
}
