/**
 * Inbound connection bounds per remote host, through libp2p's connection gater (libp2p v3
 * bounds only the total of connections and of pending upgrades, and the rate of new
 * connections per host): one host may hold at most `CONNECTIONS.perHost` inbound
 * connections at once, of which at most `CONNECTIONS.pendingPerHost` still upgrading
 * (noise and yamux not yet negotiated), so a hostile process opening connections, or
 * leaving them half-open, takes only its share and other hosts still connect.
 * A refused connection is closed by libp2p before any handshake and counted
 * (`connections.refused.host`, `connections.refused.pending`). Same-host nodes all come
 * from the loopback address: the per-host bound is far above what one machine runs.
 */
import type { ConnectionGater, MultiaddrConnection } from '@libp2p/interface'

/** Bounds of one guard (defaults: `CONNECTIONS` in constants.ts). */
export interface ConnectionGuardLimits {
  perHost: number
  pendingPerHost: number
}

/** The remote host of a connection (its IP address), or '' when it has none. */
function hostOf(maConn: MultiaddrConnection): string {
  for (const c of maConn.remoteAddr.getComponents())
    if (c.name === 'ip4' || c.name === 'ip6') return c.value ?? ''
  return ''
}

/** Counts inbound connections per host and refuses those over the bounds (module doc). */
export class ConnectionGuard {
  private readonly open = new Map<string, number>()
  private readonly pending = new Map<string, number>()
  /** Connections admitted and not yet upgraded. */
  private readonly upgrading = new WeakSet<MultiaddrConnection>()

  /** Give this to libp2p as its `connectionGater`. */
  readonly gater: ConnectionGater = {
    denyInboundConnection: (maConn) => !this.admit(maConn),
    denyInboundUpgradedConnection: (_peer, maConn) => {
      this.upgraded(maConn)
      return false
    },
  }

  constructor(
    private readonly limits: ConnectionGuardLimits,
    private readonly count: (counter: string) => void,
  ) {}

  /** Inbound connections open now from `host` (tests). */
  openFrom(host: string): number {
    return this.open.get(host) ?? 0
  }

  /** Hosts with an inbound connection open now. */
  get hosts(): number {
    return this.open.size
  }

  private admit(maConn: MultiaddrConnection): boolean {
    const host = hostOf(maConn)
    if (host === '') return true
    const open = this.open.get(host) ?? 0
    if (open >= this.limits.perHost) {
      this.count('connections.refused.host')
      return false
    }
    const pending = this.pending.get(host) ?? 0
    if (pending >= this.limits.pendingPerHost) {
      this.count('connections.refused.pending')
      return false
    }
    this.open.set(host, open + 1)
    this.pending.set(host, pending + 1)
    this.upgrading.add(maConn)
    maConn.addEventListener(
      'close',
      () => {
        this.upgraded(maConn)
        dec(this.open, host)
      },
      { once: true },
    )
    return true
  }

  private upgraded(maConn: MultiaddrConnection): void {
    if (!this.upgrading.delete(maConn)) return
    dec(this.pending, hostOf(maConn))
  }
}

function dec(m: Map<string, number>, key: string): void {
  const n = (m.get(key) ?? 1) - 1
  if (n > 0) m.set(key, n)
  else m.delete(key)
}
