/**
 * Shared pieces of the hostile-peer suite (test/hostile/): a victim member serving requests,
 * a good peer measuring how fast it is served, and memory measurements. Rates are compared
 * with a baseline measured in the same test (the suite runs on a loaded machine), never with
 * an absolute number.
 */
import { afterEach, expect } from 'vitest'
import { generateKey, type PlexusNode } from '../../src/index.js'
import { writeFrame } from '../../src/link/frames.js'
import { BinaryWriter } from '../../src/util/binary.js'
import { HostilePeer } from '../helpers/hostile-peer.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'

const hostiles: HostilePeer[] = []
afterEach(async () => {
  for (const h of hostiles.splice(0)) await h.stop().catch(() => {})
})

/** Share of the baseline rate the good peer must keep while a hostile peer attacks. */
export const KEEP_RATE = 0.1

/** A status counter of `n` (0 when absent). */
export const counter = (n: PlexusNode, name: string): number => n.status().counters[name] ?? 0

/** A victim member of `db` and a good peer (a member too) measuring the victim's service. */
export interface Victim {
  victim: PlexusNode
  good: PlexusNode
  /** The cluster key of `db`. */
  key: string
  /** Broadcasts the victim's handler received, by sender. */
  broadcasts: Map<string, number>
}

/**
 * Starts a victim (echoes requests, counts broadcasts by sender; with `dataDir`, it hosts
 * durable streams) and a good peer on a fresh network, both members of `db`, each seeing the
 * other.
 */
export async function victimAndGood(opts: { dataDir?: string } = {}): Promise<Victim> {
  const network = uniqueNetwork()
  const victim = await startNode({ network, dataDir: opts.dataDir })
  const good = await startNode({ network })
  const key = generateKey()
  const broadcasts = new Map<string, number>()
  await victim!.join('db', {
    key,
    onRequest: (data) => data,
    onBroadcast: (_data, ctx) => void broadcasts.set(ctx.from, (broadcasts.get(ctx.from) ?? 0) + 1),
  })
  await good!.join('db', { key })
  await waitForMembers(victim!, 'db', 2)
  await waitForMembers(good!, 'db', 2)
  return { victim: victim!, good: good!, key, broadcasts }
}

/** Starts a keyless hostile peer linked to `target` (stopped after the test). */
export async function hostile(target: PlexusNode): Promise<HostilePeer> {
  const h = await HostilePeer.attach(target)
  hostiles.push(h)
  return h
}

/**
 * Requests per second `from` gets answered by `cluster` over `ms` (8 in flight), as a
 * measure of the service a good peer receives.
 */
export async function requestRate(from: PlexusNode, cluster: string, ms = 600): Promise<number> {
  const end = Date.now() + ms
  let done = 0
  const data = new Uint8Array(64)
  const worker = async () => {
    while (Date.now() < end) {
      await from.request(cluster, data, { timeout: 5000 })
      done++
    }
  }
  const start = Date.now()
  await Promise.all(Array.from({ length: 8 }, worker))
  return (done * 1000) / (Date.now() - start)
}

/**
 * Asserts the good peer is served at `KEEP_RATE` of `baseline` or better: the best of up to
 * three windows (one pause of a loaded machine, or of another node starting in this process,
 * must not fail it; an attack that holds the victim down fails all three).
 */
export async function expectServed(
  attack: string,
  baseline: number,
  from: PlexusNode,
  cluster = 'db',
): Promise<void> {
  let best = 0
  for (let i = 0; i < 3 && best < baseline * KEEP_RATE; i++)
    best = Math.max(best, await requestRate(from, cluster))
  expectRate(attack, baseline, best)
}

/** Asserts `during` is at least `KEEP_RATE` of `baseline`, naming the attack. */
export function expectRate(attack: string, baseline: number, during: number): void {
  expect(
    during,
    `${attack}: ${during.toFixed(0)}/s against a baseline of ${baseline.toFixed(0)}/s`,
  ).toBeGreaterThanOrEqual(baseline * KEEP_RATE)
}

/** Heap used after a full collection when the process exposes `gc` (else as it is). */
export function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc) {
    gc()
    gc()
  }
  return process.memoryUsage().heapUsed
}

/**
 * Waits until the heap is back within `slackBytes` of `baseline` (generous: the test process
 * holds every node, and garbage not yet collected counts when `gc` is not exposed).
 */
export async function expectHeapBack(baseline: number, slackBytes = 64 * 1024 * 1024): Promise<void> {
  await waitFor(
    () => heapUsed() <= baseline + slackBytes,
    20_000,
    `heap back within ${slackBytes} bytes of baseline`,
  )
}

/** `n` frames of `type` in one buffer (`body(w, i)` writes the i-th body), built once per attack. */
export function batchOf(type: number, body: (w: BinaryWriter, i: number) => void, n = 64): Uint8Array {
  const w = new BinaryWriter(4096)
  for (let i = 0; i < n; i++) writeFrame(w, type, (b) => body(b, i))
  return w.finish().slice()
}

/**
 * Runs `measure` while `h` floods the victim with `batch` (sent again and again, as fast as
 * its link stream takes it); returns what `measure` returned and the batches sent.
 */
export async function whileFlooding<T>(
  h: HostilePeer,
  batch: Uint8Array,
  measure: () => Promise<T>,
): Promise<{ result: T; sent: number }> {
  let stop = false
  let sent = 0
  const loop = (async () => {
    while (!stop && h.open) {
      h.raw(batch)
      sent++
      await h.drained().catch(() => {})
      await new Promise((r) => setImmediate(r))
    }
  })()
  try {
    return { result: await measure(), sent }
  } finally {
    stop = true
    await loop
  }
}

/**
 * What a victim holds for remote peers, from its status (all 0 with no peer attached but
 * the good one idle): internal calls served, request handlers, tunnels, interest patterns,
 * broadcast handlers and queued forwards.
 */
export function held(n: PlexusNode): Record<string, number> {
  const c = n.status().counters
  const out: Record<string, number> = {}
  for (const k of [
    'rpc.serving',
    'requests.serving',
    'tunnels.open',
    'pubsub.peerPatterns',
    'broadcasts.handlersForPeers',
    'broadcasts.forwardBytes',
  ])
    out[k] = c[k] ?? 0
  return out
}
