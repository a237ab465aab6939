/**
 * Attaching client commands to the local node through its relay endpoint. The address comes
 * from `PLEXUS_RELAY` (host:port) when set, else 127.0.0.1:55555 (`connectRelay` defaults).
 * Ctrl-C closes the connection and exits 130 (whatever was in flight then is not reported).
 */
import type { RelayClient } from '../../relay/client.js'
import { EXIT } from './output.js'

/** Time to reach the relay and finish its handshake (ms). */
const CONNECT_TIMEOUT = 5000

/**
 * Connects to the local node's relay, runs `fn` with the client, and always closes the
 * client afterwards. Loaded lazily so commands that need no relay start fast.
 */
export async function withRelay<T>(fn: (client: RelayClient, signal: AbortSignal) => Promise<T>): Promise<T> {
  const { connectRelay } = await import('../../relay/client.js')
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
    client = await connectRelay({ signal: ac.signal, timeout: CONNECT_TIMEOUT })
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
