/**
 * Start-up shared by the benchmark's node processes (`member.ts`, `overlay-node.ts`): real
 * libp2p nodes on TCP loopback, found through the same-host registry (no mDNS), with the
 * CLI's `gcTuning`; and the process's life: it stops its nodes cleanly on SIGTERM/SIGINT or
 * when stdin ends (the parent died), so `--cpu-prof` profiles get written. Lines on stdin
 * are handed to `onLine`.
 */
import { createInterface } from 'node:readline'
import { createNode, type PlexusNode } from '../src/index.js'

/** Starts one bench node on `network` (`maxLinks` as given, else the default). */
export function startBenchNode(network: string, maxLinks?: number): Promise<PlexusNode> {
  return createNode({
    // The process runs what `plexus node` runs (gcTuning is the CLI's default, not the library's).
    gcTuning: true,
    network,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    discovery: { local: true, mdns: false },
    ...(maxLinks === undefined ? {} : { maxLinks }),
  })
}

/** Stops `nodes` and exits on SIGTERM/SIGINT or the end of stdin; stdin lines go to `onLine`. */
export function runUntilStopped(nodes: PlexusNode[], onLine?: (line: string) => void): void {
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    const force = setTimeout(() => process.exit(0), 3000)
    force.unref()
    await Promise.all(nodes.map((n) => n.stop().catch(() => {})))
    process.exit(0)
  }
  process.on('SIGTERM', () => void stop())
  process.on('SIGINT', () => void stop())
  const input = createInterface({ input: process.stdin })
  input.on('line', (line) => onLine?.(line.trim()))
  input.on('close', () => void stop())
}

/** Runs `main`, printing its error and exiting 1 when it fails. */
export function benchMain(main: () => Promise<void>): void {
  main().catch((err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  })
}
