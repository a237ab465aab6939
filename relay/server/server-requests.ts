/**
 * The caller side of requests on one relay connection: REQUEST (answered REPLY, bytes only),
 * REQUEST_HEADERS (answered REPLY_HEADERS: headers both ways) and REQUEST_MANY (one
 * MANY_REPLY per member, then OK). Each runs under the connection's in-flight bounds
 * (`track`), is cancelled by CANCEL, and gets exactly one final answer (or ERROR).
 */
import { errorMessage, errorName } from '../../src/errors.js'
import type { PlexusNode } from '../../src/types.js'
import type { BinaryWriter } from '../../src/util/binary.js'
import type { FramedConnection } from '../wire/connection.js'
import { decodeRequest, type Frame, Op } from '../wire/protocol.js'
import {
  decodeRequestHeaders,
  decodeRequestMany,
  encodeManyReply,
  encodeReplyHeaders,
  ManyKind,
} from '../wire/protocol-requests.js'

/** What request handling needs from the connection that owns it. */
export interface RelayRequestHost {
  readonly node: PlexusNode
  readonly conn: FramedConnection
  readonly maxMessageSize: number
  /** Runs one call under the connection's in-flight bounds and answers it once (`RelayClientConnection.track`). */
  track<T>(
    id: number,
    bytes: number,
    run: (signal: AbortSignal) => Promise<T>,
    answer: (v: T) => [opcode: number, body?: (w: BinaryWriter) => void],
  ): void
}

/** A timeout field of 0 means the node's default. */
const timeoutOf = (ms: number) => (ms === 0 ? undefined : ms)

/** Handles REQUEST, REQUEST_HEADERS and REQUEST_MANY; false for any other opcode. */
export function onRequestFrame(host: RelayRequestHost, f: Frame): boolean {
  const { node, maxMessageSize } = host
  switch (f.opcode) {
    case Op.Request: {
      const req = decodeRequest(f.body, maxMessageSize)
      host.track(
        f.id,
        req.data.length,
        (signal) => node.request(req.cluster, req.data, { timeout: timeoutOf(req.timeoutMs), signal }),
        (reply) => [Op.Reply, (w) => w.bytes(reply)],
      )
      return true
    }
    case Op.RequestHeaders: {
      const req = decodeRequestHeaders(f.body, maxMessageSize)
      host.track(
        f.id,
        req.data.length,
        (signal) =>
          node.request(req.cluster, req.data, {
            timeout: timeoutOf(req.timeoutMs),
            signal,
            headers: req.headers,
          }),
        (reply) => [Op.ReplyHeaders, (w) => encodeReplyHeaders(w, { headers: reply.headers, data: reply })],
      )
      return true
    }
    case Op.RequestMany: {
      const req = decodeRequestMany(f.body, maxMessageSize)
      const id = f.id
      host.track(
        id,
        req.data.length,
        async (signal) => {
          const replies = node.requestMany(req.cluster, req.data, {
            maxReplies: req.maxReplies === 0 ? undefined : req.maxReplies,
            timeout: timeoutOf(req.timeoutMs),
            headers: req.headers,
            signal,
          })
          for await (const r of replies) {
            host.conn.send(Op.ManyReply, id, (w) =>
              encodeManyReply(
                w,
                r.error
                  ? {
                      from: r.from,
                      kind: ManyKind.Failed,
                      name: errorName(r.error),
                      message: errorMessage(r.error),
                    }
                  : { from: r.from, kind: ManyKind.Reply, headers: r.headers, data: r.data },
              ),
            )
          }
        },
        () => [Op.Ok],
      )
      return true
    }
    default:
      return false
  }
}
