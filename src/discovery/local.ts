/**
 * Same-host discovery with no configuration and no multicast: every node writes a small
 * record (pid, process start time and loopback addresses) into a directory shared by all
 * nodes of its network on this machine
 * (`<tmpdir>/plexus-local/<network>-<key tag>/<peer id>.json`), watches the directory and
 * rescans it every second (a rescan rereads only the records the watcher saw change, and
 * every record after 10 s). The record is written atomically (temp file + rename) and
 * removed on stop, with the directory when it is left empty. Records of dead processes (or
 * of a pid now running another process) are removed by every scan, and at each start and
 * stop `sweepLocalRoot` cleans the directories of every network: dead records, temp files
 * left by a crash, and directories left empty. Off with `discovery: { local: false }`
 * (`plexus node --no-local`).
 */
import { type FSWatcher, watch } from 'node:fs'
import { mkdir, readdir, readFile, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LOCAL_DISCOVERY } from '../constants.js'
import { pidAlive, startTimeOf } from '../util/data-dir-lock.js'
import { sha256 } from '../util/keys.js'

/**
 * A record read by a scan is reused by later scans for this long (ms) unless the directory
 * watcher reports a change of its file: a rescan then costs one `readdir` and a liveness
 * check of each known pid, not a file read per node.
 */
const RECORD_REUSE_MS = 10_000
/** A temp record file this old (ms) was left by a process that died while writing it. */
const TMP_STALE_AFTER = 10_000
/** Most network directories one sweep looks into (the rest wait for a later one). */
const SWEEP_MAX_DIRS = 1000

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

/** The directory holding every network's directory on this machine. */
export function localRoot(root?: string): string {
  return root ?? join(tmpdir(), 'plexus-local')
}

/** The directory nodes of one network share on this machine. */
export function localDirectory(network: string, networkKey?: Uint8Array, root?: string): string {
  const tag = networkKey ? Buffer.from(sha256(networkKey)).toString('hex').slice(0, 12) : 'open'
  return join(localRoot(root), `${network}-${tag}`)
}

/** A node record as stored. */
interface LocalRecord {
  id: string
  pid: number
  started?: string | null
  addrs: unknown[]
}

function parseRecord(text: string): LocalRecord | undefined {
  try {
    const rec = JSON.parse(text) as Partial<LocalRecord>
    if (typeof rec.id !== 'string' || typeof rec.pid !== 'number' || !Array.isArray(rec.addrs))
      return undefined
    return rec as LocalRecord
  } catch {
    return undefined
  }
}

/**
 * True when the record's process is gone: its pid is not running, or (on Linux, where the
 * start time is cheap to read) that pid now belongs to a process that started later.
 */
function dead(rec: LocalRecord): boolean {
  if (!pidAlive(rec.pid)) return true
  if (process.platform !== 'linux' || typeof rec.started !== 'string') return false
  const now = startTimeOf(rec.pid)
  return now !== null && now !== rec.started
}

/**
 * Cleans `<tmpdir>/plexus-local` (or `root`): in each network directory, records of dead
 * processes and temp files older than 10 s are removed, then the directory itself when it
 * is empty. Never throws; a directory a node is starting in at that moment may be removed,
 * which that node's `publish` survives by creating it again.
 */
export async function sweepLocalRoot(root?: string): Promise<void> {
  const base = localRoot(root)
  let dirs: string[]
  try {
    dirs = await readdir(base)
  } catch {
    return
  }
  for (const name of dirs.slice(0, SWEEP_MAX_DIRS)) {
    const dir = join(base, name)
    let files: string[]
    try {
      files = await readdir(dir)
    } catch {
      continue // not a directory, or gone
    }
    for (const f of files) {
      const path = join(dir, f)
      try {
        if (f.endsWith('.json')) {
          const rec = parseRecord(await readFile(path, 'utf8'))
          if (rec && dead(rec)) await unlink(path)
        } else if (f.endsWith('.tmp') && Date.now() - (await stat(path)).mtimeMs > TMP_STALE_AFTER) {
          await unlink(path)
        }
      } catch {
        // gone meanwhile, or not ours to remove
      }
    }
    await rmdir(dir).catch(() => {}) // only when empty
  }
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
  /** Records read by earlier scans, by file name, and when (see `RECORD_REUSE_MS`). */
  private readonly known = new Map<string, { rec: LocalRecord; at: number }>()

  constructor(private readonly opts: LocalDiscoveryOptions) {
    this.dir = localDirectory(opts.network, opts.networkKey, opts.root)
    this.file = join(this.dir, `${opts.self}.json`)
  }

  async start(): Promise<void> {
    await sweepLocalRoot(this.opts.root)
    await this.publish()
    try {
      this.watcher = watch(this.dir, (_event, name) => {
        if (typeof name === 'string') this.known.delete(name)
        else this.known.clear()
        void this.scan()
      })
      this.watcher.on('error', () => {})
      this.watcher.unref()
    } catch {
      // Polling alone still works.
    }
    this.timer = setInterval(() => void this.scan(), LOCAL_DISCOVERY.scanInterval)
    this.timer.unref()
    await this.scan()
  }

  /**
   * Writes our record (again after our addresses changed). The directory is created when
   * missing, also when another node's sweep removed it empty just before we wrote.
   */
  async publish(): Promise<void> {
    const tmp = `${this.file}.tmp`
    const rec = JSON.stringify({
      id: this.opts.self,
      pid: process.pid,
      started: startTimeOf(process.pid),
      addrs: this.opts.addresses(),
    })
    for (let attempt = 0; ; attempt++) {
      try {
        await mkdir(this.dir, { recursive: true, mode: 0o777 })
        await writeFile(tmp, rec)
        await rename(tmp, this.file)
        if (this.stopped) await unlink(this.file).catch(() => {}) // stop ran meanwhile
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw err
      }
    }
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
          names = []
        }
        // Our record (or the directory) removed by someone else: write it again.
        if (!names.includes(`${this.opts.self}.json`) && !this.stopped) await this.publish().catch(() => {})
        const listed = new Set(names)
        for (const name of this.known.keys()) if (!listed.has(name)) this.known.delete(name)
        for (const name of names) {
          if (!name.endsWith('.json') || name === `${this.opts.self}.json`) continue
          const path = join(this.dir, name)
          const now = Date.now()
          let k = this.known.get(name)
          const reread = k === undefined || now - k.at >= RECORD_REUSE_MS
          if (reread) {
            let rec: LocalRecord | undefined
            try {
              rec = parseRecord(await readFile(path, 'utf8'))
            } catch {
              this.known.delete(name)
              continue
            }
            if (rec === undefined) {
              this.known.delete(name)
              continue
            }
            k = { rec, at: now }
            this.known.set(name, k)
          }
          const rec = k!.rec
          // A reused pid is caught by the start time, checked when the record is (re)read;
          // a process gone is caught at once.
          if (reread ? dead(rec) : !pidAlive(rec.pid)) {
            this.known.delete(name)
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

  /** Stops watching, removes our record, and cleans dead records and empty directories. */
  async stop(): Promise<void> {
    this.stopped = true
    this.watcher?.close()
    if (this.timer) clearInterval(this.timer)
    await unlink(this.file).catch(() => {})
    await sweepLocalRoot(this.opts.root)
  }
}
