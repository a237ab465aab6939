/**
 * `KvBucket` over one compacted stream of one partition (keys.ts names it). A revision is an
 * offset, so the revisions of a bucket are totally ordered. Writes are publishes with `ack:
 * 'all'`: `create` and `update` carry an expected revision the partition leader checks and
 * appends atomically (streams/partition/partition-cas.ts). A delete is a message with an
 * empty value (a tombstone, as compaction and the key index treat it) and the header
 * `kv-op: del`. `get` is `streams.last` on the leader's key index; `keys` and `history` read
 * the partition log; `watch` reads it once, then tails a consumer from where it ended.
 */
import { InvalidArgumentError, KeyExistsError, WrongRevisionError } from '../errors.js'
import { matches } from '../pubsub/subject.js'
import type { Consumer, KvBucket, KvEntry, KvWatch, PublishAck, StreamMessage } from '../types.js'
import { toPayload } from '../util/validate.js'
import { bucketStream, checkKvKey, checkKvPattern, KV_OP_HEADER, keyTopic } from './keys.js'

/** What a bucket needs of its node (node.ts gives it the stream layer's calls). */
export interface KvDeps {
  /** Publishes on the bucket's stream with `ack: 'all'` (no pub/sub delivery). */
  publish(
    topic: string,
    data: Uint8Array,
    key: Uint8Array,
    headers: Record<string, string> | undefined,
    expectedRevision: number | undefined,
  ): Promise<PublishAck>
  /** The latest live message of `key`, or undefined (streams/read.ts). */
  last(stream: string, key: Uint8Array): Promise<StreamMessage | undefined>
  /** Reads the stream from its start to its end at the call; resolves with that end. */
  scan(stream: string, onBatch: (messages: StreamMessage[]) => void): Promise<number>
  /** A plain consumer of the stream from `offset`. */
  consume(stream: string, offset: number): Consumer
  maxMessageSize: number
}

const utf8 = new TextEncoder()
const text = new TextDecoder()
const EMPTY = new Uint8Array(0)

class Entry implements KvEntry {
  constructor(
    readonly key: string,
    readonly value: Uint8Array,
    readonly revision: number,
    readonly operation: 'put' | 'delete',
    readonly timestamp: number,
  ) {}
  string(): string {
    return text.decode(this.value)
  }
  json<T = unknown>(): T {
    return JSON.parse(this.string()) as T
  }
}

/** A stored message of a bucket as an entry (undefined: not a keyed message). */
function toEntry(m: StreamMessage): Entry | undefined {
  if (m.key === undefined) return undefined
  const del = m.data.length === 0 || m.headers?.[KV_OP_HEADER] === 'del'
  return new Entry(text.decode(m.key), m.data, m.offset, del ? 'delete' : 'put', m.timestamp)
}

/** A bucket; see `KvBucket` and the module doc. */
export class Bucket implements KvBucket {
  readonly stream: string

  constructor(
    readonly bucket: string,
    private readonly d: KvDeps,
  ) {
    this.stream = bucketStream(bucket)
  }

  put(key: string, value: Uint8Array | string): Promise<number> {
    return this.write(key, value, undefined)
  }

  async get(key: string): Promise<KvEntry | null> {
    checkKvKey(key)
    const m = await this.d.last(this.stream, utf8.encode(key))
    const e = m === undefined ? undefined : toEntry(m)
    return e === undefined || e.operation === 'delete' ? null : e
  }

  async create(key: string, value: Uint8Array | string): Promise<number> {
    try {
      return await this.write(key, value, -1)
    } catch (err) {
      if (!(err instanceof WrongRevisionError)) throw err
      throw new KeyExistsError(`key ${key} of bucket ${this.bucket} exists (revision ${err.current})`, {
        cause: err,
      })
    }
  }

  update(key: string, value: Uint8Array | string, revision: number): Promise<number> {
    if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0)
      return Promise.reject(new InvalidArgumentError(`revision must be an integer >= 0, got ${revision}`))
    return this.write(key, value, revision)
  }

  async delete(key: string): Promise<number> {
    checkKvKey(key)
    const ack = await this.d.publish(
      keyTopic(this.bucket, key),
      EMPTY,
      utf8.encode(key),
      { [KV_OP_HEADER]: 'del' },
      undefined,
    )
    return ack.offset
  }

  async keys(): Promise<string[]> {
    const live = new Map<string, boolean>()
    await this.d.scan(this.stream, (batch) => {
      for (const m of batch) {
        const e = toEntry(m)
        if (e !== undefined) live.set(e.key, e.operation === 'put')
      }
    })
    return [...live]
      .filter(([, v]) => v)
      .map(([k]) => k)
      .sort()
  }

  async history(key: string): Promise<KvEntry[]> {
    checkKvKey(key)
    const out: KvEntry[] = []
    await this.d.scan(this.stream, (batch) => {
      for (const m of batch) {
        const e = toEntry(m)
        if (e?.key === key) out.push(e)
      }
    })
    return out
  }

  watch(pattern = '>'): KvWatch {
    checkKvPattern(pattern)
    let consumer: Consumer | undefined
    let stopped = false
    const d = this.d
    const stream = this.stream
    async function* run(): AsyncGenerator<KvEntry> {
      // The current value of each matching key as of the call, oldest revision first.
      const latest = new Map<string, Entry>()
      const end = await d.scan(stream, (batch) => {
        for (const m of batch) {
          const e = toEntry(m)
          if (e === undefined || !matches(pattern, e.key)) continue
          latest.delete(e.key) // re-inserted last: the map stays in revision order
          if (e.operation === 'put') latest.set(e.key, e)
        }
      })
      for (const e of latest.values()) {
        if (stopped) return
        yield e
      }
      latest.clear()
      if (stopped) return
      consumer = d.consume(stream, end)
      try {
        for await (const m of consumer) {
          const e = toEntry(m)
          if (e !== undefined && matches(pattern, e.key)) yield e
        }
      } finally {
        consumer.close()
      }
    }
    const it = run()
    return {
      [Symbol.asyncIterator]: () => it,
      stop: () => {
        stopped = true
        consumer?.close()
        void it.return(undefined)
      },
    }
  }

  private async write(
    key: string,
    value: Uint8Array | string,
    expected: number | undefined,
  ): Promise<number> {
    checkKvKey(key)
    const data = toPayload(value, 'value', this.d.maxMessageSize)
    if (data.length === 0)
      throw new InvalidArgumentError('value must not be empty (an empty value is a delete: use kv.delete)')
    const ack = await this.d.publish(keyTopic(this.bucket, key), data, utf8.encode(key), undefined, expected)
    return ack.offset
  }
}
