/**
 * Network namespaces for partitions: one namespace holding a bridge, one namespace per
 * member joined to the bridge by a veth pair, and a veth pair from the runner's own
 * namespace to the bridge (the publisher's node listens there). Cutting a member sets its
 * bridge-side veth down: nothing goes in or out of its namespace until it is set up again.
 *
 *   runner ns: pxh<pid> 10.213.X.100 ── vh ┐
 *   pxf<pid>-m0: eth0 10.213.X.1 ──── vm0 ├ br0 (namespace pxf<pid>-br)
 *   pxf<pid>-m1: eth0 10.213.X.2 ──── vm1 │
 *   pxf<pid>-m2: eth0 10.213.X.3 ──── vm2 ┘
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args)).stdout
}

/** Why namespaces cannot be used here (undefined: they can). */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'network namespaces need root (run as root, or pass --no-netns)'
  return undefined
}

/** Deletes namespaces and host veths left by earlier runners that are no longer alive. */
export async function removeStale(): Promise<string[]> {
  const removed: string[] = []
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
  for (const line of (await ip('netns', 'list').catch(() => '')).split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = name.match(/^pxf(\d+)-/)
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      await ip('netns', 'del', name).catch(() => {})
      removed.push(name)
    }
  }
  for (const line of (await ip('-o', 'link', 'show').catch(() => '')).split('\n')) {
    const m = line.match(/^\d+: (pxh(\d+))[@:]/)
    if (m && Number(m[2]) !== process.pid && !alive(Number(m[2]))) {
      await ip('link', 'del', m[1]!).catch(() => {})
      removed.push(m[1]!)
    }
  }
  return removed
}

/** A bridge namespace with `n` member namespaces and a link from the runner's namespace. */
export class Netns {
  private readonly made: string[] = []
  private hostLink: string | undefined
  private destroyed = false

  private constructor(
    readonly prefix: string,
    readonly subnet: string,
    readonly size: number,
    private readonly withHost: boolean,
  ) {}

  /**
   * Creates the namespaces (deleting what was made if a step fails). `hostLink: false` leaves
   * out the runner's veth, so nothing sent on the bridge (multicast included) reaches the
   * runner's namespace.
   */
  static async create(n: number, opts: { hostLink?: boolean } = {}): Promise<Netns> {
    const prefix = `pxf${process.pid}`
    const subnet = `10.213.${process.pid % 250}`
    const ns = new Netns(prefix, subnet, n, opts.hostLink !== false)
    try {
      await ns.build()
    } catch (err) {
      await ns.destroy()
      throw err
    }
    return ns
  }

  /** Name of the bridge namespace. */
  get bridge(): string {
    return `${this.prefix}-br`
  }

  /** Name of member `i`'s namespace. */
  member(i: number): string {
    return `${this.prefix}-m${i}`
  }

  /** Member `i`'s address. */
  memberAddr(i: number): string {
    return `${this.subnet}.${i + 1}`
  }

  /** The runner's address on the bridge. */
  get hostAddr(): string {
    return `${this.subnet}.100`
  }

  /** Command prefix running a program inside member `i`'s namespace. */
  exec(i: number): string[] {
    return ['ip', 'netns', 'exec', this.member(i)]
  }

  private async build(): Promise<void> {
    const br = this.bridge
    await ip('netns', 'add', br)
    this.made.push(br)
    await ip('-n', br, 'link', 'set', 'lo', 'up')
    await ip('-n', br, 'link', 'add', 'br0', 'type', 'bridge')
    await ip('-n', br, 'link', 'set', 'br0', 'up')
    for (let i = 0; i < this.size; i++) {
      const m = this.member(i)
      await ip('netns', 'add', m)
      this.made.push(m)
      await ip('-n', m, 'link', 'set', 'lo', 'up')
      await ip('-n', br, 'link', 'add', `vm${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', m)
      await ip('-n', br, 'link', 'set', `vm${i}`, 'master', 'br0', 'up')
      await ip('-n', m, 'addr', 'add', `${this.memberAddr(i)}/24`, 'dev', 'eth0')
      await ip('-n', m, 'link', 'set', 'eth0', 'up')
    }
    if (!this.withHost) return
    const host = `pxh${process.pid}`
    await ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'vh', 'netns', br)
    this.hostLink = host
    await ip('-n', br, 'link', 'set', 'vh', 'master', 'br0', 'up')
    await ip('addr', 'add', `${this.hostAddr}/24`, 'dev', host)
    await ip('link', 'set', host, 'up')
  }

  /** Cuts member `i` off from everyone (its bridge port down). */
  async cut(i: number): Promise<void> {
    await ip('-n', this.bridge, 'link', 'set', `vm${i}`, 'down')
  }

  /** Reconnects member `i`. */
  async heal(i: number): Promise<void> {
    await ip('-n', this.bridge, 'link', 'set', `vm${i}`, 'up')
  }

  /** Reconnects every member. */
  async healAll(): Promise<void> {
    for (let i = 0; i < this.size; i++) await this.heal(i).catch(() => {})
  }

  /** Deletes every namespace and link this object made (idempotent, never throws). */
  async destroy(): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    if (this.hostLink) await ip('link', 'del', this.hostLink).catch(() => {})
    for (const name of this.made.reverse()) await ip('netns', 'del', name).catch(() => {})
  }

  /** Synchronous best-effort cleanup for process exit handlers. */
  destroySync(): void {
    if (this.destroyed) return
    this.destroyed = true
    if (this.hostLink)
      try {
        execFileSync('ip', ['link', 'del', this.hostLink])
      } catch {}
    for (const name of this.made.reverse())
      try {
        execFileSync('ip', ['netns', 'del', name])
      } catch {}
  }
}

/**
 * Subnets joined by a router: one router namespace holding a bridge per subnet (the
 * subnet's gateway, `.254`) with IP forwarding on, and host namespaces each on one subnet
 * with a default route through it. Unicast crosses subnets through the router; multicast
 * and broadcast stay inside their subnet (nothing routes them). No link to the runner's
 * namespace. Names start with `prefix` plus the runner's pid (a test passes its own prefix).
 *
 *   <prefix><pid>-r: br0 10.N.0.254/24, br1 10.N.1.254/24, ... (ip_forward=1)
 *   <prefix><pid>-s0h0: eth0 10.N.0.1 ─ veth into br0; <prefix><pid>-s1h0: eth0 10.N.1.1 ...
 */
export class RoutedNetns {
  private readonly made: string[] = []
  private destroyed = false

  private constructor(
    readonly prefix: string,
    /** Second octet of every address (10.N.subnet.host). */
    readonly octet: number,
    /** Hosts per subnet. */
    readonly hosts: readonly number[],
  ) {}

  /**
   * Creates the router and `hosts[k]` host namespaces on subnet k (deleting what was made if
   * a step fails). `prefix` names everything (`pxd` gives `pxd<pid>-r`, `pxd<pid>-s0h0`).
   */
  static async create(prefix: string, hosts: number[]): Promise<RoutedNetns> {
    const ns = new RoutedNetns(`${prefix}${process.pid}`, 64 + (process.pid % 150), hosts)
    try {
      await ns.build()
    } catch (err) {
      await ns.destroy()
      throw err
    }
    return ns
  }

  /** Name of the router namespace. */
  get router(): string {
    return `${this.prefix}-r`
  }

  /** Name of host `i` of subnet `k`. */
  host(k: number, i: number): string {
    return `${this.prefix}-s${k}h${i}`
  }

  /** Address of host `i` of subnet `k`. */
  addr(k: number, i: number): string {
    return `10.${this.octet}.${k}.${i + 1}`
  }

  /** Command prefix running a program in host `i` of subnet `k`. */
  exec(k: number, i: number): string[] {
    return ['ip', 'netns', 'exec', this.host(k, i)]
  }

  private async build(): Promise<void> {
    const r = this.router
    await ip('netns', 'add', r)
    this.made.push(r)
    await ip('-n', r, 'link', 'set', 'lo', 'up')
    await run('ip', ['netns', 'exec', r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    for (let k = 0; k < this.hosts.length; k++) {
      await ip('-n', r, 'link', 'add', `br${k}`, 'type', 'bridge')
      await ip('-n', r, 'addr', 'add', `10.${this.octet}.${k}.254/24`, 'dev', `br${k}`)
      await ip('-n', r, 'link', 'set', `br${k}`, 'up')
      for (let i = 0; i < this.hosts[k]!; i++) {
        const h = this.host(k, i)
        await ip('netns', 'add', h)
        this.made.push(h)
        await ip('-n', h, 'link', 'set', 'lo', 'up')
        await ip('-n', r, 'link', 'add', `v${k}h${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h)
        await ip('-n', r, 'link', 'set', `v${k}h${i}`, 'master', `br${k}`, 'up')
        await ip('-n', h, 'addr', 'add', `${this.addr(k, i)}/24`, 'dev', 'eth0')
        await ip('-n', h, 'link', 'set', 'eth0', 'up')
        await ip('-n', h, 'route', 'add', 'default', 'via', `10.${this.octet}.${k}.254`)
      }
    }
  }

  /** Deletes every namespace this object made (idempotent, never throws). */
  async destroy(): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    for (const name of this.made.reverse()) await ip('netns', 'del', name).catch(() => {})
  }

  /** Synchronous best-effort cleanup for process exit handlers. */
  destroySync(): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const name of this.made.reverse())
      try {
        execFileSync('ip', ['netns', 'del', name])
      } catch {}
  }
}
