/**
 * Browser stand-in for `relay/wire/transport-tcp.ts` in the browser bundle: there is no TCP in a
 * browser, so connecting without a WebSocket `url` says how to use one.
 */
import { InvalidArgumentError } from '../../src/errors.js'
import type { ByteTransport } from '../wire/transport.js'

/** Always throws: browsers reach the relay over WebSocket only. */
export function connectTcp(host: string, port: number, _onError: (err: Error) => void): ByteTransport {
  throw new InvalidArgumentError(
    `cannot open TCP to ${host}:${port} here: in a browser pass connectRelay({ url: 'ws://127.0.0.1:PORT/' }), the node's --relay-ws-port`,
  )
}
