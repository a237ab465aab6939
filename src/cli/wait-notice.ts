/**
 * What a `consume` that shows nothing is waiting for, told on stderr when stderr is a
 * terminal: after `WAIT_NOTICE_MS` with no message printed, the stream's info is asked and
 * one line says whether partitions wait for a leader (`plexus: waiting for a leader of
 * stream orders partition 1 (Ctrl-C to stop)`) or the stream has nothing new
 * (`plexus: waiting for messages on stream orders (Ctrl-C to stop)`). A line is printed
 * again only when the reason changes. Pipes and files never get these lines.
 */
import type { StreamInfo } from '../types.js'
import { errorNameOf, oneLine } from './output.js'

/** Quiet time before the first notice, and between checks (ms). */
export const WAIT_NOTICE_MS = 3000
/** Deadline of the `info` call behind a notice (ms). */
const INFO_TIMEOUT = 2000

/** Options of `watchWaiting`. */
export interface WaitNoticeOptions {
  stream: string
  /** The one partition read (`--partition`), or undefined for all. */
  partition?: number
  /** The stream's info (through the relay). */
  info(timeout: number): Promise<StreamInfo>
  /** Writes one line (without its newline) to stderr. */
  write(line: string): void
  /** Quiet time (default `WAIT_NOTICE_MS`). */
  everyMs?: number
}

/** A running watch: call `seen()` for each message shown, `stop()` at the end. */
export interface WaitNotice {
  seen(): void
  stop(): void
}

/** The reason a consumer shows nothing, from the stream's info (or why it could not be had). */
export function waitReason(stream: string, partition: number | undefined, info: StreamInfo | Error): string {
  if (info instanceof Error) {
    return `waiting for stream ${stream} (its info failed: ${errorNameOf(info)}: ${oneLine(info.message)})`
  }
  const leaderless = info.partitions
    .filter((p) => (partition === undefined || p.partition === partition) && p.leader === null)
    .map((p) => p.partition)
  if (leaderless.length > 0) {
    return `waiting for a leader of stream ${stream} partition${leaderless.length > 1 ? 's' : ''} ${leaderless.join(', ')}`
  }
  return `waiting for messages on stream ${stream}`
}

/** Starts watching (a no-op watch when `enabled` is false, e.g. stderr is not a terminal). */
export function watchWaiting(opts: WaitNoticeOptions, enabled: boolean): WaitNotice {
  if (!enabled) return { seen() {}, stop() {} }
  let quiet = true
  let checking = false
  let stopped = false
  let last = ''
  const timer = setInterval(() => {
    if (!quiet) {
      quiet = true
      return
    }
    if (checking) return
    checking = true
    opts.info(INFO_TIMEOUT).then(
      (info) => report(waitReason(opts.stream, opts.partition, info)),
      (err: unknown) =>
        report(waitReason(opts.stream, opts.partition, err instanceof Error ? err : new Error(String(err)))),
    )
  }, opts.everyMs ?? WAIT_NOTICE_MS)
  timer.unref()
  const report = (reason: string) => {
    checking = false
    // A message shown while the info call ran: nothing to say this time.
    if (stopped || !quiet || reason === last) return
    last = reason
    opts.write(`plexus: ${reason} (Ctrl-C to stop)`)
  }
  return {
    seen() {
      quiet = false
    },
    stop() {
      stopped = true
      clearInterval(timer)
    },
  }
}
