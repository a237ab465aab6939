/**
 * The `--join CLUSTER` groups of `plexus node`: the flags after a `--join` (key file,
 * handlers, limits) belong to it. Built from the command line's option events in order, or
 * from a config file's `join` list (config.ts), and checked the same way.
 */
import { checkCluster } from './args.js'
import { UsageError } from './output.js'

/** The join-related flags (without `--`), in the order `plexus node --help` lists them. */
export const JOIN_FLAGS = [
  'join',
  'cluster-key-file',
  'exec',
  'echo',
  'max-requests',
  'tunnel-exec',
  'tunnel-echo',
  'max-tunnels',
  'on-broadcast',
] as const

/** One `--join` group as given on the command line. */
export interface JoinGroup {
  cluster: string
  keyFile?: string
  exec?: string
  echo?: boolean
  maxRequests?: number
  tunnelExec?: string
  tunnelEcho?: boolean
  maxTunnels?: number
  onBroadcast?: string
}

/** A join-related flag, as `JoinGroups.add` takes it. */
export type JoinFlag = (typeof JOIN_FLAGS)[number]

/**
 * Groups the join-related flags in command-line order. Feed it every option event; read
 * `groups` after parsing and `check()` to get the first problem (or undefined).
 */
export class JoinGroups {
  readonly groups: JoinGroup[] = []
  private problem: string | undefined

  /** Records one occurrence of a join-related flag. */
  add(flag: JoinFlag, value?: string | number): void {
    if (flag === 'join') {
      this.groups.push({ cluster: String(value) })
      return
    }
    const g = this.groups.at(-1)
    if (!g) {
      this.problem ??= `--${flag} must follow a --join CLUSTER`
      return
    }
    const dup = (f: string) => {
      this.problem ??= `--join ${g.cluster}: ${f} given twice`
    }
    switch (flag) {
      case 'cluster-key-file':
        if (g.keyFile !== undefined) dup('--cluster-key-file')
        g.keyFile = String(value)
        break
      case 'exec':
        if (g.exec !== undefined) dup('--exec')
        g.exec = String(value)
        break
      case 'echo':
        g.echo = true
        break
      case 'max-requests':
        if (g.maxRequests !== undefined) dup('--max-requests')
        g.maxRequests = Number(value)
        break
      case 'tunnel-exec':
        if (g.tunnelExec !== undefined) dup('--tunnel-exec')
        g.tunnelExec = String(value)
        break
      case 'tunnel-echo':
        g.tunnelEcho = true
        break
      case 'max-tunnels':
        if (g.maxTunnels !== undefined) dup('--max-tunnels')
        g.maxTunnels = Number(value)
        break
      case 'on-broadcast':
        if (g.onBroadcast !== undefined) dup('--on-broadcast')
        g.onBroadcast = String(value)
        break
    }
  }

  /** Validates every group; throws `UsageError` naming the first problem. */
  check(): JoinGroup[] {
    if (this.problem) throw new UsageError(this.problem)
    const seen = new Set<string>()
    for (const g of this.groups) {
      checkCluster(g.cluster, '--join')
      if (seen.has(g.cluster)) throw new UsageError(`--join ${g.cluster} given twice`)
      seen.add(g.cluster)
      if (g.keyFile === undefined) {
        throw new UsageError(
          `--join ${g.cluster} needs --cluster-key-file F (create a key with: plexus keygen > F)`,
        )
      }
      if (g.exec !== undefined && g.echo)
        throw new UsageError(`--join ${g.cluster}: give --exec or --echo, not both`)
      if (g.exec !== undefined && g.exec.trim() === '')
        throw new UsageError(`--join ${g.cluster}: --exec needs a command`)
      if (g.tunnelExec !== undefined && g.tunnelEcho)
        throw new UsageError(`--join ${g.cluster}: give --tunnel-exec or --tunnel-echo, not both`)
      if (g.tunnelExec !== undefined && g.tunnelExec.trim() === '')
        throw new UsageError(`--join ${g.cluster}: --tunnel-exec needs a command`)
      if (g.maxTunnels !== undefined && g.tunnelExec === undefined && !g.tunnelEcho)
        throw new UsageError(`--join ${g.cluster}: --max-tunnels needs --tunnel-exec or --tunnel-echo`)
      if (g.onBroadcast !== undefined && g.onBroadcast.trim() === '')
        throw new UsageError(`--join ${g.cluster}: --on-broadcast needs a command`)
    }
    return this.groups
  }
}
