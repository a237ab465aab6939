/**
 * Attaching client commands to the local node through its relay endpoint. The address comes
 * from the command's `--relay HOST:PORT` flag, else `PLEXUS_RELAY` (host:port) when set,
 * else 127.0.0.1:55555 (`connectRelay` defaults).
 * Ctrl-C closes the connection and exits 130 (whatever was in flight then is not reported).
 */
import type { Command } from 'commander'
import type { RelayClient } from '../../relay/client/client.js'
import { parseRelayAddress } from '../../relay/client/client-api.js'
import { EXIT, UsageError } from './output.js'

/** The commands that attach to a node's relay (each takes `--relay HOST:PORT`). */
export const CLIENT_COMMANDS = [
  'request',
  'broadcast',
  'publish',
  'subscribe',
  'tunnel',
  'consume',
  'status',
  'stream create',
  'stream info',
  'stream delete',
  'stream list',
  'stream get',
  'stream last',
  'kv put',
  'kv get',
  'kv del',
  'kv keys',
  'kv history',
  'kv watch',
] as const

/** The relay address given with `--relay` to the running command (wins over PLEXUS_RELAY). */
let relayFlag: string | undefined

/** Parses `--relay HOST:PORT`. */
export function parseRelayFlag(value: string): string {
  try {
    parseRelayAddress(value, '--relay')
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  return value.trim()
}

/**
 * Adds `--relay HOST:PORT` to every client command of `program` and a hook that hands the
 * value of the command being run to `withRelay`.
 */
export function addRelayFlag(program: Command): void {
  for (const path of CLIENT_COMMANDS) {
    let cmd: Command | undefined = program
    for (const name of path.split(' ')) cmd = cmd?.commands.find((c) => c.name() === name)
    cmd?.option(
      '--relay <host:port>',
      'relay of the node to attach to (default: PLEXUS_RELAY, else 127.0.0.1:55555)',
      parseRelayFlag,
    )
  }
  program.hook('preAction', (_program, action) => {
    const value = action.opts().relay
    relayFlag = typeof value === 'string' ? value : undefined
  })
}

/** Time to reach the relay and finish its handshake (ms). */
const CONNECT_TIMEOUT = 5000

/**
 * Connects to the local node's relay, runs `fn` with the client, and always closes the
 * client afterwards. Loaded lazily so commands that need no relay start fast.
 */
export async function withRelay<T>(fn: (client: RelayClient, signal: AbortSignal) => Promise<T>): Promise<T> {
  const { connectRelay } = await import('../../relay/client/client.js')
  const ac = new AbortController()
  let client: RelayClient | undefined
  let interrupted = false
  const onSigint = () => {
    interrupted = true
    ac.abort()
    const done = () => process.exit(EXIT.interrupted)
    if (client) client.close().then(done, done)
    else done()
  }
  process.once('SIGINT', onSigint)
  process.once('SIGTERM', onSigint)
  try {
    client = await connectRelay({ signal: ac.signal, timeout: CONNECT_TIMEOUT, address: relayFlag })
    const result = await fn(client, ac.signal)
    if (interrupted) await forever()
    return result
  } catch (err) {
    // Closing the client on Ctrl-C fails what was in flight; the signal handler exits 130.
    if (interrupted) await forever()
    throw err
  } finally {
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigint)
    await client?.close().catch(() => {})
  }
}

/** A promise that never settles: the signal handler ends the process instead. */
function forever(): Promise<never> {
  return new Promise<never>(() => {})
}
