/**
 * Argument checking for the relay client's entry points whose options take more than a
 * line or two to validate: `connectRelay` and `publish`.
 */
import { splitCapability } from '../../src/cluster/capability-text.js'
import { DEFAULT_RELAY_HOST, DEFAULT_RELAY_PORT, RELAY_ENV } from '../../src/constants.js'
import type { PublishOptions } from '../../src/types.js'
import {
  checkHeaders,
  checkKey,
  checkKnownKeys,
  checkMsgId,
  checkOptions,
  checkPort,
  checkTimeout,
} from '../../src/util/validate.js'
import type { PublishBody } from '../wire/protocol-ext.js'
import type { WebSocketConstructor } from '../wire/transport-ws.js'
import { type ConnectRelayOptions, invalid, parseRelayAddress } from './client-api.js'
import type { ReconnectOptions } from './client-reconnect.js'

/** Where a client connects: a TCP `host:port`, or a WebSocket URL. */
export type RelayTarget = { host: string; port: number; url?: undefined } | { url: string }

/** `connectRelay`'s options, checked and with their defaults applied. */
export interface ResolvedConnectOptions {
  target: RelayTarget
  /** The WebSocket implementation for a `url` target (default: the global one). */
  WebSocket: WebSocketConstructor | undefined
  /** Reconnect with these options, or not at all. */
  reconnect: ReconnectOptions | undefined
  timeout: number
  signal: AbortSignal | undefined
  name: string
}

/**
 * Checks `connectRelay`'s options: a WebSocket `url` wins; else the address comes from
 * `address`, else from `host` / `port` over the relay environment variable, else the
 * defaults. In a browser page (no `process`, no TCP) the default is the page's own host
 * over WebSocket (`ws://` + `location.host` + `/`).
 */
export function resolveConnectOptions(opts: ConnectRelayOptions | string): ResolvedConnectOptions {
  // The shorthand: 'host:port' (TCP) or a ws:// / wss:// URL.
  if (typeof opts === 'string') opts = /^wss?:\/\//i.test(opts) ? { url: opts } : { address: opts }
  const o = checkOptions<ConnectRelayOptions>(opts, 'options')
  checkKnownKeys(
    o,
    ['host', 'port', 'address', 'url', 'WebSocket', 'reconnect', 'signal', 'timeout', 'clientName'],
    'options',
  )
  let target: RelayTarget
  const inNode = typeof process !== 'undefined' && process.versions?.node !== undefined
  const page = (globalThis as { location?: { protocol: string; host: string } }).location
  if (o.url !== undefined) target = { url: checkWsUrl(o.url) }
  else if (!inNode && page && o.address === undefined && o.host === undefined && o.port === undefined) {
    target = { url: `${page.protocol === 'https:' ? 'wss:' : 'ws:'}//${page.host}/` }
  } else if (o.address !== undefined) target = parseRelayAddress(o.address, 'options.address')
  else {
    const env = inNode ? process.env[RELAY_ENV] : undefined
    const base = env
      ? parseRelayAddress(env, RELAY_ENV)
      : { host: DEFAULT_RELAY_HOST, port: DEFAULT_RELAY_PORT }
    if (o.host !== undefined && (typeof o.host !== 'string' || o.host === '')) {
      throw invalid('options.host', o.host)
    }
    target = { host: o.host ?? base.host, port: checkPort(o.port, 'options.port') ?? base.port }
  }
  const timeout = checkTimeout(o.timeout, 'options.timeout') ?? 5000
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw invalid('options.signal', o.signal, 'an AbortSignal')
  }
  if (o.WebSocket !== undefined && typeof o.WebSocket !== 'function') {
    throw invalid('options.WebSocket', o.WebSocket, 'a WebSocket constructor')
  }
  const name = o.clientName === undefined ? 'plexus-ts' : String(o.clientName).slice(0, 200)
  return {
    target,
    timeout,
    signal: o.signal,
    name,
    WebSocket: o.WebSocket,
    reconnect: checkReconnect(o.reconnect),
  }
}

/** `reconnect`: a boolean or `{ minDelay, maxDelay, onState }`. */
function checkReconnect(v: unknown): ReconnectOptions | undefined {
  if (v === undefined || v === false) return undefined
  if (v === true) return {}
  const r = checkOptions<ReconnectOptions>(v, 'options.reconnect')
  checkKnownKeys(r, ['minDelay', 'maxDelay', 'onState'], 'options.reconnect')
  checkTimeout(r.minDelay, 'options.reconnect.minDelay')
  checkTimeout(r.maxDelay, 'options.reconnect.maxDelay')
  if (r.onState !== undefined && typeof r.onState !== 'function') {
    throw invalid('options.reconnect.onState', r.onState, 'a function')
  }
  return r
}

/** A `ws://` or `wss://` URL. */
function checkWsUrl(v: unknown): string {
  let u: URL | undefined
  try {
    u = typeof v === 'string' ? new URL(v) : undefined
  } catch {
    u = undefined
  }
  if (!u || (u.protocol !== 'ws:' && u.protocol !== 'wss:')) {
    throw invalid('options.url', v, "a WebSocket URL such as 'ws://127.0.0.1:55580/'")
  }
  return u.href
}

/**
 * Checks `publish`'s options into the PUBLISH frame fields other than topic and data, with
 * the library's own checks and limits (key, headers, msgId, timeout), so what the client
 * sends the node accepts.
 */
export function checkPublishOptions(opts: PublishOptions): Omit<PublishBody, 'topic' | 'data'> {
  const o = checkOptions<PublishOptions>(opts, 'options')
  const key = checkKey(o.key)
  const headers = checkHeaders(o.headers)
  const ack = o.ack ?? 'none'
  if (ack !== 'none' && ack !== 'leader' && ack !== 'all') {
    throw invalid('options.ack', o.ack, "'none', 'leader' or 'all'")
  }
  checkMsgId(o.msgId)
  const timeout = checkTimeout(o.timeout, 'options.timeout')
  const timeoutMs = timeout === undefined ? 0 : Math.min(0xffffffff, Math.max(1, Math.round(timeout)))
  const capability =
    o.capability === undefined ? undefined : splitCapability(o.capability, 'options.capability').text
  return { key, headers, msgId: o.msgId, capability, ack, timeoutMs }
}
