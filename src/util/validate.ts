/**
 * Input validation shared by every public entry point. Each check throws
 * `InvalidArgumentError` naming the field and what was wrong with it.
 */
import {
  CLUSTER_NAME_RE,
  MAX_HEADER_NAME_BYTES,
  MAX_HEADERS,
  MAX_HEADERS_BYTES,
  MAX_KEY_BYTES,
  MAX_MSG_ID_BYTES,
  MAX_TIMEOUT,
  NETWORK_NAME_RE,
} from '../constants.js'
import { InvalidArgumentError } from '../errors.js'

const textEncoder = new TextEncoder()

/** Payloads: `Uint8Array` as is, strings as UTF-8; anything else is refused. */
export function toBytes(value: unknown, field: string): Uint8Array {
  if (value instanceof Uint8Array) return value
  if (typeof value === 'string') return textEncoder.encode(value)
  throw new InvalidArgumentError(`${field} must be a Uint8Array or a string, got ${describe(value)}`)
}

/** A payload that also respects `maxMessageSize`. */
export function toPayload(value: unknown, field: string, maxMessageSize: number): Uint8Array {
  const bytes = toBytes(value, field)
  if (bytes.length > maxMessageSize) {
    throw new InvalidArgumentError(
      `${field} is ${bytes.length} bytes, over maxMessageSize (${maxMessageSize} bytes)`,
    )
  }
  return bytes
}

/** Cluster names: 1–64 chars of [A-Za-z0-9_-]. */
export function checkClusterName(value: unknown, field = 'cluster'): string {
  if (typeof value !== 'string' || !CLUSTER_NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      `${field} must be 1-64 characters of [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/**
 * Queue group names (`subscribe(p, { queue })`): 1–64 chars of [A-Za-z0-9_-], like cluster
 * names; undefined when not given.
 */
export function checkQueueName(value: unknown, field = 'options.queue'): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !CLUSTER_NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      `${field} (a queue group name) must be 1-64 characters of [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/**
 * The arguments after the pattern of `subscribe(pattern, handler?, options?)` or
 * `subscribe(pattern, options)`: an object in second place is the options. Checks the
 * handler (a function or undefined), the option names and `options.queue`.
 */
export function checkSubscribeArgs<H>(
  handlerOrOptions: unknown,
  options: unknown,
): { handler: H | undefined; queue: string | undefined } {
  let handler = handlerOrOptions
  if (typeof handlerOrOptions === 'object' && handlerOrOptions !== null && options === undefined) {
    handler = undefined
    options = handlerOrOptions
  }
  const o = checkOptions<{ queue?: unknown }>(options, 'options')
  checkKnownKeys(o, ['queue'], 'options')
  const queue = checkQueueName(o.queue, 'options.queue')
  return { handler: checkFunction<H>(handler, 'handler'), queue }
}

/** Network names: 1–64 chars of [A-Za-z0-9_-]. */
export function checkNetworkName(value: unknown, field = 'network'): string {
  if (typeof value !== 'string' || !NETWORK_NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      `${field} must be 1-64 characters of [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/** A delay in milliseconds: 0 up to `MAX_TIMEOUT` (as `checkTimeout`, but 0 is allowed). */
export function checkDelay(value: unknown, field: string): number | undefined {
  if (value === 0) return 0
  return checkTimeout(value, field)
}

/**
 * A positive number of milliseconds up to `MAX_TIMEOUT` (2^31 - 1: Node's timers fire at
 * once for longer delays, so longer ones are refused, never shortened), or undefined when
 * optional. Every public timeout and duration goes through this check.
 */
export function checkTimeout(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(
      `${field} must be a positive number of milliseconds, got ${describe(value)}`,
    )
  }
  if (value > MAX_TIMEOUT) {
    throw new InvalidArgumentError(
      `${field} must be at most ${MAX_TIMEOUT} ms (2^31 - 1, about 24.8 days), got ${describe(value)}`,
    )
  }
  return value
}

/** A positive integer, at most `max` when given (or undefined when optional). */
export function checkPositiveInt(value: unknown, field: string, max?: number): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`${field} must be a positive integer, got ${describe(value)}`)
  }
  if (max !== undefined && value > max) {
    throw new InvalidArgumentError(`${field} must be at most ${max}, got ${describe(value)}`)
  }
  return value
}

/**
 * Refuses own keys of `value` that are not in `known` (keys set to undefined are ignored),
 * naming the first one: `${field}.${key}` (`field` '' for top-level options).
 */
export function checkKnownKeys(value: object, known: readonly string[], field: string): void {
  for (const k of Object.keys(value)) {
    if (!known.includes(k) && (value as Record<string, unknown>)[k] !== undefined) {
      const name = field === '' ? k : `${field}.${k}`
      throw new InvalidArgumentError(`unknown option ${name} (known: ${known.join(', ')})`)
    }
  }
}

/** A TCP port 0–65535 (or undefined when optional). */
export function checkPort(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
    throw new InvalidArgumentError(`${field} must be an integer port 0-65535, got ${describe(value)}`)
  }
  return value
}

/** A plain options object (or undefined). */
export function checkOptions<T extends object>(value: unknown, field: string): T {
  if (value === undefined || value === null) return {} as T
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentError(`${field} must be an object, got ${describe(value)}`)
  }
  return value as T
}

/** An array of strings (or undefined). */
export function checkStringArray(value: unknown, field: string): string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidArgumentError(`${field} must be an array of strings, got ${describe(value)}`)
  }
  return value as string[]
}

/** A function (or undefined). */
export function checkFunction<T>(value: unknown, field: string): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') {
    throw new InvalidArgumentError(`${field} must be a function, got ${describe(value)}`)
  }
  return value as T
}

/** Short description of a bad value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'string') return value.length > 40 ? `"${value.slice(0, 40)}…"` : JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Uint8Array) return `${value.length} bytes`
  return typeof value === 'object' ? 'an object' : typeof value
}

/** An AbortSignal (or undefined). */
export function checkSignal(signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(`options.signal must be an AbortSignal, got ${describe(signal)}`)
  }
}

/**
 * Message headers (or undefined): at most `MAX_HEADERS` string values, names of 1 to
 * `MAX_HEADER_NAME_BYTES` bytes, names and values together at most `MAX_HEADERS_BYTES`
 * bytes of UTF-8.
 */
export function checkHeaders(
  headers: unknown,
  field = 'options.headers',
): Record<string, string> | undefined {
  if (headers === undefined) return undefined
  const h = checkOptions<Record<string, unknown>>(headers, field)
  const entries = Object.entries(h)
  if (entries.length > MAX_HEADERS)
    throw new InvalidArgumentError(`${field} may have at most ${MAX_HEADERS} entries, got ${entries.length}`)
  let total = 0
  for (const [k, v] of entries) {
    const nameBytes = Buffer.byteLength(k)
    if (nameBytes === 0) throw new InvalidArgumentError(`${field}: a header name must not be empty`)
    if (nameBytes > MAX_HEADER_NAME_BYTES)
      throw new InvalidArgumentError(
        `${field}: header name ${describe(k)} is ${nameBytes} bytes, at most ${MAX_HEADER_NAME_BYTES} allowed`,
      )
    if (typeof v !== 'string')
      throw new InvalidArgumentError(`${field}.${k} must be a string, got ${describe(v)}`)
    total += nameBytes + Buffer.byteLength(v)
  }
  if (total > MAX_HEADERS_BYTES)
    throw new InvalidArgumentError(
      `${field} hold ${total} bytes of names and values, at most ${MAX_HEADERS_BYTES} allowed`,
    )
  return h as Record<string, string>
}

/**
 * A request handler's result: bytes, text (UTF-8), or `{ data, headers }` with headers checked
 * as `checkHeaders` does (`field.data`, `field.headers` named); empty headers become undefined.
 */
export function toReply(
  value: unknown,
  field = 'reply',
): { data: Uint8Array; headers: Record<string, string> | undefined } {
  if (value instanceof Uint8Array || typeof value === 'string')
    return { data: toBytes(value, field), headers: undefined }
  if (value === null || typeof value !== 'object' || !('data' in value)) {
    throw new InvalidArgumentError(
      `${field} must be a Uint8Array, a string or { data, headers }, got ${describe(value)}`,
    )
  }
  const v = value as { data: unknown; headers?: unknown }
  const data = toBytes(v.data, `${field}.data`)
  const headers = checkHeaders(v.headers, `${field}.headers`)
  return { data, headers: headers && Object.keys(headers).length > 0 ? headers : undefined }
}

/** A message key (or undefined): bytes or a string (UTF-8), at most `MAX_KEY_BYTES`. */
export function checkKey(value: unknown, field = 'options.key'): Uint8Array | undefined {
  if (value === undefined) return undefined
  const key = toBytes(value, field)
  if (key.length > MAX_KEY_BYTES)
    throw new InvalidArgumentError(`${field} is ${key.length} bytes, at most ${MAX_KEY_BYTES} allowed`)
  return key
}

/** A publish id (or undefined): a non-empty string of at most `MAX_MSG_ID_BYTES` bytes of UTF-8. */
export function checkMsgId(value: unknown, field = 'options.msgId'): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '')
    throw new InvalidArgumentError(`${field} must be a non-empty string, got ${describe(value)}`)
  const n = value.length <= MAX_MSG_ID_BYTES / 3 ? value.length : Buffer.byteLength(value)
  if (n > MAX_MSG_ID_BYTES)
    throw new InvalidArgumentError(`${field} is ${n} bytes, at most ${MAX_MSG_ID_BYTES} allowed`)
  return value
}
