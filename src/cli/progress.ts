/**
 * Progress of long CLI work on stderr (cli-progress), drawn only when stderr is a terminal:
 * pipes, files and tests see nothing. One line, redrawn a few times a second:
 * `consume orders [██████░░░░] 6,000/10,000 messages · 4,210/s · 0:01`. Counting costs one
 * addition per item; the bar reads the count on its own timer.
 */
import cliProgress from 'cli-progress'

/** Redraws per second. */
const PROGRESS_FPS = 5
/** Width of the bar itself (characters). */
const BAR_WIDTH = 24

/** A progress line; every method is a no-op when it is not drawn. */
export interface Progress {
  /** Whether anything is drawn (stderr is a terminal). */
  readonly shown: boolean
  /** Starts the line with `total` items (0: total unknown, no bar). */
  start(total: number, detail?: string): void
  /** Counts `n` items done (default 1). */
  increment(n?: number): void
  /** Sets the count of items done. */
  set(value: number): void
  /** Sets the text after the counts (the part running, a round...). */
  detail(text: string): void
  /** Items done so far. */
  readonly value: number
  /** Runs `write` (output on stdout) with the line cleared first, so the two do not mix. */
  around(write: () => void): void
  /** Draws the final state, ends the line, and stops the timer. */
  stop(): void
}

/** Options of `createProgress`. */
export interface ProgressOptions {
  /** Text before the bar (`consume orders`). */
  label: string
  /** Name of the items counted (`messages`, `parts`). */
  unit: string
  /** Show the rate (items per second) since start. @default false */
  rate?: boolean
  /** Where to draw. @default process.stderr */
  stream?: NodeJS.WriteStream
  /** Draw at all. @default stream.isTTY === true */
  enabled?: boolean
}

const number = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

function clock(ms: number): string {
  const s = Math.floor(ms / 1000)
  const h = Math.floor(s / 3600)
  const mm = String(Math.floor((s % 3600) / 60))
  const ss = String(s % 60).padStart(2, '0')
  return h > 0 ? `${h}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`
}

const NOOP: Progress = {
  shown: false,
  value: 0,
  start() {},
  increment() {},
  set() {},
  detail() {},
  around(write) {
    write()
  },
  stop() {},
}

/** A progress line on stderr, or a no-op one when stderr is not a terminal. */
export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr
  if (!(opts.enabled ?? stream.isTTY === true)) {
    // Still counts, so callers may read `value`; draws nothing.
    let count = 0
    return {
      ...NOOP,
      get value() {
        return count
      },
      increment(n = 1) {
        count += n
      },
      set(v) {
        count = v
      },
    }
  }
  let count = 0
  let total = 0
  let text = ''
  let timer: NodeJS.Timeout | undefined
  const bar = new cliProgress.SingleBar({
    stream,
    fps: PROGRESS_FPS,
    barsize: BAR_WIDTH,
    forceRedraw: true,
    hideCursor: false,
    gracefulExit: true,
    format: (options, params) => {
      const parts = [opts.label]
      if (total > 0) {
        const done = Math.min(BAR_WIDTH, Math.round(params.progress * BAR_WIDTH))
        parts.push(
          `${(options.barCompleteChar ?? '#').repeat(done)}${(options.barIncompleteChar ?? '-').repeat(BAR_WIDTH - done)}`,
          `${number.format(params.value)}/${number.format(total)} ${opts.unit}`,
        )
      } else {
        parts.push(`${number.format(params.value)} ${opts.unit}`)
      }
      const elapsed = (params.stopTime ?? Date.now()) - params.startTime
      let line = parts.join(' ')
      if (opts.rate) line += ` · ${number.format(elapsed > 0 ? (params.value * 1000) / elapsed : 0)}/s`
      line += ` · ${clock(elapsed)}`
      if (text) line += ` · ${text}`
      const width = Math.max(20, (params.maxWidth ?? 80) - 1)
      return line.length > width ? `${line.slice(0, width - 1)}…` : line
    },
  })
  const push = () => bar.update(count)
  return {
    shown: true,
    get value() {
      return count
    },
    start(t, detail) {
      total = t
      if (detail !== undefined) text = detail
      bar.start(t > 0 ? t : 1, count)
      timer ??= setInterval(push, 1000 / PROGRESS_FPS)
      timer.unref()
    },
    increment(n = 1) {
      count += n
    },
    set(v) {
      count = v
    },
    detail(t) {
      text = t
    },
    around(write) {
      if (!bar.isActive) return write()
      stream.write('\r\x1b[2K')
      write()
      push()
    },
    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
      if (!bar.isActive) return
      push()
      bar.stop()
    },
  }
}
