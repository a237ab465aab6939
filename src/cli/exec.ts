/**
 * The `--exec CMD` request handler: each request runs `/bin/sh -c CMD` with the request bytes
 * on stdin; its stdout is the reply. A non-zero exit fails the request with the command's
 * stderr (trimmed, bounded) as the `RemoteError` message. When the caller gives up or the
 * node stops (`ctx.signal` aborts), the command's whole process group is killed. A request's
 * headers reach the command as `PLEXUS_HEADERS`, a JSON object (unset without headers).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { DEFAULT_MAX_MESSAGE_SIZE } from '../constants.js'
import { AbortedError, RemoteError } from '../errors.js'
import type { RequestContext } from '../types.js'
import { oneLine } from './output.js'

/** Bytes of the command's stderr kept for the error message. */
const STDERR_LIMIT = 4096
/** Characters of stderr put into the error message. */
const MESSAGE_LIMIT = 500

/** Options of `execHandler`. */
export interface ExecOptions {
  /** Largest reply (stdout bytes) accepted; a command printing more fails. Default 1 MiB. */
  maxOutput?: number
}

/** Builds a request handler that runs `command` through `/bin/sh -c` for each request. */
export function execHandler(
  command: string,
  options: ExecOptions = {},
): (data: Uint8Array, ctx: RequestContext) => Promise<Uint8Array> {
  const maxOutput = options.maxOutput ?? DEFAULT_MAX_MESSAGE_SIZE
  return (data, ctx) =>
    new Promise<Uint8Array>((resolve, reject) => {
      if (ctx.signal.aborted) {
        reject(new AbortedError('request abandoned before the command started'))
        return
      }
      let child: ChildProcess
      try {
        // detached: the command gets its own process group, so killing it reaches its children.
        const env = ctx.headers && { ...process.env, PLEXUS_HEADERS: JSON.stringify(ctx.headers) }
        child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env })
      } catch (err) {
        reject(new RemoteError(`--exec: cannot start /bin/sh: ${(err as Error).message}`))
        return
      }
      const out: Buffer[] = []
      let outBytes = 0
      const err: Buffer[] = []
      let errBytes = 0
      let tooLarge = false
      let settled = false
      const kill = () => killGroup(child)
      const onAbort = () => kill()
      ctx.signal.addEventListener('abort', onAbort, { once: true })
      const finish = (fn: () => void) => {
        if (settled) return
        settled = true
        ctx.signal.removeEventListener('abort', onAbort)
        fn()
      }
      child.stdin?.on('error', () => {}) // the command may exit without reading its input
      child.stdin?.end(data)
      child.stdout?.on('data', (chunk: Buffer) => {
        outBytes += chunk.length
        if (outBytes > maxOutput) {
          tooLarge = true
          kill()
          return
        }
        out.push(chunk)
      })
      child.stderr?.on('data', (chunk: Buffer) => {
        if (errBytes < STDERR_LIMIT) err.push(chunk.subarray(0, STDERR_LIMIT - errBytes))
        errBytes += chunk.length
      })
      child.on('error', (e) => {
        finish(() => reject(new RemoteError(`--exec: cannot run /bin/sh: ${e.message}`)))
      })
      child.on('close', (code, signal) => {
        finish(() => {
          if (ctx.signal.aborted) reject(new AbortedError('request abandoned by its caller; command killed'))
          else if (tooLarge) reject(new RemoteError(`command output exceeds ${maxOutput} bytes`))
          else if (code === 0) resolve(new Uint8Array(Buffer.concat(out)))
          else {
            let msg = oneLine(Buffer.concat(err).toString('utf8'))
            if (msg.length > MESSAGE_LIMIT) msg = `${msg.slice(0, MESSAGE_LIMIT)}…`
            if (msg === '')
              msg = code !== null ? `command exited with code ${code}` : `command killed by ${signal}`
            reject(new RemoteError(msg))
          }
        })
      })
    })
}

/** Kills the child's process group (falls back to the child alone). */
function killGroup(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return
  try {
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
  } catch {
    try {
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
}
