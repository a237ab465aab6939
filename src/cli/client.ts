/**
 * Attaching client commands to the local node through its relay endpoint. The address comes
 * from `PLEXUS_RELAY` (host:port) when set, else 127.0.0.1:55555 (`connectRelay` defaults).
 * Ctrl-C closes the connection and exits 130.
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
  const onSigint = () => {
    ac.abort()
    const done = () => process.exit(EXIT.interrupted)
    if (client) client.close().then(done, done)
    else done()
  }
  process.once('SIGINT', onSigint)
  process.once('SIGTERM', onSigint)
  try {
    client = await connectRelay({ signal: ac.signal, timeout: CONNECT_TIMEOUT })
    return await fn(client, ac.signal)
  } finally {
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigint)
    await client?.close().catch(() => {})
  }
}
