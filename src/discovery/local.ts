/**
 * Same-host discovery with no configuration and no multicast: every node writes a small
 * record (pid and loopback addresses) into a directory shared by all nodes of its network
 * on this machine (`<tmpdir>/plexus-local/<network>-<key tag>/<peer id>.json`), watches the
 * directory and rescans it every second. Records of dead processes are removed. The
 * record is written atomically (temp file + rename) and removed on stop.
 */
import { type FSWatcher, watch } from 'node:fs'
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LOCAL_DISCOVERY } from '../constants.js'
import { sha256 } from '../util/keys.js'

/** One node found on this machine. */
export interface LocalPeer {
  id: string
  addrs: string[]
}

/** Options of local discovery. */
export interface LocalDiscoveryOptions {
  network: string
  networkKey?: Uint8Array
  self: string
  /** Current dialable addresses of this node. */
  addresses(): string[]
  /** Called for every live peer found that is not this node (repeatedly; dedupe there). */
  found(peer: LocalPeer): void
  /** Root directory (tests); default `<tmpdir>/plexus-local`. */
  root?: string
}

/** The directory nodes of one network share on this machine. */
export function localDirectory(network: string, networkKey?: Uint8Array, root?: string): string {
  const tag = networkKey ? Buffer.from(sha256(networkKey)).toString('hex').slice(0, 12) : 'open'
  return join(root ?? join(tmpdir(), 'plexus-local'), `${network}-${tag}`)
}

/** Same-host discovery service (start/stop). */
export class LocalDiscovery {
  private readonly dir: string
  private readonly file: string
  private watcher: FSWatcher | undefined
  private timer: NodeJS.Timeout | undefined
  private scanning = false
  private rescan = false
  private stopped = false

  constructor(private readonly opts: LocalDiscoveryOptions) {
    this.dir = localDirectory(opts.network, opts.networkKey, opts.root)
    this.file = join(this.dir, `${opts.self}.json`)
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o777 })
    await this.publish()
    try {
      this.watcher = watch(this.dir, () => void this.scan())
      this.watcher.on('error', () => {})
      this.watcher.unref()
    } catch {
      // Polling alone still works.
    }
    this.timer = setInterval(() => void this.scan(), LOCAL_DISCOVERY.scanInterval)
    this.timer.unref()
    await this.scan()
  }

  /** Rewrites our record (after our addresses changed). */
  async publish(): Promise<void> {
    const tmp = `${this.file}.tmp`
    await writeFile(
      tmp,
      JSON.stringify({ id: this.opts.self, pid: process.pid, addrs: this.opts.addresses() }),
    )
    await rename(tmp, this.file)
  }

  private async scan(): Promise<void> {
    if (this.stopped) return
    if (this.scanning) {
      this.rescan = true
      return
    }
    this.scanning = true
    try {
      do {
        this.rescan = false
        let names: string[]
        try {
          names = await readdir(this.dir)
        } catch {
          return
        }
        for (const name of names) {
          if (!name.endsWith('.json') || name === `${this.opts.self}.json`) continue
          const path = join(this.dir, name)
          let rec: { id?: unknown; pid?: unknown; addrs?: unknown }
          try {
            rec = JSON.parse(await readFile(path, 'utf8'))
          } catch {
            continue
          }
          if (typeof rec.id !== 'string' || typeof rec.pid !== 'number' || !Array.isArray(rec.addrs)) continue
          if (!alive(rec.pid)) {
            await unlink(path).catch(() => {})
            continue
          }
          if (this.stopped) return
          this.opts.found({ id: rec.id, addrs: rec.addrs.filter((a): a is string => typeof a === 'string') })
        }
      } while (this.rescan && !this.stopped)
    } finally {
      this.scanning = false
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.watcher?.close()
    if (this.timer) clearInterval(this.timer)
    await unlink(this.file).catch(() => {})
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
