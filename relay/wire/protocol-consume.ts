/**
 * Bodies of the consumer frames added with acknowledgement kinds and pull consumers
 * (0x6D–0x71; layouts normative in `docs/relay-protocol.md`, "Consumer options, acknowledgement
 * kinds and pull"): the CONSUME options block (flag 0x10), CONSUME_NAK, CONSUME_TERM and
 * CONSUME_WORKING (the CONSUME_ACK body; NAK adds a delay), CONSUME_START and CONSUME_FETCH.
 * Every decoder consumes the body exactly and throws `DecodeError` on anything malformed.
 */
import { CONSUMER } from '../../src/constants.js'
import { type BinaryReader, type BinaryWriter, DecodeError } from '../../src/util/binary.js'

/**
 * The CONSUME options block (flag 0x10): `u8 flags (1 ackPolicy none, 2 deferred) | u32
 * maxAckPending (0: default) | u32 maxDeliver (0: unlimited) | u16 n | n × u32 backoff ms |
 * str filter ('' none)`. A deferred consumer sends nothing until the client's first
 * CONSUME_START (push) or CONSUME_FETCH (pull) picks how it is read.
 */
export interface ConsumeExtras {
  ackNone: boolean
  deferred: boolean
  maxAckPending?: number
  maxDeliver?: number
  backoff?: number[]
  filter?: string
}

const EXTRA_ACK_NONE = 1
const EXTRA_DEFERRED = 2

/** Writes the CONSUME options block. */
export function writeConsumeExtras(w: BinaryWriter, x: ConsumeExtras): void {
  w.u8((x.ackNone ? EXTRA_ACK_NONE : 0) | (x.deferred ? EXTRA_DEFERRED : 0))
    .u32(x.maxAckPending ?? 0)
    .u32(x.maxDeliver ?? 0)
  const backoff = x.backoff ?? []
  w.u16(backoff.length)
  for (const d of backoff) w.u32(d)
  w.str(x.filter ?? '')
}

/** Reads the CONSUME options block (the node validates the values). */
export function readConsumeExtras(r: BinaryReader): ConsumeExtras {
  const flags = r.u8('options flags')
  if (flags & ~(EXTRA_ACK_NONE | EXTRA_DEFERRED))
    throw new DecodeError(`unknown CONSUME options flags ${flags}`)
  const x: ConsumeExtras = {
    ackNone: (flags & EXTRA_ACK_NONE) !== 0,
    deferred: (flags & EXTRA_DEFERRED) !== 0,
  }
  const maxAckPending = r.u32('maxAckPending')
  if (maxAckPending > 0) x.maxAckPending = maxAckPending
  const maxDeliver = r.u32('maxDeliver')
  if (maxDeliver > 0) x.maxDeliver = maxDeliver
  const n = r.u16('backoff count')
  if (n > CONSUMER.maxBackoff) throw new DecodeError(`${n} backoff values, at most ${CONSUMER.maxBackoff}`)
  if (n > 0) {
    x.backoff = []
    for (let i = 0; i < n; i++) x.backoff.push(r.u32('backoff'))
  }
  const filter = r.str('filter')
  if (filter !== '') x.filter = filter
  return x
}

/** CONSUME_NAK, CONSUME_TERM and CONSUME_WORKING body (`delayMs`: NAK only). */
export interface ConsumeSettleBody {
  consumerId: number
  partition: number
  offset: number
  /** CONSUME_NAK: redeliver after this long (ms; 0 at once). */
  delayMs?: number
}

/** Writes a CONSUME_NAK (with `delayMs`), CONSUME_TERM or CONSUME_WORKING body. */
export function encodeConsumeSettle(w: BinaryWriter, m: ConsumeSettleBody, nak: boolean): void {
  w.u32(m.consumerId).u32(m.partition).u64(m.offset)
  if (nak) w.u32(m.delayMs ?? 0)
}

/** Reads a CONSUME_NAK (`nak`), CONSUME_TERM or CONSUME_WORKING body; `what` names the frame. */
export function decodeConsumeSettle(r: BinaryReader, nak: boolean, what: string): ConsumeSettleBody {
  const m: ConsumeSettleBody = {
    consumerId: r.u32('consumer id'),
    partition: r.u32('partition'),
    offset: r.u64('offset'),
  }
  if (nak) m.delayMs = r.u32('delay')
  r.end(what)
  return m
}

/** CONSUME_FETCH body: the consumer, `max` messages (1–4,096), `expires` ms (≤ 10 minutes). */
export interface ConsumeFetchBody {
  consumerId: number
  max: number
  expires: number
}

/** Writes a CONSUME_FETCH body. */
export function encodeConsumeFetch(w: BinaryWriter, m: ConsumeFetchBody): void {
  w.u32(m.consumerId).u32(m.max).u32(m.expires)
}

/** Reads a CONSUME_FETCH body (ranges are checked by the node's `fetch`). */
export function decodeConsumeFetch(r: BinaryReader): ConsumeFetchBody {
  const m = { consumerId: r.u32('consumer id'), max: r.u32('max'), expires: r.u32('expires') }
  r.end('CONSUME_FETCH')
  return m
}
