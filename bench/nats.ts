/**
 * NATS side of the request benchmark, measured in the same run as Plexus on the same
 * topology: a real `nats-server` (Debian package) on a free loopback port, three responder
 * processes in one queue group (echo of the 1 KB payload), and the requester in the bench
 * process, using the `nats` npm client.
 *
 * This file is also the responder program: `node dist/bench/nats.js responder PORT ID`.
 */
import { pathToFileURL } from 'node:url'
import { connect, type NatsConnection } from 'nats'
import { idleCpu } from './cpu.js'
import {
  concurrent,
  findExecutable,
  freePort,
  type LatencySummary,
  sequential,
  spawnTracked,
  stopChild,
  waitForLine,
} from './util.js'

/** Subject served by all three responders (queue group `bench`). */
const SUBJECT_ALL = 'bench.echo'
/** Subject served by responder 0 only (the 1-member figures). */
const SUBJECT_ONE = 'bench.echo1'
const QUEUE = 'bench'

/** What the request part measures, for one system. */
export interface RequestFigures {
  latency1: LatencySummary
  latency3: LatencySummary
  throughput1: number
  throughput3: number
  /** Latency seen by callers while 100 requests are in flight against 3 members. */
  loaded3: LatencySummary
  /**
   * CPU µs per request summed over every process involved (requester, responders/members,
   * nats-server), per phase: sequential and 100 in flight, 1 and 3 responders.
   */
  cpu: { seq1: number; seq3: number; conc1: number; conc3: number }
  /** CPU ms per second of the same processes with no request in flight (`idleCpu`). */
  idleCpuMsPerS: number
}

/**
 * One system's figures from its four phases, after measuring idle CPU of `pids` last (once
 * connections, JIT and collections have settled).
 */
export async function requestFigures(
  log: (s: string) => void,
  label: string,
  pids: Array<number | undefined>,
  idleMs: number,
  [latency1, latency3]: Array<LatencySummary & { cpuUs: number }>,
  [t1, t3]: Array<{ rate: number; latency: LatencySummary; cpuUs: number }>,
): Promise<RequestFigures> {
  log(`${label}: idle CPU`)
  const idleCpuMsPerS = await idleCpu(pids, idleMs)
  return {
    latency1: latency1!,
    latency3: latency3!,
    throughput1: t1!.rate,
    throughput3: t3!.rate,
    loaded3: t3!.latency,
    cpu: { seq1: latency1!.cpuUs, seq3: latency3!.cpuUs, conc1: t1!.cpuUs, conc3: t3!.cpuUs },
    idleCpuMsPerS,
  }
}

/** Measurement sizes; `quick` shortens every phase. */
export function phases(quick: boolean) {
  return quick
    ? {
        seq: { warmup: 200, count: 1500, ms: 1500 },
        conc: { inFlight: 100, warmupMs: 500, ms: 1500 },
        idleMs: 3000,
      }
    : {
        seq: { warmup: 500, count: 5000, ms: 3500 },
        conc: { inFlight: 100, warmupMs: 1000, ms: 4000 },
        idleMs: 5000,
      }
}

export const NATS_INSTALL_HINT = 'nats-server not found; install it with: sudo apt-get install nats-server'

/** Path of nats-server, or undefined when it is not installed. */
export function findNatsServer(): string | undefined {
  return findExecutable('nats-server', [
    '/usr/bin/nats-server',
    '/usr/sbin/nats-server',
    '/usr/local/bin/nats-server',
  ])
}

/** Runs the NATS request benchmark; returns undefined (after printing why) without nats-server. */
export async function runNatsRequestBench(opts: {
  payload: Uint8Array
  quick?: boolean
  log?: (s: string) => void
}): Promise<RequestFigures | undefined> {
  const log = opts.log ?? (() => {})
  const bin = findNatsServer()
  if (!bin) {
    console.log(NATS_INSTALL_HINT)
    return undefined
  }
  const port = await freePort()
  const server = spawnTracked(bin, ['-a', '127.0.0.1', '-p', String(port)])
  const responders: ReturnType<typeof spawnTracked>[] = []
  let nc: NatsConnection | undefined
  try {
    await waitForLine(server, /Server is ready/, 10_000, 'stderr')
    log(`nats-server ${bin} on 127.0.0.1:${port}`)
    const script = new URL(import.meta.url).pathname
    for (let i = 0; i < 3; i++)
      responders.push(spawnTracked(process.execPath, [script, 'responder', String(port), String(i)]))
    await Promise.all(responders.map((r) => waitForLine(r, /^READY/, 10_000)))
    nc = await connect({ servers: `127.0.0.1:${port}`, noEcho: true })
    const conn = nc
    const one = () => conn.request(SUBJECT_ONE, opts.payload, { timeout: 10_000 })
    const all = () => conn.request(SUBJECT_ALL, opts.payload, { timeout: 10_000 })
    // Check the echo once.
    const reply = await one()
    if (reply.data.length !== opts.payload.length) throw new Error('NATS echo returned a wrong payload')
    const p = phases(opts.quick === true)
    const pids = [process.pid, server.pid, ...responders.map((r) => r.pid)]
    log('NATS: sequential latency, 1 responder')
    const latency1 = await sequential(one, { ...p.seq, pids })
    log('NATS: sequential latency, 3 responders')
    const latency3 = await sequential(all, { ...p.seq, pids })
    log('NATS: throughput, 100 in flight, 1 responder')
    const t1 = await concurrent(one, { ...p.conc, pids })
    log('NATS: throughput, 100 in flight, 3 responders')
    const t3 = await concurrent(all, { ...p.conc, pids })
    return await requestFigures(log, 'NATS', pids, p.idleMs, [latency1, latency3], [t1, t3])
  } finally {
    await nc?.close().catch(() => {})
    await Promise.all(responders.map((r) => stopChild(r, 2000)))
    await stopChild(server, 3000)
  }
}

/** Responder process: echoes every request of the queue group until told to stop. */
async function responderMain(port: number, id: number): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${port}` })
  const echo = (_err: unknown, msg: { data: Uint8Array; respond(d: Uint8Array): boolean }) => {
    msg.respond(msg.data)
  }
  nc.subscribe(SUBJECT_ALL, { queue: QUEUE, callback: echo })
  if (id === 0) nc.subscribe(SUBJECT_ONE, { queue: QUEUE, callback: echo })
  await nc.flush()
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await nc.close().catch(() => {})
    process.exit(0)
  }
  process.on('SIGTERM', () => void stop())
  process.on('SIGINT', () => void stop())
  // The parent holds our stdin: when it dies, stdin ends and we leave too.
  process.stdin.on('end', () => void stop())
  process.stdin.resume()
  console.log(`READY ${id}`)
}

if (
  process.argv[1] &&
  import.meta.url === pathToFileURL(process.argv[1]).href &&
  process.argv[2] === 'responder'
) {
  responderMain(Number(process.argv[3]), Number(process.argv[4])).catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
