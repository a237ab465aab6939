/**
 * How `plexus node` serves tunnels and broadcasts from the command line.
 *
 * - `--tunnel-exec CMD`: each incoming tunnel runs `/bin/sh -c CMD` in its own process
 *   group, with the tunnel's bytes on its stdin and its stdout sent back into the tunnel.
 *   When stdout ends our side of the tunnel is half-closed; when the caller closes its
 *   side, stdin gets EOF. Both directions keep flow control: the tunnel is read only as
 *   fast as the command's stdin drains, and stdout only as fast as the tunnel grants
 *   credit. If the tunnel dies (caller or its node gone), the process group is killed.
 *   The command's stderr goes to the node's stderr.
 * - `--tunnel-echo`: every message received is sent back; closing follows the caller's.
 * - `--on-broadcast CMD`: each broadcast runs `/bin/sh -c CMD` with the data on stdin;
 *   its stdout and stderr are the node's (so `--on-broadcast cat` prints broadcasts).
 *   It counts against the cluster's `broadcasts` limit until the command exits.
 *
 * Commands get `PLEXUS_CLUSTER` and `PLEXUS_FROM` (the caller's peer id) in their
 * environment. Every command still running when the node process exits is killed.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import type { BroadcastContext, Tunnel } from '../types.js'
import { gone, pumpIntoTunnel, writeChunk } from './io.js'

/** Largest message the command's stdout is cut into (bytes). */
const TUNNEL_MESSAGE = 64 * 1024

/** Commands started by these handlers and not yet exited. */
const running = new Set<ChildProcess>()
let exitHookInstalled = false

/** Kills the process group of `child` (falls back to the child alone). */
function killGroup(child: ChildProcess): void {
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

/** Starts `/bin/sh -c command` in a new process group, tracked until it exits. */
function start(
  command: string,
  env: { cluster: string; from: string },
  stdout: 'pipe' | 'inherit',
): ChildProcess {
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once('exit', () => {
      for (const c of running) killGroup(c)
    })
  }
  const child = spawn('/bin/sh', ['-c', command], {
    stdio: ['pipe', stdout, 'inherit'],
    detached: true,
    env: { ...process.env, PLEXUS_CLUSTER: env.cluster, PLEXUS_FROM: env.from },
  })
  running.add(child)
  child.once('close', () => running.delete(child))
  child.once('error', () => running.delete(child))
  child.stdin?.on('error', () => {}) // the command may exit without reading its input
  return child
}

/** Resolves when `child` has exited and its stdio closed (or it could not start). */
function closed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('close', () => resolve())
    child.once('error', () => resolve())
  })
}

/** The `--tunnel-exec CMD` tunnel handler (see the module comment). */
export function tunnelExecHandler(
  command: string,
): (tunnel: Tunnel, ctx: { from: string; cluster: string }) => Promise<void> {
  return async (tunnel, ctx) => {
    const child = start(command, ctx, 'pipe')
    let dead = false
    const die = () => {
      dead = true
      killGroup(child)
    }
    const stdin = child.stdin!
    const intoCommand = (async () => {
      for await (const msg of tunnel) {
        if (!gone(stdin)) await writeChunk(stdin, msg)
      }
      stdin.end()
    })()
    const outOfCommand = pumpIntoTunnel(child.stdout!, tunnel, TUNNEL_MESSAGE)
    let inputDone = false
    const input = intoCommand.then(
      () => {
        inputDone = true
      },
      () => die(),
    )
    // Either direction failing means the tunnel died: nothing more can be delivered.
    await Promise.all([outOfCommand.catch(die), closed(child)])
    if (!dead && !tunnel.closed) await tunnel.close().catch(() => {})
    // The command is gone: if the caller keeps sending, end the tunnel instead of
    // swallowing its data (which would also hold a --max-tunnels slot).
    await Promise.race([input, new Promise((r) => setTimeout(r, 1000).unref())])
    if (!dead && !inputDone) tunnel.abort('the tunnel command exited before reading all its input')
  }
}

/** The `--tunnel-echo` tunnel handler: sends every message back, then closes likewise. */
export function tunnelEchoHandler(): (tunnel: Tunnel) => Promise<void> {
  return async (tunnel) => {
    try {
      for await (const msg of tunnel) await tunnel.send(msg)
      await tunnel.close()
    } catch {
      // the tunnel died; nothing left to do
    }
  }
}

/** The `--on-broadcast CMD` handler: runs CMD with the broadcast on stdin (see above). */
export function broadcastExecHandler(
  command: string,
): (data: Uint8Array, ctx: BroadcastContext) => Promise<void> {
  return (data, ctx) => {
    const child = start(command, ctx, 'inherit')
    child.stdin?.end(data)
    return closed(child)
  }
}
