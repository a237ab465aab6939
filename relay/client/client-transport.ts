/**
 * Opens the client's byte transport for a target: TCP (`node:net`, swapped out of the
 * browser bundle) or a WebSocket URL; a failure to connect reaches `fail` as a
 * `RelayUnavailableError` that says what to check.
 */
import { RELAY_ENV } from '../../src/constants.js'
import type { ByteTransport } from '../wire/transport.js'
import { connectTcp } from '../wire/transport-tcp.js'
import { connectWebSocket, type WebSocketConstructor } from '../wire/transport-ws.js'
import { RelayUnavailableError } from './client-api.js'
import type { RelayTarget } from './client-options.js'

/** Connects to `target` (named `where` in messages); `fail` gets the connection error, once. */
export function openClientTransport(
  target: RelayTarget,
  where: string,
  WebSocketImpl: WebSocketConstructor | undefined,
  fail: (err: RelayUnavailableError) => void,
): ByteTransport {
  if (target.url !== undefined) {
    return connectWebSocket(
      target.url,
      (err) =>
        fail(
          new RelayUnavailableError(
            `no Plexus relay accepted a WebSocket at ${where} (${err.message}): is a node running with --relay-ws-port, and does it allow this page's origin (--relay-ws-origin)?`,
            { cause: err },
          ),
        ),
      WebSocketImpl,
    )
  }
  return connectTcp(target.host, target.port, (err) => {
    const refused = err.code === 'ECONNREFUSED'
    fail(
      new RelayUnavailableError(
        refused
          ? `no Plexus node's relay is listening at ${where} (connection refused); start one with "plexus node", or name one with --relay HOST:PORT or ${RELAY_ENV}`
          : `cannot reach the relay at ${where}: ${err.message}`,
        { cause: err },
      ),
    )
  })
}
