/**
 * Fuzzing helpers (test/fuzz.test.ts): byte-level mutations of valid encodings, a seeded
 * fast-check property per decoder (only `DecodeError`, never an invalid value), and valid
 * samples of the frames and bodies peers send.
 */
import fc from 'fast-check'
import { expect, it } from 'vitest'
import { ClusterSigner } from '../../src/cluster/proof.js'
import { writeFrame } from '../../src/link/frames.js'
import { checkTopic } from '../../src/pubsub/subject.js'
import { encodeMessage } from '../../src/raft/codec.js'
import { StreamDirectory } from '../../src/streams/meta/directory.js'
import { BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { checkHeaders, checkKey } from '../../src/util/validate.js'
import { testSeed } from './rng.js'

/** Runs per fuzzed decoder: a few hundred in `npm test`; FUZZ_RUNS=100000 for a long run. */
export const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 200)
/** UTF-8 encoder for samples. */
export const enc = new TextEncoder()

/** Applies byte-level mutations (overwrite, truncate, insert, append) to a copy of `base`. */
export function mutate(base: Uint8Array, ops: Array<[number, number, number]>): Uint8Array {
  let b = base.slice()
  for (const [pos, v, kind] of ops) {
    const i = b.length === 0 ? 0 : pos % b.length
    if (kind === 0 && b.length > 0) b[i] = v
    else if (kind === 1) b = b.subarray(0, i)
    else if (kind === 2) b = Uint8Array.from([...b.subarray(0, i), v, ...b.subarray(i)])
    else b = Uint8Array.from([...b, ...new Uint8Array(v % 16).fill(v)])
  }
  return b
}

/** Random bytes, valid encodings as they are, and valid encodings mutated. */
export function inputs(valid: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const op = fc.tuple(fc.nat(), fc.nat(255), fc.nat(3))
  return fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.constantFrom(...valid),
    fc
      .tuple(fc.constantFrom(...valid), fc.array(op, { minLength: 1, maxLength: 6 }))
      .map(([b, o]) => mutate(b, o)),
  )
}

/**
 * Feeds `decode` random and mutated inputs: it returns (and `check` holds for the result:
 * no invalid value gets through) or throws `DecodeError` (`PeerInputError` is one), never
 * anything else. Seeded; the seed is printed on failure.
 */
export function fuzz<T>(
  name: string,
  valid: Uint8Array[],
  decode: (b: Uint8Array) => T,
  check?: (v: T) => void,
) {
  it(`${name}: only DecodeError, never an invalid value`, () => {
    const seed = testSeed()
    try {
      fc.assert(
        fc.property(inputs(valid), (bytes) => {
          let out: T
          try {
            out = decode(bytes)
          } catch (err) {
            if (err instanceof DecodeError) return
            throw err
          }
          check?.(out)
        }),
        { seed, numRuns: FUZZ_RUNS },
      )
    } catch (err) {
      console.error(`fuzz seed ${seed} (replay with TEST_SEED=${seed}, runs FUZZ_RUNS=${FUZZ_RUNS})`)
      throw err
    }
  })
}

/** A link frame body (after the type byte) as `writeFrame` writes it. */
export function body(type: number, write: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter(64)
  writeFrame(w, type, write)
  return w.finish().slice(5)
}

/** The maxMessageSize the fuzzed decoders and nodes run with. */
export const MAX = 4096
/** A partition reference for call samples. */
export const ref = { stream: 'orders', createdIndex: 7, partition: 1 }
/** A valid stream spec for samples. */
export const spec = {
  name: 'orders',
  subject: 'orders.>',
  partitions: 2,
  replicas: 1,
  retention: { maxAge: 1000 },
  compact: false,
  duplicateWindow: 120_000,
}
/** A valid message of a publish call. */
export const msg = {
  topic: 'orders.eu',
  msgId: 'm1',
  key: enc.encode('k'),
  headers: { a: 'b' },
  data: enc.encode('d'),
}
/** Fails unless a delivered message passes the public API's checks (topic, key, headers, size). */
export const checkMessage = (m: {
  topic: string
  key?: Uint8Array
  headers?: Record<string, string>
  data: Uint8Array
}) => {
  checkTopic(m.topic)
  checkKey(m.key)
  checkHeaders(m.headers)
  expect(m.data.length).toBeLessThanOrEqual(MAX)
}

/** Signs sample announcements and tables for cluster `db` of network `net`. */
export const signer = new ClusterSigner(new Uint8Array(32).fill(1), 'db', 'net')
/** A stream directory host that knows `signer`'s public key. */
export const directoryHost = {
  network: 'net',
  now: Date.now,
  publicKey: () => signer.publicKey,
  flood: () => {},
  changed: () => {},
}
/** A valid signed stream table of `db`. */
export const table = new StreamDirectory(directoryHost).publish(
  signer,
  'peer',
  3,
  [{ ...spec, createdIndex: 2, placement: [['a'], ['b']], initialPlacement: [['a'], ['b']] }],
  [{ name: 'old', createdIndex: 1 }],
)
/** A valid encoded raft append message. */
export const raftMsg = encodeMessage({
  type: 'MsgApp',
  from: 'a',
  to: 'b',
  term: 2,
  logTerm: 1,
  index: 5,
  entries: [{ index: 6, term: 2, type: 'normal', data: enc.encode('e') }],
  commit: 4,
  reject: false,
  rejectHint: 0,
  transfer: false,
  recovering: false,
})
