/**
 * Stream administration in the thin client: `client.streams.update / purge / consumers /
 * consumerInfo / deleteConsumer` over STREAM_ADMIN (protocol-admin.ts), with the library's
 * names; the node checks the arguments and the credential as the library does, and its errors
 * (`UnauthorizedError`, `ConsumerNotFoundError`, …) are rebuilt as the same classes.
 */
import type {
  ConsumerInfo,
  ConsumerSummary,
  StreamCallOptions,
  StreamInfo,
  StreamUpdate,
} from '../../src/types.js'
import { checkOptions } from '../../src/util/validate.js'
import { Op } from '../wire/protocol.js'
import { AdminKind, type AdminKindCode, encodeStreamAdmin } from '../wire/protocol-admin.js'
import { decodeStreamInfo } from '../wire/protocol-streams.js'
import {
  type ClientStreamsHost,
  checkAuthOptions,
  checkCallOptions,
  checkStreamName,
} from './client-streams.js'

/** The administration calls of `client.streams`. */
export interface RelayStreamsAdmin {
  /** See the library's `Streams.update`. */
  update(name: string, changes: StreamUpdate, options?: StreamCallOptions): Promise<StreamInfo>
  /** See the library's `Streams.purge`. */
  purge(
    name: string,
    target?: { before?: number; partition?: number; key?: string | Uint8Array },
    options?: StreamCallOptions,
  ): Promise<Array<{ partition: number; firstOffset: number }>>
  /** See the library's `Streams.consumers`. */
  consumers(stream: string, options?: StreamCallOptions): Promise<ConsumerSummary[]>
  /** See the library's `Streams.consumerInfo`. */
  consumerInfo(stream: string, name: string, options?: StreamCallOptions): Promise<ConsumerInfo>
  /** See the library's `Streams.deleteConsumer`. */
  deleteConsumer(stream: string, name: string, options?: StreamCallOptions): Promise<void>
}

/** `RelayStreamsAdmin` over `host`'s relay connection. */
export function relayStreamsAdmin(host: ClientStreamsHost): RelayStreamsAdmin {
  const call = async (
    kind: AdminKindCode,
    stream: string,
    name: string,
    args: unknown,
    options: StreamCallOptions | undefined,
    opcode: number,
  ) => {
    checkStreamName(stream, kind === AdminKind.Purge || kind === AdminKind.Update ? 'name' : 'stream')
    if (name !== '') checkStreamName(name, 'name')
    const { timeoutMs, signal } = checkCallOptions(options)
    const auth = checkAuthOptions(options)
    const text = args === undefined ? '' : JSON.stringify(checkOptions(args, 'changes'))
    const f = await host.call(
      Op.StreamAdmin,
      (w) => encodeStreamAdmin(w, { kind, stream, name, args: text, timeoutMs, auth }),
      signal,
    )
    host.expect(f, opcode)
    return f
  }
  const json = <T>(f: { body: { str(what: string): string; end(what: string): void } }): T => {
    const v = JSON.parse(f.body.str('result')) as T
    f.body.end('STREAM_ADMIN_REPLY')
    return v
  }
  return {
    async update(name, changes, options) {
      const f = await call(AdminKind.Update, name, '', changes, options, Op.StreamInfoReply)
      return decodeStreamInfo(f.body)
    },
    async purge(name, target, options) {
      let args: unknown = target ?? {}
      const key = (target as { key?: unknown } | undefined)?.key
      if (key instanceof Uint8Array) {
        // JSON carries text: bytes go as base64 (the server turns them back into bytes).
        const { key: _, ...rest } = target!
        args = { ...rest, keyBase64: btoa(String.fromCharCode(...key)) }
      }
      return json(await call(AdminKind.Purge, name, '', args, options, Op.StreamAdminReply))
    },
    async consumers(stream, options) {
      return json(await call(AdminKind.Consumers, stream, '', undefined, options, Op.StreamAdminReply))
    },
    async consumerInfo(stream, name, options) {
      return json(await call(AdminKind.ConsumerInfo, stream, name, undefined, options, Op.StreamAdminReply))
    },
    async deleteConsumer(stream, name, options) {
      const f = await call(AdminKind.ConsumerDelete, stream, name, undefined, options, Op.Ok)
      f.body.end('OK')
    },
  }
}
