/**
 * Names of key-value buckets and keys, and how they map onto a stream: bucket `config` is the
 * stream `KV_config` capturing `$kv.config.>`; key `app.db.url` is written on the topic
 * `$kv.config.app.db.url` with the message key `app.db.url` (so one key's writes share a
 * partition and compaction keeps its latest).
 */
import { InvalidArgumentError } from '../errors.js'
import { checkPattern } from '../pubsub/subject.js'
import { describe } from '../util/validate.js'

/** Longest key (characters). */
export const MAX_KV_KEY_LENGTH = 256
/** Header marking a delete (tombstone) in a bucket's stream; its value is `del`. */
export const KV_OP_HEADER = 'kv-op'

const BUCKET_RE = /^[A-Za-z0-9_-]{1,61}$/
const KEY_RE = /^[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*$/

/** Validates a bucket name (1-61 characters of `[A-Za-z0-9_-]`: `KV_` + it is a stream name). */
export function checkBucket(v: unknown, field = 'bucket'): string {
  if (typeof v !== 'string' || !BUCKET_RE.test(v))
    throw new InvalidArgumentError(`${field} must be 1-61 characters of [A-Za-z0-9_-], got ${describe(v)}`)
  return v
}

/** Validates a key: dot-separated non-empty tokens of `[A-Za-z0-9_=/-]`, at most 256 characters. */
export function checkKvKey(v: unknown, field = 'key'): string {
  if (typeof v !== 'string' || v.length > MAX_KV_KEY_LENGTH || !KEY_RE.test(v))
    throw new InvalidArgumentError(
      `${field} must be dot-separated tokens of [A-Za-z0-9_=/-], at most ${MAX_KV_KEY_LENGTH} characters, got ${describe(v)}`,
    )
  return v
}

/** Validates a watch pattern: a key, or a key pattern with `*` and `>` tokens. */
export function checkKvPattern(v: unknown, field = 'pattern'): string {
  checkPattern(v, field)
  for (const t of (v as string).split('.'))
    if (t !== '*' && t !== '>' && !/^[A-Za-z0-9_=/-]+$/.test(t))
      throw new InvalidArgumentError(`${field} has a token outside [A-Za-z0-9_=/-]: ${describe(v)}`)
  return v as string
}

/** The stream of a bucket. */
export const bucketStream = (bucket: string) => `KV_${bucket}`
/** The subject of a bucket's stream. */
export const bucketSubject = (bucket: string) => `$kv.${bucket}.>`
/** The topic a key is written on. */
export const keyTopic = (bucket: string, key: string) => `$kv.${bucket}.${key}`
