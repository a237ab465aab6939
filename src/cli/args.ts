/**
 * Flag value parsers and checks shared by the commands. Each throws `UsageError` naming the
 * flag and what is wrong with its value, so the user sees one clear line.
 */
import { readFile } from 'node:fs/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { Option } from 'commander'
import { CLUSTER_NAME_RE, NETWORK_NAME_RE } from '../constants.js'
import type { ConsumeFrom } from '../types.js'
import { parseKey } from '../util/keys.js'
import { describe } from '../util/validate.js'
import { UsageError } from './output.js'

/** Largest key file read (bytes); keys are 64 hex characters or a passphrase. */
const MAX_KEY_FILE = 4096

/** Parses a TCP port 0–65535 given to `flag`. */
export function parsePort(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d{1,5}$/.test(value.trim()) || Number(value) > 65535) {
      throw new UsageError(`${flag} must be an integer port 0-65535, got ${describe(value)}`)
    }
    return Number(value)
  }
}

/** Parses a positive whole number of milliseconds given to `flag`. */
export function parseMs(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0) {
      throw new UsageError(`${flag} must be a positive whole number of milliseconds, got ${describe(value)}`)
    }
    return n
  }
}

/** Parses a positive integer given to `flag`. */
export function parsePositiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0) {
      throw new UsageError(`${flag} must be a positive integer, got ${describe(value)}`)
    }
    return n
  }
}

/** Checks a cluster name given to `flag` (1–64 chars of [A-Za-z0-9_-]). */
export function checkCluster(value: string, flag: string): string {
  if (!CLUSTER_NAME_RE.test(value)) {
    throw new UsageError(
      `${flag} must be a cluster name of 1-64 characters [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/** Parses a queue group name given to `--queue` (`subscribe`). */
export function parseQueue(value: string): string {
  if (!CLUSTER_NAME_RE.test(value)) {
    throw new UsageError(
      `--queue must be a group name of 1-64 characters [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/** Parses a network name given to `--network`. */
export function parseNetwork(value: string): string {
  if (!NETWORK_NAME_RE.test(value)) {
    throw new UsageError(`--network must be 1-64 characters of [A-Za-z0-9_-], got ${describe(value)}`)
  }
  return value
}

/** A repeatable multiaddr flag: checks each value and collects them in order. */
export function collectMultiaddr(flag: string): (value: string, previous: string[] | undefined) => string[] {
  return (value, previous) => {
    try {
      multiaddr(value)
    } catch {
      throw new UsageError(
        `${flag} must be a multiaddr such as /ip4/127.0.0.1/tcp/4001, got ${describe(value)}`,
      )
    }
    return [...(previous ?? []), value]
  }
}

/**
 * Reads a key file given to `flag`: its trimmed content must be a key from `plexus keygen`
 * (64 hex characters) or a passphrase of at least 16 characters. Errors name the file.
 */
export async function readKeyFile(file: string, flag: string): Promise<string> {
  let text: string
  try {
    const buf = await readFile(file)
    if (buf.length > MAX_KEY_FILE)
      throw new UsageError(`${flag} ${file}: file is ${buf.length} bytes, not a key`)
    text = buf.toString('utf8').trim()
  } catch (err) {
    if (err instanceof UsageError) throw err
    const code = (err as NodeJS.ErrnoException).code
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (err as Error).message
    throw new UsageError(`${flag} ${file}: cannot read key file: ${why}`)
  }
  if (text === '')
    throw new UsageError(`${flag} ${file}: key file is empty (create one with: plexus keygen > ${file})`)
  try {
    parseKey(text, flag)
  } catch {
    throw new UsageError(
      `${flag} ${file}: not a key (expected 64 hex characters from plexus keygen, or a passphrase of at least 16 characters)`,
    )
  }
  return text
}

/** Parses `--backoff`: comma-separated delays in milliseconds (each >= 0), e.g. `1000,5000`. */
export function parseBackoff(value: string): number[] {
  const parts = value.split(',').map((v) => v.trim())
  if (parts.some((v) => !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))))
    throw new UsageError(`--backoff must be comma-separated whole milliseconds, got ${describe(value)}`)
  return parts.map(Number)
}

/** Parses `--ack-policy`: `explicit` or `none`. */
export function parseAckPolicy(value: string): 'explicit' | 'none' {
  if (value !== 'explicit' && value !== 'none')
    throw new UsageError(`--ack-policy must be explicit or none, got ${describe(value)}`)
  return value
}

/** Parses `--ack`: `leader` or `all` (a durable stream must capture the topic). */
export function parseAck(value: string): 'leader' | 'all' {
  if (value !== 'leader' && value !== 'all') {
    throw new UsageError(`--ack must be leader or all, got ${describe(value)}`)
  }
  return value
}

/** Parses a flag whose value must be a non-empty string of at most `max` characters. */
export function parseText(flag: string, max = 1024): (value: string) => string {
  return (value) => {
    if (value === '' || value.length > max) {
      throw new UsageError(
        `${flag} must be a non-empty string of at most ${max} characters, got ${describe(value)}`,
      )
    }
    return value
  }
}

/** Most `--header` flags on one publish (the relay's limit). */
export const MAX_CLI_HEADERS = 64

/** The repeatable `--header name=value` flag: collects the pairs, refusing duplicates. */
export function collectHeader(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  const eq = value.indexOf('=')
  if (eq <= 0)
    throw new UsageError(`--header must be name=value with a non-empty name, got ${describe(value)}`)
  const name = value.slice(0, eq)
  // A prototype-less object, so a header named __proto__ is just a header.
  const headers: Record<string, string> = Object.assign(Object.create(null), previous)
  if (Object.hasOwn(headers, name)) throw new UsageError(`--header ${name} given twice`)
  if (Object.keys(headers).length >= MAX_CLI_HEADERS) {
    throw new UsageError(`--header given more than ${MAX_CLI_HEADERS} times`)
  }
  headers[name] = value.slice(eq + 1)
  return headers
}

/** Checks a stream name given as `what` (1–64 chars of [A-Za-z0-9_-], like cluster names). */
export function checkStreamName(value: string, what: string): string {
  if (!CLUSTER_NAME_RE.test(value)) {
    throw new UsageError(
      `${what} must be a stream name of 1-64 characters [A-Za-z0-9_-], got ${describe(value)}`,
    )
  }
  return value
}

/** Parses a non-negative integer given to `flag` (partitions, offsets). */
export function parseNonNegativeInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
      throw new UsageError(`${flag} must be a non-negative integer, got ${describe(value)}`)
    }
    return n
  }
}

/**
 * Parses `consume --from`: `earliest`, `latest`, `new`, an offset (a non-negative integer)
 * or an ISO 8601 time such as 2024-05-01T12:00:00Z.
 */
export function parseFrom(value: string): ConsumeFrom {
  const v = value.trim()
  if (v === 'earliest' || v === 'latest' || v === 'new') return v
  if (/^\d+$/.test(v) && Number.isSafeInteger(Number(v))) return { offset: Number(v) }
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = new Date(v)
    if (!Number.isNaN(t.getTime())) return { time: t }
  }
  throw new UsageError(
    `--from must be earliest, latest, new, an offset (a non-negative integer) or an ISO 8601 time, got ${describe(value)}`,
  )
}

/** The client commands' `--timeout <ms>` flag (a deadline in ms; the default 10000 is the callee's). */
export function timeoutOption(): Option {
  return new Option('--timeout <ms>', 'deadline in milliseconds (default 10000)').argParser(
    parseMs('--timeout'),
  )
}
