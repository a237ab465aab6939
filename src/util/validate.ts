/**
 * Input validation shared by every public entry point. Each check throws
 * `InvalidArgumentError` naming the field and what was wrong with it.
 */
import { CLUSTER_NAME_RE, NETWORK_NAME_RE } from '../constants.js'
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

/** Network names: 1–64 chars of [A-Za-z0-9_-]. */
export function checkNetworkName(value: unknown, field = 'network'): string {
  if (typeof value !== 'string' || !NETWORK_NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      `${field} must be 1-64 characters of [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/** A positive finite number of milliseconds (or undefined when optional). */
export function checkTimeout(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(
      `${field} must be a positive number of milliseconds, got ${describe(value)}`,
    )
  }
  return value
}

/** A positive integer (or undefined when optional). */
export function checkPositiveInt(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`${field} must be a positive integer, got ${describe(value)}`)
  }
  return value
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

/** Message headers: at most 64 string values (or undefined). */
export function checkHeaders(headers: unknown): Record<string, string> | undefined {
  if (headers === undefined) return undefined
  const h = checkOptions<Record<string, unknown>>(headers, 'options.headers')
  const entries = Object.entries(h)
  if (entries.length > 64) throw new InvalidArgumentError('options.headers may have at most 64 entries')
  for (const [k, v] of entries) {
    if (typeof v !== 'string')
      throw new InvalidArgumentError(`options.headers.${k} must be a string, got ${describe(v)}`)
  }
  return h as Record<string, string>
}
