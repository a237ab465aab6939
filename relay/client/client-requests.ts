/**
 * The caller side of requests in the relay client: `request` (REQUEST_HEADERS, so reply
 * headers come back; plain REQUEST to a relay that predates it, found by its
 * "unsupported opcode" answer) and `requestMany` (REQUEST_MANY: MANY_REPLY frames, then OK).
 */
import { AbortedError, errorFromWire, InvalidArgumentError } from '../../src/errors.js'
import type { ManyReply, RequestReply } from '../../src/types.js'
import type { BinaryWriter } from '../../src/util/binary.js'
import { ReceivedReply } from '../../src/util/received.js'
import {
  checkClusterName,
  checkOptions,
  checkPositiveInt,
  checkSignal,
  checkTimeout,
  toPayload,
} from '../../src/util/validate.js'
import { decodeBytesBody, decodeError, encodeRequest, type Frame, Op } from '../wire/protocol.js'
import {
  decodeManyReply,
  decodeReplyHeaders,
  encodeRequestHeaders,
  encodeRequestMany,
  ManyKind,
} from '../wire/protocol-requests.js'
import { checkHeaders, type RelayRequestManyOptions, type RelayRequestOptions } from './client-api.js'

/** What `ClientRequests` needs from the relay client that owns it. */
export interface ClientRequestHost {
  /** The relay's current maximum message size. */
  maxMessageSize(): number
  /** Sends one call frame and resolves with the answering frame (`onId` learns its id first). */
  call(
    opcode: number,
    body?: (w: BinaryWriter) => void,
    signal?: AbortSignal,
    onId?: (id: number) => void,
  ): Promise<Frame>
  /** Throws the error carried by an ERROR frame; otherwise checks the opcode. */
  expect(f: Frame, opcode: number): void
}

/** A timeout option as the wire field (0: the node's default). */
const timeoutField = (t: number | undefined) =>
  t === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(t)))

/** Requests made through one relay connection. */
export class ClientRequests {
  /** True once the relay answered REQUEST_HEADERS with "unsupported opcode" (an older relay). */
  private legacy = false
  /** Running `requestMany` calls by call id: where their MANY_REPLY frames go. */
  private readonly many = new Map<number, (f: Frame) => void>()

  constructor(private readonly host: ClientRequestHost) {}

  async request(
    cluster: string,
    data: Uint8Array | string,
    opts: RelayRequestOptions = {},
  ): Promise<RequestReply> {
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.host.maxMessageSize())
    const o = checkOptions<RelayRequestOptions>(opts, 'options')
    const timeoutMs = timeoutField(checkTimeout(o.timeout, 'options.timeout'))
    checkSignal(o.signal)
    const headers = checkHeaders(o.headers)
    if (o.signal?.aborted) throw new AbortedError('request aborted before it was sent')
    const max = this.host.maxMessageSize()
    if (!this.legacy) {
      const f = await this.host.call(
        Op.RequestHeaders,
        (w) => encodeRequestHeaders(w, { cluster, timeoutMs, headers, data: payload }),
        o.signal,
      )
      if (f.opcode === Op.ReplyHeaders) {
        const r = decodeReplyHeaders(f.body, max, 'REPLY_HEADERS')
        const reply: RequestReply = r.data.slice()
        if (r.headers) reply.headers = r.headers
        return reply
      }
      if (!this.olderRelay(f)) this.host.expect(f, Op.ReplyHeaders)
      this.legacy = true
    }
    if (headers) throw new InvalidArgumentError('options.headers: the relay predates request headers')
    const f = await this.host.call(
      Op.Request,
      (w) => encodeRequest(w, { cluster, timeoutMs, data: payload }),
      o.signal,
    )
    this.host.expect(f, Op.Reply)
    return decodeBytesBody(f.body, 'REPLY', max).slice()
  }

  /** True when `f` is an older relay's answer to an opcode it does not know. */
  private olderRelay(f: Frame): boolean {
    if (f.opcode !== Op.Error) return false
    const e = decodeError(f.body)
    if (e.name === 'InvalidArgumentError' && e.message.startsWith('unsupported opcode')) return true
    throw errorFromWire(e.name, e.message)
  }

  requestMany(
    cluster: string,
    data: Uint8Array | string,
    opts: RelayRequestManyOptions = {},
  ): AsyncIterable<ManyReply> {
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.host.maxMessageSize())
    const o = checkOptions<RelayRequestManyOptions>(opts, 'options')
    const body = {
      cluster,
      timeoutMs: timeoutField(checkTimeout(o.timeout, 'options.timeout')),
      maxReplies: checkPositiveInt(o.maxReplies, 'options.maxReplies', 0xffffffff) ?? 0,
      headers: checkHeaders(o.headers),
      data: payload,
    }
    checkSignal(o.signal)
    return this.runMany(body, o.signal)
  }

  /** The iteration of one REQUEST_MANY; ending it early sends CANCEL. */
  private async *runMany(
    body: Parameters<typeof encodeRequestMany>[1],
    signal: AbortSignal | undefined,
  ): AsyncGenerator<ManyReply, void, undefined> {
    if (signal?.aborted) throw new AbortedError('requestMany aborted before it was sent')
    const ac = new AbortController()
    const onAbort = () => ac.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    const queue: ManyReply[] = []
    let wake: (() => void) | undefined
    let end: { err?: Error } | undefined
    let id = 0
    const max = this.host.maxMessageSize()
    this.host
      .call(
        Op.RequestMany,
        (w) => encodeRequestMany(w, body),
        ac.signal,
        (i) => {
          id = i
          this.many.set(i, (f) => {
            const m = decodeManyReply(f.body, max)
            queue.push(
              m.kind === ManyKind.Reply
                ? new ReceivedReply(m.from, m.data.slice(), m.headers)
                : new ReceivedReply(m.from, undefined, undefined, errorFromWire(m.name, m.message)),
            )
            wake?.()
          })
        },
      )
      .then(
        (f) => {
          try {
            this.host.expect(f, Op.Ok)
            end = {}
          } catch (err) {
            end = { err: err as Error }
          }
        },
        (err: Error) => {
          end = { err }
        },
      )
      .finally(() => wake?.())
    try {
      for (;;) {
        const item = queue.shift()
        if (item) {
          yield item
          continue
        }
        if (end) {
          if (end.err) throw end.err
          return
        }
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        wake = undefined
      }
    } finally {
      this.many.delete(id)
      signal?.removeEventListener('abort', onAbort)
      if (!end) ac.abort(new AbortedError('requestMany ended by the caller'))
    }
  }

  /** A MANY_REPLY frame; true when it belonged to a running `requestMany`. */
  onManyReply(f: Frame): void {
    this.many.get(f.id)?.(f)
  }
}
